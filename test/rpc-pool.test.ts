import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import {
  ConnectionPool,
  type Lease,
  PoolClosedError,
  PoolFullError,
  type PoolOptions,
  PoolTimeoutError,
} from '../src/rpc/index.js';
import { FakeClock } from '../src/timer/clock.js';

/** A fake connection and a dialer whose dials the test resolves or fails by hand. */
interface Conn {
  id: number;
  healthy: boolean;
  closed: boolean;
  load: number;
}

function harness(options: Partial<PoolOptions<Conn>> = {}) {
  const clock = new FakeClock();
  const dials: Array<{ ok(): Conn; fail(err?: Error): void }> = [];
  const conns: Conn[] = [];
  let auto: 'ok' | 'fail' | undefined = 'ok';
  const dial = (): Promise<Conn> =>
    new Promise<Conn>((resolve, reject) => {
      const d = {
        ok: () => {
          const c: Conn = { id: conns.length + 1, healthy: true, closed: false, load: 0 };
          conns.push(c);
          resolve(c);
          return c;
        },
        fail: (err = new Error('refused')) => reject(err),
      };
      if (auto === 'ok') d.ok();
      else if (auto === 'fail') d.fail();
      else dials.push(d);
    });
  const pool = new ConnectionPool<Conn>({
    max: 2,
    clock,
    dial,
    close: (c) => {
      c.closed = true;
    },
    isHealthy: (c) => c.healthy && !c.closed,
    load: (c) => c.load,
    ...options,
  });
  return {
    pool,
    clock,
    dials,
    conns,
    manual() {
      auto = undefined;
    },
    failing() {
      auto = 'fail';
    },
  };
}

const flush = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** Settled state of a promise, observable without awaiting it. */
function track<T>(p: Promise<T>) {
  const t: { state: 'pending' | 'ok' | 'err'; value?: T; error?: unknown } = { state: 'pending' };
  p.then(
    (value) => Object.assign(t, { state: 'ok', value }),
    (error: unknown) => Object.assign(t, { state: 'err', error }),
  );
  return t;
}

