import { mkdtempSync } from 'node:fs';
import { createServer, type IncomingMessage } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Webhooks } from '../src/api/webhooks.js';
import { connect, type PylonClient } from '../src/client/index.js';
import { LocalBroker, LocalBus } from '../src/cluster/broker.js';
import { Cluster } from '../src/cluster/cluster.js';
import { LocalRegistry } from '../src/cluster/registry.js';
import type { DeliveredEvent, UndeliveredEvent } from '../src/delivery/undelivered.js';
import { devValidator, type Gateway, MemoryStore, SqliteStore } from '../src/index.js';
import { RawTcp, startGateway, stopAll } from './support/gateway.js';

// Acked-or-notify: a qos-1 message not acknowledged `undeliveredAfter` ms after it was stored is
// reported once (for a mobile or web push), and reported again as delivered if the ack comes later.

const AFTER = 300;
const clients: PylonClient[] = [];
const raws: RawTcp[] = [];
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  for (const r of raws.splice(0)) r.destroy();
  await stopAll();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function listen(gateway: Gateway) {
  const undelivered: UndeliveredEvent[] = [];
  const delivered: DeliveredEvent[] = [];
  gateway.on('undelivered', (e) => undelivered.push(e));
  gateway.on('delivered', (e) => delivered.push(e));
  return { undelivered, delivered };
}

async function gatewayWith(options: Parameters<typeof startGateway>[0] = {}) {
  return startGateway({
    validate: devValidator(),
    authorizeSub: () => true,
    delivery: { undeliveredAfter: AFTER, redeliveryBase: 100 },
    ...options,
  });
}

/** A TCP client that says hello as `user` and never acks. */
async function deaf(tcpUrl: string, user: string, labels: string[] = []): Promise<RawTcp> {
  const raw = await RawTcp.open(tcpUrl);
  raws.push(raw);
  raw.sendJson({ kind: 'hello', data: { codec: 'json', token: user } });
  await raw.until((r) => r.json().some((f) => f.kind === 'welcome'));
  if (labels.length > 0) {
    raw.sendJson({ kind: 'sub', id: 1, data: { labels } });
    await raw.until((r) => r.json().some((f) => f.kind === 'res' && f.id === 1));
  }
  return raw;
}

