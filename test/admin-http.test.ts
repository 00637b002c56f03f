import { afterEach, describe, expect, it } from 'vitest';
import { type AdminServer, startAdmin } from '../src/api/index.js';
import { connect, type PylonClient } from '../src/client/index.js';
import { type Gateway, MemoryStore, type NewMessage } from '../src/index.js';
import { startGateway, stopAll } from './support/gateway.js';

const KEY = 'test-admin-key-0123456789';
const admins: AdminServer[] = [];
const clients: PylonClient[] = [];

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await Promise.all(admins.splice(0).map((a) => a.close()));
  await stopAll();
});

/** Tokens are `user:label,label`. */
const validate = (token: unknown) => {
  const [user, labels] = String(token).split(':');
  return { user: user as string, labels: labels ? labels.split(',') : [] };
};

async function setup(options: { openHealth?: boolean; maxBody?: number; store?: MemoryStore } = {}) {
  const { store, ...adminOptions } = options;
  const { gateway, tcpUrl, wsUrl } = await startGateway(store ? { validate, store } : { validate });
  const admin = await startAdmin(gateway, { httpPort: 0, grpcPort: false, keys: [KEY], ...adminOptions });
  admins.push(admin);
  const base = `http://127.0.0.1:${admin.http.port}`;
  const call = async (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) => {
    const init: RequestInit = { method, headers: { authorization: `Bearer ${KEY}`, ...headers } };
    if (body !== undefined) {
      init.body = typeof body === 'string' ? body : JSON.stringify(body);
      (init.headers as Record<string, string>)['content-type'] ??= 'application/json';
    }
    const res = await fetch(base + path, init);
    const text = await res.text();
    return { status: res.status, headers: res.headers, text, json: text ? JSON.parse(text) : undefined };
  };
  return { gateway, tcpUrl, wsUrl, admin, base, call };
}

interface Got {
  type: string;
  data: unknown;
  qos: number;
  seq: number | undefined;
}

async function client(url: string, token: string): Promise<{ c: PylonClient; got: Got[] }> {
  const c = await connect(url, { token, reconnect: false });
  clients.push(c);
  const got: Got[] = [];
  c.on('*', (data, meta) => {
    got.push({ type: meta.type, data, qos: meta.qos, seq: meta.seq });
  });
  return { c, got };
}

