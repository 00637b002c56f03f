import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SignJWT } from 'jose';
import { afterEach, describe, expect, it } from 'vitest';
import { type AdminServer, startAdmin } from '../src/api/index.js';
import { connect, type PylonClient } from '../src/client/index.js';
import { createGateway, devValidator, jwtValidator, RedisStore, SqliteStore } from '../src/index.js';
import { createLogger } from '../src/log/logger.js';
import { type DenialLog, denialKey } from '../src/store/denial-log.js';
import { RawTcp, startGateway, stopAll } from './support/gateway.js';
import { startRedis } from './support/redis.js';

// Bans, token revocations and per-user limits on one gateway, through the library and the admin
// API. Across a cluster: test/cluster-redis.test.ts.

const SECRET = 'a-test-secret-of-enough-length';
const token = (sub: string, jti?: string) => {
  const t = new SignJWT({ sub }).setProtectedHeader({ alg: 'HS256' }).setIssuedAt();
  if (jti !== undefined) t.setJti(jti);
  return t.sign(new TextEncoder().encode(SECRET));
};

const clients: PylonClient[] = [];
const admins: AdminServer[] = [];
const dirs: string[] = [];
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close().catch(() => {})));
  await Promise.all(admins.splice(0).map((a) => a.close()));
  await stopAll();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

type Closed = { code: number; name: string; reason: string; willReconnect: boolean };

async function client(url: string, tok: string): Promise<PylonClient & { closes: Closed[] }> {
  const c = (await connect(url, { token: tok, reconnect: { base: 20, max: 50 } })) as PylonClient & {
    closes: Closed[];
  };
  c.closes = [];
  c.on('close', (info) => c.closes.push(info as Closed));
  clients.push(c);
  return c;
}

/** What a refused connection is told: the kick's code and name. */
async function refusal(url: string, tok: string): Promise<{ code: number; name: string; reason: string }> {
  const raw = await RawTcp.open(url);
  raw.sendJson({ kind: 'hello', data: { token: tok } });
  await raw.until((r) => r.closed);
  const kick = raw.json().find((f) => f.kind === 'kick');
  return kick?.data as { code: number; name: string; reason: string };
}

