import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RedisStore } from '../src/store/redis-store.js';
import type { MessageStore } from '../src/store/store.js';
import { describeMessageStore } from './conformance/message-store.js';
import { startRedis, type TestRedis } from './support/redis.js';

let redis: TestRedis;
let n = 0;

beforeAll(async () => {
  redis = await startRedis();
});

afterAll(async () => {
  await redis?.stop();
});

// Each store gets its own key prefix; reopen also restarts Redis, so the data must come back
// from the append-only file.
describeMessageStore('redis', async (options) => {
  const prefix = `t${++n}:`;
  let store: MessageStore = await RedisStore.connect(redis.url, { ...options, prefix });
  return {
    store,
    async reopen() {
      await store.close();
      await redis.restart();
      store = await RedisStore.connect(redis.url, { ...options, prefix });
      return store;
    },
    cleanup: () => store.close(),
  };
});

describe('RedisStore across a Redis restart', () => {
  it('keeps working on the same connection once Redis is back (scripts are reloaded)', async () => {
    const prefix = `restart${++n}:`;
    const store = await RedisStore.connect(redis.url, { prefix });
    try {
      const m = { id: 'm1', type: 't', data: { x: 1 }, createdAt: 1, expiresAt: Number.MAX_SAFE_INTEGER };
      expect(await store.append(['a', 'b'], m)).toEqual([1, 1]);
      await redis.restart();
      expect(await store.append(['a', 'b'], { ...m, id: 'm2' })).toEqual([2, 2]);
      expect((await store.pending('a', 0, 10, 2)).map((x) => x.id)).toEqual(['m1', 'm2']);
      expect(await store.ack('a', 1)).toBe(1);
      expect(await store.stats()).toEqual({ messages: 3, deadLetters: 0 });
    } finally {
      await store.close();
    }
  });
});

describe('RedisStore group commit (one script per turn)', () => {
  it('the appends and acks of one turn run as one command per 1,000 calls, each call with its own answer', async () => {
    const prefix = `turn${++n}:`;
    const store = await RedisStore.connect(redis.url, { prefix });
    const r = new Redis(redis.url);
    const calls = async () => {
      const info = await r.info('commandstats');
      return Number(/cmdstat_(?:evalsha|eval):calls=(\d+)/.exec(info)?.[1] ?? 0);
    };
    const m = (id: string) => ({ id, type: 't', data: { id }, createdAt: 1, expiresAt: 9e15 });
    try {
      await store.append(['warm'], m('w')); // the script is loaded (EVAL once, then EVALSHA)
      await r.config('RESETSTAT');
      // 1,500 appends in one turn: 30 users × 50 pushes, and a push to 3 users repeated (same id).
      const appends: Promise<number[]>[] = [];
      for (let i = 0; i < 50; i++)
        for (let u = 0; u < 30; u++) appends.push(store.append([`u${u}`], m(`m${i}`)));
      const repeat = store.append(['u0', 'u1', 'u2'], m('m0'));
      const seqs = await Promise.all(appends);
      expect(await calls()).toBe(2); // 1,503 calls: a script of 1,000, then one of 503
      for (let i = 0; i < 50; i++) for (let u = 0; u < 30; u++) expect(seqs[i * 30 + u]).toEqual([i + 1]);
      expect(await repeat).toEqual([1, 1, 1]); // stored once: its seqs
      // Acks in one turn, three of them for u0: one ack at the highest seq; the counts add up.
      await r.config('RESETSTAT');
      const acks = [store.ack('u0', 10), store.ack('u0', 30), store.ack('u0', 20), store.ack('u1', 50)];
      expect(await Promise.all(acks)).toEqual([30, 0, 0, 50]);
      expect(await calls()).toBe(1);
      expect((await store.pending('u0', 0, 100, 2)).map((x) => x.seq)).toEqual(
        Array.from({ length: 20 }, (_, i) => i + 31),
      );
      expect(await store.stats()).toEqual({ messages: 1 + 30 * 50 - 80, deadLetters: 0 });
    } finally {
      r.disconnect();
      await store.close();
    }
  });

  it('a read made in the same turn as writes sees them (the turn is sent first)', async () => {
    const prefix = `turnread${++n}:`;
    const store = await RedisStore.connect(redis.url, { prefix });
    try {
      const m = { id: 'a', type: 't', data: 1, createdAt: 1, expiresAt: 9e15 };
      await store.append(['x'], m);
      const written = store.append(['x'], { ...m, id: 'b' });
      void store.ack('x', 1);
      const [pending, last] = await Promise.all([store.pending('x', 0, 10, 2), store.lastSeq('x')]);
      expect(pending.map((p) => p.id)).toEqual(['b']);
      expect(last).toBe(2);
      expect(await written).toEqual([2]);
    } finally {
      await store.close();
    }
  });
});

