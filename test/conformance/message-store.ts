import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import type {
  DeadReason,
  MessageStore,
  NewMessage,
  StoredMessage,
  StoreOptions,
} from '../../src/store/store.js';

/** One store under test. */
export interface StoreUnderTest {
  store: MessageStore;
  /**
   * Durable stores: closes the current store (the first, or the last one `reopen` returned) and
   * opens the same data again with the same options.
   */
  reopen?: () => Promise<MessageStore>;
  /** Closes whatever is open (tolerating an already closed store) and deletes the data. */
  cleanup: () => Promise<void>;
}

/** Makes a fresh, empty store with `options` (tests need small caps). */
export type StoreFactory = (options?: StoreOptions) => Promise<StoreUnderTest>;

const T0 = 1_700_000_000_000;
const HOUR = 3_600_000;

function msg(n: number, over: Partial<NewMessage> = {}): NewMessage {
  return { id: `m${n}`, type: 'chat', data: { n }, createdAt: T0 + n, expiresAt: T0 + HOUR, ...over };
}

const seqs = (ms: readonly StoredMessage[]) => ms.map((m) => m.seq);

/** Appends `n` messages to `user` one by one (ids m1..mn). */
async function fill(store: MessageStore, user: string, n: number, over: Partial<NewMessage> = {}) {
  for (let i = 1; i <= n; i++) await store.append([user], msg(i, over));
}

/** A JSON value with a bit of everything that could go wrong in an encoding. */
const NESTED = {
  str: 'héllo wörld ✓ 😀 \u0000 \u2028 "quotes" \\ / \n\t',
  empty: '',
  ints: [0, 1, -1, 2 ** 31, -(2 ** 31) - 1, 2 ** 32 + 5, Number.MAX_SAFE_INTEGER, Number.MIN_SAFE_INTEGER],
  floats: [0.1, 1e-7, -1.5e300, Math.PI, 1 / 3, 5e-324],
  flags: [true, false, null],
  nested: { a: { b: { c: { d: [[], {}, [[1, [2, [3]]]], { 'key.with:odd/chars ü': 'v' }] } } } },
  long: 'x'.repeat(100_000),
};

