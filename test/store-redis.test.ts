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