async function adminOf(gateway: Parameters<typeof startAdmin>[0]) {
  const admin = await startAdmin(gateway, { httpPort: 0, grpcPort: false, dashboard: false });
  admins.push(admin);
  const base = `http://127.0.0.1:${admin.http?.port}`;
  return async (path: string, method = 'GET', body?: unknown) => {
    const res = await fetch(`${base}${path}`, {
      method,
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };
}

describe('bans', () => {
  it('closes every connection of the user with banned (4508, no reconnect), refuses it until the ban ends', async () => {
    const { gateway, tcpUrl, wsUrl } = await startGateway({ validate: devValidator() });
    const api = await adminOf(gateway);
    const a = await client(tcpUrl, 'mallory');
    const b = await client(wsUrl, 'mallory');
    const other = await client(tcpUrl, 'alice');
    const r = await api('/v1/users/mallory/ban', 'POST', { duration: 1500, reason: 'spam' });
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ user: 'mallory', kicked: 2 });
    await expect.poll(() => a.closes.length + b.closes.length).toBe(2);
    for (const c of [a, b]) {
      expect(c.closes[0]).toMatchObject({ code: 4508, name: 'banned', willReconnect: false });
      expect(c.closes[0]?.reason).toMatch(/^banned until .*: spam$/);
    }
    expect(gateway.connectionsOf('alice')).toHaveLength(1);
    expect(other.closes).toHaveLength(0);
    // Refused at the handshake, and the user page says so.
    expect(await refusal(tcpUrl, 'mallory')).toMatchObject({ code: 4508, name: 'banned' });
    await expect(connect(wsUrl, { token: 'mallory', reconnect: false })).rejects.toThrow(/4508/);
    expect((await api('/v1/users/mallory')).body.banned).toMatchObject({ reason: 'spam' });
    expect(gateway.stats().authFailures).toBeGreaterThanOrEqual(2);
    // After the ban ends the user is welcome again.
    await new Promise((r) => setTimeout(r, 1600));
    const back = await client(tcpUrl, 'mallory');
    expect(back.welcome?.user).toBe('mallory');
    expect((await api('/v1/users/mallory')).body.banned).toBeUndefined();
  });

  it('an unban lets the user in at once; bad input is refused by field', async () => {
    const { gateway, tcpUrl } = await startGateway({ validate: devValidator() });
    const api = await adminOf(gateway);
    await api('/v1/users/bob/ban', 'POST', {});
    expect((await refusal(tcpUrl, 'bob')).code).toBe(4508);
    expect((await api('/v1/users/bob/ban', 'DELETE')).body).toEqual({ user: 'bob', unbanned: true });
    expect((await api('/v1/users/bob/ban', 'DELETE')).body).toEqual({ user: 'bob', unbanned: false });
    expect((await client(tcpUrl, 'bob')).welcome?.user).toBe('bob');
    const bad = await api('/v1/users/bob/ban', 'POST', { duration: -1 });
    expect(bad.status).toBe(400);
    expect((bad.body.error as { message: string }).message).toMatch(/^duration:/);
    expect((await api('/v1/users/bob/ban', 'POST', { until: 5 })).status).toBe(400);
  });

  it('a resume of a banned user is refused too (the session is not handed back)', async () => {
    const { gateway, tcpUrl } = await startGateway({ validate: devValidator(), resume: {} });
    const raw = await RawTcp.open(tcpUrl);
    raw.sendJson({ kind: 'hello', data: { token: 'eve' } });
    await raw.until((r) => r.frames.length >= 1);
    const session = (raw.json()[0]?.data as { session?: string } | undefined)?.session;
    raw.destroy();
    await expect.poll(() => gateway.stats().resumable).toBe(1);
    await gateway.ban('eve', { duration: 60_000 });
    const again = await RawTcp.open(tcpUrl);
    again.sendJson({ kind: 'hello', data: { token: 'eve', session } });
    await again.until((r) => r.closed);
    expect(again.json().map((f) => f.kind)).toEqual(['kick']);
    expect(again.json()[0]?.data).toMatchObject({ code: 4508 });
  });

  it('bounds the rules in force: one more is refused with 429', async () => {
    const { gateway } = await startGateway({ validate: devValidator(), maxDenials: 3 });
    const api = await adminOf(gateway);
    for (const u of ['a', 'b', 'c']) expect((await api(`/v1/users/${u}/ban`, 'POST', {})).status).toBe(200);
    const over = await api('/v1/users/d/ban', 'POST', {});
    expect(over.status).toBe(429);
    expect((over.body.error as { code: string }).code).toBe('TOO_MANY_REQUESTS');
    // A rule replaced does not count twice.
    expect((await api('/v1/users/a/ban', 'POST', { reason: 'again' })).status).toBe(200);
  });

  it('a ban kept in the SQLite store holds after a restart of the gateway', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pylon-bans-'));
    dirs.push(dir);
    const file = join(dir, 'pylon.db');
    const open = async () => {
      const store = await SqliteStore.open(file);
      const gateway = createGateway({
        tcp: { port: 0 },
        validate: devValidator(),
        store,
        logger: createLogger('silent'),
      });
      const addr = await gateway.listen();
      return { gateway, store, url: `tcp://127.0.0.1:${addr.tcp?.port}` };
    };
    const first = await open();
    await first.gateway.ban('trent', { duration: 60_000, reason: 'fraud' });
    await first.gateway.close();
    await first.store.close();
    const second = await open();
    try {
      expect(second.gateway.banned('trent')).toMatchObject({ reason: 'fraud' });
      expect(await refusal(second.url, 'trent')).toMatchObject({ code: 4508 });
      await second.gateway.unban('trent');
    } finally {
      await second.gateway.close();
      await second.store.close();
    }
    const third = await open();
    try {
      expect(third.gateway.banned('trent')).toBeUndefined();
    } finally {
      await third.gateway.close();
      await third.store.close();
    }
  });
});