export function describeMessageStore(name: string, factory: StoreFactory): void {
  describe(`MessageStore conformance: ${name}`, () => {
    let opened: StoreUnderTest[] = [];
    async function make(options?: StoreOptions): Promise<StoreUnderTest> {
      const t = await factory(options);
      opened.push(t);
      return t;
    }
    afterEach(async () => {
      const all = opened;
      opened = [];
      for (const t of all) await t.cleanup();
    });

    describe('seqs', () => {
      it('start at 1 and increase by 1 per user, independently between users', async () => {
        const { store } = await make();
        expect(await store.lastSeq('a')).toBe(0);
        expect(await store.append(['a'], msg(1))).toEqual([1]);
        expect(await store.append(['a'], msg(2))).toEqual([2]);
        expect(await store.append(['b'], msg(3))).toEqual([1]);
        expect(await store.append(['a', 'b', 'c'], msg(4))).toEqual([3, 2, 1]);
        expect(await store.lastSeq('a')).toBe(3);
        expect(await store.lastSeq('b')).toBe(2);
        expect(await store.lastSeq('c')).toBe(1);
        expect(await store.lastSeq('nobody')).toBe(0);
      });

      it('a batch returns seqs in the order of users and stores the same message for each', async () => {
        const { store } = await make();
        await fill(store, 'a', 4);
        await fill(store, 'b', 1);
        const m = msg(9, { type: 'news', data: { headline: 'hi', tags: ['x'] } });
        expect(await store.append(['c', 'a', 'b'], m)).toEqual([1, 5, 2]);
        expect(await store.append([], m)).toEqual([]);
        for (const [user, seq] of [
          ['c', 1],
          ['a', 5],
          ['b', 2],
        ] as const) {
          expect(await store.pending(user, seq - 1, 10, T0)).toStrictEqual([{ ...m, seq }]);
        }
        expect(await store.stats()).toEqual({ messages: 8, deadLetters: 0 });
      });

      it('a user listed twice in one batch gets the message once', async () => {
        const { store } = await make();
        expect(await store.append(['a', 'b', 'a'], msg(1))).toEqual([1, 1, 1]);
        expect(seqs(await store.pending('a', 0, 10, T0))).toEqual([1]);
      });
    });

    describe('idempotent append', () => {
      it('an id appended again returns the first seq and stores nothing, mixed with users it is new for', async () => {
        const { store } = await make();
        await fill(store, 'a', 3);
        expect(await store.append(['a', 'b'], msg(2))).toEqual([2, 1]);
        expect(await store.append(['b', 'a'], msg(2))).toEqual([1, 2]);
        expect(seqs(await store.pending('a', 0, 10, T0))).toEqual([1, 2, 3]);
        expect(await store.lastSeq('a')).toBe(3);
        expect(await store.stats()).toEqual({ messages: 4, deadLetters: 0 });
        expect(await store.append(['a'], msg(4))).toEqual([4]);
      });

      it('also after the first was acked or expired, within the last dedupeWindow ids', async () => {
        const { store } = await make({ dedupeWindow: 3 });
        await fill(store, 'a', 2);
        await store.ack('a', 2);
        expect(await store.append(['a'], msg(1))).toEqual([1]);
        expect(await store.pending('a', 0, 10, T0)).toEqual([]);
        await store.append(['a'], msg(3, { expiresAt: T0 + 10 }));
        await store.expire(T0 + 11);
        expect(await store.append(['a'], msg(3))).toEqual([3]);
        expect(await store.stats()).toEqual({ messages: 0, deadLetters: 1 });
        // b: m1..m4. m2 has 2 newer appends (fewer than 3): remembered. m1 has 3: forgotten, so
        // appended again it is a new message (seq 5), which in turn pushes m2 out of the window.
        await fill(store, 'b', 4);
        expect(await store.append(['b'], msg(2))).toEqual([2]);
        expect(await store.append(['b'], msg(1))).toEqual([5]);
        expect(await store.append(['b'], msg(2))).toEqual([6]);
        expect(await store.append(['b'], msg(4))).toEqual([4]);
        expect((await store.pending('b', 0, 10, T0)).map((m) => [m.seq, m.id])).toEqual([
          [1, 'm1'],
          [2, 'm2'],
          [3, 'm3'],
          [4, 'm4'],
          [5, 'm1'],
          [6, 'm2'],
        ]);
        expect(await store.stats()).toEqual({ messages: 6, deadLetters: 1 });
      });

      it('a repeat stores nothing: no overflow, no dead letter, the first copy stays as it was', async () => {
        const { store } = await make({ maxPerUser: 2 });
        await store.append(['a'], msg(1));
        await store.append(['a'], msg(2));
        // Another body under the same id: still the first message, and a is not over its cap.
        expect(await store.append(['a'], msg(1, { type: 'other', data: 'changed' }))).toEqual([1]);
        expect(await store.pending('a', 0, 10, T0)).toStrictEqual([
          { ...msg(1), seq: 1 },
          { ...msg(2), seq: 2 },
        ]);
        expect(await store.stats()).toEqual({ messages: 2, deadLetters: 0 });
        expect(await store.deadLetters(10)).toEqual([]);
        expect(await store.lastSeq('a')).toBe(2);
      });

      it('the default window remembers the last 1,000 ids of a user', async () => {
        const { store } = await make();
        const users = ['a'];
        for (let i = 1; i <= 1001; i++) await store.append(users, msg(i));
        // m2 has 999 newer appends: remembered; m1 has 1,000: forgotten.
        expect(await store.append(users, msg(2))).toEqual([2]);
        expect(await store.append(users, msg(1))).toEqual([1002]);
        expect(await store.lastSeq('a')).toBe(1002);
      }, 60_000);

      it('concurrent appends of one id to one user store it once', async () => {
        const { store } = await make();
        const got = await Promise.all(Array.from({ length: 10 }, () => store.append(['u'], msg(1))));
        expect(got).toEqual(Array.from({ length: 10 }, () => [1]));
        expect(seqs(await store.pending('u', 0, 10, T0))).toEqual([1]);
      });

      it('50 concurrent appends to one user get 50 distinct consecutive seqs', async () => {
        const { store } = await make();
        const got = await Promise.all(Array.from({ length: 50 }, (_, i) => store.append(['u'], msg(i))));
        const flat = got.map((s) => s[0] as number);
        expect([...flat].sort((x, y) => x - y)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
        const pend = await store.pending('u', 0, 100, T0);
        expect(seqs(pend)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
        for (let i = 0; i < 50; i++) expect(pend[(flat[i] as number) - 1]?.id).toBe(`m${i}`);
        expect(await store.lastSeq('u')).toBe(50);
      });

      it('concurrent batches over the same users keep each user consecutive', async () => {
        const { store } = await make();
        const got = await Promise.all(Array.from({ length: 20 }, (_, i) => store.append(['x', 'y'], msg(i))));
        for (const col of [0, 1]) {
          const s = got.map((g) => g[col] as number).sort((p, q) => p - q);
          expect(s).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
        }
      });
    });

    describe('pending', () => {
      it('returns messages in seq order, after afterSeq, at most limit', async () => {
        const { store } = await make();
        await fill(store, 'a', 10);
        await fill(store, 'b', 2);
        const all = await store.pending('a', 0, 100, T0);
        expect(all).toStrictEqual(Array.from({ length: 10 }, (_, i) => ({ ...msg(i + 1), seq: i + 1 })));
        expect(seqs(await store.pending('a', 4, 3, T0))).toEqual([5, 6, 7]);
        expect(seqs(await store.pending('a', 8, 5, T0))).toEqual([9, 10]);
        expect(await store.pending('a', 10, 5, T0)).toEqual([]);
        expect(await store.pending('a', 0, 0, T0)).toEqual([]);
        expect(await store.pending('nobody', 0, 10, T0)).toEqual([]);
        expect(seqs(await store.pending('b', 0, 10, T0))).toEqual([1, 2]);
      });

      it('skips acked and buried messages', async () => {
        const { store } = await make();
        await fill(store, 'a', 8);
        await store.ack('a', 2);
        await store.bury('a', 4, 'redelivery_cap', T0);
        expect(seqs(await store.pending('a', 0, 10, T0))).toEqual([3, 5, 6, 7, 8]);
        expect(seqs(await store.pending('a', 1, 2, T0))).toEqual([3, 5]);
        expect(seqs(await store.pending('a', 3, 2, T0))).toEqual([5, 6]);
      });
    });

    describe('ack', () => {
      it('is cumulative; beyond the last, below the first and repeated acks are fine', async () => {
        const { store } = await make();
        await fill(store, 'a', 5);
        await fill(store, 'b', 3);
        expect(await store.ack('a', 3)).toBe(3);
        expect(seqs(await store.pending('a', 0, 10, T0))).toEqual([4, 5]);
        expect(await store.ack('a', 3)).toBe(0);
        expect(await store.ack('a', 1)).toBe(0);
        expect(await store.ack('a', 0)).toBe(0);
        expect(await store.stats()).toEqual({ messages: 5, deadLetters: 0 });
        expect(await store.ack('a', 100)).toBe(2);
        expect(await store.pending('a', 0, 10, T0)).toEqual([]);
        expect(await store.ack('nobody', 10)).toBe(0);
        expect(seqs(await store.pending('b', 0, 10, T0))).toEqual([1, 2, 3]);
        expect(await store.stats()).toEqual({ messages: 3, deadLetters: 0 });
      });

      it('keeps lastSeq: seqs are never reused after acks', async () => {
        const { store } = await make();
        await fill(store, 'a', 5);
        await store.ack('a', 5);
        expect(await store.lastSeq('a')).toBe(5);
        expect(await store.append(['a'], msg(6))).toEqual([6]);
        expect(seqs(await store.pending('a', 0, 10, T0))).toEqual([6]);
      });
    });

    describe('durability', () => {
      it('a reopened store keeps messages, seqs, dead letters and stats', async (ctx) => {
        const t = await make({ maxPerUser: 3 });
        if (!t.reopen) return ctx.skip();
        const bin = new Uint8Array([0, 1, 2, 250, 255]);
        await t.store.append(['a', 'b'], msg(1, { data: bin }));
        await t.store.append(['a'], msg(2, { data: NESTED }));
        await fill(t.store, 'c', 5); // c: 2 overflowed
        await t.store.ack('b', 1);
        await t.store.bury('a', 1, 'redelivery_cap', T0 + 7);
        const before = await snapshot(t.store);
        const s = await t.reopen();
        expect(await snapshot(s)).toStrictEqual(before);
        expect(await s.append(['a', 'b', 'c', 'd'], msg(9))).toEqual([3, 2, 6, 1]);
      });

      it('seqs continue after everything was acked and the store reopened', async (ctx) => {
        const t = await make();
        if (!t.reopen) return ctx.skip();
        await fill(t.store, 'a', 3);
        await t.store.ack('a', 3);
        let s = await t.reopen();
        expect(await s.lastSeq('a')).toBe(3);
        expect(await s.append(['a'], msg(4))).toEqual([4]);
        s = await t.reopen();
        expect(seqs(await s.pending('a', 0, 10, T0))).toEqual([4]);
        expect(await s.stats()).toEqual({ messages: 1, deadLetters: 0 });
      });
    });

    describe('ttl', () => {
      it('pending hides a message once now is past its expiresAt', async () => {
        const { store } = await make();
        await store.append(['a'], msg(1, { expiresAt: T0 + 100 }));
        await store.append(['a'], msg(2, { expiresAt: T0 + 200 }));
        await store.append(['a'], msg(3));
        expect(seqs(await store.pending('a', 0, 10, T0 + 100))).toEqual([1, 2, 3]);
        expect(seqs(await store.pending('a', 0, 10, T0 + 101))).toEqual([2, 3]);
        expect(seqs(await store.pending('a', 0, 1, T0 + 101))).toEqual([2]);
        expect(seqs(await store.pending('a', 0, 10, T0 + 201))).toEqual([3]);
        // Hidden but not yet moved aside: still counted until expire runs.
        expect(await store.stats()).toEqual({ messages: 3, deadLetters: 0 });
      });

      it('expire moves expired messages of every user to dead letters and counts them', async () => {
        const { store } = await make();
        await store.append(['a', 'b'], msg(1, { expiresAt: T0 + 100 }));
        await store.append(['a'], msg(2, { expiresAt: T0 + 200 }));
        await store.append(['a', 'b'], msg(3));
        expect(await store.expire(T0 + 100)).toBe(0);
        expect(await store.expire(T0 + 150)).toBe(2);
        expect(await store.expire(T0 + 150)).toBe(0);
        expect(await store.expire(T0 + 201)).toBe(1);
        expect(seqs(await store.pending('a', 0, 10, T0))).toEqual([3]);
        expect(seqs(await store.pending('b', 0, 10, T0))).toEqual([2]);
        expect(await store.stats()).toEqual({ messages: 2, deadLetters: 3 });
        const dead = await store.deadLetters(10);
        expect(dead[0]).toStrictEqual({
          ...msg(2, { expiresAt: T0 + 200 }),
          seq: 2,
          user: 'a',
          reason: 'expired',
          deadAt: T0 + 201,
        });
        const rest = dead.slice(1).sort((x, y) => x.user.localeCompare(y.user));
        expect(rest).toStrictEqual(
          ['a', 'b'].map((user) => ({
            ...msg(1, { expiresAt: T0 + 100 }),
            seq: 1,
            user,
            reason: 'expired',
            deadAt: T0 + 150,
          })),
        );
        expect(await store.lastSeq('a')).toBe(3);
        expect(await store.append(['a'], msg(4))).toEqual([4]);
      });
    });

    describe('overflow', () => {
      it('past maxPerUser the oldest messages are moved aside as overflow', async () => {
        const { store } = await make({ maxPerUser: 3 });
        await fill(store, 'a', 5);
        await fill(store, 'b', 2);
        expect(seqs(await store.pending('a', 0, 10, T0))).toEqual([3, 4, 5]);
        expect(seqs(await store.pending('b', 0, 10, T0))).toEqual([1, 2]);
        expect(await store.stats()).toEqual({ messages: 5, deadLetters: 2 });
        // Stamped with the createdAt of the push that overflowed the inbox; newest first.
        expect(await store.deadLetters(10)).toStrictEqual([
          { ...msg(2), seq: 2, user: 'a', reason: 'overflow', deadAt: msg(5).createdAt },
          { ...msg(1), seq: 1, user: 'a', reason: 'overflow', deadAt: msg(4).createdAt },
        ]);
      });

      it('only unacked messages count toward maxPerUser', async () => {
        const { store } = await make({ maxPerUser: 3 });
        await fill(store, 'a', 3);
        await store.ack('a', 2);
        await store.append(['a'], msg(4));
        await store.append(['a'], msg(5));
        expect(seqs(await store.pending('a', 0, 10, T0))).toEqual([3, 4, 5]);
        expect(await store.stats()).toEqual({ messages: 3, deadLetters: 0 });
        await store.append(['a', 'b'], msg(6));
        expect(seqs(await store.pending('a', 0, 10, T0))).toEqual([4, 5, 6]);
        expect(await store.stats()).toEqual({ messages: 4, deadLetters: 1 });
      });
    });

    describe('bury and dead letters', () => {
      it('bury moves one message aside; it is a no-op for a message that is gone', async () => {
        const { store } = await make();
        await fill(store, 'a', 3);
        await store.bury('a', 2, 'redelivery_cap', T0 + 5);
        expect(seqs(await store.pending('a', 0, 10, T0))).toEqual([1, 3]);
        const expected = { ...msg(2), seq: 2, user: 'a', reason: 'redelivery_cap', deadAt: T0 + 5 };
        expect(await store.deadLetters(10)).toStrictEqual([expected]);
        await store.ack('a', 1);
        await store.bury('a', 2, 'redelivery_cap', T0 + 6); // already buried
        await store.bury('a', 1, 'redelivery_cap', T0 + 6); // acked
        await store.bury('a', 99, 'redelivery_cap', T0 + 6); // never assigned
        await store.bury('nobody', 1, 'redelivery_cap', T0 + 6);
        expect(await store.deadLetters(10)).toStrictEqual([expected]);
        expect(await store.stats()).toEqual({ messages: 1, deadLetters: 1 });
        expect(await store.lastSeq('a')).toBe(3);
      });

      it('dead letters come newest first, capped at maxDeadLetters but all counted', async () => {
        const { store } = await make({ maxDeadLetters: 3 });
        await fill(store, 'a', 5);
        const reasons: DeadReason[] = ['redelivery_cap', 'expired', 'overflow', 'redelivery_cap', 'expired'];
        for (let s = 1; s <= 5; s++) await store.bury('a', s, reasons[s - 1] as DeadReason, T0 + s);
        const dead = await store.deadLetters(10);
        expect(dead.map((d) => [d.seq, d.reason, d.deadAt])).toEqual([
          [5, 'expired', T0 + 5],
          [4, 'redelivery_cap', T0 + 4],
          [3, 'overflow', T0 + 3],
        ]);
        expect(seqs(await store.deadLetters(2))).toEqual([5, 4]);
        expect(await store.deadLetters(0)).toEqual([]);
        expect(await store.stats()).toEqual({ messages: 0, deadLetters: 5 });
      });
    });

    describe('data', () => {
      it('Uint8Array data round-trips exactly, in inboxes and dead letters', async () => {
        const { store } = await make();
        const all = Uint8Array.from({ length: 256 }, (_, i) => i);
        const backing = Uint8Array.from({ length: 20 }, (_, i) => 100 + i);
        const view = backing.subarray(5, 9);
        const inputs = [all, new Uint8Array(0), view, Buffer.from('buffer bytes')];
        for (const [i, data] of inputs.entries()) await store.append(['a'], msg(i + 1, { data }));
        all[0] = 99; // the store keeps what was appended, not the caller's object
        const expected = [
          Array.from({ length: 256 }, (_, i) => i),
          [],
          [105, 106, 107, 108],
          [...Buffer.from('buffer bytes')],
        ];
        const pend = await store.pending('a', 0, 10, T0);
        expect(pend).toHaveLength(4);
        for (const [i, m] of pend.entries()) {
          expect(m.data).toBeInstanceOf(Uint8Array);
          expect([...(m.data as Uint8Array)]).toEqual(expected[i]);
        }
        await store.bury('a', 1, 'redelivery_cap', T0);
        const dead = (await store.deadLetters(1))[0]?.data as Uint8Array;
        expect(dead).toBeInstanceOf(Uint8Array);
        expect([...dead]).toEqual(expected[0]);
      });

      it('nested JSON data round-trips exactly', async () => {
        const { store } = await make();
        const values: unknown[] = [
          NESTED,
          'just a string',
          42,
          -0.5,
          true,
          null,
          [],
          {},
          [1, 'two', { three: 3 }],
        ];
        for (const [i, data] of values.entries()) await store.append(['a'], msg(i + 1, { data }));
        const pend = await store.pending('a', 0, 100, T0);
        expect(pend.map((m) => m.data)).toStrictEqual(values);
        await store.bury('a', 1, 'redelivery_cap', T0);
        expect((await store.deadLetters(1))[0]?.data).toStrictEqual(NESTED);
      });
    });

    it('stats count inbox messages and every dead letter', async () => {
      const { store } = await make({ maxPerUser: 2, maxDeadLetters: 1 });
      expect(await store.stats()).toEqual({ messages: 0, deadLetters: 0 });
      await store.append(['a', 'b', 'c'], msg(1, { expiresAt: T0 + 10 }));
      await store.append(['a', 'b'], msg(2));
      expect(await store.stats()).toEqual({ messages: 5, deadLetters: 0 });
      await store.append(['a'], msg(3)); // overflow of a:1
      await store.ack('b', 1);
      await store.bury('a', 2, 'redelivery_cap', T0);
      expect(await store.stats()).toEqual({ messages: 3, deadLetters: 2 });
      expect(await store.expire(T0 + 11)).toBe(1); // c:1
      expect(await store.stats()).toEqual({ messages: 2, deadLetters: 3 });
      expect(await store.deadLetters(10)).toHaveLength(1);
    });

    it('behaves like a simple model under random append/ack/pending/bury/expire', async () => {
      await fc.assert(
        fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: 40 }), async (ops) => {
          const t = await factory({ maxPerUser: 4, dedupeWindow: 3 });
          try {
            await runAgainstModel(t.store, ops);
          } finally {
            await t.cleanup();
          }
        }),
        { numRuns: 100 },
      );
    }, 120_000);
  });
}

