import { afterEach, describe, expect, it } from 'vitest';
import { AdminService } from '../src/api/admin-service.js';
import { connect, type PylonClient } from '../src/client/index.js';
import { LocalBroker, LocalBus } from '../src/cluster/broker.js';
import { Cluster } from '../src/cluster/cluster.js';
import { decodeMessage, encodeMessage } from '../src/cluster/messages.js';
import { LocalRegistry } from '../src/cluster/registry.js';
import { devValidator, type Gateway, MemoryStore } from '../src/index.js';
import { RawTcp, startGateway, stopAll } from './support/gateway.js';

afterEach(stopAll);

interface Node {
  gateway: Gateway;
  cluster: Cluster;
  tcpUrl: string;
  wsUrl: string;
}

/** Three gateways in this process on one LocalBus, one LocalRegistry and one MemoryStore. */
async function threeNodes(n = 3) {
  const bus = new LocalBus();
  const registry = new LocalRegistry();
  const store = new MemoryStore();
  const nodes: Node[] = [];
  for (let i = 0; i < n; i++) {
    const cluster = new Cluster({ broker: new LocalBroker(bus), registry, ttl: 3000 });
    const g = await startGateway({ validate: devValidator(), authorizeSub: () => true, store, cluster });
    await cluster.ready;
    nodes.push({ ...g, cluster });
  }
  return { bus, registry, store, nodes };
}

const clients: PylonClient[] = [];
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
});

async function client(node: Node, user: string, labels: string[] = []): Promise<PylonClient> {
  const c = await connect(node.tcpUrl, { token: user, reconnect: false, codec: 'msgpack' });
  clients.push(c);
  if (labels.length > 0) await c.subscribe(labels);
  return c;
}

function collect(c: PylonClient, type: string): unknown[] {
  const got: unknown[] = [];
  c.on(type, (data) => {
    got.push(data);
  });
  return got;
}

/** Until the registry has every user where expected. */
async function registered(registry: LocalRegistry, where: Record<string, Node>): Promise<void> {
  for (const [user, node] of Object.entries(where)) {
    await expect.poll(() => registry.nodesOf(user)).toContain(node.gateway.nodeId);
  }
}

describe('cluster messages', () => {
  it('round-trip as MessagePack, Uint8Array data included', () => {
    const data = { bytes: new Uint8Array([0, 1, 255]), n: 1.5, s: 'é', nested: [null, true] };
    const m = decodeMessage(
      encodeMessage({
        t: 'op',
        op: { op: 'push', id: 'x', target: { labels: { all: ['a'] } }, type: 't', data, options: { qos: 0 } },
        origin: 'n1',
      }),
    );
    expect(m).toEqual({
      t: 'op',
      op: { op: 'push', id: 'x', target: { labels: { all: ['a'] } }, type: 't', data, options: { qos: 0 } },
      origin: 'n1',
    });
    const raw = decodeMessage(
      encodeMessage({
        t: 'op',
        op: { op: 'push', id: 'y', target: { all: true }, type: 't', data: new Uint8Array([7]), options: {} },
        origin: 'n',
      }),
    );
    const data7 = raw.t === 'op' && raw.op.op === 'push' ? raw.op.data : undefined;
    expect(data7).toEqual(new Uint8Array([7]));
    expect((data7 as Uint8Array).constructor).toBe(Uint8Array);
    expect(() => decodeMessage(encodeMessage({ nope: 1 } as never))).toThrow(/not a cluster message/);
  });
});

