import { createHmac } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { type WebhookOptions, Webhooks } from '../src/api/webhooks.js';
import { connect, type PylonClient } from '../src/client/index.js';
import type { Logger, Validator } from '../src/index.js';
import { startGateway, stopAll } from './support/gateway.js';

/** One call the business received. */
interface Hit {
  path: string;
  headers: IncomingHttpHeaders;
  raw: string;
  // biome-ignore lint/suspicious/noExplicitAny: JSON bodies checked field by field
  body: any;
  at: number;
}
/** Answers a hit (or not: the call hangs). */
type Respond = (hit: Hit, res: ServerResponse) => void;

const servers = new Set<Server>();
const hooks = new Set<Webhooks>();

afterEach(async () => {
  await Promise.all([...hooks].map((h) => h.close()));
  hooks.clear();
  await stopAll();
  for (const s of servers) {
    s.closeAllConnections();
    s.close();
  }
  servers.clear();
});

const json = (status: number, value?: unknown): Respond => {
  return (_hit, res) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(value === undefined ? '' : JSON.stringify(value));
  };
};
const hang: Respond = () => {};

/** A business HTTP server on a free port that records every call. */
async function business(respond: Respond = json(200, { ok: true })) {
  const hits: Hit[] = [];
  const server = createServer((req, res) => {
    let raw = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => {
      raw += c;
    });
    req.on('end', () => {
      const hit = { path: req.url ?? '', headers: req.headers, raw, body: JSON.parse(raw), at: Date.now() };
      hits.push(hit);
      respond(hit, res);
    });
  });
  servers.add(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { url, hits, on: (path: string) => hits.filter((h) => h.path === path) };
}

const validate: Validator = (token) => (token ? { user: token, labels: ['room_1'] } : null);

async function setup(options: WebhookOptions, logger?: Logger) {
  const { gateway, tcpUrl, wsUrl } = await startGateway(logger ? { validate, logger } : { validate });
  const webhooks = new Webhooks(gateway, options).start();
  hooks.add(webhooks);
  return { gateway, tcpUrl, wsUrl, webhooks };
}

function client(url: string, user: string): Promise<PylonClient> {
  return connect(url, { token: user, reconnect: false });
}