describe('RedisStore layout on a standalone Redis', () => {
  it('keeps the key names of earlier versions (seqs survive an upgrade), whatever buckets says', async () => {
    // `buckets` is for a Redis Cluster: on a standalone Redis it must not change the keys.
    const store = await RedisStore.connect(redis.url, { prefix: 'layout:', buckets: 16 });
    await store.append(['ann', 'bob'], { id: 'm1', type: 't', data: 1, createdAt: 1, expiresAt: 9e15 });
    await store.bury('bob', 1, 'redelivery_cap', 5); // bob's inbox and order are empty: Redis drops them
    const r = new Redis(redis.url);
    try {
      expect((await r.keys('layout:*')).sort()).toEqual([
        'layout:dead',
        'layout:expiry',
        'layout:ids:ann',
        'layout:ids:bob',
        'layout:inbox:ann',
        'layout:order:ann',
        'layout:seq:ann',
        'layout:seq:bob',
        'layout:stats',
      ]);
      expect(await r.get('layout:seq:ann')).toBe('1');
      expect(await r.zrange('layout:expiry', '0', '-1')).toEqual(['1:ann']);
      expect(await r.hgetall('layout:stats')).toEqual({ messages: '1', dead: '1' });
      // Data written by an earlier version (no ids:{user} key yet): seqs go on from it.
      await r.set('layout:seq:old', '41');
      expect(
        await store.append(['old'], { id: 'm1', type: 't', data: 1, createdAt: 1, expiresAt: 9e15 }),
      ).toEqual([42]);
    } finally {
      r.disconnect();
      await store.close();
    }
  });
});

describe('RedisStore when redis-server crashes', () => {
  it('appends in flight across a SIGKILL and restart of Redis all resolve, each stored once', async () => {
    const prefix = `inflight${++n}:`;
    const store = await RedisStore.connect(redis.url, { prefix });
    const users = Array.from({ length: 10 }, (_, i) => `u${i}`);
    const appended = new Map<string, Array<{ id: string; seq: number }>>(users.map((u) => [u, []]));
    const errors: string[] = [];
    let next = 0;
    let phase: 'before' | 'restarting' | 'after' = 'before';
    let inFlight = 0;
    let inFlightAtClose = -1;
    let afterRestart = 0;
    // When the client sees the connection drop, the appends in flight have not had their reply:
    // ioredis must send them again (or they would hang until commandTimeout and reject).
    store.redis.once('close', () => {
      inFlightAtClose = inFlight;
    });
    // 16 appends in flight at all times, until 200 more have resolved after Redis is back.
    const worker = async () => {
      while (afterRestart < 200) {
        const i = next++;
        const user = users[i % users.length] as string;
        inFlight++;
        try {
          const [seq] = await store.append([user], {
            id: `m${i}`,
            type: 't',
            data: i,
            createdAt: 1,
            expiresAt: 9e15,
          });
          appended.get(user)?.push({ id: `m${i}`, seq: seq as number });
          if (phase === 'after') afterRestart++;
        } catch (err) {
          errors.push(`m${i}: ${(err as Error).message}`);
        } finally {
          inFlight--;
        }
      }
    };
    const work = Promise.all(Array.from({ length: 16 }, worker));
    while (next < 300) await new Promise((r) => setTimeout(r, 2));
    phase = 'restarting';
    await redis.restart({ kill: true });
    phase = 'after';
    await work;
    expect(errors).toEqual([]);
    expect(inFlightAtClose).toBeGreaterThan(0);
    let total = 0;
    for (const user of users) {
      const mine = (appended.get(user) ?? []).sort((a, b) => a.seq - b.seq);
      const pending = await store.pending(user, 0, 10_000, 0);
      // Every resolved append once, under the seq it returned; nothing else; no seq skipped.
      expect(pending.map((m) => [m.seq, m.id])).toEqual(mine.map((a) => [a.seq, a.id]));
      expect(mine.map((a) => a.seq)).toEqual(mine.map((_, i) => i + 1));
      expect(await store.lastSeq(user)).toBe(mine.length);
      total += mine.length;
    }
    expect(total).toBe(next);
    expect(await store.stats()).toEqual({ messages: total, deadLetters: 0 });
    await store.close();
  }, 30_000);
});

