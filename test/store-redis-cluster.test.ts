import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RedisStore } from '../src/store/redis-store.js';
import type { MessageStore } from '../src/store/store.js';
import { describeMessageStore } from './conformance/message-store.js';
import { startRedisCluster, type TestRedisCluster } from './support/redis-cluster.js';

let rc: TestRedisCluster;
let n = 0;

beforeAll(async () => {
  rc = await startRedisCluster({ masters: 3 });
}, 60_000);

afterAll(async () => {
  await rc?.stop();
});

// The whole contract on a 3-master Redis Cluster, each store under its own prefix.
describeMessageStore('redis cluster', async (options) => {
  const prefix = `c${++n}:`;
  const store: MessageStore = await RedisStore.connect(rc.spec, { ...options, prefix });
  return { store, cleanup: () => store.close() };
});

describe('RedisStore on a Redis Cluster', () => {
  it('keeps each user’s keys in one slot and spreads users over every master', async () => {
    const store = await RedisStore.connect(rc.spec, { prefix: 'spread:' });
    const users = Array.from({ length: 60 }, (_, i) => `user-${i}`);
    for (const u of users)
      await store.append([u], { id: `m-${u}`, type: 't', data: 1, createdAt: 1, expiresAt: 9e15 });
    await store.ack('user-0', 1);
    const perMaster: number[] = [];
    const slotsOfUser = new Map<string, Set<number>>();
    for (const url of rc.urls) {
      const r = new Redis(url);
      const keys = await r.keys('spread:*');
      perMaster.push(keys.filter((k) => k.includes(':seq:')).length);
      for (const k of keys) {
        const m = /:(?:seq|order|inbox|ids):(.+)$/.exec(k);
        if (!m) continue;
        const slot = Number(await r.cluster('KEYSLOT', k));
        const set = slotsOfUser.get(m[1] as string) ?? new Set<number>();
        slotsOfUser.set(m[1] as string, set);
        set.add(slot);
      }
      r.disconnect();
    }
    expect(perMaster.reduce((a, b) => a + b, 0)).toBe(60);
    for (const c of perMaster) expect(c).toBeGreaterThan(0);
    for (const slots of slotsOfUser.values()) expect(slots.size).toBe(1);
    expect((await store.stats()).messages).toBe(59);
    await store.close();
  });

  it('refuses to open the data with another number of buckets', async () => {
    const a = await RedisStore.connect(rc.spec, { prefix: 'bk:', buckets: 16 });
    await a.close();
    await expect(RedisStore.connect(rc.spec, { prefix: 'bk:', buckets: 32 })).rejects.toThrow(
      /16 buckets, not 32/,
    );
  });
});