describe('cluster of three gateways in one process', () => {
  it('a client on node A gets a push sent through node C (qos 0 and qos 1), Uint8Array data intact', async () => {
    const { registry, nodes } = await threeNodes();
    const [a, , c] = nodes as [Node, Node, Node];
    const alice = await client(a, 'alice');
    const got = collect(alice, 'note');
    await registered(registry, { alice: a });

    await c.gateway.push({ user: 'alice' }, 'note', { hi: 1 });
    await c.gateway.push({ users: ['alice', 'nobody'] }, 'note', new Uint8Array([1, 2, 3]));
    const r = await c.gateway.push({ user: 'alice' }, 'note', { q: 1 }, { qos: 1 });
    expect(r.stored).toBe(1);
    await expect.poll(() => got.length).toBe(3);
    expect(got[0]).toEqual({ hi: 1 });
    expect(new Uint8Array(got[1] as Uint8Array)).toEqual(new Uint8Array([1, 2, 3]));
    expect(got[2]).toEqual({ q: 1 });
    // A connection target goes to the node in its id.
    const connId = alice.welcome?.connection as string;
    await c.gateway.push({ connection: connId }, 'note', 'direct');
    await expect.poll(() => got.length).toBe(4);
    expect(got[3]).toBe('direct');
  });

  it('a label push reaches clients on all three nodes exactly once each', async () => {
    const { nodes } = await threeNodes();
    const got: unknown[][] = [];
    for (const [i, node] of nodes.entries()) {
      for (let k = 0; k < 3; k++) got.push(collect(await client(node, `u${i}-${k}`, ['room']), 'news'));
    }
    const outsider = collect(await client(nodes[0] as Node, 'out', ['other']), 'news');
    await (nodes[1] as Node).gateway.push({ labels: { all: ['room'] } }, 'news', { n: 1 });
    await (nodes[2] as Node).gateway.push({ all: true }, 'news', { n: 2 });
    await expect.poll(() => got.every((g) => g.length === 2)).toBe(true);
    await new Promise((r) => setTimeout(r, 100));
    // Ordered per publisher, not across publishers: compare as sets.
    for (const g of got)
      expect([...g].sort((x, y) => (x as { n: number }).n - (y as { n: number }).n)).toEqual([
        { n: 1 },
        { n: 2 },
      ]);
    expect(outsider).toEqual([{ n: 2 }]);
  });

  it('pushes accepted by one node reach every member, on every node, in call order (qos 0 and qos 1)', async () => {
    const { nodes } = await threeNodes();
    const got: unknown[][] = [];
    for (const node of nodes)
      got.push(collect(await client(node, `o-${node.gateway.nodeId}`, ['room']), 'n'));
    const mine: unknown[][] = [];
    for (const node of nodes) mine.push(collect(await client(node, 'one-user'), 'q'));
    const a = nodes[0] as Node;
    // Not awaited one by one: a business system fires them.
    const sent = [];
    for (let i = 0; i < 50; i++) sent.push(a.gateway.push({ labels: { any: ['room'] } }, 'n', i));
    for (let i = 0; i < 20; i++) sent.push(a.gateway.push({ user: 'one-user' }, 'q', i, { qos: 1 }));
    await Promise.all(sent);
    const labelOrder = Array.from({ length: 50 }, (_, i) => i);
    for (const g of got) await expect.poll(() => g).toEqual(labelOrder);
    // qos 1: each of the user's three connections (one per node) sees 0..19 in order.
    const userOrder = Array.from({ length: 20 }, (_, i) => i);
    for (const m of mine) await expect.poll(() => m).toEqual(userOrder);
  });

  it('kicks across nodes, by user and by connection', async () => {
    const { registry, nodes } = await threeNodes();
    const [a, b, c] = nodes as [Node, Node, Node];
    const bob1 = await client(a, 'bob');
    const bob2 = await client(b, 'bob');
    const carol = await client(a, 'carol');
    await registered(registry, { bob: a, carol: a });
    await expect.poll(() => registry.nodesOf('bob').then((n) => n.length)).toBe(2);
    const closed = (cl: PylonClient) => new Promise<{ code: number }>((resolve) => cl.on('close', resolve));
    const bob1Closed = closed(bob1);
    const bob2Closed = closed(bob2);
    expect(c.gateway.kick({ user: 'bob' }, 'bye')).toBe(0); // none on C itself
    expect((await bob1Closed).code).toBe(4503);
    expect((await bob2Closed).code).toBe(4503);
    const carolClosed = closed(carol);
    b.gateway.kick({ connection: carol.welcome?.connection as string });
    expect((await carolClosed).code).toBe(4503);
  });

  it('changes a user’s labels on every node', async () => {
    const { registry, nodes } = await threeNodes();
    const [a, b, c] = nodes as [Node, Node, Node];
    const d1 = collect(await client(a, 'dan'), 'news');
    const d2 = collect(await client(b, 'dan'), 'news');
    await expect.poll(() => registry.nodesOf('dan').then((n) => n.length)).toBe(2);
    c.gateway.updateUserLabels('dan', { add: ['vip'] });
    await expect.poll(() => a.gateway.connectionsOf('dan')[0]?.has('vip')).toBe(true);
    await expect.poll(() => b.gateway.connectionsOf('dan')[0]?.has('vip')).toBe(true);
    await c.gateway.push({ labels: { all: ['vip'] } }, 'news', 'for vips');
    await expect.poll(() => d1.length + d2.length).toBe(2);
  });

  it('counts users online across nodes (distinct), and forgets them when they leave', async () => {
    const { registry, nodes } = await threeNodes();
    const [a, b, c] = nodes as [Node, Node, Node];
    await client(a, 'x');
    await client(b, 'x'); // the same user on two nodes counts once
    await client(b, 'y');
    const z = await client(c, 'z');
    await expect.poll(async () => (await registry.stats()).online).toBe(3);
    const stats = await registry.stats();
    expect(stats.nodes).toHaveLength(3);
    await z.close();
    await expect.poll(async () => (await registry.stats()).online).toBe(2);
    // The admin API shows the cluster: every node and the totals.
    await expect.poll(async () => (await new AdminService(a.gateway).stats()).cluster?.online).toBe(2);
    const out = await new AdminService(a.gateway).stats();
    expect(out.nodes.map((n) => n.id).sort()).toEqual(nodes.map((n) => n.gateway.nodeId).sort());
    expect(out.cluster).toMatchObject({ nodes: 3, online: 2 });
  });

  it('sends a user push only to the node holding the user (broker traffic)', async () => {
    const { bus, registry, nodes } = await threeNodes();
    const [a, b, c] = nodes as [Node, Node, Node];
    const got = collect(await client(b, 'erin'), 'note');
    await registered(registry, { erin: b });
    bus.resetTraffic();
    await a.gateway.push({ user: 'erin' }, 'note', 1);
    await a.gateway.push({ user: 'erin' }, 'note', 2, { qos: 1 });
    await a.gateway.push({ user: 'nobody-online' }, 'note', 3);
    await expect.poll(() => got.length).toBe(2);
    expect([...bus.traffic.keys()]).toEqual([`pylon:node:${b.gateway.nodeId}`]);
    expect(bus.traffic.get(`pylon:node:${b.gateway.nodeId}`)?.messages).toBe(2);
    expect(bus.count(`pylon:node:${c.gateway.nodeId}`)).toBe(0);
    // A label push is one message on the label's channel, whatever the number of nodes.
    bus.resetTraffic();
    await a.gateway.push({ labels: { any: ['room'] } }, 'note', 4);
    expect([...bus.traffic.entries()]).toEqual([
      ['pylon:label:room', expect.objectContaining({ messages: 1 })],
    ]);
  });

  it('carries a label push only to the nodes with members of the label, and runs it once there', async () => {
    const { nodes } = await threeNodes();
    const [a, b, c] = nodes as [Node, Node, Node];
    const bea = await client(b, 'bea', ['ops', 'dev']);
    const onB = collect(bea, 'note');
    const onC = collect(await client(c, 'cy', ['sales']), 'note');
    await expect.poll(() => b.cluster.status().labelChannels).toBe(2);
    const before = nodes.map((n) => n.cluster.status().received);
    await a.gateway.push({ labels: { all: ['ops'] } }, 'note', 'all-ops');
    // On two of b's labels' channels: received twice, run once.
    await a.gateway.push({ labels: { any: ['ops', 'dev'] } }, 'note', 'any-ops-dev');
    await expect.poll(() => onB).toEqual(['all-ops', 'any-ops-dev']);
    const after = nodes.map((n) => n.cluster.status().received);
    expect((after[1] as number) - (before[1] as number)).toBe(3);
    expect(after[2]).toBe(before[2]); // c holds no member of ops or dev: nothing reached it
    expect(b.cluster.status().duplicates).toBe(1);
    expect(onC).toEqual([]);
    // The last member leaves: after the linger the node stops listening on the label.
    await bea.close();
    await expect.poll(() => b.cluster.status().labelChannels, { timeout: 5000 }).toBe(0);
    expect(c.cluster.status().labelChannels).toBe(1);
  });

  it('stores a qos-1 label push once for a user connected to two nodes: one seq, one delivery each', async () => {
    const { store, nodes } = await threeNodes();
    const [a, b, c] = nodes as [Node, Node, Node];
    const got: Array<{ node: string; seq: number | undefined }> = [];
    for (const [node, name] of [
      [b, 'b'],
      [c, 'c'],
    ] as const) {
      const x = await client(node, 'dora', ['news']);
      x.on('note', (_data, meta) => {
        got.push({ node: name, seq: meta.seq });
      });
    }

    await expect.poll(() => b.cluster.status().labelChannels + c.cluster.status().labelChannels).toBe(2);
    await a.gateway.push({ labels: { all: ['news'] } }, 'note', 'stored once', { qos: 1 });
    await expect.poll(() => got.length).toBe(2);
    expect(got.map((g) => g.node).sort()).toEqual(['b', 'c']);
    expect(got.map((g) => g.seq)).toEqual([1, 1]);
    expect(await store.lastSeq('dora')).toBe(1);
    await new Promise((r) => setTimeout(r, 200));
    expect(got).toHaveLength(2);
  });

  it('accepts a push with an idempotency key once across nodes and answers a repeat with the first result', async () => {
    const { nodes } = await threeNodes();
    const [a, b, c] = nodes as [Node, Node, Node];
    const got = collect(await client(c, 'ed'), 'note');
    await expect.poll(async () => (await a.cluster.registry.nodesOf('ed')).length).toBe(1);
    const first = await a.gateway.push({ user: 'ed' }, 'note', 'once', {
      qos: 1,
      idempotencyKey: 'order-17',
    });
    const again = await b.gateway.push({ user: 'ed' }, 'note', 'once', {
      qos: 1,
      idempotencyKey: 'order-17',
    });
    expect(again).toMatchObject({ id: first.id, duplicate: true, stored: 1 });
    expect(first.duplicate).toBeUndefined();
    const other = await b.gateway.push({ user: 'ed' }, 'note', 'another', { idempotencyKey: 'order-18' });
    expect(other.id).not.toBe(first.id);
    // (qos 1 and qos 0 travel apart: their order may differ.)
    await expect.poll(() => [...got].sort()).toEqual(['another', 'once']);
    await new Promise((r) => setTimeout(r, 200));
    expect(got).toHaveLength(2);
    await expect(
      a.gateway.push({ user: 'ed' }, 'note', 1, { idempotencyKey: 'x'.repeat(257) }),
    ).rejects.toThrow(/idempotencyKey/);
  });

  it('dispatches to the user’s node first, then by load; forgets a node that stops heartbeating', async () => {
    let now = Date.now();
    const registry = new LocalRegistry({ now: () => now });
    const bus = new LocalBus();
    const store = new MemoryStore();
    const nodes: Node[] = [];
    for (let i = 0; i < 3; i++) {
      const cluster = new Cluster({ broker: new LocalBroker(bus), registry, ttl: 60_000 });
      const g = await startGateway({ validate: devValidator(), store, cluster });
      await cluster.ready;
      nodes.push({ ...g, cluster });
    }
    const [a, b, c] = nodes as [Node, Node, Node];
    await client(a, 'p');
    await client(a, 'q');
    const r = await client(b, 'r');
    await expect.poll(async () => (await registry.stats()).connections).toBe(3);
    // URLs are registered once the gateways listen.
    await expect.poll(async () => (await registry.nodes()).every((n) => n.tcpUrl && n.wsUrl)).toBe(true);
    const order = async (user?: string) =>
      (await new AdminService(c.gateway).dispatch(user ? { user } : {})).nodes;
    expect((await order()).map((e) => e.node)).toEqual([c, b, a].map((n) => n.gateway.nodeId));
    const forR = await order('r');
    expect(forR[0]).toMatchObject({
      node: b.gateway.nodeId,
      current: true,
      tcpUrl: b.tcpUrl,
      wsUrl: b.wsUrl,
    });
    // Gone, but seen on B a moment ago: B first, to resume the session there.
    await r.close();
    await expect.poll(() => registry.nodesOf('r')).toEqual([]);
    expect((await order('r'))[0]).toMatchObject({ node: b.gateway.nodeId, previous: true });
    // Node A stops heartbeating (its next beat is 20 s away): after its TTL it is no longer
    // listed, and its users are offline.
    expect((await registry.stats()).online).toBe(2); // p and q on A
    now += 40_000;
    expect(await registry.heartbeat(b.gateway.nodeId, { connections: 1 })).toBe(true);
    expect(await registry.heartbeat(c.gateway.nodeId, { connections: 0 })).toBe(true);
    now += 21_000;
    const stats = await registry.stats();
    expect(stats.nodes.map((n) => n.id).sort()).toEqual([b, c].map((n) => n.gateway.nodeId).sort());
    expect(stats.online).toBe(0);
    expect(await registry.nodesOf('p')).toEqual([]);
  });
});

