import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { installEcho } from '../src/cli/echo.js';
import { connect, PylonError, TimeoutError } from '../src/client/index.js';
import type { CodecName } from '../src/index.js';
import { once, startGateway, stopAll, until } from './support/gateway.js';

afterEach(stopAll);

const transports = ['tcp', 'ws'] as const;
const codecNames: CodecName[] = ['json', 'msgpack', 'proto'];

describe('request/response over the SDK', () => {
  for (const transport of transports) {
    for (const codec of codecNames) {
      it(`echo answers over ${transport} with ${codec}`, async () => {
        const { gateway, tcpUrl, wsUrl } = await startGateway();
        installEcho(gateway);
        const client = await connect(transport === 'tcp' ? tcpUrl : wsUrl, { codec, reconnect: false });
        const payload = { text: 'hello', n: 42, nested: { list: [1, 'two', null] } };
        await expect(client.request('echo', payload)).resolves.toEqual(payload);
        expect(client.welcome?.codec).toBe(codec);
        await client.close();
      });
    }
  }

  it('matches answers by id when handlers finish out of order', async () => {
    const { gateway, tcpUrl } = await startGateway();
    gateway.handle<{ i: number; wait: number }>('slow', async ({ i, wait }) => {
      await new Promise((r) => setTimeout(r, wait));
      return { i };
    });
    const client = await connect(tcpUrl, { reconnect: false });
    const order: number[] = [];
    const calls = Array.from({ length: 50 }, (_, i) =>
      client.request<{ i: number }>('slow', { i, wait: (50 - i) * 4 }).then((r) => {
        order.push(r.i);
        return r.i;
      }),
    );
    const results = await Promise.all(calls);
    expect(results).toEqual(Array.from({ length: 50 }, (_, i) => i));
    // The last request sent was answered first: the server ran them concurrently.
    expect(order[0]).toBe(49);
    await client.close();
  });

  it('answers NOT_FOUND, a PylonError code, and INTERNAL for a crash', async () => {
    const { gateway, wsUrl } = await startGateway();
    const errors: Error[] = [];
    gateway.on('error', (err) => errors.push(err));
    gateway.handle('deny', () => {
      throw new PylonError('FORBIDDEN', 'not you');
    });
    gateway.handle('crash', async () => {
      throw new Error('secret detail');
    });
    const client = await connect(wsUrl, { reconnect: false });
    await expect(client.request('nope')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(client.request('deny')).rejects.toMatchObject({ code: 'FORBIDDEN', message: 'not you' });
    const crash = await client.request('crash').catch((e: PylonError) => e);
    expect(crash).toBeInstanceOf(PylonError);
    expect((crash as PylonError).code).toBe('INTERNAL');
    expect((crash as PylonError).message).not.toContain('secret');
    expect(errors.map((e) => e.message)).toEqual(['secret detail']);
    // The connection survives all of it.
    gateway.handle('ok', () => 'fine');
    await expect(client.request('ok')).resolves.toBe('fine');
    await client.close();
  });

  it('runs middleware in order around handlers, and a throwing middleware stops the chain', async () => {
    const { gateway, tcpUrl } = await startGateway();
    const seen: string[] = [];
    gateway.use(async (ctx, next) => {
      seen.push(`a:${ctx.type}`);
      const result = await next();
      seen.push('a:after');
      return result;
    });
    gateway.use((ctx, next) => {
      if (ctx.type === 'secret') throw new PylonError('UNAUTHORIZED', 'login first');
      ctx.data = { wrapped: ctx.data };
      return next();
    });
    gateway.handle('echo', (data) => data);
    let secretRan = false;
    gateway.handle('secret', () => {
      secretRan = true;
    });
    const client = await connect(tcpUrl, { reconnect: false });
    await expect(client.request('echo', 1)).resolves.toEqual({ wrapped: 1 });
    await expect(client.request('secret')).rejects.toMatchObject({ code: 'UNAUTHORIZED' });
    expect(secretRan).toBe(false);
    expect(seen).toEqual(['a:echo', 'a:after', 'a:secret']);
    await client.close();
  });

  it('times out a request with TimeoutError and forgets it', async () => {
    const { gateway, wsUrl } = await startGateway();
    gateway.handle('never', () => new Promise(() => {}));
    const client = await connect(wsUrl, { reconnect: false });
    const err = await client.request('never', undefined, { timeout: 100 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TimeoutError);
    expect((err as TimeoutError).code).toBe('TIMEOUT');
    expect(client.pendingRequests).toBe(0);
    await client.close();
  });

  it('cancels a request with an AbortSignal', async () => {
    const { gateway, tcpUrl } = await startGateway();
    gateway.handle('never', () => new Promise(() => {}));
    const client = await connect(tcpUrl, { reconnect: false });
    const ac = new AbortController();
    const p = client.request('never', undefined, { signal: ac.signal });
    ac.abort();
    await expect(p).rejects.toMatchObject({ code: 'CANCELLED' });
    expect(client.pendingRequests).toBe(0);
    await client.close();
  });

  it('fails pending requests with UNAVAILABLE when the client closes', async () => {
    const { gateway, tcpUrl } = await startGateway();
    gateway.handle('never', () => new Promise(() => {}));
    const client = await connect(tcpUrl, { reconnect: false });
    const p = client.request('never').catch((e: unknown) => e);
    await client.close();
    await expect(p).resolves.toMatchObject({ code: 'UNAVAILABLE' });
    expect(client.pendingRequests).toBe(0);
  });

  it('refuses too many requests in flight on one connection', async () => {
    const { gateway, tcpUrl } = await startGateway({ maxPendingRequests: 2 });
    gateway.handle('never', () => new Promise(() => {}));
    const client = await connect(tcpUrl, { reconnect: false });
    client.request('never').catch(() => {});
    client.request('never').catch(() => {});
    await expect(client.request('never')).rejects.toMatchObject({ code: 'TOO_MANY_REQUESTS' });
    await client.close();
  });
});

describe('one-way messages and pushes', () => {
  it('routes a one-way msg to its handler and pushes back with connection.send', async () => {
    const { gateway, wsUrl } = await startGateway();
    installEcho(gateway);
    const client = await connect(wsUrl, { reconnect: false });
    const got = once<unknown>((resolve) => client.on('Echo', (data) => resolve(data)));
    client.send('Echo', { Message: 'hi' });
    await expect(got).resolves.toEqual({ Message: 'hi' });
    await client.close();
  });

  it('answers a plain ws client speaking the hotpot form {"type","data"}', async () => {
    const { gateway, wsUrl } = await startGateway();
    installEcho(gateway);
    const ws = new WebSocket(wsUrl);
    const messages: unknown[] = [];
    ws.on('message', (data) => messages.push(JSON.parse(data.toString())));
    await once<void>((resolve) => ws.on('open', () => resolve()));
    ws.send(JSON.stringify({ type: 'Echo', data: { Message: 'hi' } }));
    await expect
      .poll(() => messages.find((m) => (m as { type?: string }).type === 'Echo'))
      .toEqual({ kind: 'push', type: 'Echo', data: { Message: 'hi' } });
    ws.close();
  });

  it('emits connect and disconnect with the close code', async () => {
    const { gateway, tcpUrl } = await startGateway();
    const connected = once<string>((resolve) => gateway.on('connect', (c) => resolve(c.id)));
    const disconnected = once<{ id: string; code: number }>((resolve) =>
      gateway.on('disconnect', (c, info) => resolve({ id: c.id, code: info.code })),
    );
    const client = await connect(tcpUrl, { reconnect: false });
    const id = await connected;
    expect(client.welcome?.connection).toBe(id);
    expect(gateway.connections.get(id)?.transport).toBe('tcp');
    await client.close();
    await expect(disconnected).resolves.toEqual({ id, code: 1000 });
    expect(gateway.connections.size).toBe(0);
  });

  it('gateway.connections has a connection from accept: while it authenticates, open, and not once gone', async () => {
    let release: (() => void) | undefined;
    const { gateway, tcpUrl } = await startGateway({
      validate: async (token) => {
        await new Promise<void>((r) => {
          release = r;
        });
        return { user: token, labels: ['a', 'b'] };
      },
    });
    const pending = connect(tcpUrl, { token: 'alice', reconnect: false });
    await until(() => release !== undefined);
    // Authenticating: counted, found by id, listed by every view of the map.
    expect(gateway.connections.size).toBe(1);
    const [id, conn] = [...gateway.connections][0]!;
    expect(conn.state).toBe('auth');
    expect(gateway.connections.get(id)).toBe(conn);
    expect(gateway.connections.has(id)).toBe(true);
    expect([...gateway.connections.keys()]).toEqual([id]);
    release?.();
    const client = await pending;
    expect(conn.state).toBe('open');
    expect(gateway.connections.size).toBe(1);
    expect(gateway.connections.get(id)).toBe(conn);
    expect([...gateway.connections.values()]).toEqual([conn]);
    // The labels change; the identity's stay what the token gave (resume and refresh read them).
    expect(conn.join('c')).toBe(true);
    expect(conn.leave('a')).toBe(true);
    expect(conn.labels).toEqual(['b', 'c']);
    expect(conn.identityLabels).toEqual(['a', 'b']);
    await client.close();
    await until(() => gateway.connections.size === 0);
    expect(gateway.connections.get(id)).toBeUndefined();
    expect(gateway.connections.has(id)).toBe(false);
  });

  it('kicks a connection: the client sees the code and does not reconnect', async () => {
    const { gateway, wsUrl } = await startGateway();
    const client = await connect(wsUrl);
    const closed = once<{ code: number; name: string; willReconnect: boolean }>((resolve) =>
      client.on('close', resolve),
    );
    const conn = [...gateway.connections.values()][0]!;
    conn.close('kicked', 'bye now');
    await expect(closed).resolves.toMatchObject({
      code: 4503,
      name: 'kicked',
      reason: 'bye now',
      willReconnect: false,
    });
  });

  it('closes every connection with shutdown (4000, reconnect) on gateway.close()', async () => {
    const { gateway, tcpUrl, wsUrl } = await startGateway();
    const a = await connect(tcpUrl, { reconnect: false });
    const b = await connect(wsUrl, { reconnect: false });
    const closes = Promise.all(
      [a, b].map((c) => once<{ code: number; reconnect: boolean }>((resolve) => c.on('close', resolve))),
    );
    await gateway.close();
    const [ea, eb] = await closes;
    expect(ea).toMatchObject({ code: 4000, name: 'shutdown', reconnect: true });
    expect(eb).toMatchObject({ code: 4000, name: 'shutdown', reconnect: true });
    expect(gateway.connections.size).toBe(0);
  });
});