describe('bans when the store fails', () => {
  it('a ban the store cannot keep fails with UNAVAILABLE and leaves the ban in force before', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pylon-bans-'));
    dirs.push(dir);
    const store = SqliteStore.open(join(dir, 'pylon.db'));
    const { gateway } = await startGateway({ validate: devValidator(), store });
    await gateway.ban('oscar', { duration: 3_600_000, reason: 'first' });
    await store.close(); // every later write fails
    await expect(gateway.ban('oscar', { duration: 1000, reason: 'second' })).rejects.toMatchObject({
      code: 'UNAVAILABLE',
    });
    await expect(gateway.ban('pete')).rejects.toMatchObject({ code: 'UNAVAILABLE' });
    expect(gateway.banned('oscar')).toMatchObject({ reason: 'first' });
    expect(gateway.banned('pete')).toBeUndefined();
  });
});

describe('token revocation', () => {
  it('by jti: the connections of that token are closed with token_revoked (4509), the token is refused, others are not', async () => {
    const { gateway, tcpUrl, wsUrl } = await startGateway({
      validate: await jwtValidator({ secret: SECRET }),
    });
    const api = await adminOf(gateway);
    const stolen = await token('carol', 'tok-1');
    const fresh = await token('carol', 'tok-2');
    const a = await client(tcpUrl, stolen);
    const b = await client(wsUrl, stolen);
    const c = await client(tcpUrl, fresh);
    const r = await api('/v1/revocations', 'POST', { jti: 'tok-1', duration: 60_000 });
    expect(r.body).toMatchObject({ jti: 'tok-1', closed: 2 });
    await expect.poll(() => a.closes.length + b.closes.length).toBe(2);
    expect(a.closes[0]).toMatchObject({ code: 4509, name: 'token_revoked', willReconnect: false });
    expect(c.closes).toHaveLength(0);
    expect(await refusal(tcpUrl, stolen)).toMatchObject({ code: 4509, name: 'token_revoked' });
    expect((await client(tcpUrl, fresh)).welcome?.user).toBe('carol');
  });

  it("by issue time: a user's tokens issued before the time are revoked, a token issued after is accepted", async () => {
    const { gateway, tcpUrl } = await startGateway({ validate: await jwtValidator({ secret: SECRET }) });
    const api = await adminOf(gateway);
    const old = await token('dave');
    const a = await client(tcpUrl, old);
    // The revocation covers tokens issued in earlier seconds than its own.
    await new Promise((res) => setTimeout(res, 1000 - (Date.now() % 1000) + 10));
    const someoneElse = await client(tcpUrl, await token('erin'));
    const r = await api('/v1/revocations', 'POST', { user: 'dave', reason: 'password changed' });
    expect(r.body).toMatchObject({ user: 'dave', closed: 1 });
    await expect.poll(() => a.closes.length).toBe(1);
    expect(a.closes[0]).toMatchObject({ code: 4509, reason: expect.stringMatching(/password changed$/) });
    expect(someoneElse.closes).toHaveLength(0);
    expect((await refusal(tcpUrl, old)).code).toBe(4509);
    // JWT iat has whole seconds, and so has the default "now": a token issued right after the revocation is accepted.
    expect((await client(tcpUrl, await token('dave'))).welcome?.user).toBe('dave');
    // A second revocation with an earlier time does not bring the old token back.
    await api('/v1/revocations', 'POST', {
      user: 'dave',
      issuedBefore: '2020-01-01T00:00:00Z',
      duration: 1000,
    });
    expect((await refusal(tcpUrl, old)).code).toBe(4509);
    const future = await api('/v1/revocations', 'POST', {
      user: 'dave',
      issuedBefore: Date.now() + 3_600_000,
    });
    expect((future.body.error as { message: string }).message).toBe(
      'issuedBefore: must not be in the future',
    );
    const bad = await api('/v1/revocations', 'POST', { jti: 'x', user: 'dave' });
    expect((bad.body.error as { message: string }).message).toBe('body: needs exactly one of jti, user');
  });
});