async function snapshot(s: MessageStore) {
  const users = ['a', 'b', 'c', 'd'];
  return {
    pending: await Promise.all(users.map((u) => s.pending(u, 0, 100, T0))),
    lastSeq: await Promise.all(users.map((u) => s.lastSeq(u))),
    dead: await s.deadLetters(100),
    stats: await s.stats(),
  };
}

// ---- the model --------------------------------------------------------------------------------

type Op =
  | { op: 'append'; users: string[]; ttl: number; bin: boolean }
  /** Appends an earlier message again (the `back`-th newest), as a re-sent command would. */
  | { op: 'again'; users: string[]; back: number }
  | { op: 'ack'; user: string; rel: number }
  | { op: 'pending'; user: string; rel: number; limit: number }
  | { op: 'bury'; user: string; rel: number }
  | { op: 'expire' }
  | { op: 'tick'; ms: number };

const userArb = fc.constantFrom('a', 'b', 'c');
const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      op: fc.constant('append' as const),
      users: fc.array(userArb, { maxLength: 4 }),
      ttl: fc.integer({ min: 0, max: 60 }),
      bin: fc.boolean(),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant('again' as const),
      users: fc.array(userArb, { minLength: 1, maxLength: 3 }),
      back: fc.integer({ min: 0, max: 6 }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant('ack' as const),
      user: userArb,
      rel: fc.integer({ min: -4, max: 2 }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant('pending' as const),
      user: userArb,
      rel: fc.integer({ min: -6, max: 1 }),
      limit: fc.integer({ min: 0, max: 6 }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant('bury' as const),
      user: userArb,
      rel: fc.integer({ min: -5, max: 1 }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('expire' as const) }) },
  {
    weight: 2,
    arbitrary: fc.record({ op: fc.constant('tick' as const), ms: fc.integer({ min: 1, max: 40 }) }),
  },
);

