import { afterAll, afterEach, describe, expect, test } from 'vitest';
import type { Gateway } from '../src/index.js';
import { PylonError } from '../src/protocol/errors.js';
import { BatchingTcpLink, RpcClient, RpcServer } from '../src/rpc/index.js';
import { startGateway, stopAll } from './support/gateway.js';

afterAll(stopAll);

const clients: RpcClient[] = [];
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
});

function rpc(options: ConstructorParameters<typeof RpcClient>[0]): RpcClient {
  const c = new RpcClient(options);
  clients.push(c);
  return c;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** A gateway set up for service traffic: no per-connection frame limit. */
async function rpcGateway(): Promise<{ gateway: Gateway; url: string }> {
  const { gateway, tcpUrl } = await startGateway({ rateLimit: false, closeTimeout: 200 });
  return { gateway, url: tcpUrl };
}

describe('RpcClient', () => {
  test('10,000 concurrent calls over 4 connections each get their own answer, answered out of order', async () => {
    const { gateway, url } = await rpcGateway();
    let served = 0;
    new RpcServer(gateway).method<{ i: number }, { i: number; twice: number }>('work', async ({ i }) => {
      await sleep(Math.random() * 20);
      served++;
      return { i, twice: i * 2 };
    });
    const client = rpc({ url, connections: 4 });
    await client.start();
    const finished: number[] = [];
    const answers = await Promise.all(
      Array.from({ length: 10_000 }, (_, i) =>
        client.call<{ i: number; twice: number }>('work', { i }).then((a) => {
          finished.push(i);
          return a;
        }),
      ),
    );
    answers.forEach((a, i) => {
      expect(a).toEqual({ i, twice: i * 2 });
    });
    expect(served).toBe(10_000);
    // The random delays really did reorder the answers.
    expect(finished.some((v, k) => k > 0 && v < finished[k - 1]!)).toBe(true);
    const stats = client.stats();
    expect(stats.pool.open).toBe(4);
    expect(stats.queued).toBe(0);
    const work = client.monitor?.stats().methods.work;
    expect(work?.count).toBe(10_000);
    expect(work?.errors).toBe(0);
    expect(work?.p99).toBeGreaterThanOrEqual(work?.p50 ?? 0);
    // Every connection carried a share.
    expect(new Set([...gateway.connections.values()].map((c) => c.id)).size).toBe(4);
  }, 60_000);

  test('frames sent in one tick leave in one socket write (pipelining)', async () => {
    const { gateway, url } = await rpcGateway();
    new RpcServer(gateway).method('echo', (d) => d);
    const links: BatchingTcpLink[] = [];
    const client = rpc({
      url,
      connections: 1,
      batch: false,
      dialer: (u, o, e) => {
        const link = new BatchingTcpLink(u, o, e);
        links.push(link);
        return link;
      },
    });
    await client.start();
    const before = links[0]!.writes;
    const answers = await Promise.all(Array.from({ length: 200 }, (_, i) => client.call('echo', i)));
    expect(answers).toEqual(Array.from({ length: 200 }, (_, i) => i));
    expect(links[0]!.writes - before).toBe(1);
  });

  test('a server that stops answering: calls time out, the dead connection is replaced, new calls succeed', async () => {
    const { gateway, url } = await rpcGateway();
    let hang = true;
    new RpcServer(gateway)
      .method('echo', (d) => d)
      .method('maybe', (d) => (hang ? new Promise(() => {}) : d));
    const client = rpc({ url, connections: 2, timeout: 300, heartbeat: 100, heartbeatTimeout: 500 });
    await client.start();
    const before = new Set([...gateway.connections.keys()]);
    expect(before.size).toBe(2);
    // The handler hangs: calls time out, but the connections are alive (they answer pings).
    await expect(client.call('maybe', 1)).rejects.toMatchObject({ code: 'TIMEOUT' });
    // Now the server stops reading its sockets too: nothing comes back, not even pongs.
    for (const c of gateway.connections.values()) c.link.pause();
    const stuck = await Promise.allSettled([client.call('echo', 1), client.call('echo', 2)]);
    for (const r of stuck) expect(r.status).toBe('rejected');
    // The clients' heartbeat declares the links dead; the pool dials replacements.
    const deadline = Date.now() + 5000;
    while (client.stats().pool.replaced < 2 || client.stats().pool.open < 2) {
      if (Date.now() > deadline) throw new Error(`not replaced: ${JSON.stringify(client.stats())}`);
      await sleep(50);
    }
    hang = false;
    expect(await client.call('maybe', 'back')).toBe('back');
    expect(await client.call('echo', 'again')).toBe('again');
    const now = [...gateway.connections.values()].filter((c) => c.state === 'open' && !before.has(c.id));
    expect(now.length).toBe(2);
  });

  test('idempotent calls are retried on UNAVAILABLE and TIMEOUT; others are not', async () => {
    const { gateway, url } = await rpcGateway();
    const attempts = new Map<string, number>();
    new RpcServer(gateway).method<{ key: string; failures: number; mode: string }>(
      'flaky',
      ({ key, failures, mode }) => {
        const n = (attempts.get(key) ?? 0) + 1;
        attempts.set(key, n);
        if (n > failures) return n;
        if (mode === 'hang') return new Promise(() => {});
        throw new PylonError(mode === 'bad' ? 'BAD_REQUEST' : 'UNAVAILABLE', 'try later');
      },
    );
    const client = rpc({ url, connections: 1, backoff: { base: 10, max: 20 } });
    await client.start();
    const flaky = (key: string, failures: number, mode: string, options = {}) =>
      client.call('flaky', { key, failures, mode }, options);

    await expect(flaky('a', 2, 'unavailable')).rejects.toMatchObject({ code: 'UNAVAILABLE' });
    expect(attempts.get('a')).toBe(1);
    expect(await flaky('b', 2, 'unavailable', { idempotent: true })).toBe(3);
    expect(attempts.get('b')).toBe(3);
    await expect(flaky('c', 5, 'unavailable', { idempotent: true, retries: 1 })).rejects.toMatchObject({
      code: 'UNAVAILABLE',
    });
    expect(attempts.get('c')).toBe(2);
    expect(await flaky('d', 1, 'hang', { idempotent: true, timeout: 150 })).toBe(2);
    await expect(flaky('e', 1, 'bad', { idempotent: true })).rejects.toMatchObject({ code: 'BAD_REQUEST' });
    expect(attempts.get('e')).toBe(1);
    expect(client.stats().retries).toBe(4);
  });

  test('an AbortSignal cancels a call in flight, in the queue and in the retry backoff', async () => {
    const { gateway, url } = await rpcGateway();
    new RpcServer(gateway)
      .method('hang', () => new Promise(() => {}))
      .method('down', () => {
        throw new PylonError('UNAVAILABLE', 'down');
      });
    const client = rpc({ url, connections: 1, maxPending: 1, backoff: { base: 5000, max: 5000 } });
    await client.start();
    const inFlight = new AbortController();
    const queued = new AbortController();
    const p1 = client.call('hang', 1, { signal: inFlight.signal });
    const p2 = client.call('hang', 2, { signal: queued.signal });
    await sleep(20);
    expect(client.stats().queued).toBe(1); // maxPending 1: the second waits in the client
    queued.abort();
    await expect(p2).rejects.toMatchObject({ code: 'CANCELLED' });
    inFlight.abort();
    await expect(p1).rejects.toMatchObject({ code: 'CANCELLED' });
    expect(client.stats().queued).toBe(0);

    const backoff = new AbortController();
    const t = performance.now();
    const p3 = client.call('down', 3, { signal: backoff.signal, idempotent: true });
    await sleep(50);
    backoff.abort();
    await expect(p3).rejects.toMatchObject({ code: 'CANCELLED' });
    expect(performance.now() - t).toBeLessThan(2000);
    await expect(client.call('x', 1, { signal: AbortSignal.abort() })).rejects.toMatchObject({
      code: 'CANCELLED',
    });
  });

  test('the pool grows under load up to maxConnections; calls spread over several servers', async () => {
    const a = await rpcGateway();
    const b = await rpcGateway();
    for (const [name, g] of [
      ['a', a.gateway],
      ['b', b.gateway],
    ] as const)
      new RpcServer(g).method('who', async () => {
        await sleep(30);
        return name;
      });
    const client = rpc({ urls: [a.url, b.url], connections: 2, maxConnections: 4, growAbove: 5 });
    await client.start();
    const names = await Promise.all(Array.from({ length: 200 }, () => client.call('who')));
    expect(new Set(names)).toEqual(new Set(['a', 'b']));
    const { pool } = client.stats();
    expect(pool.open).toBeGreaterThan(2);
    expect(pool.size).toBeLessThanOrEqual(4);
  });

  test('works over WebSocket too (no batching there); notify sends one-way messages', async () => {
    const { gateway, wsUrl } = await startGateway({ rateLimit: false, closeTimeout: 200 });
    const seen: unknown[] = [];
    new RpcServer(gateway)
      .method('echo', (d) => d)
      .method('note', (d) => {
        seen.push(d);
      });
    const client = rpc({ url: wsUrl, connections: 2, codec: 'json' });
    await client.start();
    expect(await Promise.all([client.call('echo', 'a'), client.call('echo', { b: [1] })])).toEqual([
      'a',
      { b: [1] },
    ]);
    client.notify('note', 42);
    const deadline = Date.now() + 2000;
    while (seen.length === 0 && Date.now() < deadline) await sleep(10);
    expect(seen).toEqual([42]);
  });

  test('a server gone for good: calls fail with UNAVAILABLE, not hang; close fails what waits', async () => {
    const { gateway, url } = await rpcGateway();
    new RpcServer(gateway).method('echo', (d) => d);
    const client = rpc({ url, connections: 1, connectTimeout: 300, redial: { base: 50, max: 100 } });
    await client.start();
    expect(await client.call('echo', 1)).toBe(1);
    await gateway.close();
    await sleep(50);
    await expect(client.call('echo', 2)).rejects.toMatchObject({ code: 'UNAVAILABLE' });
    await client.close();
    await expect(client.call('echo', 3)).rejects.toMatchObject({ code: 'UNAVAILABLE' });
  });
});
