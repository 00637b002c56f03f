import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type PylonClient } from '../src/client/index.js';
import type { Cluster } from '../src/cluster/cluster.js';
import { redisCluster } from '../src/cluster/setup.js';
import { devValidator, type Gateway, RedisStore } from '../src/index.js';
import { startGateway, stopAll } from './support/gateway.js';
import { startRedisCluster, type TestRedisCluster } from './support/redis-cluster.js';

// Four gateways in this process over a real 3-master Redis Cluster: sharded pub/sub for the
// node, label and broadcast channels, the registry in one hash slot, the store's keys spread
// over the shards.

interface Node {
  gateway: Gateway;
  cluster: Cluster;
  tcpUrl: string;
}

let rc: TestRedisCluster;
let store: RedisStore;
const nodes: Node[] = [];
const clients: PylonClient[] = [];

beforeAll(async () => {
  rc = await startRedisCluster({ masters: 3 });
  store = await RedisStore.connect(rc.spec, { prefix: 'rct:' });
  for (let i = 0; i < 4; i++) {
    const cluster = await redisCluster(rc.spec, { prefix: 'rct:', ttl: 3000 });
    const g = await startGateway({ validate: devValidator(), authorizeSub: () => true, store, cluster });
    await cluster.ready;
    nodes.push({ gateway: g.gateway, cluster, tcpUrl: g.tcpUrl });
  }
}, 60_000);

afterAll(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close().catch(() => {})));
  await stopAll();
  await store?.close();
  await rc?.stop();
});

async function client(node: Node, user: string, labels: string[] = []): Promise<PylonClient> {
  const c = await connect(node.tcpUrl, { token: user, reconnect: false });
  clients.push(c);
  if (labels.length > 0) await c.subscribe(labels);
  return c;
}

function collect(c: PylonClient, type: string): Array<{ data: unknown; seq: number | undefined }> {
  const got: Array<{ data: unknown; seq: number | undefined }> = [];
  c.on(type, (data, meta) => {
    got.push({ data, seq: meta.seq });
  });
  return got;
}

const received = () => nodes.map((n) => n.cluster.status().received);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('a cluster over Redis Cluster', () => {
  it('sends a user push through any node to the user’s node only, once', async () => {
    const [a, b] = nodes as [Node, Node, Node, Node];
    const got = collect(await client(b, 'uma'), 'note');
    await expect.poll(() => a.cluster.registry.nodesOf('uma'), { timeout: 5000 }).toEqual([b.gateway.nodeId]);
    const before = received();
    await a.gateway.push({ user: 'uma' }, 'note', 'qos0');
    await a.gateway.push({ user: 'uma' }, 'note', 'qos1', { qos: 1 });
    await expect.poll(() => got.map((g) => g.data).sort()).toEqual(['qos0', 'qos1']);
    await sleep(200);
    expect(got).toHaveLength(2);
    const delta = received().map((r, i) => r - (before[i] as number));
    expect(delta).toEqual([0, 2, 0, 0]);
  });

  it('sends a label push only to the gateways holding members, and every member gets it once', async () => {
    const [a, b, c, d] = nodes as [Node, Node, Node, Node];
    const onB = collect(await client(b, 'bo', ['rct-room']), 'note');
    const onC = collect(await client(c, 'cy', ['rct-room']), 'note');
    const onD = collect(await client(d, 'di', ['elsewhere']), 'note');
    await sleep(300); // the label channels' SSUBSCRIBE
    const before = received();
    await a.gateway.push({ labels: { all: ['rct-room'] } }, 'note', 'hello room');
    await expect.poll(() => onB.length + onC.length).toBe(2);
    await sleep(200);
    expect(onB.map((g) => g.data)).toEqual(['hello room']);
    expect(onC.map((g) => g.data)).toEqual(['hello room']);
    expect(onD).toEqual([]);
    const delta = received().map((r, i) => r - (before[i] as number));
    expect(delta).toEqual([0, 1, 1, 0]);
  });

  it('stores a qos-1 label push once for a user on two gateways: one seq, delivered once to each connection', async () => {
    const [a, b, c] = nodes as [Node, Node, Node, Node];
    const first = collect(await client(b, 'eve', ['rct-news']), 'note');
    const second = collect(await client(c, 'eve', ['rct-news']), 'note');
    await sleep(300);
    const last = await store.lastSeq('eve');
    await a.gateway.push({ labels: { all: ['rct-news'] } }, 'note', 'stored once', { qos: 1 });
    await expect.poll(() => first.length + second.length).toBe(2);
    await sleep(300);
    expect(first).toEqual([{ data: 'stored once', seq: last + 1 }]);
    expect(second).toEqual([{ data: 'stored once', seq: last + 1 }]);
    expect(await store.lastSeq('eve')).toBe(last + 1);
  });

  it('accepts an idempotency key once across gateways', async () => {
    const [a, b, , d] = nodes as [Node, Node, Node, Node];
    const got = collect(await client(d, 'ida'), 'note');
    await expect.poll(() => a.cluster.registry.nodesOf('ida'), { timeout: 5000 }).toEqual([d.gateway.nodeId]);
    const r1 = await a.gateway.push({ user: 'ida' }, 'note', 'pay', { qos: 1, idempotencyKey: 'rct-pay-1' });
    const r2 = await b.gateway.push({ user: 'ida' }, 'note', 'pay', { qos: 1, idempotencyKey: 'rct-pay-1' });
    expect(r2).toMatchObject({ id: r1.id, duplicate: true, stored: 1 });
    await expect.poll(() => got.length).toBe(1);
    await sleep(300);
    expect(got.map((g) => g.data)).toEqual(['pay']);
  });
});