async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`condition not met in ${ms} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

function captureLogger() {
  const lines: Array<{ level: string; obj: Record<string, unknown>; msg: string | undefined }> = [];
  const at = (level: string) => (obj: object, msg?: string) => {
    lines.push({ level, obj: obj as Record<string, unknown>, msg });
  };
  const logger: Logger = { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
  return { logger, lines };
}

describe('webhooks', () => {
  it('posts connect and disconnect with the connection, user, labels and close code', async () => {
    const biz = await business();
    const { gateway, tcpUrl, wsUrl } = await setup({ connect: `${biz.url}/c`, disconnect: `${biz.url}/d` });
    const alice = await client(tcpUrl, 'alice');
    const bob = await client(wsUrl, 'bob');
    await until(() => biz.on('/c').length === 2);
    const byUser = (path: string, user: string) => biz.on(path).find((h) => h.body.user === user)?.body;
    expect(byUser('/c', 'alice')).toMatchObject({
      event: 'connect',
      connection: alice.welcome?.connection,
      transport: 'tcp',
      labels: ['room_1'],
    });
    expect(byUser('/c', 'bob')).toMatchObject({ connection: bob.welcome?.connection, transport: 'ws' });
    expect(byUser('/c', 'alice').remoteAddress).toMatch(/127\.0\.0\.1/);
    expect(Number.isNaN(Date.parse(byUser('/c', 'alice').at))).toBe(false);
    const headers = biz.hits[0]?.headers ?? {};
    expect(headers['content-type']).toBe('application/json');
    expect(headers['x-pylon-delivery']).toMatch(/\S/);
    expect(headers['x-pylon-signature']).toBeUndefined();

    gateway.kick({ user: 'bob' }, 'bye bob');
    await alice.close();
    await until(() => biz.on('/d').length === 2);
    expect(byUser('/d', 'alice')).toMatchObject({ event: 'disconnect', code: 1000, name: 'normal' });
    expect(byUser('/d', 'bob')).toMatchObject({
      connection: bob.welcome?.connection,
      code: 4503,
      name: 'kicked',
      reason: 'bye bob',
    });
  });

  it('answers an upstream request with the business reply, and forwards one-way messages', async () => {
    const biz = await business((hit, res) => {
      if (hit.body.type === 'order.create') json(200, { id: 7, got: hit.body.data })(hit, res);
      else json(204)(hit, res);
    });
    const { gateway, tcpUrl, webhooks } = await setup({
      upstream: { url: `${biz.url}/up`, types: ['order.create', 'order.touch', 'chat.say'] },
    });
    const alice = await client(tcpUrl, 'alice');
    await expect(alice.request('order.create', { item: 'tea' })).resolves.toEqual({
      id: 7,
      got: { item: 'tea' },
    });
    await expect(alice.request('order.touch')).resolves.toBeUndefined();
    expect(biz.hits[0]?.body).toMatchObject({
      event: 'message',
      type: 'order.create',
      connection: alice.welcome?.connection,
      user: 'alice',
      kind: 'req',
      data: { item: 'tea' },
    });

    const out = gateway.stats().messagesOut;
    alice.send('chat.say', { text: 'hi' });
    await until(() => webhooks.stats().sent === 3);
    expect(biz.hits[2]?.body).toMatchObject({
      type: 'chat.say',
      kind: 'msg',
      user: 'alice',
      data: { text: 'hi' },
    });
    expect(gateway.stats().messagesOut).toBe(out); // nothing went back to the client
  });

  it("turns the business's error reply, a bare 500 and a timeout into error codes", async () => {
    const biz = await business((hit, res) => {
      const t = hit.body.type;
      if (t === 'deny') json(403, { error: { code: 'FORBIDDEN', message: 'not your order' } })(hit, res);
      else if (t === 'busy') json(503, { error: { code: 'MAINTENANCE', message: 'back at 3' } })(hit, res);
      else if (t === 'crash') json(500)(hit, res);
    });
    const { tcpUrl, webhooks } = await setup({
      upstream: { url: biz.url, types: ['deny', 'busy', 'crash', 'hang'], timeoutMs: 200 },
    });
    const alice = await client(tcpUrl, 'alice');
    await expect(alice.request('deny')).rejects.toMatchObject({
      code: 'FORBIDDEN',
      message: 'not your order',
    });
    await expect(alice.request('busy')).rejects.toMatchObject({ code: 'MAINTENANCE', message: 'back at 3' });
    await expect(alice.request('crash')).rejects.toMatchObject({ code: 'UNAVAILABLE' });
    await expect(alice.request('hang')).rejects.toMatchObject({ code: 'UNAVAILABLE' });
    expect(biz.hits.length).toBe(4); // not idempotent: no retry
    expect(webhooks.stats()).toMatchObject({ sent: 2, failed: 2, retried: 0, inFlight: 0 });
  });

  it('retries events on 500 with backoff on the wheel until they succeed, and idempotent requests', async () => {
    const biz = await business((hit, res) => {
      const tries = biz.hits.filter((h) => h.path === hit.path).length;
      json(tries <= 2 ? 500 : 200, { tries })(hit, res);
    });
    const { tcpUrl, webhooks } = await setup({
      connect: `${biz.url}/c`,
      upstream: { url: `${biz.url}/up`, types: ['get'], idempotent: ['get'] },
      backoffMs: 40,
      random: () => 0, // delays of exactly half the backoff: 20, then 40 ms
    });
    const alice = await client(tcpUrl, 'alice');
    await until(() => webhooks.stats().sent === 1);
    const calls = biz.on('/c');
    expect(calls.length).toBe(3);
    expect(new Set(calls.map((c) => c.headers['x-pylon-delivery'])).size).toBe(1);
    expect(calls[1]!.at - calls[0]!.at).toBeGreaterThanOrEqual(15);
    expect(calls[2]!.at - calls[1]!.at).toBeGreaterThanOrEqual(35);
    expect(webhooks.stats()).toMatchObject({ sent: 1, retried: 2, failed: 0, queued: 0 });

    await expect(alice.request('get')).resolves.toEqual({ tries: 3 });
    expect(biz.on('/up').length).toBe(3);
  });

  it('gives up after the retries, counting and logging failures at most once per endpoint', async () => {
    const biz = await business(json(500));
    const { logger, lines } = captureLogger();
    const { tcpUrl, webhooks } = await setup({ connect: biz.url, retries: 2, backoffMs: 5 }, logger);
    await Promise.all(Array.from({ length: 5 }, (_, i) => client(tcpUrl, `u${i}`)));
    await until(() => webhooks.stats().failed === 5);
    expect(biz.hits.length).toBe(15);
    expect(webhooks.stats()).toMatchObject({ sent: 0, retried: 10, queued: 0, inFlight: 0 });
    const warns = lines.filter((l) => l.level === 'warn');
    expect(warns.length).toBe(1); // 15 failed calls, one line (the next one, 10 s later, would count them)
    expect(warns[0]?.obj).toMatchObject({ endpoint: 'connect', status: 500, count: 1 });
  });

  it('keeps pushing and answering while one endpoint fails and another hangs; the queue stays bounded', async () => {
    const failing = await business(json(500));
    const hanging = await business(hang);
    const { logger, lines } = captureLogger();
    const { gateway, tcpUrl, webhooks } = await setup(
      {
        connect: failing.url,
        disconnect: hanging.url,
        upstream: { url: hanging.url, types: ['log', 'slow'], timeoutMs: 300 },
        queueSize: 100,
        backoffMs: 20,
      },
      logger,
    );
    gateway.handle('ping', (data) => ({ pong: data }));
    const clients = await Promise.all(Array.from({ length: 200 }, (_, i) => client(tcpUrl, `u${i}`)));
    const received = clients.map(() => 0);
    clients.forEach((c, i) => {
      c.on('news', () => {
        received[i]!++;
      });
    });
    const slow = clients[0]!.request('slow').catch((e: { code: string }) => e.code);
    for (const c of clients) for (let k = 0; k < 5; k++) c.send('log', { k });
    for (let round = 0; round < 10; round++) {
      const r = await gateway.push({ all: true }, 'news', { round });
      expect(r.targeted).toBe(200);
      await expect(r.done).resolves.toMatchObject({ delivered: 200, dropped: 0 });
    }
    const pings = await Promise.all(clients.slice(0, 50).map((c, i) => c.request('ping', i)));
    expect(pings).toEqual(Array.from({ length: 50 }, (_, i) => ({ pong: i })));
    await until(() => received.every((n) => n === 10));
    // 1000 one-way messages into a queue of 100 and 8 senders: at least 892 dropped once all arrived.
    await until(() => webhooks.stats().dropped >= 892);
    await expect(slow).resolves.toBe('UNAVAILABLE');

    const s = webhooks.stats();
    expect(s.queued).toBeLessThanOrEqual(100);
    expect(s.inFlight).toBeLessThanOrEqual(8 + 1);
    expect(s.sent).toBe(0);
    expect(hanging.hits.length).toBeGreaterThan(0);
    const perEndpoint = new Map<unknown, number>();
    for (const l of lines.filter((x) => x.level === 'warn')) {
      perEndpoint.set(l.obj.endpoint, (perEndpoint.get(l.obj.endpoint) ?? 0) + 1);
    }
    for (const n of perEndpoint.values()) expect(n).toBe(1);
  });

  it('drops the oldest events when the queue is full, and counts them', async () => {
    const hanging = await business(hang);
    const { tcpUrl, webhooks } = await setup({
      upstream: { url: hanging.url, types: ['log'] },
      concurrency: 2,
      queueSize: 10,
    });
    const alice = await client(tcpUrl, 'alice');
    for (let k = 0; k < 100; k++) alice.send('log', { k });
    await until(() => webhooks.stats().dropped === 88);
    expect(webhooks.stats()).toMatchObject({ inFlight: 2, queued: 10, dropped: 88, sent: 0 });
    await webhooks.close();
    expect(webhooks.stats()).toMatchObject({ inFlight: 0, queued: 0, dropped: 100 });
  });

  it('close(drainMs) delivers what is queued before closing', async () => {
    const biz = await business((hit, res) => setTimeout(() => json(200)(hit, res), 20));
    const { tcpUrl, webhooks } = await setup({ upstream: { url: biz.url, types: ['log'] }, concurrency: 1 });
    const alice = await client(tcpUrl, 'alice');
    for (let k = 0; k < 5; k++) alice.send('log', { k });
    await until(() => webhooks.stats().sent + webhooks.stats().queued + webhooks.stats().inFlight === 5);
    await webhooks.close(5000);
    expect(webhooks.stats()).toMatchObject({ sent: 5, dropped: 0, queued: 0 });
    expect(biz.hits.map((h) => h.body.data.k)).toEqual([0, 1, 2, 3, 4]);
  });

  it('signs the body with the shared secret', async () => {
    const biz = await business();
    const { tcpUrl } = await setup({
      connect: biz.url,
      secret: 'topsecret',
      headers: { 'x-app': 'pylon-test' },
    });
    await client(tcpUrl, 'alice');
    await until(() => biz.hits.length === 1);
    const hit = biz.hits[0]!;
    const expected = `sha256=${createHmac('sha256', 'topsecret').update(hit.raw).digest('hex')}`;
    expect(hit.headers['x-pylon-signature']).toBe(expected);
    const ts = Number(hit.headers['x-pylon-timestamp']);
    expect(Math.abs(ts - Date.now() / 1000)).toBeLessThan(60);
    expect(hit.headers['x-app']).toBe('pylon-test');
    const forged = createHmac('sha256', 'wrong').update(hit.raw).digest('hex');
    expect(hit.headers['x-pylon-signature']).not.toBe(`sha256=${forged}`);
  });

  it('rejects bad options', async () => {
    const { gateway } = await startGateway();
    expect(() => new Webhooks(gateway, { connect: 'not a url' })).toThrow();
    expect(() => new Webhooks(gateway, { queueSize: 0 })).toThrow(RangeError);
    expect(() => new Webhooks(gateway, { retries: -1 })).toThrow(RangeError);
    expect(() => new Webhooks(gateway, { concurrency: 1.5 })).toThrow(RangeError);
  });
});
