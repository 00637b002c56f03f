// The servers under test. Each is what a careful user of that library would write: Pylon as a
// real deployment runs it (validate hook with a user and 2 labels, default keepalive, JSON), the
// peers the way their own documentation shows. Every server answers an echo request and
// broadcasts one push to every connection; each module is imported only by its own process.
//
// Wire formats (what the clients in clients.js speak):
// - pylon-ws, pylon-tcp: Pylon's JSON envelope; echo is a `req` of type "echo", the broadcast a
//   `push` of type "b".
// - ws, net: the echo sends back the message it got, unparsed (these two are floors, not
//   applications); the broadcast is the same bytes as Pylon's push, JSON-encoded once.
// - socket.io: its own packets; echo is an acknowledged emit, the broadcast `io.emit('b', data)`.

export const KINDS = ['ws', 'pylon-ws', 'socket.io', 'net', 'pylon-tcp', 'pylon-start-ws', 'pylon-start-tcp'];
/** Servers measured only when named (--servers): Pylon with OpenTelemetry spans on. */
export const EXTRA_KINDS = ['pylon-ws-traced'];

/** Kinds served by `pylon start` itself (bench/start-server.js), and the client protocol they speak. */
export const START_KINDS = { 'pylon-start-ws': 'pylon-ws', 'pylon-start-tcp': 'pylon-tcp' };

const HOST = '127.0.0.1';

/** The envelope of a broadcast, as Pylon's JSON codec writes it (the peers send the same bytes). */
export function pushText(data) {
  return JSON.stringify({ kind: 'push', type: 'b', data });
}

/**
 * @returns {Promise<{ port: number, count(): number, broadcast(data: object): Promise<unknown> | undefined,
 *   info: Record<string, unknown> }>}
 */
export async function createServer(kind) {
  switch (kind) {
    case 'pylon-ws':
      return pylon('ws');
    case 'pylon-tcp':
      return pylon('tcp');
    case 'pylon-ws-traced':
      return pylon('ws', true);
    case 'ws':
      return wsServer();
    case 'socket.io':
      return socketIoServer();
    case 'net':
      return netServer();
    default:
      throw new Error(`unknown server kind "${kind}"`);
  }
}

/** The identity a real deployment's validate hook would return: the user and 2 labels. */
function validate(token) {
  if (typeof token !== 'string' || token.length < 2) return null;
  const n = Number(token.slice(1)) || 0;
  return { user: token, labels: ['version_2', `room_${n % 100}`] };
}

async function pylon(transport, traced = false) {
  const { createGateway, VERSION } = await import('../../dist/index.js');
  const gateway = createGateway({
    [transport]: { port: 0, host: HOST },
    validate,
    // The inbound rate limits stay on (their cost is measured) but high enough that the echo
    // clients (up to ~1,000 requests/s per connection here) never trip them.
    rateLimit: { rate: 1_000_000, burst: 1_000_000 },
    userRateLimit: { rate: 1_000_000, burst: 1_000_000 },
    ...(traced ? { tracing: await discardingTracer() } : {}),
  });
  gateway.handle('echo', (d) => d);
  const addresses = await gateway.listen();
  return {
    port: addresses[transport].port,
    count: () => gateway.stats().connections,
    // push() returns a PushResult, or (newer versions) a promise of one; `done` resolves once
    // every connection has been written to.
    async broadcast(data) {
      const result = await gateway.push({ all: true }, 'b', data);
      await result.done;
    },
    info: { pylon: VERSION, transport, codec: 'json', keepalive: gateway.keepalive ?? 'default' },
  };
}

/** Spans made, batched and handed to an exporter that drops them: the cost of tracing on, without a collector. */
async function discardingTracer() {
  const { BasicTracerProvider, BatchSpanProcessor } = await import('@opentelemetry/sdk-trace-base');
  const exporter = { export: (_spans, done) => done({ code: 0 }), shutdown: async () => {} };
  return new BasicTracerProvider({ spanProcessors: [new BatchSpanProcessor(exporter)] });
}

async function wsServer() {
  const { WebSocketServer, WebSocket } = await import('ws');
  const { createRequire } = await import('node:module');
  // ws loads bufferutil by itself when it can be required; say so in the results.
  let bufferutil = false;
  try {
    createRequire(import.meta.url)('bufferutil');
    bufferutil = true;
  } catch {}
  const wss = new WebSocketServer({ host: HOST, port: 0 });
  await new Promise((resolve, reject) => {
    wss.once('listening', resolve);
    wss.once('error', reject);
  });
  // As in ws's README.
  wss.on('connection', function connection(ws) {
    ws.on('error', console.error);
    ws.on('message', function message(data, isBinary) {
      ws.send(data, { binary: isBinary });
    });
  });
  return {
    port: wss.address().port,
    count: () => wss.clients.size,
    broadcast(data) {
      const text = pushText(data);
      // ws's README broadcast: every client, the same string.
      for (const client of wss.clients) {
        if (client.readyState === WebSocket.OPEN) client.send(text);
      }
      return undefined;
    },
    info: { bufferutil, perMessageDeflate: false },
  };
}

async function socketIoServer() {
  const { createServer: createHttpServer } = await import('node:http');
  const { Server } = await import('socket.io');
  const http = createHttpServer();
  const io = new Server(http, { transports: ['websocket'], serveClient: false });
  io.on('connection', (socket) => {
    socket.on('echo', (data, ack) => ack(data));
  });
  await new Promise((resolve, reject) => {
    http.once('error', reject);
    http.listen(0, HOST, resolve);
  });
  return {
    port: http.address().port,
    count: () => io.of('/').sockets.size,
    broadcast(data) {
      io.emit('b', data);
      return undefined;
    },
    info: { transports: ['websocket'] },
  };
}

async function netServer() {
  const net = await import('node:net');
  const { frameText, readFrames } = await import('./framing.js');
  const sockets = new Set();
  function echoFrame(socket, _body, whole) {
    socket.write(whole);
  }
  function onData(chunk) {
    readFrames(this, chunk, echoFrame);
  }
  function onClose() {
    sockets.delete(this);
  }
  function onError() {}
  const server = net.createServer({ noDelay: true }, (socket) => {
    socket.rest = null;
    sockets.add(socket);
    socket.on('data', onData);
    socket.on('error', onError);
    socket.on('close', onClose);
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    // Its clients move on once the kernel has accepted, before this process has: a deeper
    // backlog keeps a burst of connects from overflowing it (the others confirm in a reply).
    server.listen({ port: 0, host: HOST, backlog: 4096 }, resolve);
  });
  return {
    port: server.address().port,
    count: () => sockets.size,
    broadcast(data) {
      const frame = frameText(pushText(data));
      for (const socket of sockets) socket.write(frame);
      return undefined;
    },
    info: { framing: '4-byte big-endian length' },
  };
}
