import { mkdtempSync, writeFileSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { threadId } from 'node:worker_threads';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { connect } from '../src/client/index.js';
import type { Connection as FwConnection } from '../src/framework/connection.js';
import { intoGroup, leaveGroupsOnDisconnect } from '../src/framework/gateway.js';
import { Group, groupOf } from '../src/framework/group.js';
import { createServer } from '../src/framework/server.js';
import { WorkerPool } from '../src/framework/worker-pool.js';
import type { Connection } from '../src/gateway/connection.js';
import { createLogger, type Logger } from '../src/log/logger.js';
import { PylonError } from '../src/protocol/errors.js';
import { startGateway, stopAll } from './support/gateway.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// Work for the pool must be JavaScript Node can load in a worker: written here, at run time.
const dir = mkdtempSync(join(tmpdir(), 'pylon-group-'));
const workModule = join(dir, 'work.mjs');
writeFileSync(
  workModule,
  `import { threadId } from 'node:worker_threads';
export function square(x) { return x * x; }
export function burn({ ms, value }) { const end = Date.now() + ms; while (Date.now() < end); return { value, thread: threadId }; }
export function fail() { const e = new Error('bad input'); e.code = 'BAD_INPUT'; throw e; }
export function crash() { process.exit(3); }
`,
);

const pool = new WorkerPool({ size: 2, maxQueue: 4 });
afterAll(() => pool.close());
afterEach(() => stopAll());

/** A logger that remembers error lines. */
function recordingLogger(): Logger & { errors: string[] } {
  const errors: string[] = [];
  const noop = () => {};
  return {
    errors,
    debug: noop,
    info: noop,
    warn: noop,
    error: (_o: object, msg?: string) => errors.push(msg ?? ''),
  };
}

/** Wraps a handler so overlapping runs are caught: the serial invariant. */
function serialProbe() {
  const probe = { active: 0, maxActive: 0, log: [] as string[] };
  const enter = (what: string) => {
    probe.active++;
    probe.maxActive = Math.max(probe.maxActive, probe.active);
    probe.log.push(`+${what}`);
  };
  const exit = (what: string) => {
    probe.log.push(`-${what}`);
    probe.active--;
  };
  return { probe, enter, exit };
}

describe('Group mailbox', () => {
  it('runs async handlers strictly one at a time, in order, even when calls overlap', async () => {
    const group = new Group({ logger: recordingLogger() });
    const { probe, enter, exit } = serialProbe();
    let state = 0;
    group.handle<number, number>('add', async (n) => {
      enter(`add${n}`);
      const before = state;
      await sleep(Math.random() * 5);
      await Promise.resolve();
      state = before + n; // a lost update would show if two ran at once
      exit(`add${n}`);
      return state;
    });
    const results = await Promise.all(Array.from({ length: 30 }, (_, i) => group.call<number>('add', i + 1)));
    expect(probe.maxActive).toBe(1);
    expect(state).toBe((30 * 31) / 2);
    expect(results).toEqual(Array.from({ length: 30 }, (_, i) => ((i + 1) * (i + 2)) / 2));
  });

  it('emit is fire and forget; a throwing handler is logged and the group goes on', async () => {
    const logger = recordingLogger();
    const group = new Group({ logger });
    const seen: number[] = [];
    group.handle<number>('n', (n) => {
      if (n === 2) throw new Error('two');
      seen.push(n);
    });
    group.emit('n', 1);
    group.emit('n', 2);
    group.emit('n', 3);
    await group.run(() => undefined);
    expect(seen).toEqual([1, 3]);
    expect(logger.errors).toEqual(['group handler failed']);
    await expect(group.call('missing')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(group.call('n', 2)).rejects.toThrow('two');
    expect(group.stopped).toBe(false);
  });

  it("onError: 'stop' stops the group and refuses what waits", async () => {
    const group = new Group({ logger: recordingLogger(), onError: 'stop' });
    group.handle('boom', async () => {
      await sleep(5);
      throw new Error('boom');
    });
    group.handle('ok', () => 'ok');
    const boom = group.call('boom');
    const waiting = group.call('ok');
    await expect(boom).rejects.toThrow('boom');
    await expect(waiting).rejects.toMatchObject({ code: 'UNAVAILABLE' });
    expect(group.stopped).toBe(true);
    await expect(group.call('ok')).rejects.toMatchObject({ code: 'UNAVAILABLE' });
  });

  it('a PylonError thrown to a caller is its answer, not a failure of the group', async () => {
    const logger = recordingLogger();
    const group = new Group({ logger, onError: 'stop' });
    group.handle('check', () => {
      throw new PylonError('BAD_REQUEST', 'no');
    });
    await expect(group.call('check')).rejects.toMatchObject({ code: 'BAD_REQUEST' });
    expect(group.stopped).toBe(false);
    expect(logger.errors).toEqual([]);
  });

  it('after and tick run inside the mailbox; a tick is skipped, not queued, while one waits', async () => {
    const group = new Group({ logger: recordingLogger() });
    const { probe, enter, exit } = serialProbe();
    group.handle('slow', async () => {
      enter('slow');
      await sleep(120);
      exit('slow');
    });
    let ticks = 0;
    const tick = group.tick(20, () => {
      enter('tick');
      ticks++;
      exit('tick');
    });
    let afterRan = false;
    group.after(30, () => {
      enter('after');
      afterRan = true;
      exit('after');
    });
    await group.call('slow');
    // During the 120 ms turn ~6 ticks came due: at most one waited, so at most one ran since.
    expect(ticks).toBeLessThanOrEqual(2);
    const deadline = Date.now() + 5000;
    while ((ticks < 3 || !afterRan) && Date.now() < deadline) await sleep(10);
    tick.cancel();
    expect(afterRan).toBe(true);
    expect(ticks).toBeGreaterThanOrEqual(3);
    expect(probe.maxActive).toBe(1);
  });
});

describe('Group.slowCall and the worker pool', () => {
  it('runs work on another thread and delivers the result back inside the mailbox', async () => {
    const group = new Group({ logger: recordingLogger(), pool });
    const { probe, enter, exit } = serialProbe();
    const delivered: Array<{ value: number; thread: number }> = [];
    group.handle('busy', async () => {
      enter('busy');
      await sleep(80);
      exit('busy');
    });
    group.handle('start', () => {
      for (let i = 0; i < 3; i++) {
        group.slowCall<{ value: number; thread: number }>(
          { module: workModule, name: 'burn' },
          { ms: 20, value: i },
          (result, error) => {
            enter(`then${i}`);
            expect(error).toBeUndefined();
            delivered.push(result!);
            exit(`then${i}`);
          },
        );
      }
    });
    await group.call('start');
    await group.call('busy'); // results arrive while this turn runs: they must wait for it
    await group.run(() => undefined);
    while (delivered.length < 3) await sleep(10);
    expect(probe.maxActive).toBe(1);
    expect(probe.log.slice(0, 2)).toEqual(['+busy', '-busy']);
    expect(delivered.map((d) => d.value).sort()).toEqual([0, 1, 2]);
    for (const d of delivered) expect(d.thread).not.toBe(threadId);
  });

  it('awaited inside a handler, the result comes back inside that turn; errors keep their code', async () => {
    const group = new Group({ logger: recordingLogger(), pool });
    group.handle<number, number>(
      'sq',
      async (x) => (await group.slowCall<number>(`${workModule}#square`, x)) + 1,
    );
    expect(await group.call('sq', 7)).toBe(50);
    await expect(group.slowCall({ module: workModule, name: 'fail' }, 0)).rejects.toMatchObject({
      code: 'BAD_INPUT',
      message: 'bad input',
    });
    const errors: Array<Error | undefined> = [];
    group.slowCall({ module: workModule, name: 'nope' }, 0, (_r, e) => errors.push(e));
    while (errors.length === 0) await sleep(10);
    expect(errors[0]?.message).toMatch(/nope is not a function/);
  });

  it('has a bounded queue and replaces a worker that dies', async () => {
    const jobs = Array.from({ length: 6 }, (_, i) =>
      pool.run({ module: workModule, name: 'burn' }, { ms: 30, value: i }),
    );
    // 2 running + 4 queued: the 7th is refused.
    await expect(pool.run(`${workModule}#square`, 2)).rejects.toMatchObject({ code: 'TOO_MANY_REQUESTS' });
    expect((await Promise.all(jobs)).map((r) => (r as { value: number }).value)).toEqual([0, 1, 2, 3, 4, 5]);
    await expect(pool.run(`${workModule}#crash`)).rejects.toMatchObject({ code: 'INTERNAL' });
    expect(await pool.run(`${workModule}#square`, 9)).toBe(81);
    expect(pool.counters.died).toBe(1);
  });
});

describe('Group members', () => {
  it("routes a framework connection's messages to the group, serially across connections", async () => {
    const group = new Group<FwConnection<string, string>>({ logger: recordingLogger() });
    const { probe, enter, exit } = serialProbe();
    const events: string[] = [];
    group.on('$join', (c) => events.push(`join ${c.id}`));
    group.on('$leave', (c) => events.push(`leave ${c.id}`));
    group.on<string>('*', async (conn, line) => {
      enter(line);
      await sleep(2);
      conn.send(`${group.members.size}:${line}`);
      exit(line);
    });
    const server = createServer({
      listen: 'line://127.0.0.1:0',
      logger: createLogger('silent'),
      onConnect: (c) => group.add(c),
      onMessage: () => {
        throw new Error('not reached: the group has the messages');
      },
    });
    const { port } = await server.listen();
    const texts = ['', ''];
    const socks = [0, 1].map((i) => {
      const s = netConnect({ port, host: '127.0.0.1' });
      s.setEncoding('utf8');
      s.on('data', (d: string) => {
        texts[i] += d;
      });
      return s;
    });
    await Promise.all(socks.map((s) => new Promise((r) => s.once('connect', r))));
    while (group.members.size < 2) await sleep(5);
    socks[0]!.write('a1\na2\na3\n');
    socks[1]!.write('b1\nb2\n');
    while ((texts[0]!.match(/\n/g)?.length ?? 0) < 3 || (texts[1]!.match(/\n/g)?.length ?? 0) < 2)
      await sleep(5);
    expect(texts).toEqual(['2:a1\n2:a2\n2:a3\n', '2:b1\n2:b2\n']);
    expect(probe.maxActive).toBe(1);
    socks[0]!.destroy();
    while (group.members.size > 1) await sleep(5);
    await group.run(() => undefined);
    expect(events).toEqual(['join 1', 'join 2', 'leave 1']);
    socks[1]!.destroy();
    await server.close();
  });

  it("routes a gateway message type into a group (intoGroup), with the gateway's connections as members", async () => {
    const { gateway, tcpUrl } = await startGateway();
    leaveGroupsOnDisconnect(gateway);
    const room = new Group<Connection>({ name: 'room-1', logger: recordingLogger() });
    const { probe, enter, exit } = serialProbe();
    let moves = 0;
    room.on('$leave', () => {
      moves = -1;
    });
    room.on<{ step: number }>('room.move', async (conn, data) => {
      enter('move');
      await sleep(1);
      moves++;
      exit('move');
      return { by: conn.id, step: data.step, moves };
    });
    gateway.handle('room.join', (_data, ctx) => {
      room.add(ctx.connection);
      return { members: room.members.size };
    });
    gateway.handle(
      'room.move',
      intoGroup((ctx) => groupOf(ctx.connection) as Group<Connection> | undefined),
    );
    gateway.handle('room.call', (data, ctx) => room.call('echo', { conn: ctx.connection.id, data }));
    room.handle<{ conn: string; data: unknown }>('echo', (arg) => arg);

    const client = await connect(tcpUrl, { reconnect: false });
    await expect(client.request('room.move', { step: 0 })).rejects.toMatchObject({ code: 'FORBIDDEN' });
    expect(await client.request('room.join')).toEqual({ members: 1 });
    const answers = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        client.request<{ step: number; moves: number }>('room.move', { step: i }),
      ),
    );
    expect(answers.map((a) => a.moves)).toEqual(Array.from({ length: 10 }, (_, i) => i + 1));
    expect(probe.maxActive).toBe(1);
    expect(await client.request('room.call', 5)).toMatchObject({ data: 5 });
    await client.close();
    while (room.members.size > 0) await sleep(5);
    await room.run(() => undefined);
    expect(moves).toBe(-1);
  });
});
