import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { type AdminServer, startAdmin } from '../src/api/index.js';
import { connect, type PylonClient } from '../src/client/index.js';
import { Fanout, MAX_PACED_DURATION, MAX_QUEUED_MEMBERS } from '../src/hub/fanout.js';
import type { Member } from '../src/hub/member.js';
import { devValidator, SqliteStore } from '../src/index.js';
import { jsonCodec } from '../src/protocol/json-codec.js';
import { startGateway, stopAll } from './support/gateway.js';

// Pushes an attacker (or a buggy business system) could use to pin a gateway: every bound is
// refused by name, and big pushes never stall the event loop for their whole length.
const dir = mkdtempSync(join(tmpdir(), 'pylon-push-limits-'));
const admins: AdminServer[] = [];
const clients: PylonClient[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  await Promise.all(admins.splice(0).map((a) => a.close()));
  await stopAll();
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function withAdmin(options = {}) {
  const g = await startGateway({ validate: devValidator(), ...options });
  const admin = await startAdmin(g.gateway, { httpPort: 0, grpcPort: false });
  admins.push(admin);
  const push = async (body: unknown) => {
    const res = await fetch(`http://127.0.0.1:${admin.http.port}/v1/push`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: typeof body === 'string' ? body : JSON.stringify(body),
    });
    return { status: res.status, body: (await res.json()) as { error?: { message: string } } };
  };
  return { ...g, push };
}

const nested = (depth: number) => `${'['.repeat(depth)}${']'.repeat(depth)}`;

describe('push bounds', () => {
  it('refuses a rate or ttl outside its range, naming the field', async () => {
    const { push, wsUrl } = await withAdmin();
    clients.push(await connect(`${wsUrl}?token=u1`, { reconnect: false }));
    const slow = await push({ to: { all: true }, type: 't', rate: 1e-9 });
    expect(slow.status).toBe(400);
    expect(slow.body.error?.message).toMatch(/^rate: must be from 1 to 10000000/);
    expect((await push({ to: { all: true }, type: 't', rate: 1e12 })).status).toBe(400);
    const ttl = await push({ to: { user: 'u1' }, type: 't', qos: 1, ttl: 1e15 });
    expect(ttl.status).toBe(400);
    expect(ttl.body.error?.message).toMatch(/^ttl: must be from 1 to 2592000000 ms/);
    // In range: accepted, and a slow paced push does not hold the later ones back.
    expect((await push({ to: { all: true }, type: 't', rate: 1 })).status).toBe(200);
    expect((await push({ to: { all: true }, type: 't', rate: 1000 })).status).toBe(200);
  });

  it('refuses a paced push that could not finish within an hour at its rate', () => {
    const fanout = new Fanout({ chunk: 1000, maxPaced: 10, after: () => {} });
    const member = { open: false } as Member;
    const members = Array.from({ length: 3601 }, () => member);
    expect(() => fanout.deliver(members, { type: 't', data: 1 }, 1)).toThrow(
      /^rate: at 1 connections\/s the 3601 targets would take 3601 s, more than the 3600 s/,
    );
    expect(MAX_PACED_DURATION).toBe(3_600_000);
    fanout.close();
  });

  it('refuses an unpaced push while the deliveries already waiting in the fan-out pass the bound', async () => {
    const fanout = new Fanout({ chunk: 10, maxPaced: 10, maxQueued: 100, after: () => {} });
    const member = { open: false, codec: jsonCodec } as unknown as Member; // closed: never written to
    const members = (n: number) => Array.from({ length: n }, () => member);
    const first = fanout.deliver(members(80), { type: 't', data: 1 }); // 10 written now, 70 wait
    expect(() => fanout.deliver(members(40), { type: 't', data: 2 })).toThrow(
      /^70 deliveries of earlier pushes are still waiting to be written; try later/,
    );
    fanout.deliver(members(30), { type: 't', data: 3 }); // 70 + 30: within the bound
    await first.done;
    expect(MAX_QUEUED_MEMBERS).toBe(5_000_000);
    fanout.close();
  });

  it('backpressure: a broadcast is refused while the ones waiting would take longer than maxBacklogMs to write', async () => {
    // Members that take ~40 µs each to write: a broadcast to 2,000 of them takes ~80 ms.
    let written = 0;
    const member = {
      open: true,
      codec: jsonCodec,
      labels: undefined,
      deliver() {
        const end = performance.now() + 0.04;
        while (performance.now() < end) {}
        written++;
        return true;
      },
    } as unknown as Member;
    const members = () => Array.from({ length: 2000 }, () => member);
    const fanout = new Fanout({ chunk: 100, maxPaced: 10, maxBacklogMs: 30, after: () => {} });
    fanout.admit(2000); // nothing waits: admitted
    const first = fanout.deliver(members(), { type: 't', data: 1 });
    expect(fanout.backlog().queued).toBe(1900);
    expect(() => fanout.admit(2000)).toThrow(
      /^the broadcasts waiting here would take \d+ ms to write \(1900 deliveries\), more than 30 ms; try later$/,
    );
    // A push to one chunk or fewer is never refused for it (it is written at once).
    expect(() => fanout.admit(100)).not.toThrow();
    expect(fanout.refused).toBe(1);
    await first.done;
    expect(written).toBe(2000);
    expect(fanout.backlog()).toEqual({ queued: 0, ms: 0 });
    fanout.admit(2000);
    fanout.close();
  });

  it('the admin API answers 429 to label broadcasts sent faster than they are written, and every accepted one arrives whole', async () => {
    const { push, tcpUrl, gateway } = await withAdmin({ fanoutChunk: 10, fanoutMaxBacklog: 1 });
    const got: number[][] = [];
    for (let i = 0; i < 60; i++) {
      const c = await connect(tcpUrl, { token: `u${i}`, reconnect: false });
      clients.push(c);
      const mine: number[] = [];
      got.push(mine);
      c.on('b', (d) => void mine.push(d as number));
    }
    const answers = await Promise.all(
      Array.from({ length: 30 }, (_, n) =>
        // Everyone without a label nobody has: a label push (it queues; only {all: true} rides a sweep).
        push({ to: { labels: { not: ['nobody'] } }, type: 'b', data: n }).then((r) => ({ n, ...r })),
      ),
    );
    const accepted = answers.filter((a) => a.status === 200).map((a) => a.n);
    const refused = answers.filter((a) => a.status === 429);
    expect(accepted.length).toBeGreaterThan(0);
    expect(refused.length).toBeGreaterThan(0);
    expect(refused[0]?.body.error?.message).toMatch(/^the broadcasts waiting here would take/);
    expect(accepted.length + refused.length).toBe(30);
    // Every client gets exactly the accepted pushes, in the order they were accepted.
    await expect.poll(() => got.every((g) => g.length === accepted.length)).toBe(true);
    for (const g of got) expect([...g].sort((a, b) => a - b)).toEqual([...accepted].sort((a, b) => a - b));
    expect(gateway.stats().fanout.refused).toBe(refused.length);
  });

  it('answers 400 (not 500) to data nested too deep, for qos 0, qos 1 and variants', async () => {
    const { push, wsUrl } = await withAdmin();
    clients.push(await connect(`${wsUrl}?token=u1`, { reconnect: false }));
    for (const qos of [0, 1]) {
      const r = await push(`{"to":{"user":"u1"},"type":"t","qos":${qos},"data":${nested(5000)}}`);
      expect(r.status).toBe(400);
      expect(r.body.error?.message).toBe('data: nested deeper than 64 levels');
    }
    const v = await push(`{"to":{"all":true},"type":"t","variants":{"v2":${nested(100)}}}`);
    expect(v.status).toBe(400);
    expect(v.body.error?.message).toBe('variants.v2: nested deeper than 64 levels');
    expect((await push(`{"to":{"user":"u1"},"type":"t","qos":1,"data":${nested(64)}}`)).status).toBe(200);
  });
});