describe('RedisStore with waitReplicas', () => {
  const m = (id: string) => ({ id, type: 't', data: id, createdAt: 1, expiresAt: 9e15 });

  it('rejects an append no replica confirmed within waitTimeout; it was stored, once', async () => {
    const prefix = `wait${++n}:`;
    const store = await RedisStore.connect(redis.url, { prefix, waitReplicas: 1, waitTimeout: 200 });
    const plain = await RedisStore.connect(redis.url, { prefix });
    try {
      const t = Date.now();
      await expect(store.append(['u'], m('m1'))).rejects.toThrow(/reached 0 of 1 replicas within 200 ms/);
      expect(Date.now() - t).toBeGreaterThanOrEqual(190);
      // Retried with the same id: the same seq, one copy.
      await expect(store.append(['u'], m('m1'))).rejects.toThrow(/0 of 1 replicas/);
      expect(await plain.append(['u'], m('m1'))).toEqual([1]);
      expect((await plain.pending('u', 0, 10, 0)).map((x) => [x.seq, x.id])).toEqual([[1, 'm1']]);
      expect(await plain.stats()).toEqual({ messages: 1, deadLetters: 0 });
    } finally {
      await store.close();
      await plain.close();
    }
  });

  it('with a replica, every append that resolved is already on the replica', async () => {
    const master = new Redis(redis.url);
    await master.config('SET', 'repl-diskless-sync-delay', '0'); // sync the replica at once
    master.disconnect();
    // force: a replica still writing its first AOF after the sync refuses a plain SIGTERM.
    const replica = await startRedis({
      args: ['--replicaof', '127.0.0.1', String(redis.port), '--shutdown-on-sigterm', 'force'],
    });
    const prefix = `wait${++n}:`;
    const r = new Redis(replica.url);
    const store = await RedisStore.connect(redis.url, { prefix, waitReplicas: 1 });
    try {
      for (let i = 0; !(await r.info('replication')).includes('master_link_status:up'); i++) {
        if (i > 200) throw new Error('the replica did not sync within 10 s');
        await new Promise((res) => setTimeout(res, 50));
      }
      // A few in flight at a time; right after each append resolves, the replica has its seq.
      let next = 0;
      const behind: string[] = [];
      const worker = async () => {
        while (next < 400) {
          const i = next++;
          const user = `u${i % 4}`;
          const [seq] = await store.append([user], m(`m${i}`));
          const onReplica = Number(await r.get(`${prefix}seq:${user}`));
          if (onReplica < (seq as number)) behind.push(`${user}: ${seq} resolved, replica at ${onReplica}`);
        }
      };
      await Promise.all(Array.from({ length: 4 }, worker));
      expect(behind).toEqual([]);
    } finally {
      r.disconnect();
      await store.close();
      await replica.stop();
    }
  });
});
