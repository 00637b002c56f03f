import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Broker, LocalBroker, LocalBus } from '../src/cluster/broker.js';
import type { ClusterMessage } from '../src/cluster/messages.js';
import { RedisBroker } from '../src/cluster/redis-broker.js';
import { RedisRegistry } from '../src/cluster/redis-registry.js';
import { LocalRegistry, type NodeInfo, type Registry } from '../src/cluster/registry.js';
import { fnv1a } from '../src/util/redis.js';
import { startRedis, type TestRedis } from './support/redis.js';
import { startRedisCluster, type TestRedisCluster } from './support/redis-cluster.js';

// One suite for every Registry and every Broker: the in-memory ones and the Redis ones must
// behave the same (STYLE 3).
let redis: TestRedis;
let n = 0;
beforeAll(async () => {
  redis = await startRedis();
});
let rc: TestRedisCluster | undefined;
/** A 3-master Redis Cluster, started by the first test that needs it. */
async function redisClusterSpec(): Promise<string> {
  rc ??= await startRedisCluster({ masters: 3 });
  return rc.spec;
}
afterAll(async () => {
  await redis?.stop();
  await rc?.stop();
});

const node = (id: string): NodeInfo => ({
  id,
  name: `host:${id}`,
  tcpUrl: `tcp://h:${id.length}`,
  startedAt: 1,
});
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function describeRegistry(name: string, make: () => Promise<Registry>) {
  describe(`${name} registry`, () => {
    it('knows who is online where; a user on two nodes counts once; offline removes', async () => {
      const r = await make();
      await r.join(node('a'), 10_000);
      await r.join(node('b'), 10_000);
      await r.setOnline('a', [
        { user: 'u1', online: true },
        { user: 'u2', online: true },
      ]);
      await r.setOnline('b', [{ user: 'u2', online: true }], 5);
      expect((await r.nodesOf('u2')).sort()).toEqual(['a', 'b']);
      expect(await r.nodesOf('nobody')).toEqual([]);
      const where = await r.locate(['u1', 'u2', 'u1', 'nobody']);
      expect(Object.fromEntries([...where].map(([k, v]) => [k, v.sort()]))).toEqual({
        a: ['u1', 'u2'],
        b: ['u2'],
      });
      let stats = await r.stats();
      expect(stats.online).toBe(2);
      expect(stats.nodes.find((x) => x.id === 'b')?.load.connections).toBe(5);
      expect(stats.nodes.find((x) => x.id === 'a')).toMatchObject({ name: 'host:a', tcpUrl: 'tcp://h:1' });
      await r.setOnline('a', [{ user: 'u2', online: false }]);
      expect(await r.nodesOf('u2')).toEqual(['b']);
      expect((await r.usersOn('a')).sort()).toEqual(['u1']);
      expect(await r.lastNodeOf('u2')).toBe('a');
      await r.setOnline('a', [{ user: 'u2', online: false }]); // twice: no change
      stats = await r.stats();
      expect(stats.online).toBe(2);
      await r.leave('b');
      expect(await r.nodesOf('u2')).toEqual([]);
      expect((await r.stats()).online).toBe(1);
      expect(await r.heartbeat('b', { connections: 0 })).toBe(false);
      expect(await r.heartbeat('a', { connections: 1, labels: { room: 1 } })).toBe(true);
      expect((await r.stats()).labels).toEqual({ room: 1 });
      await r.leave('a');
      await r.close();
    });

    it('forgets a node that stops heartbeating after its TTL, with its users', async () => {
      const r = await make();
      await r.join(node('live'), 400);
      await r.join(node('dead'), 400);
      await r.setOnline('live', [{ user: 'x', online: true }]);
      await r.setOnline('dead', [
        { user: 'x', online: true },
        { user: 'y', online: true },
      ]);
      expect((await r.stats()).online).toBe(2);
      for (let i = 0; i < 4; i++) {
        await sleep(150);
        expect(await r.heartbeat('live', { connections: 1 })).toBe(true);
      }
      expect(await r.nodesOf('y')).toEqual([]);
      expect(await r.nodesOf('x')).toEqual(['live']);
      const stats = await r.stats();
      expect(stats.nodes.map((x) => x.id)).toEqual(['live']);
      expect(stats.online).toBe(1);
      // The forgotten node learns it on its next heartbeat, and joins again.
      expect(await r.heartbeat('dead', { connections: 0 })).toBe(false);
      await r.join(node('dead'), 400);
      expect(await r.usersOn('dead')).toEqual([]);
      await r.leave('live');
      await r.leave('dead');
      await r.close();
    });
  });
}