async function until(check: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`condition not met in ${ms} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const types = (got: Got[]) => got.map((g) => g.type);

describe('admin HTTP API', () => {
  it('accepts a push with an Idempotency-Key (header or body) once and answers a repeat with the first result', async () => {
    const { tcpUrl, call } = await setup();
    const ann = await client(tcpUrl, 'ann');
    const body = { to: { user: 'ann' }, type: 'order', data: { n: 17 }, qos: 1 };
    const first = await call('POST', '/v1/push', body, { 'idempotency-key': 'order-17' });
    expect(first.json).toEqual({ id: expect.any(String), targeted: 1, stored: 1 });
    const again = await call('POST', '/v1/push', { ...body, idempotencyKey: 'order-17' });
    expect(again.json).toEqual({ id: first.json.id, targeted: 1, stored: 1, duplicate: true });
    const clash = await call(
      'POST',
      '/v1/push',
      { ...body, idempotencyKey: 'a' },
      { 'idempotency-key': 'b' },
    );
    expect(clash.status).toBe(400);
    expect(clash.json.error.message).toMatch(/Idempotency-Key/);
    await until(() => ann.got.length >= 1);
    await new Promise((r) => setTimeout(r, 100));
    expect(types(ann.got)).toEqual(['order']);
  });

  it('a qos-1 push that failed after its store write, retried with its Idempotency-Key: stored and delivered once', async () => {
    // A store that applies a write and then cannot confirm it (as the Redis store does when WAIT
    // finds too few replicas during a failover): the push fails although the message is stored.
    class Unconfirmed extends MemoryStore {
      failNext = true;
      override async append(users: readonly string[], m: NewMessage): Promise<number[]> {
        const seqs = await super.append(users, m);
        if (this.failNext) {
          this.failNext = false;
          throw new Error('append stored but not confirmed');
        }
        return seqs;
      }
    }
    const store = new Unconfirmed();
    const { tcpUrl, call } = await setup({ store });
    const ann = await client(tcpUrl, 'ann');
    const body = { to: { user: 'ann' }, type: 'order', data: { n: 18 }, qos: 1 };
    const first = await call('POST', '/v1/push', body, { 'idempotency-key': 'order-18' });
    expect(first.status).toBe(500);
    const retry = await call('POST', '/v1/push', body, { 'idempotency-key': 'order-18' });
    expect(retry.status).toBe(200);
    expect(retry.json).toMatchObject({ targeted: 1, stored: 1 });
    await until(() => ann.got.length >= 1);
    await new Promise((r) => setTimeout(r, 300));
    expect(types(ann.got)).toEqual(['order']);
    expect(await store.lastSeq('ann')).toBe(1);
  });

  it('pushes to users, a connection, labels (all/any/not), everyone, with variants, and qos 1', async () => {
    const { tcpUrl, wsUrl, call } = await setup();
    const ann = await client(tcpUrl, 'ann:room1,v1');
    const bo = await client(wsUrl, 'bo:room1,room2,v2');
    const cy = await client(tcpUrl, 'cy:room2,muted');

    let r = await call('POST', '/v1/push', { to: { user: 'ann' }, type: 'one', data: { n: 1 } });
    expect(r.status).toBe(200);
    expect(r.json).toEqual({ id: expect.any(String), targeted: 1 });
    r = await call('POST', '/v1/push', { to: { users: ['bo', 'cy'] }, type: 'two', data: 2 });
    expect(r.json.targeted).toBe(2);
    r = await call('POST', '/v1/push', { to: { connection: bo.c.welcome?.connection }, type: 'conn' });
    expect(r.json.targeted).toBe(1);
    r = await call('POST', '/v1/push', { to: { labels: { all: ['room1', 'room2'] } }, type: 'all' });
    expect(r.json.targeted).toBe(1);
    r = await call('POST', '/v1/push', {
      to: { labels: { any: ['room1', 'room2'], not: ['muted'] } },
      type: 'any',
    });
    expect(r.json.targeted).toBe(2);
    r = await call('POST', '/v1/push', { to: { labels: { not: ['room1'] } }, type: 'not' });
    expect(r.json.targeted).toBe(1);
    r = await call('POST', '/v1/push', {
      to: { all: true },
      type: 'news',
      data: 'plain',
      variants: { v1: { old: true }, v2: { new: true } },
      rate: 1000,
    });
    expect(r.json.targeted).toBe(3);

    await until(() => ann.got.length >= 3 && bo.got.length >= 5 && cy.got.length >= 3);
    expect(types(ann.got)).toEqual(['one', 'any', 'news']);
    expect(types(bo.got)).toEqual(['two', 'conn', 'all', 'any', 'news']);
    expect(types(cy.got)).toEqual(['two', 'not', 'news']);
    expect(ann.got[0]?.data).toEqual({ n: 1 });
    expect(ann.got.at(-1)?.data).toEqual({ old: true });
    expect(bo.got.at(-1)?.data).toEqual({ new: true });
    expect(cy.got.at(-1)?.data).toBe('plain');

    // qos 1 to an offline user: stored, delivered when she connects.
    r = await call('POST', '/v1/push', {
      to: { user: 'dora' },
      type: 'order',
      data: { id: 7 },
      qos: 1,
      ttl: 60_000,
    });
    expect(r.json).toEqual({ id: expect.any(String), targeted: 0, stored: 1 });
    const dora = await client(tcpUrl, 'dora:');
    await until(() => dora.got.length === 1);
    expect(dora.got[0]).toMatchObject({ type: 'order', data: { id: 7 }, qos: 1, seq: 1 });
  });

  it('kicks, describes users, changes labels and pages labels', async () => {
    const { gateway, tcpUrl, wsUrl, call } = await setup();
    const ann1 = await client(tcpUrl, 'ann:a,b');
    await client(wsUrl, 'ann:c');
    const bo = await client(tcpUrl, 'bo:a');
    const cy = await client(tcpUrl, 'cy:z');

    const stats = await call('GET', '/v1/stats');
    expect(stats.status).toBe(200);
    expect(stats.json).toMatchObject({ connections: 4, users: 3, labels: 4, node: expect.any(String) });
    expect(stats.json.uptime).toBeGreaterThan(0);
    expect(stats.json.nodes).toHaveLength(1);
    expect(stats.json.nodes[0]).toMatchObject({ node: stats.json.node, connections: 4, qos1: { stored: 0 } });

    const user = await call('GET', '/v1/users/ann');
    expect(user.json.online).toBe(true);
    expect(
      user.json.connections.map((c: { transport: string; labels: string[] }) => [c.transport, c.labels]),
    ).toEqual([
      ['tcp', ['a', 'b']],
      ['ws', ['c']],
    ]);
    expect((await call('GET', '/v1/users/nobody')).json).toEqual({
      user: 'nobody',
      online: false,
      connections: [],
    });

    const changed = await call('POST', '/v1/users/ann/labels', { add: ['vip'], remove: ['a'] });
    expect(changed.json).toEqual({ connections: 2 });
    expect(gateway.labelCounts().get('vip')).toBe(2);
    const vip = await call('POST', '/v1/push', { to: { labels: { all: ['vip'] } }, type: 'vip' });
    expect(vip.json.targeted).toBe(2);
    await until(() => ann1.got.length === 1);

    let page = await call('GET', '/v1/labels?limit=2');
    expect(page.json).toEqual({
      labels: [
        { label: 'a', count: 1 },
        { label: 'b', count: 1 },
      ],
      next: 'b',
    });
    page = await call('GET', '/v1/labels?after=b&limit=10');
    expect(page.json.labels.map((l: { label: string }) => l.label)).toEqual(['c', 'vip', 'z']);
    const members = await call('GET', '/v1/labels/vip?limit=1');
    expect(members.json).toMatchObject({ label: 'vip', count: 2, members: [{ user: 'ann' }] });
    const rest = await call('GET', `/v1/labels/vip?after=${encodeURIComponent(members.json.next)}`);
    expect(rest.json.members).toHaveLength(1);
    expect(rest.json.next).toBeUndefined();
    // A label with a slash, URL-encoded in the path.
    await call('POST', '/v1/users/cy/labels', { add: ['a/b'] });
    expect((await call('GET', '/v1/labels/a%2Fb')).json).toMatchObject({ label: 'a/b', count: 1 });

    const closed = new Promise<number>((resolve) => bo.c.on('close', (e) => resolve(e.code)));
    expect((await call('POST', '/v1/kick', { user: 'bo', reason: 'bye' })).json).toEqual({ kicked: 1 });
    expect(await closed).toBe(4503);
    const cyClosed = new Promise<number>((resolve) => cy.c.on('close', (e) => resolve(e.code)));
    const kicked = await call('POST', '/v1/kick', { connection: cy.c.welcome?.connection });
    expect(kicked.json).toEqual({ kicked: 1 });
    expect(await cyClosed).toBe(4503);
    expect((await call('POST', '/v1/kick', { user: 'nobody' })).json).toEqual({ kicked: 0 });
  });

  it('needs a valid key; healthz, metrics and openapi may be left open', async () => {
    const { base, call } = await setup();
    for (const [method, path] of [
      ['GET', '/v1/stats'],
      ['POST', '/v1/push'],
      ['GET', '/healthz'],
      ['GET', '/metrics'],
      ['POST', '/v1/debug/cpu-profile?seconds=1'],
    ] as const) {
      const none = await fetch(base + path, { method });
      expect(none.status).toBe(401);
      expect(await none.json()).toEqual({ error: { code: 'UNAUTHORIZED', message: expect.any(String) } });
      const wrong = await fetch(base + path, { method, headers: { authorization: `Bearer ${KEY}x` } });
      expect(wrong.status).toBe(401);
    }
    expect((await call('GET', '/healthz')).json).toEqual({ ok: true });

    const open = await setup({ openHealth: true });
    expect((await fetch(`${open.base}/healthz`)).status).toBe(200);
    expect((await fetch(`${open.base}/metrics`)).status).toBe(200);
    expect((await fetch(`${open.base}/openapi.json`)).status).toBe(200);
    expect((await fetch(`${open.base}/v1/stats`)).status).toBe(401);
  });

  it('refuses malformed input with 400 naming the field, 404, 405, 413, 415', async () => {
    const { call } = await setup({ maxBody: 4096 });
    const bad = async (method: string, path: string, body: unknown, message: string | RegExp) => {
      const r = await call(method, path, body);
      expect(r.status, JSON.stringify(r.json)).toBe(400);
      expect(r.json.error.code).toBe('BAD_REQUEST');
      expect(r.json.error.message).toMatch(message);
    };
    await bad('POST', '/v1/push', '{"to": ', 'body: invalid JSON');
    await bad('POST', '/v1/push', [1], 'body: must be a JSON object');
    await bad(
      'POST',
      '/v1/push',
      { to: { labels: { all: 'room1' } }, type: 'x' },
      'to.labels.all: must be an array of strings',
    );
    await bad(
      'POST',
      '/v1/push',
      { to: { labels: { any: ['ok', 3] } }, type: 'x' },
      'to.labels.any[1]: must be a non-empty string',
    );
    await bad('POST', '/v1/push', { to: { user: 'a', all: true }, type: 'x' }, /^to: must have exactly one/);
    await bad('POST', '/v1/push', { to: { all: true } }, 'type: must be a non-empty string');
    await bad('POST', '/v1/push', { to: { all: true }, type: 'x', qos: 2 }, 'qos: must be 0 or 1');
    await bad('POST', '/v1/push', { to: { all: true }, type: 'x', rate: -1 }, /^rate: /);
    await bad('POST', '/v1/push', { to: { all: true }, type: 'x', ttl: 5 }, 'ttl: only for qos 1');
    await bad(
      'POST',
      '/v1/push',
      { to: { all: true }, type: 'x', qos: 1, variants: {} },
      'variants: only for qos 0',
    );
    await bad('POST', '/v1/push', { to: { all: true }, type: 'x', tpye: 'y' }, 'tpye: unknown field');
    await bad('POST', '/v1/kick', { reason: 'x' }, 'body: needs exactly one of user, connection');
    await bad('POST', '/v1/kick', { user: 7 }, 'user: must be a non-empty string');
    await bad('POST', '/v1/users/ann/labels', { add: 'vip' }, 'add: must be an array of labels');
    await bad('POST', '/v1/users/ann/labels', { remove: [''] }, /^remove\[0\]: /);
    await bad('POST', '/v1/users/ann/labels', { user: 'bo' }, /^user: unknown field/);
    await bad('GET', '/v1/labels?limit=abc', undefined, 'limit: must be an integer from 1 to 1000');
    await bad('GET', '/v1/labels/x?limit=0', undefined, 'limit: must be an integer from 1 to 1000');
    await bad('GET', '/v1/users/%E0%A4%A', undefined, 'id: not valid URL encoding');
    await bad(
      'POST',
      '/v1/debug/cpu-profile?seconds=61',
      undefined,
      'seconds: must be an integer from 1 to 60',
    );

    const typeless = await call('POST', '/v1/push', 'to=x', {
      'content-type': 'application/x-www-form-urlencoded',
    });
    expect(typeless.status).toBe(415);
    expect(typeless.json.error.message).toMatch(/content-type/);
    const big = await call('POST', '/v1/push', { to: { all: true }, type: 'x', data: 'y'.repeat(5000) });
    expect(big.status).toBe(413);
    expect(big.json.error.code).toBe('PAYLOAD_TOO_LARGE');
    // A chunked body (no content-length) over the limit too.
    const stream = new ReadableStream({
      start(controller) {
        for (let i = 0; i < 10; i++) controller.enqueue(new TextEncoder().encode('x'.repeat(1000)));
        controller.close();
      },
    });
    const chunked = await fetch(`http://127.0.0.1:${admins.at(-1)?.http.port}/v1/push`, {
      method: 'POST',
      headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
      body: stream,
      duplex: 'half',
    } as RequestInit);
    expect(chunked.status).toBe(413);

    const missing = await call('GET', '/v1/nope');
    expect(missing.status).toBe(404);
    expect(missing.json.error.code).toBe('NOT_FOUND');
    const method = await call('DELETE', '/v1/push');
    expect(method.status).toBe(405);
    expect(method.headers.get('allow')).toBe('POST');
    expect(method.json.error.code).toBe('METHOD_NOT_ALLOWED');
  });

  it('hands unmatched requests to a fallback (the dashboard later)', async () => {
    const { gateway } = await startGateway({ validate });
    const admin = await startAdmin(gateway as Gateway, {
      httpPort: 0,
      grpcPort: false,
      fallback: (req, res) => {
        if (req.url !== '/index.html') return false;
        res.writeHead(200, { 'content-type': 'text/html' });
        res.end('<h1>pylon</h1>');
        return true;
      },
    });
    admins.push(admin);
    const base = `http://127.0.0.1:${admin.http.port}`;
    expect(await (await fetch(`${base}/index.html`)).text()).toBe('<h1>pylon</h1>');
    expect((await fetch(`${base}/other`)).status).toBe(404);
    // Without keys (loopback only) the API is open.
    expect((await fetch(`${base}/v1/stats`)).status).toBe(200);
  });
});
