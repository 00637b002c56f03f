import { createServer, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { installEcho } from '../src/cli/echo.js';
import { backoffDelay, connect } from '../src/client/index.js';
import { devValidator, FakeClock, type Gateway, type Logger, PylonError } from '../src/index.js';
import { frame, frameLength } from '../src/protocol/framing.js';
import { Reassembler } from '../src/protocol/reassembly.js';
import { once, RawTcp, startGateway, stopAll } from './support/gateway.js';

afterEach(stopAll);

/** Lets socket I/O that is already under way happen (real sockets, fake time). */
const settle = () => new Promise((r) => setTimeout(r, 30));

function recordingLogger(): Logger & { lines: Array<{ obj: Record<string, unknown>; msg?: string }> } {
  const lines: Array<{ obj: Record<string, unknown>; msg?: string }> = [];
  const log = (obj: object, msg?: string) => lines.push({ obj: obj as Record<string, unknown>, msg });
  return { lines, debug: () => {}, info: log, warn: log, error: log };
}

describe('server keepalive on a fake clock', () => {
  it('pings after one idle interval and closes after the timeout with keepalive_timeout, logged', async () => {
    const clock = new FakeClock(1_000_000);
    const logger = recordingLogger();
    const { tcpUrl, gateway } = await startGateway({
      clock,
      logger,
      keepalive: { interval: 30_000, timeout: 75_000 },
    });
    const disconnect = once<number>((resolve) => gateway.on('disconnect', (_c, info) => resolve(info.code)));
    const raw = await RawTcp.open(tcpUrl);
    raw.sendJson({ kind: 'hello' });
    await raw.until((r) => r.frames.length === 1);
    const pings = () => raw.json().filter((m) => m.kind === 'ping').length;

    clock.advance(29_000);
    await settle();
    expect(pings()).toBe(0);
    clock.advance(1_100);
    await raw.until(() => pings() === 1);
    clock.advance(30_000); // idle 60 s: a second ping
    await raw.until(() => pings() === 2);
    expect(raw.closed).toBe(false);
    clock.advance(15_000); // idle 75 s: closed
    await raw.waitClosed();
    expect(raw.json().at(-1)).toMatchObject({
      kind: 'kick',
      data: { code: 4002, name: 'keepalive_timeout' },
    });
    expect(await disconnect).toBe(4002);
    const line = logger.lines.find((l) => l.msg === 'keepalive timeout');
    expect(line?.obj).toMatchObject({ remote: '127.0.0.1' });
    expect(typeof line?.obj.conn).toBe('string');
    expect(Date.parse(line?.obj.lastFrameAt as string)).toBeLessThanOrEqual(Date.now() - 75_000 + 1000);
  });

  it('never pings a connection that keeps sending, and any frame counts as life', async () => {
    const clock = new FakeClock();
    const { tcpUrl, gateway } = await startGateway({
      clock,
      keepalive: { interval: 30_000, timeout: 75_000 },
    });
    installEcho(gateway);
    const raw = await RawTcp.open(tcpUrl);
    raw.sendJson({ kind: 'hello' });
    await raw.until((r) => r.frames.length === 1);
    for (let i = 1; i <= 12; i++) {
      clock.advance(20_000);
      raw.sendJson(i % 2 ? { kind: 'req', id: i, type: 'echo', data: i } : { kind: 'pong' });
      if (i % 2) await raw.until((r) => r.json().some((m) => m.id === i));
      else await settle();
    }
    expect(raw.json().filter((m) => m.kind === 'ping')).toEqual([]);
    expect(raw.closed).toBe(false);
    raw.destroy();
  });

  it('answering pings keeps an otherwise silent connection open', async () => {
    const clock = new FakeClock();
    const { tcpUrl } = await startGateway({ clock, keepalive: { interval: 30_000, timeout: 75_000 } });
    const raw = await RawTcp.open(tcpUrl);
    raw.sendJson({ kind: 'hello' });
    await raw.until((r) => r.frames.length === 1);
    for (let i = 1; i <= 5; i++) {
      clock.advance(31_000);
      await raw.until((r) => r.json().filter((m) => m.kind === 'ping').length === i);
      raw.sendJson({ kind: 'pong' });
      await settle();
    }
    expect(raw.closed).toBe(false);
    raw.destroy();
  });
});

/** A hand-rolled server that says welcome with the given heartbeat and records what it receives. */
async function fakeServer(heartbeat: { interval: number; timeout: number }, answerPings = true) {
  const received: Array<Record<string, unknown>> = [];
  const sockets: Socket[] = [];
  const server: Server = createServer((socket) => {
    sockets.push(socket);
    const reader = new Reassembler(1 << 20);
    socket.on('error', () => {});
    socket.on('data', (chunk) =>
      reader.push(
        chunk,
        (b: Uint8Array) => frameLength(b, 1 << 20),
        (p: Uint8Array) => {
          const m = JSON.parse(new TextDecoder().decode(p.subarray(4))) as Record<string, unknown>;
          received.push(m);
          const reply = (v: unknown) => socket.write(frame(new TextEncoder().encode(JSON.stringify(v))));
          if (m.kind === 'hello')
            reply({ kind: 'welcome', data: { connection: 'c1', heartbeat, codec: 'json' } });
          if (m.kind === 'ping' && state.answer) reply({ kind: 'pong' });
        },
        undefined,
      ),
    );
  });
  const state = { answer: answerPings };
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  return {
    url: `tcp://127.0.0.1:${port}`,
    received,
    state,
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise<void>((r) => server.close(() => r()));
    },
  };
}

