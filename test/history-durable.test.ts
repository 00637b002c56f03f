import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect } from '../src/client/index.js';
import { devValidator, RedisStore, SqliteStore } from '../src/index.js';
import type { HistoryLog } from '../src/store/history-log.js';
import { RedisHistory } from '../src/store/redis-history.js';
import { SqliteHistory } from '../src/store/sqlite-history.js';
import { startGateway, stopAll } from './support/gateway.js';
import { addressesOf, adminPush, startPylon } from './support/pylon-start.js';
import { startRedis, type TestRedis } from './support/redis.js';
import { startRedisCluster, type TestRedisCluster } from './support/redis-cluster.js';

// Label histories kept in the store: the same contract for SQLite, Redis and Redis Cluster, and
// what a client sees through `$history` across a SIGKILL (SQLite) and a Redis restart.

let redis: TestRedis;
let rc: TestRedisCluster | undefined;
const dir = mkdtempSync(join(tmpdir(), 'pylon-history-'));
let n = 0;
beforeAll(async () => {
  redis = await startRedis();
});
afterAll(async () => {
  await stopAll();
  await redis?.stop();
  await rc?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** Redis clients of the log tests, closed once their suite is done (before Redis restarts). */
const clients: Array<{ disconnect(): void }> = [];

const entry = (id: string, data: unknown = id) => ({
  id,
  type: 'chat',
  data,
  at: 1000 + Number(id.slice(1)),
});

function describeHistoryLog(
  name: string,
  make: (maxLabels: number, maxBytes?: number) => Promise<HistoryLog>,
) {
  describe(`${name} history log`, () => {
    afterAll(() => {
      for (const c of clients.splice(0)) c.disconnect();
    });

    it('keeps at most maxBytes of entries in all: the least recently written labels go first', async () => {
      const log = await make(100, 20_000);
      const big = 'x'.repeat(1000); // ~1 KB an entry
      for (let l = 0; l < 10; l++)
        for (let i = 0; i < 5; i++) await log.append([`b${l}`], 50, entry(`m${l * 10 + i}`, big));
      // 50 KB written, 20 KB allowed: the first labels are gone, the last ones whole.
      expect((await log.read('b0', 50, 0)).entries).toEqual([]);
      expect((await log.read('b9', 50, 0)).entries).toHaveLength(5);
      let kept = 0;
      for (let l = 0; l < 10; l++) kept += (await log.read(`b${l}`, 50, 0)).entries.length;
      expect(kept * 1000).toBeLessThanOrEqual(20_000);
      expect(kept).toBeGreaterThanOrEqual(15);
      // Trimming by `keep` gives bytes back: one label rewritten 100 times stays within the bound.
      for (let i = 0; i < 100; i++) await log.append(['b9'], 5, entry(`r${i}`, big));
      expect((await log.read('b9', 50, 0)).entries).toHaveLength(5);
    });
    it('numbers entries 1, 2, … in one epoch, keeps the newest `keep`, reads after a position', async () => {
      const log = await make(100);
      for (let i = 1; i <= 7; i++) await log.append(['room:a'], 5, entry(`m${i}`));
      const all = await log.read('room:a', 50, 0);
      expect(all.entries.map((e) => [e.pos, e.id])).toEqual([
        [3, 'm3'],
        [4, 'm4'],
        [5, 'm5'],
        [6, 'm6'],
        [7, 'm7'],
      ]);
      expect(all.last).toBe(7);
      expect(all.epoch).toMatch(/^[0-9a-f]{16}$/);
      const later = await log.read('room:a', 50, 5);
      expect(later.entries.map((e) => e.pos)).toEqual([6, 7]);
      expect(later.epoch).toBe(all.epoch);
      expect((await log.read('room:a', 2, 0)).entries.map((e) => e.pos)).toEqual([6, 7]);
      expect(await log.read('room:none', 10, 0)).toEqual({ epoch: '', entries: [], last: 0 });
    });

    it('stores a push recorded twice (two gateways) once, in every label it went to; binary data intact', async () => {
      const log = await make(100);
      await log.append(['room:b', 'room:c'], 10, entry('m1', { text: 'hi' }));
      await log.append(['room:b'], 10, entry('m1', { text: 'hi' }));
      await log.append(['room:c'], 10, entry('m2', new Uint8Array([1, 2, 3])));
      expect((await log.read('room:b', 10, 0)).entries).toEqual([
        { pos: 1, id: 'm1', type: 'chat', data: { text: 'hi' }, at: 1001 },
      ]);
      const c = await log.read('room:c', 10, 0);
      expect(c.entries.map((e) => e.pos)).toEqual([1, 2]);
      expect(c.entries[1]?.data).toEqual(new Uint8Array([1, 2, 3]));
    });

    it('keeps at most maxLabels labels: the least recently written go, and start a new epoch if written again', async () => {
      const log = await make(3);
      for (const l of ['l1', 'l2', 'l3']) await log.append([l], 10, entry(`m${l.slice(1)}`));
      const before = await log.read('l1', 10, 0);
      await log.append(['l2'], 10, entry('m20')); // l1 is now the least recently written
      await log.append(['l4'], 10, entry('m4'));
      expect((await log.read('l1', 10, 0)).entries).toEqual([]);
      expect((await log.read('l2', 10, 0)).entries).toHaveLength(2);
      await log.append(['l1'], 10, entry('m9'));
      const after = await log.read('l1', 10, 0);
      expect(after.epoch).not.toBe(before.epoch);
      expect(after.entries.map((e) => e.pos)).toEqual([1]);
    });
  });
}

describeHistoryLog(
  'sqlite',
  async (max, bytes) => new SqliteHistory(new Database(join(dir, `h${++n}.db`)), max, bytes),
);
describeHistoryLog('redis', async (max, bytes) => {
  const r = new Redis(redis.url);
  clients.push(r);
  return new RedisHistory(r, `h${++n}:`, false, max, bytes);
});
describeHistoryLog('redis cluster', async (max, bytes) => {
  rc ??= await startRedisCluster({ masters: 3 });
  const ports = await rc.masterPorts();
  const cluster = new Redis.Cluster(ports.map((port) => ({ host: '127.0.0.1', port })));
  clients.push(cluster);
  return new RedisHistory(cluster, `h${++n}:`, true, max, bytes);
});

describe('$history across restarts', () => {
  const rules = [{ match: 'room:*', size: 50 }];

  async function say(tcpUrl: string, texts: string[]) {
    const c = await connect(tcpUrl, { token: 'ann', reconnect: false });
    await c.subscribe(['room:x']);
    await c.close();
    return texts;
  }

  it('SQLite: the history and its epoch survive a restart of the gateway on the same file', async () => {
    const file = join(dir, 'gw.db');
    const store1 = SqliteStore.open(file);
    const a = await startGateway({
      validate: devValidator(),
      authorizeSub: () => true,
      history: rules,
      store: store1,
    });
    for (const t of await say(a.tcpUrl, ['one', 'two', 'three']))
      await a.gateway.push({ labels: { all: ['room:x'] } }, 'chat', { t });
    const before = await a.gateway.history.read('room:x', 50);
    await stopAll();
    await store1.close();

    const store2 = SqliteStore.open(file);
    const b = await startGateway({
      validate: devValidator(),
      authorizeSub: () => true,
      history: rules,
      store: store2,
    });
    const c = await connect(b.tcpUrl, { token: 'bo', reconnect: false });
    await c.subscribe(['room:x']);
    const h = await c.history('room:x');
    expect(h.messages.map((m) => m.data)).toEqual([{ t: 'one' }, { t: 'two' }, { t: 'three' }]);
    expect(h.epoch).toBe(before.epoch);
    expect(h.messages.map((m) => m.pos)).toEqual([1, 2, 3]);
    // Nothing missed since position 3: no messages, the same epoch, last 3.
    await expect(c.history('room:x', 50, { since: 3 })).resolves.toMatchObject({
      epoch: before.epoch,
      last: 3,
      messages: [],
    });
    await c.close();
    await stopAll();
    await store2.close();
  });

  it('pylon start on SQLite: a room’s history and epoch survive a SIGKILL', async () => {
    const start = () => startPylon(['--store', `sqlite:${join(dir, 'cli.db')}`]);
    let cli = start();
    try {
      const { admin, tcp: tcp1 } = await addressesOf(cli);
      for (const t of ['before', 'the', 'kill'])
        expect(
          await adminPush(admin, {
            to: { labels: { all: ['room:ops'] } },
            type: 'chat.message',
            data: { t },
          }),
        ).toBe(200);
      const c1 = await connect(tcp1, { token: 'ann', reconnect: false });
      await c1.subscribe(['room:ops']);
      const before = await c1.history('room:ops');
      await c1.close();
      cli.kill('SIGKILL');
      await cli.exited;
      cli = start();
      const { tcp: tcp2 } = await addressesOf(cli);
      const c2 = await connect(tcp2, { token: 'bo', reconnect: false });
      await c2.subscribe(['room:ops']);
      const after = await c2.history('room:ops');
      expect(after.messages.map((m) => m.data)).toEqual([{ t: 'before' }, { t: 'the' }, { t: 'kill' }]);
      expect(after.epoch).toBe(before.epoch);
      expect(after.last).toBe(3);
      await c2.close();
    } finally {
      cli.kill('SIGKILL');
      await cli.exited;
    }
  });

  it('Redis: the history survives a restart of redis-server; two gateways on one store record a push once', async () => {
    const store = await RedisStore.connect(redis.url, { prefix: 'gwh:' });
    const a = await startGateway({
      validate: devValidator(),
      authorizeSub: () => true,
      history: rules,
      store,
    });
    const b = await startGateway({
      validate: devValidator(),
      authorizeSub: () => true,
      history: rules,
      store,
    });
    await say(a.tcpUrl, []);
    // The same push id recorded by both (as two nodes of a cluster do for a label push).
    const r = await a.gateway.push({ labels: { all: ['room:x'] } }, 'chat', { t: 'kept' });
    await store.history?.append(['room:x'], 50, {
      id: r.id,
      type: 'chat',
      data: { t: 'kept' },
      at: Date.now(),
    });
    await expect.poll(async () => (await b.gateway.history.read('room:x', 50)).messages.length).toBe(1);
    const before = await b.gateway.history.read('room:x', 50);
    await redis.restart();
    await expect
      .poll(async () => (await a.gateway.history.read('room:x', 50).catch(() => undefined))?.epoch, {
        timeout: 10_000,
      })
      .toBe(before.epoch);
    expect((await a.gateway.history.read('room:x', 50)).messages.map((m) => m.data)).toEqual([{ t: 'kept' }]);
    await stopAll();
    await store.close();
  });
});
