import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStore } from '../src/store/index.js';
import { RedisStore } from '../src/store/redis-store.js';
import type { MessageStore, NewMessage } from '../src/store/store.js';
import { fnv1a } from '../src/util/redis.js';
import { describeMessageStore } from './conformance/message-store.js';
import { startRedisCluster, type TestRedisCluster } from './support/redis-cluster.js';

let rc: TestRedisCluster;
let n = 0;

beforeAll(async () => {
  rc = await startRedisCluster({ masters: 3 });
}, 30_000);

afterAll(async () => {
  await rc?.stop();
});

const m = (id: string, data: unknown = id): NewMessage => ({
  id,
  type: 't',
  data,
  createdAt: 1,
  expiresAt: 9e15,
});

/** Every key under `pattern` on every master, with the master's port. */
async function keysOnMasters(pattern: string): Promise<Array<{ key: string; port: number; slot: number }>> {
  const out: Array<{ key: string; port: number; slot: number }> = [];
  for (const port of await rc.masterPorts()) {
    const r = new Redis(port, '127.0.0.1');
    try {
      for (const key of await r.keys(pattern))
        out.push({ key, port, slot: Number(await r.cluster('KEYSLOT', key)) });
    } finally {
      r.disconnect();
    }
  }
  return out;
}

// The whole contract on a 3-master Redis Cluster, each store under its own prefix.
describeMessageStore('redis cluster', async (options) => {
  const prefix = `c${++n}:`;
  const store: MessageStore = await RedisStore.connect(rc.spec, { ...options, prefix });
  return { store, cleanup: () => store.close() };
});

describe('RedisStore layout on a Redis Cluster', () => {
  it('puts every key of a user under its bucket’s hash tag, {b<fnv1a(user) % 64>}', async () => {
    const store = await RedisStore.connect(rc.spec, { prefix: 'names:' });
    try {
      await store.append(['alice'], m('m1'));
      const b = fnv1a('alice') % 64;
      const keys = (await keysOnMasters('names:*')).map((k) => k.key).sort();
      expect(keys).toEqual(
        [
          'names:{b0}:buckets',
          `names:{b${b}}:expiry`,
          `names:{b${b}}:ids:alice`,
          `names:{b${b}}:inbox:alice`,
          `names:{b${b}}:order:alice`,
          `names:{b${b}}:seq:alice`,
          `names:{b${b}}:stats`,
        ].sort(),
      );
    } finally {
      await store.close();
    }
  });

  it('keeps each user’s keys in one slot and spreads users over every master', async () => {
    const store = await RedisStore.connect(rc.spec, { prefix: 'spread:' });
    const users = Array.from({ length: 60 }, (_, i) => `user-${i}`);
    try {
      for (const u of users) await store.append([u], m(`m-${u}`));
      await store.append(users.slice(0, 10), m('batch')); // a batch over several buckets
      await store.bury('user-1', 1, 'redelivery_cap', 5); // a dead list too
      await store.ack('user-0', 1);
      const keys = await keysOnMasters('spread:*');
      const slotsOfUser = new Map<string, Set<number>>();
      const seqKeysPerMaster = new Map<number, number>();
      for (const { key, port, slot } of keys) {
        const bucket = /^spread:\{b(\d+)\}:/.exec(key);
        expect(bucket, key).not.toBeNull();
        const user = /:(?:seq|order|inbox|ids):(.+)$/.exec(key)?.[1];
        if (user === undefined) continue;
        expect(Number(bucket?.[1])).toBe(fnv1a(user) % 64);
        const set = slotsOfUser.get(user) ?? new Set<number>();
        slotsOfUser.set(user, set.add(slot));
        if (key.includes(':seq:')) seqKeysPerMaster.set(port, (seqKeysPerMaster.get(port) ?? 0) + 1);
      }
      expect(slotsOfUser.size).toBe(60);
      for (const slots of slotsOfUser.values()) expect(slots.size).toBe(1);
      expect([...seqKeysPerMaster.values()].reduce((a, b) => a + b, 0)).toBe(60);
      expect(seqKeysPerMaster.size).toBe(3);
      expect(await store.stats()).toEqual({ messages: 60 + 10 - 2, deadLetters: 1 });
      expect((await store.deadLetters(10)).map((d) => d.user)).toEqual(['user-1']);
      // A repeat for user-5 (in the batch), new for user-50 (not in it): one call, two buckets.
      expect(await store.append(['user-5', 'user-50'], m('batch'))).toEqual([2, 2]);
      expect(await store.lastSeq('user-5')).toBe(2);
      expect((await store.pending('user-50', 0, 10, 2)).map((x) => x.id)).toEqual(['m-user-50', 'batch']);
      expect((await store.stats()).messages).toBe(69);
    } finally {
      await store.close();
    }
  });

  it('refuses to open the data with another number of buckets', async () => {
    const a = await RedisStore.connect(rc.spec, { prefix: 'bk:', buckets: 16 });
    await a.append(['u'], m('m1'));
    await a.close();
    await expect(RedisStore.connect(rc.spec, { prefix: 'bk:', buckets: 32 })).rejects.toThrow(
      /spread over 16 buckets, not 32; open it with buckets: 16/,
    );
    await expect(RedisStore.connect(rc.spec, { prefix: 'bk:' })).rejects.toThrow(/16 buckets, not 64/);
    // A brace in the prefix would become the hash tag instead of the bucket's.
    await expect(RedisStore.connect(rc.spec, { prefix: 'bk{x}:' })).rejects.toThrow(/has a brace/);
    const again = await RedisStore.connect(rc.spec, { prefix: 'bk:', buckets: 16 });
    expect(await again.lastSeq('u')).toBe(1);
    await again.close();
  });

  it('opens from one seed with cluster: true, and through openStore from the comma list', async () => {
    const one = await RedisStore.connect(rc.urls[0] as string, { prefix: 'seed:', cluster: true });
    expect(await one.append(['a', 'b', 'c'], m('m1'))).toEqual([1, 1, 1]);
    await one.close();
    const viaOpen = await openStore(rc.spec, { prefix: 'seed:' });
    expect(await viaOpen.append(['a', 'b', 'c'], m('m1'))).toEqual([1, 1, 1]);
    expect(await viaOpen.stats()).toEqual({ messages: 3, deadLetters: 0 });
    await viaOpen.close();
    await expect(openStore(`${rc.spec},localhost:1`)).rejects.toThrow(/not a redis:\/\/ or rediss:\/\/ URL/);
  });
});