describe('ConnectionPool: exclusive checkout', () => {
  test('dials up to max, then serves waiters first come first served', async () => {
    const { pool, conns } = harness();
    const a = await pool.acquire();
    const b = await pool.acquire();
    expect(pool.stats()).toMatchObject({ size: 2, leased: 2 });
    const w1 = track(pool.acquire());
    const w2 = track(pool.acquire());
    await flush();
    expect(conns.length).toBe(2);
    expect(pool.release(b)).toBe(true);
    await flush();
    expect(w1).toMatchObject({ state: 'ok', value: b });
    expect(w2.state).toBe('pending');
    expect(pool.release(a)).toBe(true);
    await flush();
    expect(w2).toMatchObject({ state: 'ok', value: a });
  });

  test('a waiter times out with PoolTimeoutError on the wheel; maxWaiters refuses with PoolFullError', async () => {
    const { pool, clock } = harness({ max: 1, maxWaiters: 1, acquireTimeout: 100 });
    await pool.acquire();
    const w = track(pool.acquire());
    await expect(pool.acquire()).rejects.toBeInstanceOf(PoolFullError);
    clock.advance(99);
    await flush();
    expect(w.state).toBe('pending');
    clock.advance(20);
    await flush();
    expect(w.error).toBeInstanceOf(PoolTimeoutError);
    expect(pool.stats()).toMatchObject({ waiting: 0, timeouts: 1, refused: 1 });
  });

  test('a failed dial returns its slot and wakes the next waiter, which dials again', async () => {
    const h = harness({ max: 1 });
    h.manual();
    const first = track(h.pool.acquire());
    const second = track(h.pool.acquire());
    await flush();
    expect(h.dials.length).toBe(1);
    h.dials[0]!.fail();
    await flush();
    expect(first.state).toBe('err');
    expect(h.dials.length).toBe(2); // the waiter got the slot
    const c = h.dials[1]!.ok();
    await flush();
    expect(second).toMatchObject({ state: 'ok', value: c });
    expect(h.pool.size).toBe(1);
  });

  test('a dial that lands after its waiter timed out goes idle for the next caller', async () => {
    const h = harness({ max: 1, acquireTimeout: 50 });
    h.manual();
    const w = track(h.pool.acquire());
    h.clock.advance(60);
    await flush();
    expect(w.error).toBeInstanceOf(PoolTimeoutError);
    const c = h.dials[0]!.ok();
    await flush();
    expect(h.pool.stats()).toMatchObject({ idle: 1, leased: 0, size: 1 });
    expect(await h.pool.acquire()).toBe(c);
  });

  test('double release is a no-op; destroy frees the slot', async () => {
    const { pool } = harness({ max: 1 });
    const c = await pool.acquire();
    expect(pool.release(c)).toBe(true);
    expect(pool.release(c)).toBe(false);
    expect(pool.stats()).toMatchObject({ idle: 1, leased: 0 });
    const again = await pool.acquire();
    expect(again).toBe(c);
    expect(pool.destroy(c)).toBe(true);
    expect(c.closed).toBe(true);
    expect(pool.release(c)).toBe(false);
    const fresh = await pool.acquire();
    expect(fresh).not.toBe(c);
  });

  test('use() gives the connection back when its function throws', async () => {
    const { pool } = harness({ max: 1 });
    await expect(
      pool.use(() => {
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    expect(pool.stats()).toMatchObject({ idle: 1, leased: 0 });
    expect(await pool.use((c) => c.id)).toBe(1);
  });

  test('idle connections past idleTimeout and unhealthy ones are closed and redialed on checkout', async () => {
    const { pool, clock } = harness({ max: 2, idleTimeout: 1000 });
    const a = await pool.acquire();
    pool.release(a);
    clock.advance(1500);
    const b = await pool.acquire();
    expect(b).not.toBe(a);
    expect(a.closed).toBe(true);
    b.healthy = false;
    expect(pool.release(b)).toBe(true); // unhealthy on release: closed, not kept
    expect(b.closed).toBe(true);
    expect(pool.stats()).toMatchObject({ size: 0, replaced: 1 });
  });

  test('close rejects waiters, closes every connection (checked out too), refuses later acquires', async () => {
    const { pool, conns } = harness({ max: 1 });
    await pool.acquire();
    const w = track(pool.acquire());
    await pool.close();
    await flush();
    expect(w.error).toBeInstanceOf(PoolClosedError);
    expect(conns.every((c) => c.closed)).toBe(true);
    await expect(pool.acquire()).rejects.toBeInstanceOf(PoolClosedError);
    expect(pool.tryPick()).toBeUndefined();
  });

  test('an aborted waiter leaves the line', async () => {
    const { pool } = harness({ max: 1 });
    const c = await pool.acquire();
    const ac = new AbortController();
    const w = track(pool.acquire({ signal: ac.signal }));
    ac.abort();
    await flush();
    expect(w.state).toBe('err');
    expect(pool.stats().waiting).toBe(0);
    pool.release(c);
    expect(pool.stats().idle).toBe(1);
  });
});

describe('ConnectionPool: multiplexed pick', () => {
  test('pick returns the least-loaded healthy connection and grows above the threshold', async () => {
    const { pool, conns } = harness({ min: 2, max: 3, growAbove: 10 });
    await pool.warm();
    const [a, b] = conns as [Conn, Conn];
    a.load = 5;
    b.load = 2;
    expect(pool.tryPick()).toBe(b);
    b.load = 7;
    expect(pool.tryPick()).toBe(a);
    a.healthy = false;
    expect(pool.tryPick()).toBe(b); // a is dropped and redialed (min 2)
    await flush();
    expect(a.closed).toBe(true);
    expect(pool.stats().open).toBe(2);
    for (const c of conns) c.load = 50;
    conns[2]!.load = 50;
    pool.tryPick();
    await flush();
    expect(pool.stats().open).toBe(3);
    pool.tryPick();
    await flush();
    expect(pool.stats().size).toBe(3); // never above max
  });

  test('with no connection, pick waits for a dial; while redials back off it fails fast', async () => {
    const h = harness({ min: 1, max: 1, redial: { base: 1000, max: 1000 } });
    h.failing();
    await expect(h.pool.warm()).rejects.toThrow('refused');
    // The failed dial armed a backoff: callers get UNAVAILABLE at once instead of a dial each.
    await expect(h.pool.pick()).rejects.toMatchObject({ code: 'UNAVAILABLE' });
    h.manual();
    h.clock.advance(1100);
    await flush();
    expect(h.dials.length).toBe(1); // the redial
    const p = track(h.pool.pick());
    h.dials[0]!.ok();
    await flush();
    expect(p.state).toBe('ok');
  });
});

type Op =
  | { op: 'acquire'; timeout: number; abort: boolean }
  | { op: 'pick'; timeout: number }
  | { op: 'release' | 'destroy' | 'double' | 'sick' | 'dialOk' | 'dialFail'; i: number }
  | { op: 'advance'; ms: number }
  | { op: 'close' };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    arbitrary: fc.record({
      op: fc.constant('acquire' as const),
      timeout: fc.integer({ min: 10, max: 300 }),
      abort: fc.boolean(),
    }),
    weight: 4,
  },
  {
    arbitrary: fc.record({ op: fc.constant('pick' as const), timeout: fc.integer({ min: 10, max: 300 }) }),
    weight: 1,
  },
  {
    arbitrary: fc.record({
      op: fc.constantFrom('release' as const, 'destroy' as const, 'double' as const, 'sick' as const),
      i: fc.nat(),
    }),
    weight: 3,
  },
  {
    arbitrary: fc.record({ op: fc.constantFrom('dialOk' as const, 'dialFail' as const), i: fc.nat() }),
    weight: 4,
  },
  {
    arbitrary: fc.record({ op: fc.constant('advance' as const), ms: fc.integer({ min: 0, max: 150 }) }),
    weight: 2,
  },
  { arbitrary: fc.record({ op: fc.constant('close' as const) }), weight: 1 },
);

describe('ConnectionPool: property', () => {
  test('never above max, never deadlocks, never hands a connection out twice', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 0, max: 4 }),
        fc.integer({ min: 0, max: 5 }),
        fc.constantFrom(0, 100),
        fc.array(opArb, { maxLength: 60 }),
        async (max, minRaw, maxWaiters, idleTimeout, ops) => {
          const min = Math.min(minRaw, max);
          const h = harness({ min, max, maxWaiters, idleTimeout, redial: { base: 20, max: 50 } });
          h.manual();
          const held = new Map<Conn, Lease<Conn>>();
          const calls: Array<ReturnType<typeof track<unknown>>> = [];
          const aborts: AbortController[] = [];
          let closed = false;
          const checkout = (p: Promise<Lease<Conn>>): void => {
            calls.push(track(p));
            p.then(
              (lease) => {
                const c = lease.conn;
                expect(held.has(c)).toBe(false); // not handed out twice at once
                if (!closed) expect(c.closed).toBe(false);
                held.set(c, lease);
              },
              () => {},
            );
          };
          const invariants = (): void => {
            const s = h.pool.stats();
            expect(s.size).toBeLessThanOrEqual(max);
            expect(s.leased).toBe(closed ? 0 : held.size);
            // No lost wake-up: nobody waits while a connection is idle or a slot is free.
            if (s.waiting > 0) {
              expect(s.idle).toBe(0);
              expect(s.size === max || s.dialing > 0).toBe(true);
            }
          };
          for (const o of ops) {
            switch (o.op) {
              case 'acquire': {
                const ac = new AbortController();
                aborts.push(ac);
                checkout(h.pool.lease({ timeout: o.timeout, signal: o.abort ? ac.signal : undefined }));
                break;
              }
              case 'pick':
                calls.push(track(h.pool.pick({ timeout: o.timeout })));
                break;
              case 'release':
              case 'destroy':
              case 'double': {
                const list = [...held.values()];
                const lease = list[o.i % Math.max(list.length, 1)];
                if (lease === undefined) break;
                held.delete(lease.conn);
                if (o.op === 'destroy') expect(lease.destroy()).toBe(!closed);
                else if (o.op === 'release') expect(h.pool.release(lease.conn)).toBe(!closed);
                else {
                  // A double release must not give back what the next holder just got.
                  expect(lease.release()).toBe(!closed);
                  expect(lease.release()).toBe(false);
                  expect(lease.destroy()).toBe(false);
                }
                break;
              }
              case 'sick': {
                const c = h.conns[o.i % Math.max(h.conns.length, 1)];
                if (c) c.healthy = false;
                break;
              }
              case 'dialOk':
              case 'dialFail': {
                const d = h.dials.splice(o.i % Math.max(h.dials.length, 1), 1)[0];
                if (o.op === 'dialOk') d?.ok();
                else d?.fail();
                break;
              }
              case 'advance':
                h.clock.advance(o.ms);
                if (o.ms % 3 === 0) aborts.shift()?.abort();
                break;
              case 'close':
                closed = true;
                held.clear();
                await h.pool.close();
                break;
            }
            await flush();
            invariants();
          }
          // Let everything finish: answer every dial, pass every deadline.
          for (let round = 0; round < 5; round++) {
            for (const d of h.dials.splice(0)) d.ok();
            h.clock.advance(1000);
            await flush();
            invariants();
          }
          expect(calls.filter((c) => c.state === 'pending')).toEqual([]);
          closed = true;
          held.clear();
          await h.pool.close();
          for (const d of h.dials.splice(0)) d.ok();
          await flush();
          expect(h.conns.every((c) => c.closed)).toBe(true);
          expect(h.pool.stats()).toMatchObject({ size: 0, waiting: 0 });
        },
      ),
      { numRuns: Number(process.env.RPC_POOL_RUNS ?? 300) },
    );
  });
});
