import { randomBytes } from 'node:crypto';
import { connect as netConnect, type Socket } from 'node:net';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { installEcho } from '../src/cli/echo.js';
import { createServer } from '../src/framework/server.js';
import { createLogger } from '../src/log/logger.js';
import { startGateway, stopAll } from './support/gateway.js';

// Pylon's own WebSocket server (src/net/ws.ts, ws-link.ts) against the `ws` client and against
// frames written by hand: what RFC 6455 asks of a server, and what an attacker may try.
const silent = createLogger('silent');
const servers: Array<{ close(): Promise<void> }> = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
  await stopAll();
});

/** A raw framework ws:// echo server (text back as text, bytes back as bytes). */
async function echoServer(extra: Record<string, unknown> = {}): Promise<string> {
  const server = createServer({
    listen: 'ws://127.0.0.1:0/',
    logger: silent,
    onMessage: (c, m) => c.send(m),
    ...extra,
  });
  servers.push(server);
  return (await server.listen()).url;
}

/** One masked client frame. */
function clientFrame(opcode: number, payload: Uint8Array, fin = true, mask = true): Buffer {
  const n = payload.length;
  const len = n < 126 ? 1 : n < 65536 ? 3 : 9;
  const out = Buffer.alloc(1 + len + (mask ? 4 : 0) + n);
  out[0] = (fin ? 0x80 : 0) | opcode;
  let at = 1;
  if (n < 126) out[at++] = (mask ? 0x80 : 0) | n;
  else if (n < 65536) {
    out[at++] = (mask ? 0x80 : 0) | 126;
    out.writeUInt16BE(n, at);
    at += 2;
  } else {
    out[at++] = (mask ? 0x80 : 0) | 127;
    out.writeUInt32BE(0, at);
    out.writeUInt32BE(n, at + 4);
    at += 8;
  }
  const key = mask ? randomBytes(4) : Buffer.alloc(4);
  if (mask) {
    key.copy(out, at);
    at += 4;
  }
  for (let i = 0; i < n; i++) out[at + i] = (payload[i] as number) ^ (key[i & 3] as number);
  return out;
}

/** A raw TCP peer that did the WebSocket handshake; collects what the server sends. */
async function rawWs(
  url: string,
  protocols?: string,
): Promise<{ socket: Socket; bytes: () => Buffer; head: string }> {
  const u = new URL(url);
  const socket = netConnect(Number(u.port), u.hostname);
  await new Promise((r) => socket.on('connect', r));
  socket.on('error', () => {});
  let buf = Buffer.alloc(0);
  socket.on('data', (d: Buffer) => {
    buf = Buffer.concat([buf, d]);
  });
  socket.write(
    `GET ${u.pathname} HTTP/1.1\r\nHost: ${u.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n` +
      `${protocols ? `Sec-WebSocket-Protocol: ${protocols}\r\n` : ''}\r\n`,
  );
  const start = Date.now();
  while (buf.indexOf('\r\n\r\n') < 0 && Date.now() - start < 3000)
    await new Promise((r) => setTimeout(r, 10));
  const end = buf.indexOf('\r\n\r\n') + 4;
  const head = buf.subarray(0, end).toString();
  const rest = () => buf.subarray(end);
  return { socket, bytes: rest, head };
}

/** The server frames in `bytes` (unmasked): opcode and payload. */
function serverFrames(bytes: Buffer): Array<{ op: number; payload: Buffer }> {
  const out: Array<{ op: number; payload: Buffer }> = [];
  let at = 0;
  while (at + 2 <= bytes.length) {
    let n = (bytes[at + 1] as number) & 0x7f;
    let h = 2;
    if (n === 126) {
      n = bytes.readUInt16BE(at + 2);
      h = 4;
    } else if (n === 127) {
      n = bytes.readUInt32BE(at + 6);
      h = 10;
    }
    if (at + h + n > bytes.length) break;
    out.push({ op: (bytes[at] as number) & 0x0f, payload: bytes.subarray(at + h, at + h + n) });
    at += h + n;
  }
  return out;
}

const until = async (pred: () => boolean, ms = 3000) => {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error('condition not met');
    await new Promise((r) => setTimeout(r, 10));
  }
};