describe('client heartbeat on a fake clock', () => {
  it('pings at the interval the server announced in welcome, and treats silence past its timeout as a dead link', async () => {
    const server = await fakeServer({ interval: 20_000, timeout: 50_000 });
    const clock = new FakeClock();
    const client = await connect(server.url, {
      clock,
      random: () => 0.5,
      reconnect: { base: 1000, max: 8000 },
    });
    const pings = () => server.received.filter((m) => m.kind === 'ping').length;
    clock.advance(19_000);
    await settle();
    expect(pings()).toBe(0);
    clock.advance(1_100);
    await expect.poll(pings).toBe(1);
    // The pong came back: the link is alive. Now the server goes silent.
    await settle();
    server.state.answer = false;
    const closed = once<{ code: number; name: string; willReconnect: boolean }>((resolve) =>
      client.on('close', resolve),
    );
    const reconnecting = once<{ attempt: number; delay: number }>((resolve) =>
      client.on('reconnecting', resolve),
    );
    clock.advance(20_100);
    await expect.poll(pings).toBe(2);
    clock.advance(30_000); // 50 s with nothing received
    await expect(closed).resolves.toMatchObject({
      code: 4002,
      name: 'keepalive_timeout',
      willReconnect: true,
    });
    await expect(reconnecting).resolves.toEqual({ attempt: 1, delay: 500 });
    await client.close();
    await server.close();
  });

  it('keeps its own longer default (4 min 55 s) when the server announces no heartbeat', async () => {
    const server = await fakeServer(null as unknown as { interval: number; timeout: number });
    const clock = new FakeClock();
    const client = await connect(server.url, { clock, reconnect: false });
    const pings = () => server.received.filter((m) => m.kind === 'ping').length;
    clock.advance(294_000);
    await settle();
    expect(pings()).toBe(0);
    clock.advance(1_100);
    await expect.poll(pings).toBe(1);
    await client.close();
    await server.close();
  });
});

describe('reconnection', () => {
  it('backoff delays stay within [0, min(max, base * 2^attempt))', () => {
    const opts = { base: 500, max: 30_000 };
    for (let attempt = 0; attempt < 40; attempt++) {
      const ceiling = Math.min(opts.max, opts.base * 2 ** attempt);
      expect(backoffDelay(attempt, opts, () => 0)).toBe(0);
      const top = backoffDelay(attempt, opts, () => 0.999999);
      expect(top).toBeLessThan(ceiling);
      expect(top).toBeGreaterThanOrEqual(Math.floor(ceiling * 0.999));
    }
    let sum = 0;
    for (let i = 0; i < 2000; i++) sum += backoffDelay(3, opts);
    // Full jitter: uniform over [0, 4000), so the mean is near 2000.
    expect(sum / 2000).toBeGreaterThan(1700);
    expect(sum / 2000).toBeLessThan(2300);
  });

  it('retries with growing jittered delays while the server is down, and stops at maxAttempts', async () => {
    const { gateway, tcpUrl } = await startGateway();
    const clock = new FakeClock();
    const client = await connect(tcpUrl, {
      clock,
      random: () => 0.999,
      reconnect: { base: 100, max: 1000, maxAttempts: 5 },
    });
    const delays: number[] = [];
    client.on('reconnecting', (e) => delays.push(e.delay));
    const finalClose = once<{ willReconnect: boolean }>((resolve) =>
      client.on('close', (e) => {
        if (!e.willReconnect) resolve(e);
      }),
    );
    await gateway.close(); // 4000 shutdown: reconnect
    for (let i = 0; i < 6; i++) {
      await expect.poll(() => delays.length, { timeout: 3000 }).toBe(Math.min(i + 1, 5));
      clock.advance(2000); // past the delay: dial, refused
    }
    expect(delays).toEqual([99, 199, 399, 799, 999]);
    await expect(finalClose).resolves.toMatchObject({ willReconnect: false });
    await client.close();
  });

  it('does not reconnect after a terminal code (kicked)', async () => {
    const { gateway, wsUrl } = await startGateway();
    const client = await connect(wsUrl);
    let reconnecting = 0;
    client.on('reconnecting', () => reconnecting++);
    const closed = once<{ willReconnect: boolean; code: number }>((resolve) => client.on('close', resolve));
    for (const c of gateway.connections.values()) c.close('kicked');
    await expect(closed).resolves.toMatchObject({ code: 4503, willReconnect: false });
    expect(reconnecting).toBe(0);
    await expect(client.request('echo')).rejects.toMatchObject({ code: 'UNAVAILABLE' });
  });
});