describe('a qos-1 push to many users', () => {
  it('is stored in batches that yield to the event loop, in call order per user', async () => {
    const store = SqliteStore.open(join(dir, 'batches.db'));
    const { gateway, wsUrl } = await startGateway({
      validate: devValidator(),
      store,
      delivery: { batch: 1000 },
    });
    const last = await connect(`${wsUrl}?token=u4999`, { reconnect: false });
    clients.push(last);
    const got: Array<{ type: string; seq: number }> = [];
    last.on('*', (_data, meta) => {
      got.push({ type: meta.type, seq: meta.seq ?? 0 });
    });
    const users = Array.from({ length: 5000 }, (_, i) => `u${i}`);
    // Count the event-loop turns the push leaves to others while it is stored.
    let turns = 0;
    let counting = true;
    const tick = () => {
      turns++;
      if (counting) setImmediate(tick);
    };
    setImmediate(tick);
    const big = gateway.push({ users }, 'big', { n: 1 }, { qos: 1 });
    const small = gateway.push({ user: 'u4999' }, 'small', { n: 2 }, { qos: 1 });
    const [a, b] = await Promise.all([big, small]);
    counting = false;
    expect(a.stored).toBe(5000);
    expect(b.stored).toBe(1);
    expect(turns).toBeGreaterThanOrEqual(4);
    await expect.poll(() => got.length).toBe(2);
    expect(got.map((g) => g.type)).toEqual(['big', 'small']);
    expect(got[0]!.seq).toBeLessThan(got[1]!.seq);
  });
});