describe('the WebSocket server', () => {
  it('talks to the ws client: text and binary, fragmented messages, pings, and a clean close', async () => {
    const url = await echoServer();
    const ws = new WebSocket(url);
    const got: Array<string | Buffer> = [];
    ws.on('message', (d: Buffer, binary) => got.push(binary ? d : d.toString()));
    const pongs: Buffer[] = [];
    ws.on('pong', (d) => pongs.push(d));
    await new Promise((r) => ws.on('open', r));
    ws.send('héllo');
    ws.send(Buffer.from([1, 2, 3]));
    ws.send('frag', { fin: false });
    ws.ping(Buffer.from('in between'));
    ws.send('mented', { fin: true });
    ws.send(Buffer.alloc(70_000, 7)); // 64-bit length
    await until(() => got.length === 4 && pongs.length === 1);
    expect(got.slice(0, 3)).toEqual(['héllo', Buffer.from([1, 2, 3]), 'fragmented']);
    expect((got[3] as Buffer).length).toBe(70_000);
    expect(pongs[0]!.toString()).toBe('in between');
    const closed = new Promise<[number, string]>((r) => ws.on('close', (c, why) => r([c, why.toString()])));
    ws.close(4321, 'done here');
    expect(await closed).toEqual([4321, '']);
  });

  it('chooses the first subprotocol the client offers that it speaks', async () => {
    const url = await echoServer({ ws: { protocols: ['b.v1', 'a.v1'] } });
    const ws = new WebSocket(url, ['x.v9', 'a.v1', 'b.v1']);
    await new Promise((r) => ws.on('open', r));
    expect(ws.protocol).toBe('a.v1');
    ws.close();
  });

  it('refuses a handshake of another version (426) or without a valid key (400)', async () => {
    const url = new URL(await echoServer());
    const ask = (headers: string) =>
      new Promise<string>((resolve) => {
        const s = netConnect(Number(url.port), url.hostname, () =>
          s.write(`GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n${headers}\r\n`),
        );
        let text = '';
        s.on('data', (d) => {
          text += d.toString();
        });
        s.on('close', () => resolve(text));
        s.on('error', () => {});
      });
    expect(await ask('Sec-WebSocket-Version: 12\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n')).toMatch(
      /^HTTP\/1.1 426[\s\S]*Sec-WebSocket-Version: 13/,
    );
    expect(await ask('Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: short\r\n')).toMatch(/^HTTP\/1.1 400/);
  });

  it('answers with the RFC accept key (the sample of RFC 6455 §1.3)', async () => {
    const { acceptKey } = await import('../src/net/ws-frame.js');
    expect(acceptKey('dGhlIHNhbXBsZSBub25jZQ==')).toBe('s3pPLMBiTxaQ9kYGzzhZRbK+xOo=');
  });

  it('closes on bytes that break the protocol: unmasked, reserved bits, bad opcode, long control frame, bad UTF-8', async () => {
    const url = await echoServer();
    const bad = [
      clientFrame(0x1, Buffer.from('no mask'), true, false),
      Buffer.from([0xc1, 0x80, 0, 0, 0, 0]), // RSV1 with no extension
      clientFrame(0x3, Buffer.from('x')),
      clientFrame(0x9, Buffer.alloc(126)),
      clientFrame(0x9, Buffer.from('x'), false),
      clientFrame(0x0, Buffer.from('continuation of nothing')),
      clientFrame(0x1, Buffer.from([0xff, 0xfe])),
    ];
    for (const frame of bad) {
      const peer = await rawWs(url);
      expect(peer.head).toMatch(/^HTTP\/1.1 101/);
      const closed = new Promise<void>((r) => peer.socket.on('close', () => r()));
      peer.socket.write(frame);
      await closed;
      const close = serverFrames(peer.bytes()).find((f) => f.op === 0x8);
      expect(close?.payload.readUInt16BE(0)).toBe(4500);
    }
  });

  it('reads masked frames split at any byte, interleaved with pings (property)', async () => {
    const url = await echoServer();
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.string({ maxLength: 200 }), { minLength: 1, maxLength: 5 }),
        fc.array(fc.integer({ min: 1, max: 40 }), { minLength: 1, maxLength: 10 }),
        async (texts, sizes) => {
          const peer = await rawWs(url);
          const bytes = Buffer.concat(
            texts.flatMap((t) => [clientFrame(0x1, Buffer.from(t)), clientFrame(0x9, Buffer.from('p'))]),
          );
          let at = 0;
          for (let i = 0; at < bytes.length; i++) {
            const n = sizes[i % sizes.length] as number;
            peer.socket.write(bytes.subarray(at, at + n));
            at += n;
          }
          await until(() => serverFrames(peer.bytes()).filter((f) => f.op === 0x1).length === texts.length);
          const frames = serverFrames(peer.bytes());
          expect(frames.filter((f) => f.op === 0x1).map((f) => f.payload.toString())).toEqual(texts);
          expect(frames.filter((f) => f.op === 0xa)).toHaveLength(texts.length);
          peer.socket.destroy();
        },
      ),
      { numRuns: 25 },
    );
  });

  it('the gateway refuses a message over maxFrame with a kick and 4501, before holding it', async () => {
    const { wsUrl } = await startGateway({ maxFrame: 1024 });
    const ws = new WebSocket(wsUrl);
    await new Promise((r) => ws.on('open', r));
    const kicks: unknown[] = [];
    ws.on('message', (d) => kicks.push(JSON.parse(d.toString())));
    const closed = new Promise<number>((r) => ws.on('close', (c) => r(c)));
    ws.send('x'.repeat(2000));
    expect(await closed).toBe(4501);
    expect(kicks).toEqual([
      { kind: 'kick', data: expect.objectContaining({ code: 4501, name: 'frame_too_large' }) },
    ]);
  });

  it('a client that ignores the close frame is cut off after closeTimeout, not 30 s', async () => {
    const { wsUrl, gateway } = await startGateway({ closeTimeout: 300 });
    installEcho(gateway);
    const peer = await rawWs(wsUrl);
    await until(() => gateway.connections.size === 1);
    const closed = new Promise<void>((r) => peer.socket.on('close', () => r()));
    const started = Date.now();
    gateway.kick({ connection: [...gateway.connections.keys()][0]! });
    await closed; // the peer never answered the close
    const took = Date.now() - started;
    expect(took).toBeGreaterThanOrEqual(250);
    expect(took).toBeLessThan(5000);
    expect(serverFrames(peer.bytes()).some((f) => f.op === 0x8)).toBe(true);
  });

  it('a peer that ends its side without a close frame is closed on ours too (no half-open socket is kept)', async () => {
    const { wsUrl, gateway } = await startGateway();
    installEcho(gateway);
    const peer = await rawWs(wsUrl);
    await until(() => gateway.connections.size === 1);
    const gone = new Promise<number>((r) => gateway.on('disconnect', (_c, info) => r(info.code)));
    const closed = new Promise<void>((r) => peer.socket.on('close', () => r()));
    peer.socket.end(); // FIN, and still open to read
    await closed; // the server ended its side as well
    expect(await gone).toBe(1006);
    await until(() => gateway.connections.size === 0);
  });
});