describe('keepalive and reconnection with real sockets and real time', () => {
  it('drops a client that stops answering (socket paused, not closed) within timeout + one interval', async () => {
    const interval = 300;
    const timeout = 900;
    const { tcpUrl, gateway } = await startGateway({ keepalive: { interval, timeout } });
    const raw = await RawTcp.open(tcpUrl);
    raw.sendJson({ kind: 'hello' });
    await raw.until((r) => r.frames.length === 1);
    const started = Date.now();
    raw.socket.pause();
    const info = await once<{ code: number }>(
      (resolve) => gateway.on('disconnect', (_c, i) => resolve(i)),
      5000,
    );
    const elapsed = Date.now() - started;
    expect(info.code).toBe(4002);
    expect(elapsed).toBeGreaterThanOrEqual(timeout - 50);
    expect(elapsed).toBeLessThan(timeout + interval);
    raw.destroy();
  });

  for (const transport of ['tcp', 'ws'] as const) {
    it(`a ${transport} client whose server restarts reconnects by itself`, async () => {
      const first = await startGateway();
      installEcho(first.gateway);
      const url = transport === 'tcp' ? first.tcpUrl : first.wsUrl;
      const client = await connect(url, { reconnect: { base: 50, max: 200 } });
      await expect(client.request('echo', 1)).resolves.toBe(1);
      const firstId = client.welcome?.connection;
      const reconnected = once<unknown>((resolve) => client.on('reconnected', resolve), 10_000);
      await first.gateway.close();
      const tcpPort = Number(new URL(first.tcpUrl).port);
      const wsPort = Number(new URL(first.wsUrl).port);
      const second = await startGateway({ tcp: { port: tcpPort }, ws: { port: wsPort } });
      installEcho(second.gateway);
      await reconnected;
      expect(client.welcome?.connection).not.toBe(firstId);
      await expect(client.request('echo', 2)).resolves.toBe(2);
      await client.close();
    });
  }

  it('queues requests made while disconnected and sends them once reconnected; "fail" mode fails fast', async () => {
    const first = await startGateway();
    const tcpPort = Number(new URL(first.tcpUrl).port);
    const queued = await connect(first.tcpUrl, { reconnect: { base: 50, max: 100 } });
    const failing = await connect(first.tcpUrl, { reconnect: { base: 50, max: 100 }, offline: 'fail' });
    const down = once<unknown>((resolve) => queued.on('close', resolve));
    await first.gateway.close();
    await down;
    await expect.poll(() => failing.connected).toBe(false);
    const waiting = queued.request('echo', 'later', { timeout: 5000 });
    await expect(failing.request('echo', 'now')).rejects.toMatchObject({ code: 'UNAVAILABLE' });
    const second = await startGateway({ tcp: { port: tcpPort }, ws: undefined });
    installEcho(second.gateway);
    await expect(waiting).resolves.toBe('later');
    await queued.close();
    await failing.close();
  });

  it('on a new session, what was queued offline goes out only after the labels are joined again', async () => {
    // The server's handler needs the room: a request that overtook the re-subscription would be refused.
    const inRoom = (g: Gateway) =>
      g.handle('room.say', (data, ctx) => {
        if (!ctx.connection.has('room:a')) throw new PylonError('FORBIDDEN', 'join room "a" first');
        return data;
      });
    const slowPolicy = async () => {
      await new Promise((r) => setTimeout(r, 50)); // an authorizeSub that takes its time
      return true;
    };
    const first = await startGateway({ validate: devValidator(), authorizeSub: slowPolicy });
    inRoom(first.gateway);
    const tcpPort = Number(new URL(first.tcpUrl).port);
    const client = await connect(first.tcpUrl, { token: 'ann', reconnect: { base: 50, max: 100 } });
    await client.subscribe(['room:a']);
    await expect(client.request('room.say', 'before')).resolves.toBe('before');
    const down = once<unknown>((resolve) => client.on('close', resolve));
    await first.gateway.close();
    await down;
    const said = [
      client.request('room.say', 'queued 1', { timeout: 5000 }),
      client.request('room.say', 'queued 2', { timeout: 5000 }),
    ];
    const second = await startGateway({
      validate: devValidator(),
      authorizeSub: slowPolicy,
      tcp: { port: tcpPort },
      ws: undefined,
    });
    inRoom(second.gateway);
    await expect(Promise.all(said)).resolves.toEqual(['queued 1', 'queued 2']);
    expect(client.welcome?.resumed).not.toBe(true); // a new server: a new session
    await client.close();
  });
});