describeRegistry('local', async () => new LocalRegistry());
describeRegistry('redis', async () => RedisRegistry.connect(redis.url, { prefix: `t${++n}:` }));
describeRegistry('redis cluster', async () =>
  RedisRegistry.connect(await redisClusterSpec(), { prefix: `t${++n}:` }),
);

describe('redis registry layout', () => {
  it('on a standalone Redis: the keys of earlier versions, P nodes, P u:{user}, P online', async () => {
    const r = await RedisRegistry.connect(redis.url, { prefix: 'lay:' });
    await r.join(node('a'), 10_000);
    await r.setOnline('a', [{ user: 'alice', online: true }], 1);
    const raw = new Redis(redis.url);
    expect((await raw.keys('lay:*')).sort()).toEqual(
      ['lay:last:alice', 'lay:node:a', 'lay:nodes', 'lay:online', 'lay:u:alice', 'lay:users:a'].sort(),
    );
    raw.disconnect();
    await r.leave('a');
    await r.close();
  });

  it('on a Redis Cluster: users over 64 hash-tagged buckets on every master, counters summed', async () => {
    const spec = await redisClusterSpec();
    const r = await RedisRegistry.connect(spec, { prefix: 'spread:' });
    await r.join(node('a'), 10_000);
    await r.join(node('b'), 10_000);
    const users = Array.from({ length: 60 }, (_, i) => `user-${i}`);
    await r.setOnline(
      'a',
      users.map((user) => ({ user, online: true })),
      60,
    );
    await r.setOnline(
      'b',
      users.slice(0, 10).map((user) => ({ user, online: true })),
      10,
    );
    const perMaster: number[] = [];
    for (const port of (await rc?.masterPorts()) ?? []) {
      const raw = new Redis(port, '127.0.0.1');
      const keys = await raw.keys('spread:*');
      raw.disconnect();
      perMaster.push(keys.filter((k) => /:u:/.test(k)).length);
      for (const k of keys) {
        const user = /^spread:\{u(\d+)\}:(?:u|last):(.+)$/.exec(k);
        if (user) expect(Number(user[1])).toBe(fnv1a(user[2] as string) % 64);
        else expect(k).toMatch(/^spread:\{(nodes|u\d+)\}:/);
      }
    }
    expect(perMaster.reduce((a, b) => a + b, 0)).toBe(60);
    for (const c of perMaster) expect(c).toBeGreaterThan(0); // every master holds users
    expect((await r.stats()).online).toBe(60);
    const where = await r.locate(users);
    expect(where.get('a')?.length).toBe(60);
    expect(where.get('b')?.sort()).toEqual(users.slice(0, 10).sort());
    expect((await r.usersOn('b')).sort()).toEqual(users.slice(0, 10).sort());
    await r.leave('a');
    expect((await r.stats()).online).toBe(10);
    expect(await r.nodesOf('user-20')).toEqual([]);
    await r.leave('b');
    await expect(RedisRegistry.connect(spec, { prefix: 'x{y}:' })).rejects.toThrow(/must not contain braces/);
    await r.close();
  });

  it('a node seen live and then gone is never answered again, not even from entries left behind', async () => {
    const prefix = 'orphan:';
    const a = await RedisRegistry.connect(redis.url, { prefix });
    const b = await RedisRegistry.connect(redis.url, { prefix });
    await a.join(node('x'), 300);
    await a.setOnline('x', [{ user: 'u', online: true }]);
    await b.join(node('y'), 10_000);
    expect(await b.heartbeat('y', { connections: 0 })).toBe(true); // b learns x is live
    expect(await b.nodesOf('u')).toEqual(['x']);
    await sleep(400); // x stops heartbeating; its TTL passes
    expect(await b.heartbeat('y', { connections: 0 })).toBe(true); // sweeps x
    expect(await b.nodesOf('u')).toEqual([]);
    // A late write of x (e.g. a re-sent setOnline after a partition) leaves an entry behind.
    const raw = new Redis(redis.url);
    await raw.sadd(`${prefix}u:u`, 'x');
    raw.disconnect();
    expect(await b.nodesOf('u')).toEqual([]);
    expect(await b.locate(['u'])).toEqual(new Map());
    await a.close();
    await b.leave('y');
    await b.close();
  });

  for (const where of ['standalone', 'cluster'] as const) {
    it(`${where}: a node found registered again while it is swept keeps its users and is told to resync`, async () => {
      const spec = where === 'cluster' ? await redisClusterSpec() : redis.url;
      const prefix = `back${where}:`;
      const r = await RedisRegistry.connect(spec, { prefix });
      await r.join(node('x'), 10_000);
      await r.join(node('y'), 10_000);
      await r.setOnline('x', [{ user: 'u1', online: true }]);
      // As a sweeper sees it after x was declared dead and heartbeated again: x is in `gone`
      // and in `nodes` at once.
      const raw =
        where === 'cluster'
          ? new Redis.Cluster([{ host: '127.0.0.1', port: (await rc?.masterPorts())?.[0] as number }])
          : new Redis(redis.url);
      await raw.sadd(where === 'cluster' ? `${prefix}{nodes}:gone` : `${prefix}gone`, 'x');
      expect(await r.heartbeat('y', { connections: 0 })).toBe(true); // y's heartbeat sweeps
      expect(await r.nodesOf('u1')).toEqual(['x']);
      // x's next heartbeat says "forgotten" once, so it sends its users again; then it is known.
      expect(await r.heartbeat('x', { connections: 1 })).toBe(false);
      expect(await r.heartbeat('x', { connections: 1 })).toBe(true);
      raw.disconnect();
      await r.leave('x');
      await r.leave('y');
      await r.close();
    });
  }
});

