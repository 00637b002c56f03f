import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  devValidator,
  type GatewayOptions,
  type MessageStore,
  RedisStore,
  SqliteStore,
} from '../src/index.js';
import { RedisSessions } from '../src/store/redis-sessions.js';
import type { SessionLog, StoredSession } from '../src/store/session-log.js';
import { SqliteSessions } from '../src/store/sqlite-sessions.js';
import { RawTcp, startGateway, stopAll } from './support/gateway.js';
import { addressesOf, adminPush, startPylon } from './support/pylon-start.js';
import { startRedis, type TestRedis } from './support/redis.js';

// Resume sessions and the qos-0 journal kept in the store: a client resumes after the gateway
// restarted, and through another gateway of the store, and `recovered` says exactly whether it
// missed something.

let redis: TestRedis;
const dir = mkdtempSync(join(tmpdir(), 'pylon-resume-'));
let n = 0;
const redisClients: Redis[] = [];
beforeAll(async () => {
  redis = await startRedis();
});
afterAll(async () => {
  for (const c of redisClients) c.disconnect();
  await redis?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const session = (id: string, user = 'ann'): StoredSession => ({
  id,
  user,
  labels: ['vip'],
  subscribed: ['room:a'],
  connection: 'c1',
  epoch: 'e1',
  pos: 7,
  at: 1700000000000,
});

function describeSessionLog(name: string, make: () => SessionLog) {
  describe(`${name} session log`, () => {
    it('gives a saved session back once, whole; an unknown id gets nothing', async () => {
      const log = make();
      await log.save([session('s1'), session('s2', 'bo')], 60_000);
      expect(await log.take('s1')).toEqual(session('s1'));
      expect(await log.take('s1')).toBeUndefined();
      expect(await log.take('nope')).toBeUndefined();
      await log.save([{ ...session('s2', 'bo'), pos: 9 }], 60_000); // saved again: replaced
      expect((await log.take('s2'))?.pos).toBe(9);
      await log.save([{ ...session('s3'), user: undefined }], 60_000);
      expect((await log.take('s3'))?.user).toBeUndefined();
    });

    it('forgets a session after its ttl, and one removed', async () => {
      const log = make();
      await log.save([session('t1')], 50);
      await log.save([session('t2'), session('t3')], 60_000);
      await log.remove(['t2']);
      await sleep(120);
      expect(await log.take('t1')).toBeUndefined();
      expect(await log.take('t2')).toBeUndefined();
      expect(await log.take('t3')).toBeDefined();
    });

    it('keeps a journal snapshot for one taker, until its ttl', async () => {
      const log = make();
      await log.putState('g', new Uint8Array([1, 2, 3]), 60_000);
      expect(await log.takeState('g')).toEqual(new Uint8Array([1, 2, 3]));
      expect(await log.takeState('g')).toBeUndefined();
      await log.putState('h', new Uint8Array([4]), 50);
      await sleep(120);
      expect(await log.takeState('h')).toBeUndefined();
    });
  });
}

describeSessionLog('sqlite', () => new SqliteSessions(new Database(join(dir, `s${++n}.db`))));
describeSessionLog('redis', () => {
  const c = new Redis(redis.port, { lazyConnect: false });
  redisClients.push(c);
  return new RedisSessions(c, `t${++n}:`);
});

it('the SQLite session table keeps at most maxSessions (the soonest to expire go)', async () => {
  const log = new SqliteSessions(new Database(join(dir, `cap${++n}.db`)), 3);
  for (let i = 0; i < 5; i++) await log.save([session(`c${i}`), session(`d${i}`)], 60_000 + i);
  const left = [];
  for (let i = 0; i < 5; i++)
    for (const p of ['c', 'd']) if (await log.take(`${p}${i}`)) left.push(`${p}${i}`);
  expect(left.length).toBeLessThanOrEqual(3);
  expect(left).toContain('d4');
});

// ---- gateways ----

const base: GatewayOptions = { validate: devValidator(), authorizeSub: () => true };

afterEach(async () => {
  await stopAll();
});

/** A raw client: hello (with a session to resume), the welcome, then a sub. */
async function hello(url: string, token: string, session?: string): Promise<RawTcp> {
  const c = await RawTcp.open(url);
  c.sendJson({ kind: 'hello', data: { token, ...(session ? { session } : {}) } });
  await c.until((r) => r.frames.length >= 1);
  return c;
}

const welcomeOf = (c: RawTcp) =>
  c.json()[0]?.data as { session: string; resumed?: boolean; recovered?: boolean };
const pushesOf = (c: RawTcp) =>
  c
    .json()
    .filter((f) => f.kind === 'push')
    .map((f) => f.data);

async function sub(c: RawTcp, label: string): Promise<void> {
  const before = c.frames.length;
  c.sendJson({ kind: 'sub', id: 1, data: { labels: [label] } });
  await c.until((r) => r.frames.length > before);
}

function describeRestart(name: string, open: () => Promise<MessageStore>) {
  it(`${name}: after a clean restart clients resume with their labels and exactly the qos-0 pushes they missed`, async () => {
    const store1 = await open();
    const g1 = await startGateway({ ...base, store: store1 });
    const ann = await hello(g1.tcpUrl, 'ann');
    const bo = await hello(g1.tcpUrl, 'bo');
    await sub(ann, 'room:a');
    await sub(bo, 'room:a');
    // bo's link drops; a push he misses; then the gateway stops (ann is told to come back).
    bo.destroy();
    await expect.poll(() => g1.gateway.online('bo')).toBe(false);
    await g1.gateway.push({ labels: { all: ['room:a'] } }, 'news', 'while bo was away');
    await ann.until((r) => pushesOf(r).length === 1);
    await g1.gateway.close();
    await store1.close();

    const store2 = await open();
    const g2 = await startGateway({ ...base, store: store2 });
    const bo2 = await hello(g2.tcpUrl, 'bo', welcomeOf(bo).session);
    expect(welcomeOf(bo2)).toMatchObject({ resumed: true, recovered: true });
    await bo2.until((r) => pushesOf(r).length === 1);
    expect(pushesOf(bo2)).toEqual(['while bo was away']);
    const ann2 = await hello(g2.tcpUrl, 'ann', welcomeOf(ann).session);
    expect(welcomeOf(ann2)).toMatchObject({ resumed: true, recovered: true });
    // Their labels came back without a sub.
    expect(g2.gateway.connectionsOf('ann')[0]?.labels).toEqual(['room:a']);
    await g2.gateway.push({ labels: { all: ['room:a'] } }, 'news', 'after the restart');
    await ann2.until((r) => pushesOf(r).length === 1);
    await bo2.until((r) => pushesOf(r).length === 2);
    expect(pushesOf(ann2)).toEqual(['after the restart']);
    // A session resumes once: the id bo used is spent, on this gateway as on any other.
    const again = await hello(g2.tcpUrl, 'bo', welcomeOf(bo).session);
    expect(welcomeOf(again)).toMatchObject({ resumed: false });
    for (const c of [bo2, ann2, again]) c.destroy();
    await g2.gateway.close();
    await store2.close();
  });
}

describeRestart('SQLite', async () => SqliteStore.open(join(dir, 'restart.db')));
describeRestart('Redis', async () =>
  RedisStore.connect(`redis://127.0.0.1:${redis.port}`, { prefix: 'rs:' }),
);

it('a session dropped on one gateway resumes once through another gateway of the store (recovered: false there)', async () => {
  const file = join(dir, `shared${++n}.db`);
  const sa = await SqliteStore.open(file);
  const sb = await SqliteStore.open(file);
  const a = await startGateway({ ...base, store: sa, stateName: 'a' });
  const b = await startGateway({ ...base, store: sb, stateName: 'b' });
  const cy = await hello(a.tcpUrl, 'cy');
  await sub(cy, 'room:x');
  cy.destroy();
  await expect.poll(() => a.gateway.stats().resumable).toBe(1);
  await a.gateway.push({ labels: { all: ['room:x'] } }, 'news', 'on a');
  const old = welcomeOf(cy).session;
  // Another user cannot take it, and trying does not spend it.
  const eve = await hello(b.tcpUrl, 'eve', old);
  expect(welcomeOf(eve)).toMatchObject({ resumed: false });
  const moved = await hello(b.tcpUrl, 'cy', old);
  // b's journal is not a's: what cy missed on a is not known there.
  expect(welcomeOf(moved)).toMatchObject({ resumed: true, recovered: false });
  expect(b.gateway.connectionsOf('cy')[0]?.labels).toEqual(['room:x']);
  // Taken: a no longer resumes it, though it still had it in memory.
  const back = await hello(a.tcpUrl, 'cy', old);
  expect(welcomeOf(back)).toMatchObject({ resumed: false });
  for (const c of [eve, moved, back]) c.destroy();
  await stopAll();
  await sa.close();
  await sb.close();
});

it('with durable: false sessions stay in memory (a restart forgets them)', async () => {
  const file = join(dir, `volatile${++n}.db`);
  const s1 = await SqliteStore.open(file);
  const g1 = await startGateway({ ...base, store: s1, resume: { durable: false } });
  const c = await hello(g1.tcpUrl, 'di');
  await g1.gateway.close();
  await s1.close();
  const s2 = await SqliteStore.open(file);
  const g2 = await startGateway({ ...base, store: s2, resume: { durable: false } });
  const c2 = await hello(g2.tcpUrl, 'di', welcomeOf(c).session);
  expect(welcomeOf(c2)).toMatchObject({ resumed: false });
  c2.destroy();
  await g2.gateway.close();
  await s2.close();
});

it('pylon start on SQLite: SIGTERM and start again, a client resumes exactly; after a SIGKILL it resumes with recovered: false', async () => {
  const start = () => startPylon(['--store', `sqlite:${join(dir, 'cli.db')}`]);
  const push = (admin: string, text: string) =>
    adminPush(admin, { to: { labels: { all: ['room:ops'] } }, type: 'chat.message', data: { text } });
  let cli = start();
  try {
    let { admin, tcp } = await addressesOf(cli);
    // Raw clients: each run of the process listens on new ports, which the SDK would not follow.
    const ann = await hello(tcp, 'ann');
    await sub(ann, 'room:ops');
    expect(await push(admin, 'one')).toBe(200);
    await ann.until((r) => pushesOf(r).length === 1);
    // A clean stop: ann is told to reconnect elsewhere (4001), her session and the journal stay.
    cli.kill('SIGTERM');
    await cli.exited;
    cli = start();
    ({ admin, tcp } = await addressesOf(cli));
    const ann2 = await hello(tcp, 'ann', welcomeOf(ann).session);
    expect(welcomeOf(ann2)).toMatchObject({ resumed: true, recovered: true });
    expect(await push(admin, 'two')).toBe(200);
    await ann2.until((r) => pushesOf(r).length === 1);
    expect(pushesOf(ann2)).toEqual([{ text: 'two' }]);
    // Her link drops; a push she misses; then the process is killed: the journal is gone.
    ann2.destroy();
    await sleep(300);
    expect(await push(admin, 'missed')).toBe(200);
    cli.kill('SIGKILL');
    await cli.exited;
    cli = start();
    ({ tcp } = await addressesOf(cli));
    const ann3 = await hello(tcp, 'ann', welcomeOf(ann2).session);
    // Her labels come back; what she missed is not known any more, and recovered says so.
    expect(welcomeOf(ann3)).toMatchObject({ resumed: true, recovered: false });
    ann3.destroy();
  } finally {
    cli.kill('SIGKILL');
    await cli.exited;
  }
});