describe('per-user limits', () => {
  it('a user holds at most maxConnectionsPerUser connections: one more is closed with 4010, a slot freed is taken again', async () => {
    const { gateway, tcpUrl } = await startGateway({ validate: devValidator(), maxConnectionsPerUser: 2 });
    const a = await client(tcpUrl, 'frank');
    await client(tcpUrl, 'frank');
    expect(await refusal(tcpUrl, 'frank')).toMatchObject({ code: 4010, name: 'too_many_user_connections' });
    expect((await client(tcpUrl, 'grace')).welcome?.user).toBe('grace');
    await a.close();
    await expect.poll(() => gateway.connectionsOf('frank').length).toBe(1);
    expect((await client(tcpUrl, 'frank')).welcome?.user).toBe('frank');
    expect(gateway.connectionsOf('frank')).toHaveLength(2);
  });

  it("the frames of all a user's connections share one bucket: over it the sending connection is closed with rate_limited", async () => {
    const { gateway, tcpUrl } = await startGateway({
      validate: devValidator(),
      userRateLimit: { rate: 1, burst: 20 },
    });
    gateway.handle('note', () => {});
    const a = await client(tcpUrl, 'heidi');
    const b = await client(tcpUrl, 'heidi');
    const other = await client(tcpUrl, 'ivan');
    // 15 + 15 frames: each connection is well under its own limit (1000/s), the user is over 20.
    for (let i = 0; i < 15; i++) {
      a.send('note', i);
      b.send('note', i);
      other.send('note', i);
    }
    await expect.poll(() => a.closes.length + b.closes.length).toBeGreaterThanOrEqual(1);
    const closed = [...a.closes, ...b.closes][0];
    expect(closed).toMatchObject({ code: 4006, name: 'rate_limited' });
    expect(closed?.reason).toMatch(/user's connections sent more than 1 frames\/s/);
    expect(other.closes).toHaveLength(0);
  });
});

describe('GET /v1/connections', () => {
  it('lists open connections with filters by user, label, transport and address, a page at a time', async () => {
    const { gateway, tcpUrl, wsUrl } = await startGateway({ validate: devValidator() });
    const api = await adminOf(gateway);
    for (let i = 0; i < 5; i++) await client(tcpUrl, `u${i}`);
    const w = await client(wsUrl, 'u0');
    const [wsConn] = gateway.connectionsOf('u0').filter((c) => c.transport === 'ws');
    wsConn?.join('room:1');
    const all = await api('/v1/connections');
    const ids = (all.body.connections as Array<{ id: string }>).map((c) => c.id);
    expect(ids).toHaveLength(6);
    expect(all.body.node).toBe(gateway.nodeId);
    expect(all.body.connections).toContainEqual(
      expect.objectContaining({
        user: 'u0',
        transport: 'ws',
        codec: 'json',
        labels: ['room:1'],
        buffered: 0,
      }),
    );
    // Pages of 2 walk the same list in the same order.
    const walked: string[] = [];
    let after: string | undefined;
    do {
      const p = await api(`/v1/connections?limit=2${after ? `&after=${after}` : ''}`);
      walked.push(...(p.body.connections as Array<{ id: string }>).map((c) => c.id));
      after = p.body.next as string | undefined;
    } while (after !== undefined);
    expect(walked).toEqual(ids);
    const count = async (q: string) =>
      ((await api(`/v1/connections?${q}`)).body.connections as unknown[]).length;
    expect(await count('user=u0')).toBe(2);
    expect(await count('user=u0&transport=tcp')).toBe(1);
    expect(await count('label=room:1')).toBe(1);
    expect(await count('transport=ws')).toBe(1);
    expect(await count('address=127.0.0.0/8')).toBe(6);
    expect(await count('address=10.0.0.1')).toBe(0);
    const bad = await api('/v1/connections?address=nonsense');
    expect((bad.body.error as { message: string }).message).toMatch(/^address:/);
    expect((await api('/v1/connections?transport=udp')).status).toBe(400);
    expect((await api('/v1/connections?after=zz')).status).toBe(400);
    await w.close();
  });
});

describe('bans in the store', () => {
  const rules = async (log: DenialLog) => (await log.list()).map(denialKey).sort();
  const check = async (log: DenialLog) => {
    const v0 = await log.version();
    const now = Date.now();
    await log.put({ kind: 'ban', user: 'u1', until: now + 60_000, at: now, reason: 'r' });
    await log.put({ kind: 'jti', jti: 't1', until: now + 60_000, at: now });
    await log.put({ kind: 'before', user: 'u2', before: now, until: now + 60_000, at: now });
    await log.put({ kind: 'ban', user: 'gone', until: now + 50, at: now });
    const v1 = await log.version();
    expect(v1).not.toBe(v0);
    expect(await rules(log)).toEqual(['ban:gone', 'ban:u1', 'before:u2', 'jti:t1']);
    await new Promise((r) => setTimeout(r, 80));
    expect(await rules(log)).toEqual(['ban:u1', 'before:u2', 'jti:t1']);
    await log.put({ kind: 'ban', user: 'u1', until: now + 60_000, at: now + 1, reason: 'replaced' });
    expect((await log.list()).find((d) => denialKey(d) === 'ban:u1')).toMatchObject({ reason: 'replaced' });
    await log.remove('jti:t1');
    expect(await log.version()).not.toBe(v1);
    expect(await rules(log)).toEqual(['ban:u1', 'before:u2']);
  };

  it('SQLite keeps rules, replaces by key, forgets ended ones, and changes its version on each change', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pylon-bans-'));
    dirs.push(dir);
    const store = SqliteStore.open(join(dir, 'pylon.db'));
    try {
      await check(store.denials);
    } finally {
      await store.close();
    }
  });

  it('Redis does the same', async () => {
    const redis = await startRedis();
    const store = await RedisStore.connect(redis.url, { prefix: 'bans:' });
    try {
      await check(store.denials);
    } finally {
      await store.close();
      await redis.stop();
    }
  });
});

describe('bans in the Redis store at scale', () => {
  it('a put among many rules deletes only ended ones and merges issued-before rules in the store', async () => {
    const redis = await startRedis();
    const store = await RedisStore.connect(redis.url, { prefix: 'bans2:' });
    try {
      const log = store.denials;
      const now = Date.now();
      await log.put({ kind: 'before', user: 'u', before: now, until: now + 60_000, at: now });
      // Another gateway's earlier time and shorter end do not shorten what the store keeps.
      await log.put({ kind: 'before', user: 'u', before: now - 10_000, until: now + 1000, at: now + 1 });
      const [rule] = (await log.list()).filter((d) => d.kind === 'before');
      expect(rule).toMatchObject({ before: now, until: now + 60_000 });
      await log.put({ kind: 'ban', user: 'short', until: now + 30, at: now });
      await new Promise((r) => setTimeout(r, 50));
      await log.put({ kind: 'ban', user: 'long', until: now + 60_000, at: now });
      const raw = await store.redis.hkeys('bans2:{denials}');
      expect(raw.sort()).toEqual(['ban:long', 'before:u']);
    } finally {
      await store.close();
      await redis.stop();
    }
  });
});
