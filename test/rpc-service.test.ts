import { Registry } from 'prom-client';
import { afterAll, afterEach, describe, expect, expectTypeOf, test } from 'vitest';
import { PylonError } from '../src/protocol/errors.js';
import {
  defineService,
  method,
  RpcClient,
  RpcMonitor,
  RpcServer,
  type SlowCall,
  type Validator,
} from '../src/rpc/index.js';
import { FakeClock } from '../src/timer/clock.js';
import { startGateway, stopAll } from './support/gateway.js';

afterAll(stopAll);
const clients: RpcClient[] = [];
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
});

async function setup(options: ConstructorParameters<typeof RpcClient>[0] | object = {}) {
  const { gateway, tcpUrl } = await startGateway({ rateLimit: false, closeTimeout: 200 });
  const client = new RpcClient({ url: tcpUrl, connections: 2, ...options });
  clients.push(client);
  return { gateway, client };
}

/** A hand-written validator in the shape zod's `parse` has: returns the typed value or throws. */
const addInput: Validator<{ a: number; b: number }> = (x) => {
  const v = x as { a?: unknown; b?: unknown } | null;
  if (typeof v?.a !== 'number' || typeof v.b !== 'number') throw new Error('a and b must be numbers');
  return { a: v.a, b: v.b };
};

const Calc = defineService(
  {
    add: method(addInput, { idempotent: true }).returns<number>(),
    divide: method<{ a: number; b: number }, number>(),
    stats: method<void, { calls: number }>(undefined, {
      result: (x) => {
        if (typeof (x as { calls?: unknown })?.calls !== 'number') throw new Error('calls: not a number');
        return x as { calls: number };
      },
    }),
    broken: method<void, { calls: number }>(undefined, {
      result: (x) => {
        if (typeof (x as { calls?: unknown })?.calls !== 'number') throw new Error('calls: not a number');
        return x as { calls: number };
      },
    }),
  },
  { name: 'calc' },
);

describe('typed services', () => {
  test('end to end: typed stubs, server-side validation, answer validation', async () => {
    const { gateway, client } = await setup();
    let calls = 0;
    Calc.serve(gateway, {
      add: ({ a, b }) => {
        calls++;
        return a + b;
      },
      divide: async ({ a, b }) => {
        if (b === 0) throw new PylonError('BAD_REQUEST', 'division by zero');
        return a / b;
      },
      stats: () => ({ calls }),
      broken: () => ({ calls: 'many' }) as unknown as { calls: number },
    });
    const calc = Calc.client(client);

    const sum = await calc.add({ a: 1, b: 2 });
    expectTypeOf(sum).toEqualTypeOf<number>();
    expect(sum).toBe(3);
    expect(await calc.divide({ a: 6, b: 3 })).toBe(2);
    expectTypeOf(calc.divide).returns.resolves.toEqualTypeOf<number>();
    expect(await calc.stats()).toEqual({ calls: 1 });
    // @ts-expect-error: the input is typed
    await expect(calc.add({ a: 1 })).rejects.toMatchObject({ code: 'BAD_REQUEST' });
    await expect(calc.divide({ a: 1, b: 0 })).rejects.toMatchObject({
      code: 'BAD_REQUEST',
      message: 'division by zero',
    });
    await expect(calc.broken()).rejects.toMatchObject({ code: 'BAD_RESPONSE' });
    expect(Calc.wireName('add')).toBe('calc.add');
    // The wire name is a plain request type: any client can call it.
    expect(await client.call('calc.add', { a: 2, b: 2 })).toBe(4);
  });

  test('serve refuses an implementation with a method missing; RpcServer.method validates', async () => {
    const { gateway, client } = await setup();
    expect(() =>
      Calc.serve(gateway, { add: ({ a, b }: { a: number; b: number }) => a + b } as unknown as Parameters<
        typeof Calc.serve
      >[1]),
    ).toThrow(/no implementation of "divide"/);
    new RpcServer(gateway).method(
      'square',
      (n: number) => n * n,
      (x) => {
        if (typeof x !== 'number') throw new TypeError('not a number');
        return x;
      },
    );
    expect(await client.call('square', 7)).toBe(49);
    await expect(client.call('square', 'seven')).rejects.toMatchObject({
      code: 'BAD_REQUEST',
      message: 'square: not a number',
    });
  });
});

describe('slow-call monitor', () => {
  test('emits slow for calls pending past the threshold, with method, age and connection', async () => {
    const monitor = new RpcMonitor({ slowAfter: 100, sweepEvery: 25 });
    const { gateway, client } = await setup({ monitor });
    const release: Array<() => void> = [];
    new RpcServer(gateway)
      .method('slow', () => new Promise<string>((resolve) => release.push(() => resolve('done'))))
      .method('fast', () => 'ok');
    await client.start();
    const slow: SlowCall[] = [];
    monitor.on('slow', (c) => slow.push(c));
    const p = client.call('slow');
    for (let i = 0; i < 20; i++) await client.call('fast');
    await new Promise((r) => setTimeout(r, 250));
    expect(slow).toHaveLength(1); // reported once
    expect(slow[0]!.method).toBe('slow');
    expect(slow[0]!.age).toBeGreaterThanOrEqual(100);
    expect([...gateway.connections.keys()]).toContain(slow[0]!.connection);
    release[0]!();
    expect(await p).toBe('done');
    const stats = monitor.stats();
    expect(stats.pending).toBe(0);
    expect(stats.slow).toBe(1);
    expect(stats.methods.fast?.count).toBe(20);
    expect(stats.methods.slow?.p50).toBeGreaterThanOrEqual(100);
    expect(stats.methods.fast!.p99).toBeLessThan(stats.methods.slow!.p50);
    const registry = new Registry();
    monitor.toPrometheus(registry);
    const text = await registry.metrics();
    expect(text).toMatch(/pylon_rpc_call_duration_seconds\{method="slow",quantile="0.5"\} 0\.\d+/);
    expect(text).toContain('pylon_rpc_calls_total{method="fast",outcome="ok"} 20');
    expect(text).toContain('pylon_rpc_slow_calls_total 1');
    expect(text).toContain('pylon_rpc_pending_calls 0');
    monitor.close();
  });

  test('percentiles from the histogram, on a fake clock', () => {
    const clock = new FakeClock();
    const monitor = new RpcMonitor({ clock, slowAfter: 1000, sweepEvery: 100 });
    for (let i = 1; i <= 100; i++) {
      const t = monitor.begin('m', 'conn-1');
      clock.advance(i);
      monitor.end(t, i === 100 ? new PylonError('TIMEOUT', 'late') : undefined);
    }
    const s = monitor.stats().methods.m!;
    expect(s.count).toBe(100);
    expect(s.errors).toBe(1);
    expect(s.timeouts).toBe(1);
    expect(s.p50).toBeCloseTo(50, -0.5);
    expect(s.p90).toBeCloseTo(90, -0.5);
    expect(s.p99).toBeCloseTo(99, -0.5);
    expect(s.max).toBeCloseTo(100, -0.5);
    const slow: SlowCall[] = [];
    monitor.on('slow', (c) => slow.push(c));
    monitor.begin('stuck', 'conn-2');
    clock.advance(1100);
    expect(slow).toEqual([{ method: 'stuck', age: expect.any(Number), connection: 'conn-2' }]);
    expect(slow[0]!.age).toBeGreaterThanOrEqual(1000);
    monitor.reset();
    expect(monitor.stats().methods.m!.count).toBe(0);
    monitor.close();
  });
});