describe('RedisStore through a Redis Cluster failover', () => {
  it('with waitReplicas 1, 2,000 appends across a SIGKILLed master: each stored once, in order', async () => {
    const ha = await startRedisCluster({ masters: 3, replicas: 1 });
    const store = await RedisStore.connect(ha.spec, { prefix: 'fo:', waitReplicas: 1, waitTimeout: 500 });
    try {
      const USERS = 50;
      const TOTAL = 2000;
      const users = Array.from({ length: USERS }, (_, i) => `user-${i}`);
      // Message i goes to user i % 50. Ten workers, each owning five users and sending its messages
      // in order, one append at a time: a user's appends never overlap, so "append order" is clear.
      const got = new Map<string, Array<{ id: string; seq: number }>>(users.map((u) => [u, []]));
      const rejected: string[] = [];
      let resolved = 0;
      let killedAt = 0;
      let spanned = 0;
      const worker = async (w: number) => {
        for (let i = w; i < TOTAL; i += 10) {
          const user = users[i % USERS] as string;
          const sentAt = Date.now();
          const until = sentAt + 30_000;
          for (;;) {
            try {
              const [seq] = await store.append([user], m(`m${i}`, i));
              got.get(user)?.push({ id: `m${i}`, seq: seq as number });
              break;
            } catch (err) {
              // It may or may not be stored: the same id again must give one copy.
              rejected.push(`m${i}: ${(err as Error).message}`);
              if (Date.now() > until) throw err;
              await new Promise((r) => setTimeout(r, 100));
            }
          }
          if (killedAt > 0 && sentAt < killedAt) spanned++;
          resolved++;
        }
      };
      const work = Promise.all(Array.from({ length: 10 }, (_, w) => worker(w)));
      while (resolved < 500) await new Promise((r) => setTimeout(r, 2));
      killedAt = Date.now();
      const killed = await ha.killMaster();
      // Its replica took over and has no replica of its own: appends to its buckets cannot be
      // confirmed and reject (WAIT 1 gets 0) until the old master is back as its replica.
      await new Promise((r) => setTimeout(r, 1500));
      await ha.restartNode(killed);
      await work;

      // The kill hit the stream: appends sent before it resolved after it, and some had to be retried.
      expect(spanned).toBeGreaterThan(0);
      expect(rejected.some((e) => /reached 0 of 1 replicas/.test(e))).toBe(true);
      let total = 0;
      for (const user of users) {
        const mine = got.get(user) ?? [];
        const seqs = mine.map((x) => x.seq);
        // Strictly increasing in append order.
        for (let k = 1; k < seqs.length; k++)
          expect(seqs[k], `${user} at ${k}`).toBeGreaterThan(seqs[k - 1] as number);
        // Every resolved append in pending once, under the seq it returned, and nothing else.
        const pending = await store.pending(user, 0, 1000, 2);
        expect(pending.map((x) => [x.seq, x.id])).toEqual(mine.map((x) => [x.seq, x.id]));
        total += mine.length;
      }
      expect(total).toBe(TOTAL);
      expect(await store.stats()).toEqual({ messages: TOTAL, deadLetters: 0 });
    } finally {
      await store.close();
      await ha.stop();
    }
  }, 45_000);
});