function describeBroker(name: string, make: () => Promise<Broker>) {
  describe(`${name} broker`, () => {
    it('delivers to every subscriber of a channel (the publisher too), Uint8Array data intact', async () => {
      const [b1, b2] = [await make(), await make()];
      const got1: ClusterMessage[] = [];
      const got2: ClusterMessage[] = [];
      await b1.subscribe('ch', (m) => got1.push(m));
      await b2.subscribe('ch', (m) => got2.push(m));
      await b2.subscribe('other', () => {});
      const m: ClusterMessage = {
        t: 'op',
        op: {
          op: 'push',
          id: '1',
          target: { users: ['a', 'b'] },
          type: 'x',
          data: new Uint8Array([9, 8]),
          options: { qos: 0 },
        },
        origin: 'n1',
      };
      await b1.publish('ch', m);
      await b1.publish('ch', { t: 'qos1', users: ['a'], origin: 'n1' });
      await expect.poll(() => got1.length + got2.length).toBe(4);
      expect(got2).toEqual([m, { t: 'qos1', users: ['a'], origin: 'n1' }]);
      expect(b1.health.up).toBe(true);
      await b1.close();
      await b2.close();
    });
  });
}

const bus = new LocalBus();
describeBroker('local', async () => new LocalBroker(bus));
describeBroker('redis', async () => RedisBroker.connect(redis.url));

describe('redis broker across a Redis restart', () => {
  it('goes down, comes back by itself, re-subscribed', async () => {
    const b = await RedisBroker.connect(redis.url);
    const pub = await RedisBroker.connect(redis.url);
    const changes: Array<[boolean, string | undefined]> = [];
    b.health.onChange((up, reason) => changes.push([up, reason]));
    const got: ClusterMessage[] = [];
    await b.subscribe('after', (m) => got.push(m));
    await redis.restart();
    await expect.poll(() => b.health.up && pub.health.up, { timeout: 10_000 }).toBe(true);
    expect(changes[0]?.[0]).toBe(false);
    expect(changes[0]?.[1]).toMatch(/redis (publisher|subscriber)/);
    expect(changes.at(-1)).toEqual([true, undefined]);
    await pub.publish('after', { t: 'op', op: { op: 'kick', target: { user: 'u' } }, origin: 'p' });
    await expect.poll(() => got.length).toBe(1);
    await b.close();
    await pub.close();
  });
});