describe('undelivered: acked-or-notify', () => {
  it('an offline user: reported once after undeliveredAfter; delivered after notify when the user acks', async () => {
    const { gateway, tcpUrl } = await gatewayWith();
    const seen = listen(gateway);
    const r = await gateway.push({ user: 'ann' }, 'order', { n: 1 }, { qos: 1 });
    await sleep(AFTER / 2);
    expect(seen.undelivered).toEqual([]); // not before its time
    await expect.poll(() => seen.undelivered.length).toBe(1);
    const e = seen.undelivered[0] as UndeliveredEvent;
    expect(e).toMatchObject({ user: 'ann', id: r.id, seq: 1, type: 'order', data: { n: 1 }, attempts: 0 });
    expect(e.age).toBeGreaterThanOrEqual(AFTER - 20);
    await sleep(AFTER * 3);
    expect(seen.undelivered).toHaveLength(1); // once
    expect(seen.delivered).toEqual([]);

    const ann = await connect(tcpUrl, { token: 'ann', reconnect: false });
    clients.push(ann);
    const got: unknown[] = [];
    ann.on('order', (d) => {
      got.push(d);
    });
    await expect.poll(() => seen.delivered.length).toBe(1);
    expect(got).toEqual([{ n: 1 }]);
    expect(seen.delivered[0]).toMatchObject({ user: 'ann', id: r.id, seq: 1, type: 'order' });
    expect((seen.delivered[0] as DeliveredEvent).after).toBeGreaterThan(0);
  });

  it('a connected user who never acks: reported once, with the times it was sent', async () => {
    const { gateway, tcpUrl } = await gatewayWith();
    const seen = listen(gateway);
    const raw = await deaf(tcpUrl, 'bo');
    await gateway.push({ user: 'bo' }, 'order', 'x', { qos: 1 });
    await expect.poll(() => seen.undelivered.length).toBe(1);
    expect(raw.json().filter((f) => f.kind === 'push').length).toBeGreaterThanOrEqual(1);
    expect((seen.undelivered[0] as UndeliveredEvent).attempts).toBeGreaterThanOrEqual(1);
    await sleep(AFTER * 3);
    expect(seen.undelivered).toHaveLength(1);
  });

  it('never for a message acknowledged in time, nor for qos 0', async () => {
    const { gateway, tcpUrl } = await gatewayWith();
    const seen = listen(gateway);
    const cy = await connect(tcpUrl, { token: 'cy', reconnect: false });
    clients.push(cy);
    const got: unknown[] = [];
    cy.on('n', (d) => {
      got.push(d);
    });
    for (let i = 0; i < 20; i++) await gateway.push({ user: 'cy' }, 'n', i, { qos: 1 });
    await gateway.push({ user: 'offline' }, 'n', 'qos 0');
    await expect.poll(() => got.length).toBe(20);
    await sleep(AFTER * 3);
    expect(seen.undelivered).toEqual([]);
    expect(await gateway.store.stats()).toMatchObject({ messages: 0 });
  });

  it('nothing is watched while nobody listens', async () => {
    const { gateway } = await gatewayWith();
    await gateway.push({ user: 'dee' }, 'n', 1, { qos: 1 });
    const seen = listen(gateway); // too late for that message
    await gateway.push({ user: 'dee' }, 'n', 2, { qos: 1 });
    await expect.poll(() => seen.undelivered.length).toBe(1);
    await sleep(AFTER * 2);
    expect(seen.undelivered.map((e) => e.data)).toEqual([2]);
  });

  it('at most maxWatched messages are watched at once', async () => {
    const { gateway } = await gatewayWith({ delivery: { undeliveredAfter: AFTER, maxWatched: 5 } });
    const seen = listen(gateway);
    await gateway.push({ users: ['u1', 'u2', 'u3', 'u4', 'u5', 'u6', 'u7'] }, 'n', 1, { qos: 1 });
    await gateway.push({ users: ['u1', 'u2', 'u3', 'u4'] }, 'n', 2, { qos: 1 });
    await expect.poll(() => seen.undelivered.length).toBe(4);
    await sleep(AFTER * 2);
    expect(seen.undelivered.map((e) => e.data)).toEqual([2, 2, 2, 2]);
    expect(gateway.stats().qos1.unwatched).toBe(7);
    // Reported messages waiting for their ack do not use up the checks: new ones are still watched.
    await gateway.push({ users: ['v1', 'v2', 'v3', 'v4', 'v5'] }, 'n', 3, { qos: 1 });
    await expect.poll(() => seen.undelivered.length).toBe(9);
  });

  it('a qos-1 label push stored by two nodes for a user on both: reported once across the cluster', async () => {
    const bus = new LocalBus();
    const registry = new LocalRegistry();
    const store = new MemoryStore();
    const nodes = [];
    for (let i = 0; i < 2; i++) {
      const cluster = new Cluster({ broker: new LocalBroker(bus), registry, ttl: 3000 });
      const g = await gatewayWith({ store, cluster });
      await cluster.ready;
      nodes.push(g);
    }
    const [a, b] = nodes as [(typeof nodes)[0], (typeof nodes)[0]];
    const seenA = listen(a.gateway);
    const seenB = listen(b.gateway);
    await deaf(a.tcpUrl, 'ed', ['room']);
    await deaf(b.tcpUrl, 'ed', ['room']);
    await sleep(100); // label channels
    await a.gateway.push({ labels: { any: ['room'] } }, 'say', 'hi', { qos: 1 });
    await expect.poll(() => seenA.undelivered.length + seenB.undelivered.length).toBe(1);
    await sleep(AFTER * 3);
    expect(seenA.undelivered.length + seenB.undelivered.length).toBe(1);
    expect(await store.lastSeq('ed')).toBe(1);
  });

  it('a clean restart on SQLite: a check still waiting runs in the next run, and a reported message is reported delivered there', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'pylon-undelivered-')), 'state.db');
    const s1 = await SqliteStore.open(file);
    const g1 = await gatewayWith({ store: s1 });
    const seen1 = listen(g1.gateway);
    await g1.gateway.push({ user: 'bo' }, 'order', 'reported before the stop', { qos: 1 });
    await expect.poll(() => seen1.undelivered.length).toBe(1);
    await g1.gateway.push({ user: 'ann' }, 'order', 'checked after the restart', { qos: 1 });
    await g1.gateway.close(); // before ann's check was due
    await s1.close();
    expect(seen1.undelivered.map((e) => e.user)).toEqual(['bo']);

    const s2 = await SqliteStore.open(file);
    const g2 = await gatewayWith({ store: s2 });
    const seen2 = listen(g2.gateway);
    await expect
      .poll(() => seen2.undelivered.map((e) => [e.user, e.data]))
      .toEqual([['ann', 'checked after the restart']]);
    // bo comes and acks: the business hears it was delivered after all, from the new run.
    const bo = await connect(g2.tcpUrl, { token: 'bo', reconnect: false });
    clients.push(bo);
    await expect.poll(() => seen2.delivered.map((e) => e.user)).toEqual(['bo']);
    await sleep(AFTER * 2);
    expect(seen2.undelivered).toHaveLength(1); // nothing reported twice
    await stopAll();
    await s2.close();
  });

  it('the undelivered webhook gets both events as JSON (binary data as base64)', async () => {
    const bodies: Array<Record<string, unknown>> = [];
    const server = createServer((req: IncomingMessage, res) => {
      let text = '';
      req.on('data', (c: Buffer) => {
        text += c;
      });
      req.on('end', () => {
        bodies.push(JSON.parse(text));
        res.end();
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    const { gateway, tcpUrl } = await gatewayWith();
    const hooks = new Webhooks(gateway, { undelivered: `http://127.0.0.1:${port}/push` }).start();
    try {
      await gateway.push({ user: 'fay' }, 'blob', new Uint8Array([1, 2, 3]), { qos: 1 });
      await expect.poll(() => bodies.length).toBe(1);
      expect(bodies[0]).toMatchObject({
        event: 'undelivered',
        user: 'fay',
        type: 'blob',
        data: 'AQID',
        binary: true,
      });
      const fay = await connect(tcpUrl, { token: 'fay', reconnect: false, codec: 'msgpack' });
      clients.push(fay);
      await expect.poll(() => bodies.length).toBe(2);
      expect(bodies[1]).toMatchObject({ event: 'delivered', user: 'fay', type: 'blob', seq: 1 });
    } finally {
      await hooks.close();
      server.close();
    }
  });

  it('the webhook never sends delivered before its undelivered: one still waiting for its retry is withdrawn', async () => {
    const answered: Array<{ status: number; event: string }> = [];
    let calls = 0;
    const server = createServer((req: IncomingMessage, res) => {
      let text = '';
      req.on('data', (c: Buffer) => {
        text += c;
      });
      req.on('end', () => {
        const status = ++calls === 1 ? 503 : 200; // the first call fails: it waits for its retry
        answered.push({ status, event: (JSON.parse(text) as { event: string }).event });
        res.statusCode = status;
        res.end();
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    const { gateway, tcpUrl } = await gatewayWith();
    const hooks = new Webhooks(gateway, {
      undelivered: `http://127.0.0.1:${port}/push`,
      backoffMs: 3000,
      random: () => 1,
    }).start();
    try {
      await gateway.push({ user: 'gus' }, 'order', 1, { qos: 1 });
      await expect.poll(() => answered.length).toBe(1); // undelivered answered 503, retry in 3 s
      const gus = await connect(tcpUrl, { token: 'gus', reconnect: false });
      clients.push(gus);
      await expect.poll(() => gateway.stats().qos1.deliveredAfterNotify).toBe(1);
      await sleep(3500); // past the retry's time
      expect(answered).toEqual([{ status: 503, event: 'undelivered' }]);
    } finally {
      await hooks.close();
      server.close();
    }
  });
});