interface ModelMsg {
  seq: number;
  id: string;
  expiresAt: number;
}

/** The model of a store with maxPerUser 4 and dedupeWindow 3. */
async function runAgainstModel(s: MessageStore, ops: readonly Op[]): Promise<void> {
  const max = 4;
  const window = 3;
  const inbox = new Map<string, ModelMsg[]>();
  const last = new Map<string, number>();
  /** Each user's appends, oldest first: an id among the last `window` of them is a repeat. */
  const history = new Map<string, Array<{ id: string; seq: number }>>();
  const sent: NewMessage[] = [];
  const dead: string[] = [];
  let now = T0;
  let n = 0;
  const box = (u: string): ModelMsg[] => {
    let b = inbox.get(u);
    if (b === undefined) {
      b = [];
      inbox.set(u, b);
    }
    return b;
  };
  const moveAside = (u: string, pred: (m: ModelMsg) => boolean, reason: DeadReason, at: number) => {
    const keep: ModelMsg[] = [];
    for (const m of box(u)) {
      if (pred(m)) dead.push(`${u}/${m.seq}/${reason}/${at}`);
      else keep.push(m);
    }
    inbox.set(u, keep);
  };

  for (const o of ops) {
    const lastOf = (u: string) => last.get(u) ?? 0;
    switch (o.op) {
      case 'append':
      case 'again': {
        let m: NewMessage;
        if (o.op === 'append') {
          const id = `m${++n}`;
          const data = o.bin ? new Uint8Array([n & 255, 7]) : { n };
          m = { id, type: 't', data, createdAt: now, expiresAt: now + o.ttl };
          sent.push(m);
        } else {
          const earlier = sent[sent.length - 1 - o.back];
          if (earlier === undefined) break;
          m = earlier;
        }
        // Idempotent by id: a user listed twice, or who got this id among their last `window`
        // appends, gets that seq and nothing is stored.
        const want = o.users.map((u) => {
          const h = history.get(u) ?? [];
          history.set(u, h);
          const had = h.slice(-window).find((x) => x.id === m.id);
          if (had !== undefined) return had.seq;
          const seq = lastOf(u) + 1;
          last.set(u, seq);
          h.push({ id: m.id, seq });
          box(u).push({ seq, id: m.id, expiresAt: m.expiresAt });
          const over = box(u).length - max;
          if (over > 0) {
            const cut = (box(u)[over - 1] as ModelMsg).seq;
            moveAside(u, (x) => x.seq <= cut, 'overflow', m.createdAt);
          }
          return seq;
        });
        expect(await s.append(o.users, m)).toEqual(want);
        break;
      }
      case 'ack': {
        const upto = lastOf(o.user) + o.rel;
        const before = box(o.user).length;
        inbox.set(
          o.user,
          box(o.user).filter((m) => m.seq > upto),
        );
        expect(await s.ack(o.user, upto)).toBe(before - box(o.user).length);
        break;
      }
      case 'pending': {
        const after = Math.max(0, lastOf(o.user) + o.rel);
        const want = box(o.user)
          .filter((m) => m.seq > after && m.expiresAt >= now)
          .slice(0, o.limit)
          .map((m) => [m.seq, m.id]);
        const got = await s.pending(o.user, after, o.limit, now);
        expect(got.map((m) => [m.seq, m.id])).toEqual(want);
        break;
      }
      case 'bury': {
        const seq = lastOf(o.user) + o.rel;
        moveAside(o.user, (m) => m.seq === seq, 'redelivery_cap', now);
        await s.bury(o.user, seq, 'redelivery_cap', now);
        break;
      }
      case 'expire': {
        const before = dead.length;
        for (const u of inbox.keys()) moveAside(u, (m) => m.expiresAt < now, 'expired', now);
        expect(await s.expire(now)).toBe(dead.length - before);
        break;
      }
      case 'tick':
        now += o.ms;
        break;
    }
    for (const u of ['a', 'b', 'c']) expect(await s.lastSeq(u)).toBe(lastOf(u));
    const messages = [...inbox.values()].reduce((sum, b) => sum + b.length, 0);
    expect(await s.stats()).toEqual({ messages, deadLetters: dead.length });
  }
  const got = (await s.deadLetters(10_000)).map((d) => `${d.user}/${d.seq}/${d.reason}/${d.deadAt}`);
  expect(got.sort()).toEqual([...dead].sort());
}
