// The HTTP fallback beside WebSocket and beside socket.io's long-polling (what socket.io falls
// back to), in one run on this machine: idle memory per connection (forced GCs) and a 1 KB JSON
// broadcast to every connection every 200 ms (CPU per delivery, latency p50/p99).
//   node bench/http-fallback.js [--connections 2000] [--seconds 5] [--repeats 3]
// Each server runs in its own process, its clients in another; see docs/benchmarks.md.
import { fork } from 'node:child_process';
import { Agent, createServer as createHttpServer, request } from 'node:http';
import { fileURLToPath } from 'node:url';

const HOST = '127.0.0.1';
const self = fileURLToPath(import.meta.url);
const [role, kind, portArg, countArg] = process.argv.slice(2);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const wallNow = () => performance.timeOrigin + performance.now();

function serve(handlers) {
  process.on('message', async ({ id, cmd, args }) => {
    try {
      process.send({ id, ok: true, result: await handlers[cmd](args ?? {}) });
    } catch (err) {
      process.send({ id, ok: false, error: String(err?.stack ?? err) });
    }
  });
}

function child(args, execArgv = []) {
  const proc = fork(self, args, { execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  let next = 0;
  const pending = new Map();
  const ready = new Promise((resolve) => {
    proc.on('message', (m) => {
      if (m.ready) resolve(m.ready);
      const p = pending.get(m.id);
      if (!p) return;
      pending.delete(m.id);
      if (m.ok) p.resolve(m.result);
      else p.reject(new Error(m.error));
    });
  });
  return {
    ready,
    call: (cmd, args) =>
      new Promise((resolve, reject) => {
        const id = ++next;
        pending.set(id, { resolve, reject });
        proc.send({ id, cmd, args });
      }),
    kill: () => proc.kill('SIGKILL'),
  };
}

// ---- servers ----

async function startServer() {
  let broadcast;
  let count;
  let port;
  if (kind === 'socket.io-polling') {
    const { Server } = await import('socket.io');
    const http = createHttpServer();
    const io = new Server(http, { transports: ['polling'], serveClient: false });
    await new Promise((resolve) => http.listen(0, HOST, resolve));
    port = http.address().port;
    broadcast = (data) => io.emit('b', data);
    count = () => io.of('/').sockets.size;
  } else {
    const { createGateway, createLogger } = await import('../dist/index.js');
    const gateway = createGateway({
      ws: { port: 0, host: HOST },
      logger: createLogger('silent'),
      validate: (token) => ({ user: String(token) }),
      rateLimit: { rate: 1_000_000, burst: 1_000_000 },
      maxConnectionsPerIp: 1_000_000,
    });
    const addr = await gateway.listen();
    port = addr.ws.port;
    broadcast = async (data) => (await gateway.push({ all: true }, 'b', data)).done;
    count = () => gateway.stats().connections;
  }
  let mark;
  serve({
    count: () => count(),
    mem: async () => {
      for (let i = 0; i < 4; i++) {
        globalThis.gc();
        await sleep(20);
      }
      const m = process.memoryUsage();
      return { heap: m.heapUsed, rss: m.rss };
    },
    mark: () => {
      mark = process.cpuUsage();
    },
    since: () => {
      const c = process.cpuUsage(mark);
      return c.user + c.system;
    },
    broadcast: async ({ intervalMs, durationMs, pad }) => {
      const p = 'x'.repeat(pad);
      let n = 0;
      const t0 = performance.now();
      while (performance.now() - t0 < durationMs) {
        await broadcast({ t: wallNow(), p });
        n++;
        const wait = t0 + n * intervalMs - performance.now();
        if (wait > 0) await sleep(wait);
      }
      return n;
    },
  });
  process.send({ ready: { port } });
}

// ---- clients ----

async function startClients() {
  const port = Number(portArg);
  const n = Number(countArg);
  const latencies = [];
  let received = 0;
  const onPush = (data) => {
    received++;
    latencies.push(wallNow() - data.t);
  };
  const agent = new Agent({ keepAlive: true, maxSockets: Number.POSITIVE_INFINITY });
  const open = async (i) => {
    if (kind === 'pylon-http') {
      await new Promise((resolve, reject) => {
        const body = JSON.stringify({ kind: 'hello', data: { token: `u${i}` } });
        const req = request(
          {
            host: HOST,
            port,
            method: 'POST',
            path: '/http',
            agent,
            headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
          },
          (res) => {
            let text = '';
            res.setEncoding('utf8');
            res.on('data', (chunk) => {
              text += chunk;
              let nl = text.indexOf('\n');
              while (nl >= 0) {
                const line = text.slice(0, nl);
                text = text.slice(nl + 1);
                if (line.length > 0) {
                  const env = JSON.parse(line);
                  if (env.kind === 'welcome') resolve();
                  else if (env.kind === 'push') onPush(env.data);
                }
                nl = text.indexOf('\n');
              }
            });
          },
        );
        req.on('error', reject);
        req.end(body);
      });
    } else if (kind === 'pylon-ws') {
      const { WebSocket } = await import('ws');
      await new Promise((resolve, reject) => {
        const ws = new WebSocket(`ws://${HOST}:${port}/ws?token=u${i}`, ['pylon.v1.json']);
        ws.on('message', (d) => {
          const env = JSON.parse(d.toString());
          if (env.kind === 'push') onPush(env.data);
        });
        ws.on('open', resolve);
        ws.on('error', reject);
      });
    } else {
      const { io } = await import('socket.io-client');
      await new Promise((resolve, reject) => {
        const s = io(`http://${HOST}:${port}`, { transports: ['polling'], reconnection: false });
        s.on('b', onPush);
        s.on('connect', resolve);
        s.on('connect_error', reject);
      });
    }
  };
  for (let i = 0; i < n; i += 100) {
    await Promise.all(Array.from({ length: Math.min(100, n - i) }, (_, k) => open(i + k)));
  }
  serve({
    reset: () => {
      received = 0;
      latencies.length = 0;
    },
    wait: async ({ expected, timeoutMs }) => {
      const end = performance.now() + timeoutMs;
      while (received < expected && performance.now() < end) await sleep(50);
      const sorted = latencies.slice().sort((a, b) => a - b);
      const q = (f) => sorted[Math.min(sorted.length - 1, Math.floor(f * sorted.length))] ?? 0;
      return { received, p50: q(0.5), p99: q(0.99) };
    },
  });
  process.send({ ready: { n } });
}

// ---- driver ----

function option(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
}

const median = (xs) => {
  const s = xs.slice().sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
};
const spread = (xs, f = (x) => x) => `${f(median(xs))} (${f(Math.min(...xs))}–${f(Math.max(...xs))})`;

async function drive() {
  const n = option('connections', 2000);
  const seconds = option('seconds', 5);
  const repeats = option('repeats', 3);
  const rows = [];
  for (const k of ['pylon-ws', 'pylon-http', 'socket.io-polling']) {
    const runs = [];
    for (let r = 0; r < repeats; r++) {
      const server = child(['server', k], ['--expose-gc']);
      const { port } = await server.ready;
      const base = await server.call('mem');
      const clients = child(['client', k, String(port), String(n)]);
      await clients.ready;
      while ((await server.call('count')) < n) await sleep(50);
      await sleep(500);
      const idle = await server.call('mem');
      await clients.call('reset');
      await server.call('mark');
      const sent = await server.call('broadcast', { intervalMs: 200, durationMs: seconds * 1000, pad: 1000 });
      const got = await clients.call('wait', { expected: sent * n, timeoutMs: 20_000 });
      const cpu = await server.call('since');
      runs.push({
        heap: (idle.heap - base.heap) / n,
        rss: (idle.rss - base.rss) / n,
        cpu: cpu / got.received,
        p50: got.p50,
        p99: got.p99,
        lost: sent * n - got.received,
      });
      console.error(
        `${k} #${r + 1}: heap ${Math.round(runs.at(-1).heap)} B/conn, CPU ${runs.at(-1).cpu.toFixed(2)} µs/delivery, ` +
          `p50 ${got.p50.toFixed(1)} ms, p99 ${got.p99.toFixed(1)} ms, ${runs.at(-1).lost} not delivered`,
      );
      clients.kill();
      server.kill();
      await sleep(300);
    }
    rows.push({ kind: k, runs });
  }
  const r0 = (x) => Math.round(x).toLocaleString('en');
  const f2 = (x) => x.toFixed(2);
  const f1 = (x) => x.toFixed(1);
  console.log(
    `\n${n} connections, a 1 KB JSON push to all every 200 ms for ${seconds} s; medians of ${repeats} (min–max)\n`,
  );
  console.log('| server | heap B/conn | RSS B/conn | CPU µs/delivery | p50 ms | p99 ms | not delivered |');
  console.log('|---|---|---|---|---|---|---|');
  for (const { kind: k, runs } of rows) {
    const col = (key, f) =>
      spread(
        runs.map((x) => x[key]),
        f,
      );
    console.log(
      `| ${k} | ${col('heap', r0)} | ${col('rss', r0)} | ${col('cpu', f2)} | ${col('p50', f1)} | ${col('p99', f1)} | ${runs.reduce((a, x) => a + x.lost, 0)} |`,
    );
  }
}

if (role === 'server') await startServer();
else if (role === 'client') await startClients();
else await drive();