describe('session handoff when a node goes away', () => {
  it('a node closed with reconnect_elsewhere hands its sessions over: its clients resume on another node', async () => {
    const { nodes } = await threeNodes(2);
    const [a, b] = nodes as [Node, Node];
    const first = await RawTcp.open(a.tcpUrl);
    first.sendJson({ kind: 'hello', data: { token: 'ann' } });
    await first.until((r) => r.frames.length === 1);
    const session = (first.json()[0]!.data as { session: string }).session;
    first.sendJson({ kind: 'sub', id: 1, data: { labels: ['room:x'] } });
    await first.until((r) => r.frames.length === 2);
    // A second user's link dropped a moment ago: its saved session is handed over too.
    const second = await RawTcp.open(a.tcpUrl);
    second.sendJson({ kind: 'hello', data: { token: 'bo' } });
    await second.until((r) => r.frames.length === 1);
    const session2 = (second.json()[0]!.data as { session: string }).session;
    second.destroy();
    await expect.poll(() => a.gateway.stats().resumable).toBe(1);

    await a.gateway.close({ code: 'reconnect_elsewhere' });
    await first.waitClosed();
    expect(first.json().at(-1)).toMatchObject({
      kind: 'kick',
      data: { code: 4001, name: 'reconnect_elsewhere' },
    });
    expect(b.gateway.stats().resumable).toBe(2);
    // A push to the room while ann is between nodes: replayed when she resumes on B.
    await b.gateway.push({ labels: { any: ['room:x'] } }, 'note', 'while moving');

    const thief = await RawTcp.open(b.tcpUrl);
    thief.sendJson({ kind: 'hello', data: { token: 'eve', session } });
    await thief.until((r) => r.frames.length === 1);
    expect(thief.json()[0]).toMatchObject({ kind: 'welcome', data: { user: 'eve', resumed: false } });

    const back = await RawTcp.open(b.tcpUrl);
    back.sendJson({ kind: 'hello', data: { token: 'ann', session } });
    await back.until((r) => r.frames.length === 2);
    // Resumed, not recovered: what was pushed before the handoff is not known on B.
    expect(back.json()[0]).toMatchObject({
      kind: 'welcome',
      data: { user: 'ann', resumed: true, recovered: false },
    });
    expect(back.json()[1]).toMatchObject({ kind: 'push', type: 'note', data: 'while moving' });
    await b.gateway.push({ labels: { any: ['room:x'] } }, 'note', 'after');
    await back.until((r) => r.frames.length === 3);
    expect(back.json()[2]).toMatchObject({ kind: 'push', type: 'note', data: 'after' });

    const bo = await RawTcp.open(b.tcpUrl);
    bo.sendJson({ kind: 'hello', data: { token: 'bo', session: session2 } });
    await bo.until((r) => r.frames.length === 1);
    expect(bo.json()[0]).toMatchObject({ kind: 'welcome', data: { user: 'bo', resumed: true } });
    // Both taken: nothing waits on B any more.
    expect(b.gateway.stats().resumable).toBe(0);
    for (const r of [thief, back, bo]) r.destroy();
  });
});
