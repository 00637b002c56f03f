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

describe('RedisStore layout on a standalone Redis', () => {
  it('keeps the key names of earlier versions (seqs survive an upgrade)', async () => {
    const store = await RedisStore.connect(redis.url, { prefix: 'layout:' });
    await store.append(['ann'], { id: 'm1', type: 't', data: 1, createdAt: 1, expiresAt: 9e15 });
    const r = new Redis(redis.url);
    expect((await r.keys('layout:*')).sort()).toEqual([
      'layout:expiry',
      'layout:ids:ann',
      'layout:inbox:ann',
      'layout:order:ann',
      'layout:seq:ann',
      'layout:stats',
    ]);
    r.disconnect();
    await store.close();
  });

  it('stores each append once when Redis restarts while appends are in flight', async () => {
    const store = await RedisStore.connect(redis.url, { prefix: `inflight${++n}:` });
    const ids = Array.from({ length: 300 }, (_, i) => `m${i}`);
    const results: Array<number | Error> = [];
    const sending = (async () => {
      for (const id of ids) {
        // The caller retries a failed append with the same id, as a push with an idempotency key would.
        for (let attempt = 0; ; attempt++) {
          try {
            results.push(
              (
                await store.append(['u'], { id, type: 't', data: id, createdAt: 1, expiresAt: 9e15 })
              )[0] as number,
            );
            break;
          } catch (err) {
            if (attempt > 50) {
              results.push(err as Error);
              break;
            }
            await new Promise((r) => setTimeout(r, 100));
          }
        }
      }
    })();
    await new Promise((r) => setTimeout(r, 30));
    await redis.restart();
    await sending;
    expect(results.every((x) => typeof x === 'number')).toBe(true);
    const pending = await store.pending('u', 0, 1000, 0);
    expect(pending.map((m) => m.id)).toEqual(ids);
    expect(pending.map((m) => m.seq)).toEqual(ids.map((_, i) => i + 1));
    await store.close();
  }, 30_000);
});
