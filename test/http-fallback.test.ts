import { afterEach, describe, expect, it } from 'vitest';
import { connect, type PylonClient } from '../src/client/index.js';
import type { Gateway, GatewayOptions } from '../src/index.js';
import { startGateway, stopAll } from './support/gateway.js';
import { noWsProxy } from './support/no-ws-proxy.js';

/** The SDK over the HTTP transport: directly (http://), and as the fallback when WebSocket is blocked. */

const clients: PylonClient[] = [];
const cleanups: Array<() => Promise<void>> = [];

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  for (const f of cleanups.splice(0)) await f();
  await stopAll();
});

async function setup(
  options: GatewayOptions = {},
): Promise<{ gateway: Gateway; base: string; wsUrl: string }> {
  const { gateway, wsUrl } = await startGateway({
    validate: (token) => ({ user: String(token) }),
    authorizeSub: () => true,
    ...options,
  });
  gateway.handle('echo', (data) => data);
  return { gateway, wsUrl, base: wsUrl.replace(/^ws:/, 'http:').replace(/\/ws$/, '') };
}

async function client(
  url: string,
  token: string,
  extra: Parameters<typeof connect>[1] = {},
): Promise<PylonClient> {
  const c = await connect(url, { token, reconnect: { base: 50, max: 200 }, ...extra });
  clients.push(c);
  return c;
}

describe('the SDK over HTTP', () => {
  it('an http:// URL: requests, pushes, qos 1 acked, subscribe; a dropped session resumes with nothing lost or doubled', async () => {
    const { gateway, base } = await setup();
    const c = await client(`${base}/http`, 'ann');
    expect(c.transport).toBe('http');
    expect(gateway.connectionsOf('ann')[0]?.transport).toBe('http');
    expect(await c.request('echo', { n: 1 })).toEqual({ n: 1 });
    // Many requests at once ride in few POSTs.
    const answers = await Promise.all(Array.from({ length: 50 }, (_, i) => c.request('echo', i)));
    expect(answers).toEqual(Array.from({ length: 50 }, (_, i) => i));
    await c.subscribe(['room']);
    const got: unknown[] = [];
    c.on('say', (d) => void got.push(d));
    await gateway.push({ labels: { all: ['room'] } }, 'say', 1);
    await gateway.push({ user: 'ann' }, 'say', 2, { qos: 1 });
    await expect.poll(() => got).toEqual([1, 2]);
    await expect.poll(() => gateway.stats().qos1?.acked).toBe(1);

    // The network drops the stream; pushes meanwhile arrive after the resume, once each.
    const reconnected = new Promise<Record<string, unknown>>((r) => c.on('reconnected', r));
    const lost = new Promise<number>((r) => gateway.once('disconnect', (_c, info) => r(info.code)));
    gateway.connectionsOf('ann')[0]?.link.destroy();
    expect(await lost).toBe(1006);
    await gateway.push({ labels: { all: ['room'] } }, 'say', 3);
    await gateway.push({ user: 'ann' }, 'say', 4, { qos: 1 });
    expect(await reconnected).toMatchObject({ resumed: true, recovered: true });
    await expect.poll(() => got).toEqual([1, 2, 3, 4]);
    await new Promise((r) => setTimeout(r, 200));
    expect(got).toEqual([1, 2, 3, 4]);
    expect(c.transport).toBe('http');
  });

  it('falls back to HTTP when a proxy refuses the WebSocket upgrade', async () => {
    const { gateway, wsUrl } = await setup();
    const proxy = await noWsProxy(wsUrl.replace(/^ws:/, 'http:'));
    cleanups.push(() => proxy.close());
    const c = await client(`ws://${proxy.url}/ws`, 'bo');
    expect(proxy.upgrades).toBe(1);
    expect(c.transport).toBe('http');
    expect(await c.request('echo', 'through the proxy')).toBe('through the proxy');
    const got: unknown[] = [];
    c.on('note', (d) => void got.push(d));
    await gateway.push({ user: 'bo' }, 'note', 'hi');
    await expect.poll(() => got).toEqual(['hi']);
  });

  it('falls back when the upgrade hangs, after transportTimeout; without the fallback it cannot connect', async () => {
    const { wsUrl } = await setup();
    const proxy = await noWsProxy(wsUrl.replace(/^ws:/, 'http:'), 'hang');
    cleanups.push(() => proxy.close());
    const started = Date.now();
    const c = await client(`ws://${proxy.url}/ws`, 'cy', { transportTimeout: 300 });
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);
    expect(c.transport).toBe('http');
    expect(await c.request('echo', 1)).toBe(1);
    await expect(
      connect(`ws://${proxy.url}/ws`, {
        token: 'cy',
        transports: ['websocket'],
        connectTimeout: 500,
        reconnect: false,
      }),
    ).rejects.toThrow(/could not connect/);
  });

  it('uses WebSocket when it works, and never HTTP for a binary codec', async () => {
    const { wsUrl } = await setup();
    const c = await client(wsUrl, 'dee');
    expect(c.transport).toBe('websocket');
    const proxy = await noWsProxy(wsUrl.replace(/^ws:/, 'http:'));
    cleanups.push(() => proxy.close());
    await expect(
      connect(`ws://${proxy.url}/ws`, { token: 'dee', codec: 'msgpack', reconnect: false }),
    ).rejects.toThrow(/could not connect/);
  });

  it('HTTP first: used when it works; on a server without the HTTP transport the same hello goes over WebSocket', async () => {
    const { gateway, wsUrl } = await setup();
    const first = await client(wsUrl, 'eve', { transports: ['http', 'websocket'] });
    expect(first.transport).toBe('http');
    expect(gateway.connectionsOf('eve')[0]?.transport).toBe('http');
    // The HTTP link "opens" before its POST is answered: a 404 must still lead to WebSocket.
    const off = await setup({ ws: { port: 0, http: false } });
    const c = await client(off.wsUrl, 'fay', { transports: ['http', 'websocket'] });
    expect(c.transport).toBe('websocket');
    expect(off.gateway.connectionsOf('fay')).toHaveLength(1); // one hello, one connection
    expect(await c.request('echo', 'after the fallback')).toBe('after the fallback');
    const got: unknown[] = [];
    c.on('note', (d) => void got.push(d));
    await off.gateway.push({ user: 'fay' }, 'note', 'hi');
    await expect.poll(() => got).toEqual(['hi']);
  });

  it('an http:// URL with a binary codec is refused by the SDK, saying why', async () => {
    const { base } = await setup();
    await expect(
      connect(`${base}/http`, { token: 'gus', codec: 'msgpack', reconnect: false }),
    ).rejects.toThrow(/carries JSON only: the codec must be "json", not "msgpack"/);
  });
});
