import { SignJWT } from 'jose';
import { afterEach, describe, expect, it } from 'vitest';
import { connect, type PylonClient } from '../src/client/index.js';
import { jwtValidator } from '../src/index.js';
import { RawTcp, startGateway, stopAll } from './support/gateway.js';

// Token refresh without reconnecting: JWTs that expire in 2 s, refreshed in place on WebSocket,
// TCP and HTTP; an unrefreshed one closed with token_expired (4011); a refreshed token's labels.

const SECRET = 'a-test-secret-of-enough-length';
const jwt = (sub: string, labels: string[] = [], life = '2s') =>
  new SignJWT({ sub, labels })
    .setProtectedHeader({ alg: 'HS256' })
    .setIssuedAt()
    .setExpirationTime(life)
    .sign(new TextEncoder().encode(SECRET));

const clients: PylonClient[] = [];
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close().catch(() => {})));
  await stopAll();
});

const gatewayWithJwt = async (extra: Parameters<typeof startGateway>[0] = {}) =>
  startGateway({
    ...extra,
    // No clock tolerance: a token is good until its exp, not 30 s after.
    validate: await jwtValidator({ secret: SECRET, clockTolerance: 0 }),
    authorizeSub: (_c, label) => label.startsWith('room:'),
  });

describe('token refresh', () => {
  it('refreshes 2-second tokens in place over 8 s on WebSocket, TCP and HTTP: the connection never drops', async () => {
    // A refresh on a loaded machine may take a moment: a second of grace after each expiry.
    const { gateway, tcpUrl, wsUrl } = await gatewayWithJwt({ tokenRefresh: { grace: 1000 } });
    gateway.handle('echo', (d) => d);
    const run = async (url: string) => {
      let calls = 0;
      const c = await connect(url, {
        token: await jwt('ann'),
        getToken: () => {
          calls++;
          return jwt('ann');
        },
        reconnect: { base: 50, max: 100 },
      });
      clients.push(c);
      const closes: number[] = [];
      const refreshed: unknown[] = [];
      c.on('close', (e) => closes.push(e.code));
      c.on('refreshed', (r) => refreshed.push(r));
      const id = c.welcome?.connection;
      await new Promise((r) => setTimeout(r, 8000));
      return { calls, closes, refreshed, same: c.welcome?.connection === id && c.connected, c };
    };
    const httpUrl = wsUrl.replace(/^ws:/, 'http:').replace(/\/ws$/, '/http');
    const [ws, tcp, http] = await Promise.all([run(wsUrl), run(tcpUrl), run(httpUrl)]);
    expect(http.c.transport).toBe('http');
    for (const r of [ws, tcp, http]) {
      expect(r.closes).toEqual([]);
      expect(r.same).toBe(true);
      expect(r.calls).toBeGreaterThanOrEqual(3);
      expect(r.refreshed.length).toBe(r.calls);
      expect(r.refreshed[0]).toMatchObject({ expiresAt: expect.any(Number), labels: [] });
      // Still served: a request goes through on the refreshed connection.
      expect(await r.c.request('echo', 7)).toBe(7);
    }
  }, 20_000);

  it('closes a connection whose token expires unrefreshed with token_expired (4011); without getToken the client does not come back', async () => {
    const { gateway, tcpUrl } = await gatewayWithJwt();
    const c = await connect(tcpUrl, { token: await jwt('bob'), reconnect: { base: 50, max: 100 } });
    clients.push(c);
    const closed = new Promise<{ code: number; name: string; willReconnect: boolean }>((resolve) =>
      c.on('close', resolve),
    );
    const e = await closed;
    expect(e).toMatchObject({ code: 4011, name: 'token_expired', willReconnect: false });
    await expect.poll(() => gateway.stats().connections).toBe(0);
  }, 10_000);

  it('after token_expired, a client with getToken reconnects with a fresh token', async () => {
    const { tcpUrl } = await gatewayWithJwt();
    let calls = 0;
    // The first fresh token fails (the auth server is down): a failed attempt, then it goes on.
    const c = await connect(tcpUrl, {
      token: await jwt('cid'),
      getToken: async () => {
        calls++;
        if (calls === 1) throw new Error('auth server down');
        return jwt('cid', [], '1h');
      },
      reconnect: { base: 50, max: 100 },
    });
    clients.push(c);
    const errors: string[] = [];
    c.on('error', (e) => errors.push(e.message));
    // The refresh prompt's getToken fails: the token expires, then reconnecting gets one.
    const back = new Promise((resolve) => c.on('reconnected', resolve));
    await back;
    expect(errors).toContain('auth server down');
    expect(calls).toBe(2);
    expect(c.connected).toBe(true);
  }, 10_000);

  it('a token already expired at the handshake is refused with 4011', async () => {
    // The validator's default clock tolerance (30 s) lets a token 10 s past its exp through: the gateway does not.
    const gateway2 = await startGateway({ validate: await jwtValidator({ secret: SECRET }) });
    const old = await new SignJWT({ sub: 'dee' })
      .setProtectedHeader({ alg: 'HS256' })
      .setIssuedAt(Math.floor(Date.now() / 1000) - 20)
      .setExpirationTime(Math.floor(Date.now() / 1000) - 10)
      .sign(new TextEncoder().encode(SECRET));
    const raw = await RawTcp.open(gateway2.tcpUrl);
    raw.sendJson({ kind: 'hello', data: { token: old } });
    await raw.until((r) => r.closed);
    expect(raw.json()[0]).toMatchObject({ kind: 'kick', data: { code: 4011, name: 'token_expired' } });
  });

  it('a token past the validator’s clock tolerance is refused with 4011 too (not 4502); a client with only getToken gets its first token from it', async () => {
    const { tcpUrl } = await startGateway({ validate: await jwtValidator({ secret: SECRET }) });
    const now = Math.floor(Date.now() / 1000);
    const stale = await new SignJWT({ sub: 'fay' })
      .setProtectedHeader({ alg: 'HS256' })
      .setIssuedAt(now - 3600)
      .setExpirationTime(now - 600)
      .sign(new TextEncoder().encode(SECRET));
    const raw = await RawTcp.open(tcpUrl);
    raw.sendJson({ kind: 'hello', data: { token: stale } });
    await raw.until((r) => r.closed);
    expect(raw.json()[0]).toMatchObject({ kind: 'kick', data: { code: 4011, name: 'token_expired' } });
    const c = await connect(tcpUrl, { getToken: () => jwt('fay', [], '1h'), reconnect: false });
    clients.push(c);
    expect(c.welcome?.user).toBe('fay');
    // A getToken that keeps failing ends in a close after maxAttempts, not an endless retry.
    const failing = await connect(tcpUrl, {
      token: await jwt('gus'),
      getToken: () => Promise.reject(new Error('auth server down')),
      reconnect: { base: 20, max: 40, maxAttempts: 2 },
    });
    clients.push(failing);
    failing.on('error', () => {});
    const closed = await new Promise<{ code: number; willReconnect: boolean; reason: string }>((resolve) =>
      failing.on('close', (e) => {
        if (!e.willReconnect) resolve(e);
      }),
    );
    expect(closed).toMatchObject({
      code: 4011,
      willReconnect: false,
      reason: 'could not get a token: auth server down',
    });
  }, 15_000);

  it('a refreshed token with fewer labels removes them; subscribed labels stay if still allowed; another user’s token is refused', async () => {
    const { gateway, tcpUrl } = await gatewayWithJwt();
    const raw = await RawTcp.open(tcpUrl);
    raw.sendJson({ kind: 'hello', data: { token: await jwt('eva', ['vip', 'beta'], '1h') } });
    await raw.until((r) => r.frames.length >= 1);
    expect(raw.json()[0]).toMatchObject({ kind: 'welcome', data: { labels: ['vip', 'beta'] } });
    raw.sendJson({ kind: 'sub', id: 1, data: { labels: ['room:1'] } });
    await raw.until((r) => r.json().some((f) => f.kind === 'res' && f.id === 1));
    raw.sendJson({ kind: 'req', id: 2, type: '$refresh', data: { token: await jwt('eva', ['vip'], '1h') } });
    await raw.until((r) => r.json().some((f) => f.kind === 'res' && f.id === 2));
    const res = raw.json().find((f) => f.kind === 'res' && f.id === 2);
    expect(res?.data).toMatchObject({ labels: ['vip', 'room:1'], expiresAt: expect.any(Number) });
    const [conn] = gateway.connectionsOf('eva');
    expect(conn?.labels).toEqual(['vip', 'room:1']);
    expect((await gateway.push({ labels: { all: ['beta'] } }, 'x')).targeted).toBe(0);
    raw.sendJson({ kind: 'req', id: 3, type: '$refresh', data: { token: await jwt('mallory', [], '1h') } });
    await raw.until((r) => r.json().some((f) => f.kind === 'res' && f.id === 3));
    expect(raw.json().find((f) => f.kind === 'res' && f.id === 3)?.error).toMatchObject({
      code: 'FORBIDDEN',
    });
    raw.sendJson({ kind: 'req', id: 4, type: '$refresh', data: { token: 'not a jwt' } });
    await raw.until((r) => r.json().some((f) => f.kind === 'res' && f.id === 4));
    expect(raw.json().find((f) => f.kind === 'res' && f.id === 4)?.error).toMatchObject({
      code: 'UNAUTHORIZED',
    });
    expect(gateway.connectionsOf('eva')).toHaveLength(1);
    raw.destroy();
  });
});
