import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Broker, LocalBroker, LocalBus } from '../src/cluster/broker.js';
import type { ClusterMessage } from '../src/cluster/messages.js';
import { RedisBroker } from '../src/cluster/redis-broker.js';
import { RedisRegistry } from '../src/cluster/redis-registry.js';
import { LocalRegistry, type NodeInfo, type Registry } from '../src/cluster/registry.js';
import { startRedis, type TestRedis } from './support/redis.js';

// One suite for every Registry and every Broker: the in-memory ones and the Redis ones must
// behave the same (STYLE 3).
let redis: TestRedis;
let n = 0;
beforeAll(async () => {
  redis = await startRedis();
});
afterAll(async () => {
  await redis?.stop();
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
