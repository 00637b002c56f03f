import { connect as netConnect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { CloseInfo, Connection } from '../src/framework/connection.js';
import type { Protocol } from '../src/framework/protocol.js';
import { createServer, type ServerOptions } from '../src/framework/server.js';
import { createLogger } from '../src/log/logger.js';
import type { PylonError } from '../src/protocol/errors.js';
import { RawTcp } from './support/gateway.js';

const silent = createLogger('silent');
const servers: Array<{ close(): Promise<void> }> = [];

afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function start<S extends { close(): Promise<void>; listen(): Promise<{ port: number }> }>(
  server: S,
): Promise<{ server: S; port: number }> {
  servers.push(server);
  const a = await server.listen();
  return { server, port: a.port };
}

/** An `nc`-style client: raw bytes in and out. */
class Peer {
  text = '';
  ended = false;
  closed = false;
  constructor(readonly socket: Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => {
      this.text += d;
    });
    socket.on('end', () => {
      this.ended = true;
    });
    socket.on('close', () => {
      this.closed = true;
    });
    socket.on('error', () => {});
  }
  static open(port: number): Promise<Peer> {
    return new Promise((resolve, reject) => {
      const s = netConnect({ port, host: '127.0.0.1' }, () => resolve(new Peer(s)));
      s.once('error', reject);
    });
  }
  write(s: string | Uint8Array): void {
    this.socket.write(s);
  }
  async until(pred: (p: Peer) => boolean, ms = 5000): Promise<void> {
    const end = Date.now() + ms;
    while (!pred(this)) {
      if (Date.now() > end) throw new Error(`timed out; got ${JSON.stringify(this.text.slice(0, 200))}`);
      await sleep(10);
    }
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function eventually(pred: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error('condition not met');
    await sleep(10);
  }
}

function lineServer(extra: Omit<Partial<ServerOptions<string, string>>, 'listen' | 'protocol'> = {}) {
  return createServer({
    listen: 'line://127.0.0.1:0',
    logger: silent,
    onMessage(conn, line) {
      conn.send(`echo: ${line}`);
    },
    ...extra,
  });
}

describe('line:// echo', () => {
  it('answers nc-style clients, line by line, split and coalesced', async () => {
    const { port } = await start(lineServer());
    const a = await Peer.open(port);
    const b = await Peer.open(port);
    a.write('hel');
    a.write('lo\r\nwor');
    b.write('one\ntwo\n');
    a.write('ld\n');
    await a.until((p) => p.text === 'echo: hello\necho: world\n');
    await b.until((p) => p.text === 'echo: one\necho: two\n');
    a.socket.end();
    await a.until((p) => p.closed);
  });

  it('closes a line over maxLength with frame_too_large, never crashing', async () => {
    const closed: CloseInfo[] = [];
    const errors: string[] = [];
    const { port } = await start(
      lineServer({
        line: { maxLength: 8 },
        onClose: (_c, info) => closed.push(info),
        onError: (_c, err) => errors.push(err.code),
      }),
    );
    const p = await Peer.open(port);
    p.write('short\n0123456789\n');
    await p.until((x) => x.closed);
    expect(p.text).toBe('echo: short\n');
    expect(errors).toEqual(['FRAME_TOO_LARGE']);
    expect(closed).toEqual([{ code: 4501, name: 'frame_too_large', reason: 'line longer than 8 bytes' }]);
  });
});

describe('callbacks', () => {
  it('fire in order: onConnect, onMessage*, onError with a code, onClose once', async () => {
    const events: string[] = [];
    const { port } = await start(
      createServer({
        listen: 'length://127.0.0.1:0',
        length: { header: 2, max: 16 },
        logger: silent,
        onConnect: (c) => events.push(`connect ${c.id}`),
        onMessage: (c, m) => {
          events.push(`message ${Buffer.from(m).toString()}`);
          c.send(m);
        },
        onError: (_c, err: PylonError) => events.push(`error ${err.code}`),
        onClose: (_c, info) => events.push(`close ${info.code} ${info.name}`),
      }),
    );
    const p = await Peer.open(port);
    p.write(Buffer.from([0, 1, 97, 0, 2, 98]));
    p.write(Buffer.from([99, 0, 1]));
    p.write(Buffer.from([100, 0xff, 0xff]));
    await p.until((x) => x.closed);
    await eventually(() => events.length === 6);
    expect(events).toEqual([
      'connect 1',
      'message a',
      'message bc',
      'message d',
      'error FRAME_TOO_LARGE',
      'close 4501 frame_too_large',
    ]);
    expect(p.text).toBe('\u0000\u0001a\u0000\u0002bc\u0000\u0001d');
  });

  it('a throwing or rejecting onMessage is reported as HANDLER and the connection goes on', async () => {
    const errors: string[] = [];
    const { port } = await start(
      lineServer({
        onMessage(conn, line) {
          if (line === 'throw') throw new Error('boom');
          if (line === 'reject') return Promise.reject(new Error('async boom'));
          conn.send(line);
          return undefined;
        },
        onError: (_c, err) => errors.push(`${err.code}: ${err.message}`),
      }),
    );
    const p = await Peer.open(port);
    p.write('throw\nreject\nstill here\n');
    await p.until((x) => x.text === 'still here\n');
    await eventually(() => errors.length === 2);
    expect(errors).toEqual(['HANDLER: boom', 'HANDLER: async boom']);
  });
});

describe('connections', () => {
  it('soft close: stop reading, finish writing everything queued, then end', async () => {
    const big = 'x'.repeat(4 * 1024 * 1024);
    const closes: CloseInfo[] = [];
    const after: string[] = [];
    const { port } = await start(
      lineServer({
        onMessage(conn, line) {
          if (line !== 'go') {
            after.push(line);
            return;
          }
          conn.send(big);
          conn.send('tail');
          conn.close('bye now');
          expect(conn.send('refused')).toBe(false);
        },
        onClose: (_c, info) => closes.push(info),
      }),
    );
    const p = await Peer.open(port);
    p.write('go\nignored\n');
    await p.until((x) => x.ended, 10_000);
    expect(p.text.length).toBe(big.length + 6);
    expect(p.text.endsWith('x\ntail\n')).toBe(true);
    p.socket.end();
    await eventually(() => closes.length === 1);
    expect(closes[0]).toEqual({ code: 1000, name: 'closed', reason: 'bye now' });
    expect(after).toEqual([]);
  });

  it('destroy drops what is queued', async () => {
    const { port } = await start(
      lineServer({
        onMessage(conn) {
          conn.destroy();
        },
      }),
    );
    const p = await Peer.open(port);
    p.write('x\n');
    await p.until((x) => x.closed);
  });

  it('onBufferFull once over highWaterMark, onBufferDrain when it empties', async () => {
    const events: string[] = [];
    let conn: Connection<string, string> | undefined;
    const { port } = await start(
      lineServer({
        highWaterMark: 64 * 1024,
        onConnect: (c) => {
          conn = c;
        },
        onBufferFull: () => events.push('full'),
        onBufferDrain: () => events.push('drain'),
      }),
    );
    const p = await Peer.open(port);
    p.socket.pause();
    await eventually(() => conn !== undefined);
    const chunk = 'y'.repeat(256 * 1024);
    let writes = 0;
    while (conn!.send(chunk)) writes++;
    expect(conn!.send(chunk)).toBe(false);
    expect(events).toEqual(['full']);
    expect(conn!.buffered).toBeGreaterThan(64 * 1024);
    p.socket.resume();
    await eventually(() => events.length === 2);
    expect(events).toEqual(['full', 'drain']);
    expect(writes).toBeGreaterThan(0); // the kernel took some before the buffer filled
  });

  it('pauseRecv holds buffered packets until resumeRecv, in order', async () => {
    const got: string[] = [];
    const { port } = await start(
      lineServer({
        onMessage(conn, line) {
          got.push(line);
          if (line === 'a') {
            conn.pauseRecv();
            setTimeout(() => conn.resumeRecv(), 100);
          }
        },
      }),
    );
    const p = await Peer.open(port);
    p.write('a\nb\nc\n');
    await sleep(50);
    expect(got).toEqual(['a']);
    await eventually(() => got.length === 3);
    expect(got).toEqual(['a', 'b', 'c']);
  });

  it('idleTimeout closes a silent connection (on the wheel), not a chatty one', async () => {
    const closes: Array<[number, string]> = [];
    const { port } = await start(
      lineServer({ idleTimeout: 400, onClose: (c, info) => closes.push([c.id, info.name]) }),
    );
    const silentPeer = await Peer.open(port);
    const chatty = await Peer.open(port);
    const started = Date.now();
    while (!silentPeer.closed && Date.now() - started < 5000) {
      chatty.write('ping\n');
      await sleep(50);
    }
    expect(silentPeer.closed).toBe(true);
    expect(Date.now() - started).toBeGreaterThanOrEqual(380);
    expect(chatty.closed).toBe(false);
    // The peer can see its socket closed before the server's onClose has run.
    await expect.poll(() => closes).toEqual([[1, 'keepalive_timeout']]);
  });

  it('maxConnections refuses the next connection', async () => {
    const { server, port } = await start(lineServer({ maxConnections: 1 }));
    const a = await Peer.open(port);
    a.write('hi\n');
    await a.until((p) => p.text === 'echo: hi\n');
    const b = await Peer.open(port);
    await b.until((p) => p.closed);
    expect(server.refusedCount).toBe(1);
    expect(a.closed).toBe(false);
  });

  it('server.close() closes connections with shutdown (4000)', async () => {
    const closes: string[] = [];
    const server = lineServer({ onClose: (_c, info) => closes.push(`${info.code} ${info.name}`) });
    const { port } = await start(server);
    const p = await Peer.open(port);
    p.write('x\n');
    await p.until((x) => x.text.length > 0);
    await server.close();
    await p.until((x) => x.ended);
    expect(closes).toEqual(['4000 shutdown']);
  });
});

describe('other protocols on tcp', () => {
  it('tcp:// speaks Pylon frames with JSON envelopes, raw mode (no hello)', async () => {
    const { port } = await start(
      createServer({
        listen: 'tcp://127.0.0.1:0',
        logger: silent,
        onMessage(conn, env) {
          conn.send({ kind: 'push', type: env.type ?? 'none', data: env.data });
        },
      }),
    );
    const raw = await RawTcp.open(`tcp://127.0.0.1:${port}`);
    raw.sendJson({ type: 'Echo', data: { Message: 'hi' } });
    await raw.until((r) => r.frames.length === 1);
    expect(raw.json()).toEqual([{ kind: 'push', type: 'Echo', data: { Message: 'hi' } }]);
    raw.destroy();
  });

  it('a custom protocol replaces the scheme default (a device sending 3-byte packets)', async () => {
    const triple: Protocol<number[], number[]> = {
      name: 'triple',
      input: (buf) => (buf.length >= 3 ? 3 : 0),
      decode: (packet) => [...packet],
      encode: (m) => Uint8Array.from(m.map((x) => x + 1)),
    };
    const { port } = await start(
      createServer({
        listen: 'tcp://127.0.0.1:0',
        protocol: triple,
        logger: silent,
        onMessage: (conn, m) => conn.send(m),
      }),
    );
    const received: number[] = [];
    const p = await Peer.open(port);
    p.socket.setEncoding('latin1');
    p.socket.on('data', (d: string) => received.push(...Buffer.from(d, 'latin1')));
    p.write(Uint8Array.from([1, 2, 3, 4]));
    p.write(Uint8Array.from([5, 6]));
    await eventually(() => received.length === 6);
    expect(received).toEqual([2, 3, 4, 5, 6, 7]);
  });
});
