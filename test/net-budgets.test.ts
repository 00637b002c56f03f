import { connect as netConnect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { installEcho } from '../src/cli/echo.js';
import { budgets } from '../src/net/budget.js';
import { RawTcp, startGateway, stopAll } from './support/gateway.js';
import { heapAfterGc } from './support/memory.js';

// What one client machine can make a gateway hold in bytes: unfinished frames (process-wide
// budget, frame deadline) and outgoing buffers (hard cap per connection, process-wide budget).
afterEach(stopAll);

const enc = new TextEncoder();

/** A 4-byte header announcing `n` bytes, then all of them but the last. */
function partialFrame(n: number): Buffer {
  const out = Buffer.alloc(4 + n - 1, 0x41);
  out.writeUInt32BE(n, 0);
  return out;
}

/** The kick a raw TCP peer got, if any. */
function kickOf(raw: RawTcp): { code: number; name: string } | undefined {
  return raw.json().find((f) => f.kind === 'kick')?.data as { code: number; name: string } | undefined;
}

async function arrayBuffersAfterGc(): Promise<number> {
  await heapAfterGc();
  return process.memoryUsage().arrayBuffers;
}

describe('unfinished frames', () => {
  it('300 connections holding partial frames stay within the process-wide budget; the largest are closed with buffers_full (4008)', async () => {
    const budget = 4 * 1024 * 1024;
    const { tcpUrl } = await startGateway({ maxPartialBytes: budget, rateLimit: false });
    const before = await arrayBuffersAfterGc();
    const peers: RawTcp[] = [];
    for (let i = 0; i < 300; i++) {
      const raw = await RawTcp.open(tcpUrl);
      raw.sendJson({ kind: 'hello' });
      // Some hold a little, most hold nearly a whole 60 KB frame.
      raw.write(partialFrame(i % 10 === 0 ? 1000 : 60_000));
      peers.push(raw);
    }
    await expect.poll(() => peers.filter((p) => p.closed).length, { timeout: 10_000 }).toBeGreaterThan(200);
    await new Promise((r) => setTimeout(r, 200));
    expect(budgets.stats().partialBytes).toBeLessThanOrEqual(budget);
    const closed = peers.filter((p) => p.closed);
    for (const p of closed) expect(kickOf(p)).toMatchObject({ code: 4008, name: 'buffers_full' });
    // The small holders were not the ones closed.
    const small = peers.filter((_, i) => i % 10 === 0);
    expect(small.every((p) => !p.closed)).toBe(true);
    // Gone with the attackers: nothing held, the memory back.
    for (const p of peers) p.destroy();
    await expect.poll(() => budgets.stats().partialLinks).toBe(0);
    expect(budgets.stats().partialBytes).toBe(0);
    const after = await arrayBuffersAfterGc();
    expect(after - before).toBeLessThan(2 * 1024 * 1024);
  }, 30_000);

  it('counts an unfinished WebSocket frame and a fragmented message too', async () => {
    const { wsUrl } = await startGateway({ maxPartialBytes: 200_000, maxFrame: 1024 * 1024 });
    const fragmented = new WebSocket(wsUrl);
    await new Promise((r) => fragmented.on('open', r));
    const closed = new Promise<number>((resolve) => fragmented.on('close', (code) => resolve(code)));
    // 30 KB a fragment, never the last one: the message grows and never ends.
    for (let i = 0; i < 10; i++) fragmented.send(Buffer.alloc(30_000, 0x61), { fin: false, binary: false });
    expect(await closed).toBe(4008);
    await expect.poll(() => budgets.stats().partialBytes).toBe(0);
  });

  it('a frame begun and not finished within frameTimeout closes the connection with frame_timeout (4009)', async () => {
    const { tcpUrl, gateway } = await startGateway({ frameTimeout: 300 });
    installEcho(gateway);
    const slow = await RawTcp.open(tcpUrl);
    slow.sendJson({ kind: 'hello' });
    const body = enc.encode(JSON.stringify({ kind: 'req', id: 1, type: 'echo', data: 'x'.repeat(100) }));
    const framed = Buffer.alloc(4 + body.length);
    framed.writeUInt32BE(body.length, 0);
    framed.set(body, 4);
    // A byte every 100 ms: alive all along, the frame never done in time.
    let at = 0;
    const drip = setInterval(() => {
      if (at < framed.length && !slow.closed) slow.write(framed.subarray(at, ++at));
    }, 100);
    const steady = await RawTcp.open(tcpUrl);
    steady.sendJson({ kind: 'hello' });
    await slow.waitClosed(5000);
    clearInterval(drip);
    expect(kickOf(slow)).toMatchObject({ code: 4009, name: 'frame_timeout' });
    // Whole frames, however many, never trip it.
    for (let i = 0; i < 5; i++) {
      steady.sendJson({ kind: 'req', id: i + 1, type: 'echo', data: i });
      await new Promise((r) => setTimeout(r, 100));
    }
    await steady.until((r) => r.json().filter((f) => f.kind === 'res').length === 5);
    expect(steady.closed).toBe(false);
    steady.destroy();
  });
});

describe('outgoing buffers', () => {
  it('a client that never reads and sends pings with data is closed at the hard cap, not after the grace period', async () => {
    const { tcpUrl, gateway } = await startGateway({
      highWaterMark: 256 * 1024,
      maxBuffered: 1024 * 1024,
      slowConsumerTimeout: 60_000,
      rateLimit: false,
    });
    const socket: Socket = netConnect(Number(new URL(tcpUrl).port), '127.0.0.1');
    await new Promise((r) => socket.on('connect', r));
    socket.on('error', () => {});
    socket.pause(); // never reads
    const hello = enc.encode('{"kind":"hello"}');
    const h = Buffer.alloc(4);
    h.writeUInt32BE(hello.length);
    socket.write(Buffer.concat([h, hello]));
    const ping = enc.encode(JSON.stringify({ kind: 'ping', data: 'p'.repeat(60_000) }));
    const frame = Buffer.alloc(4 + ping.length);
    frame.writeUInt32BE(ping.length, 0);
    frame.set(ping, 4);
    let peak = 0;
    const closed = new Promise<void>((r) => socket.on('close', () => r()));
    for (let i = 0; i < 2000 && !socket.destroyed; i++) {
      socket.write(frame);
      for (const c of gateway.connections.values()) peak = Math.max(peak, c.buffered);
      if (i % 20 === 0) await new Promise((r) => setImmediate(r));
    }
    await closed;
    expect(gateway.stats().slowConsumers).toBe(1);
    // The cap plus one pong (and what the kernel's buffers took).
    expect(peak).toBeLessThanOrEqual(1024 * 1024 + 64 * 1024);
  }, 20_000);

  it('WebSocket pings are answered through the same limits', async () => {
    const { wsUrl, gateway } = await startGateway({ highWaterMark: 64 * 1024, maxBuffered: 256 * 1024 });
    const ws = new WebSocket(wsUrl);
    await new Promise((r) => ws.on('open', r));
    const raw = (ws as unknown as { _socket: Socket })._socket;
    raw.pause();
    const closed = new Promise<void>((r) => ws.on('close', () => r()));
    for (let i = 0; i < 50_000 && ws.readyState === WebSocket.OPEN; i++) {
      ws.ping(Buffer.alloc(125, 1));
      if (i % 100 === 0) await new Promise((r) => setImmediate(r));
    }
    raw.resume();
    await closed;
    expect(gateway.stats().slowConsumers).toBe(1);
  }, 20_000);

  it('the outgoing buffers of all connections together stay within maxOutboundBytes', async () => {
    const { tcpUrl, gateway } = await startGateway({
      highWaterMark: 1024 * 1024,
      maxBuffered: 64 * 1024 * 1024,
      maxOutboundBytes: 3 * 1024 * 1024,
      slowConsumerTimeout: 60_000,
      rateLimit: false,
    });
    installEcho(gateway);
    const sockets: Socket[] = [];
    const echo = enc.encode(JSON.stringify({ kind: 'req', id: 1, type: 'echo', data: 'e'.repeat(60_000) }));
    const frame = Buffer.alloc(4 + echo.length);
    frame.writeUInt32BE(echo.length, 0);
    frame.set(echo, 4);
    const hello = Buffer.concat([Buffer.from([0, 0, 0, 16]), Buffer.from('{"kind":"hello"}')]);
    for (let i = 0; i < 8; i++) {
      const s = netConnect(Number(new URL(tcpUrl).port), '127.0.0.1');
      await new Promise((r) => s.on('connect', r));
      s.on('error', () => {});
      s.pause();
      s.write(hello);
      sockets.push(s);
    }
    // Each asks for 300 × 60 KB of answers and never reads them: under its own cap (what the
    // kernel's buffers do not take waits in the process), over the sum.
    for (let k = 0; k < 300; k++) for (const s of sockets) s.write(frame);
    await expect.poll(() => gateway.stats().slowConsumers, { timeout: 10_000 }).toBeGreaterThan(0);
    await new Promise((r) => setTimeout(r, 300));
    expect(budgets.stats().outboundBytes).toBeLessThanOrEqual(3 * 1024 * 1024);
    for (const s of sockets) s.destroy();
    await expect.poll(() => budgets.stats().outboundLinks).toBe(0);
  }, 20_000);
});
