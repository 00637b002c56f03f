import { SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type PylonClient } from '../src/client/index.js';
import { connectViaDispatcher } from '../src/cluster/dispatch-client.js';
import { RawTcp } from './support/gateway.js';
import { HttpPeer } from './support/http-peer.js';
import { Child } from './support/process.js';
import { startRedis, type TestRedis } from './support/redis.js';

// Three gateway processes (test/support/cluster-node.mjs, built code) joined through a real
// redis-server: broker, registry and message store.
const TTL = 1500;
const JWT_SECRET = 'a-test-secret-of-enough-length';
const jwt = (sub: string, jti: string) =>
  new SignJWT({ sub })
    .setProtectedHeader({ alg: 'HS256' })
    .setIssuedAt()
    .setJti(jti)
    .sign(new TextEncoder().encode(JWT_SECRET));

interface NodeProc {
  child: Child;
  id: string;
  tcp: string;
  ws: string;
  admin: string;
}

let redis: TestRedis;
const procs: Child[] = [];
const clients: PylonClient[] = [];

async function startNode(): Promise<NodeProc> {
  const child = new Child(process.execPath, ['test/support/cluster-node.mjs'], {
    REDIS: redis.url,
    TTL: String(TTL),
    PREFIX: 'test:',
    LOG: 'warn',
    JWT_SECRET,
  });
  procs.push(child);
  const m = await child.waitFor(/^node (\S+) tcp (\S+) ws (\S+) admin (\S+)/);
  await child.waitFor(/^ready/);
  return { child, id: m[1]!, tcp: m[2]!, ws: m[3]!, admin: m[4]! };
}

async function api<T = Record<string, unknown>>(node: NodeProc, path: string, body?: unknown): Promise<T> {
  const res = await fetch(`${node.admin}${path}`, {
    method: body === undefined ? 'GET' : 'POST',
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(10_000),
  });
  const json = (await res.json()) as T;
  if (!res.ok) throw new Error(`${path}: ${res.status} ${JSON.stringify(json)}`);
  return json;
}

async function client(node: NodeProc, user: string, labels: string[] = []): Promise<PylonClient> {
  const c = await connect(node.tcp, { token: user, reconnect: { base: 50, max: 300 } });
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

interface Stats {
  cluster: { nodes: number; online: number; connections: number; status: { up: boolean } };
  nodes: Array<{ id: string; connections: number }>;
}

let a: NodeProc;
let b: NodeProc;
let c: NodeProc;

beforeAll(async () => {
  redis = await startRedis();
  [a, b, c] = await Promise.all([startNode(), startNode(), startNode()]);
}, 30_000);

afterAll(async () => {
  await Promise.all(clients.map((cl) => cl.close().catch(() => {})));
  for (const p of procs) p.kill('SIGKILL');
  await redis?.stop();
});

describe('cluster of three gateway processes over Redis', () => {
  it('a client on node A gets pushes sent through node C’s admin API (user, connection, qos 1)', async () => {
    const alice = await client(a, 'alice');
    const got = collect(alice, 'note');
    await expect
      .poll(async () => (await api<Stats>(c, '/v1/stats')).cluster.online)
      .toBeGreaterThanOrEqual(1);
    await api(c, '/v1/push', { to: { user: 'alice' }, type: 'note', data: { n: 1 } });
    await api(c, '/v1/push', { to: { connection: alice.welcome?.connection }, type: 'note', data: { n: 2 } });
    const r = await api(c, '/v1/push', { to: { user: 'alice' }, type: 'note', data: { n: 3 }, qos: 1 });
    expect(r.stored).toBe(1);
    await expect.poll(() => got.length).toBe(3);
    expect(got).toEqual([{ n: 1 }, { n: 2 }, { n: 3 }]);
  });

  it('an HTTP session on node A takes POSTs that land on nodes B and C (no sticky sessions)', async () => {
    const httpOf = (node: NodeProc) => node.ws.replace(/^ws:/, 'http:').replace(/\/ws$/, '');
    const peer = await HttpPeer.open(httpOf(a), { hello: { kind: 'hello', data: { token: 'hana' } } });
    await peer.until((p) => p.of('welcome').length === 1);
    expect(peer.session.startsWith(`${a.id}-`)).toBe(true);
    const viaB = await peer.send([{ kind: 'sub', id: 1, data: { labels: ['desk'] } }], httpOf(b));
    expect(viaB.status).toBe(202);
    const viaC = await peer.send([{ kind: 'ping', data: 'from C' }], httpOf(c));
    expect(viaC.status).toBe(202);
    await peer.until((p) => p.of('res').length === 1 && p.of('pong').length === 1);
    expect(peer.of('res')[0]).toMatchObject({ id: 1, data: { labels: ['desk'] } });
    expect(peer.of('pong')[0]).toMatchObject({ data: 'from C' });
    await api(c, '/v1/push', { to: { labels: { all: ['desk'] } }, type: 'ticket', data: { n: 1 } });
    await peer.until((p) => p.of('push', 'ticket').length === 1);
    // The session ends with its stream: the user is offline for every node.
    peer.drop();
    await expect.poll(async () => (await api<{ online: boolean }>(b, '/v1/users/hana')).online).toBe(false);
  });

  it('a label push reaches clients on all three nodes exactly once each', async () => {
    const got: unknown[][] = [];
    for (const [i, node] of [a, b, c].entries()) {
      for (let k = 0; k < 4; k++) got.push(collect(await client(node, `room-${i}-${k}`, ['room']), 'news'));
    }
    await api(b, '/v1/push', { to: { labels: { all: ['room'] } }, type: 'news', data: { n: 1 } });
    await api(a, '/v1/push', { to: { all: true }, type: 'news', data: { n: 2 } });
    await expect.poll(() => got.every((g) => g.length === 2)).toBe(true);
    await new Promise((r) => setTimeout(r, 300));
    for (const g of got) expect(g.map((x) => (x as { n: number }).n).sort()).toEqual([1, 2]);
  });

  it('counts users online across the cluster; the dispatcher lists the user’s node first', async () => {
    // alice (A) + 12 room users + two users on two nodes each.
    await client(a, 'both');
    await client(b, 'both');
    await client(b, 'bea');
    await client(c, 'bea');
    await expect.poll(async () => (await api<Stats>(a, '/v1/stats')).cluster.online).toBe(15);
    const stats = await api<Stats>(b, '/v1/stats');
    expect(stats.cluster.nodes).toBe(3);
    expect(stats.nodes.map((n) => n.id).sort()).toEqual([a.id, b.id, c.id].sort());
    await expect.poll(async () => (await api<Stats>(b, '/v1/stats')).cluster.connections).toBe(17);

    const d = await api<{ nodes: Array<{ node: string; current?: boolean; tcpUrl: string }> }>(
      c,
      '/v1/dispatch?user=alice',
    );
    expect(d.nodes[0]).toMatchObject({ node: a.id, current: true, tcpUrl: a.tcp });
    expect(d.nodes.map((n) => n.node).sort()).toEqual([a.id, b.id, c.id].sort());
    const viaDispatcher = await connectViaDispatcher(`${c.admin}/v1/dispatch`, {
      user: 'alice',
      transport: 'tcp',
      reconnect: false,
    });
    clients.push(viaDispatcher);
    expect(viaDispatcher.welcome?.connection.startsWith(`${a.id}-`)).toBe(true);
  });

  it('a ban on one node closes the user everywhere within a second and is refused on every node, resume included, until it ends', async () => {
    const closes: Array<{ code: number; at: number }> = [];
    const sessions: string[] = [];
    for (const node of [a, b, c]) {
      const cl = await connect(node.tcp, { token: 'zed', reconnect: { base: 50, max: 100 } });
      sessions.push(cl.welcome?.session as string);
      cl.on('close', (info) => closes.push({ code: info.code, at: Date.now() }));
      clients.push(cl);
    }
    const bystander = await client(b, 'yoko');
    const started = Date.now();
    const r = await api<{ kicked: number }>(a, '/v1/users/zed/ban', { duration: 2500, reason: 'abuse' });
    expect(r.kicked).toBe(1);
    await expect.poll(() => closes.length, { timeout: 2000 }).toBe(3);
    expect(closes.every((x) => x.code === 4508)).toBe(true);
    expect(Math.max(...closes.map((x) => x.at)) - started).toBeLessThan(1000);
    expect(bystander.connected).toBe(true);
    // Every node refuses it, at the handshake and on resume; every node reports the ban.
    for (const [i, node] of [a, b, c].entries()) {
      const raw = await RawTcp.open(node.tcp);
      raw.sendJson({ kind: 'hello', data: { token: 'zed', session: sessions[i] } });
      await raw.until((x) => x.closed);
      expect(raw.json().map((f) => f.kind)).toEqual(['kick']);
      expect(raw.json()[0]?.data).toMatchObject({ code: 4508, name: 'banned' });
      expect((await api<{ banned?: { reason: string } }>(node, '/v1/users/zed')).banned?.reason).toBe(
        'abuse',
      );
    }
    // After the ban: accepted on every node.
    await new Promise((res) => setTimeout(res, Math.max(0, started + 2600 - Date.now())));
    for (const node of [a, b, c]) {
      const cl = await connect(node.tcp, { token: 'zed', reconnect: false });
      expect(cl.welcome?.user).toBe('zed');
      await cl.close();
    }
    await bystander.close();
  });

  it('a token revoked by jti on one node is closed and refused on every node; another token of the user is not', async () => {
    const revoked = await jwt('yan', 'jti-1');
    const other = await jwt('yan', 'jti-2');
    const closes: number[] = [];
    for (const node of [b, c]) {
      const cl = await connect(node.ws, { token: revoked, reconnect: { base: 50, max: 100 } });
      cl.on('close', (info) => closes.push(info.code));
      clients.push(cl);
    }
    const keeps = await connect(c.tcp, { token: other, reconnect: false });
    clients.push(keeps);
    const r = await api<{ closed: number }>(a, '/v1/revocations', { jti: 'jti-1', duration: 60_000 });
    expect(r.closed).toBe(0);
    await expect.poll(() => closes, { timeout: 2000 }).toEqual([4509, 4509]);
    expect(keeps.connected).toBe(true);
    for (const node of [a, b, c]) {
      await expect(connect(node.tcp, { token: revoked, reconnect: false })).rejects.toThrow(/\(4509\)/);
    }
    await keeps.close();
  });

  it('forgets the users of a node killed with SIGKILL within the TTL', async () => {
    const before = (await api<Stats>(a, '/v1/stats')).cluster.online;
    // On B only: 4 room users; 'both' and 'bea' stay online elsewhere.
    b.child.kill('SIGKILL');
    const killedAt = Date.now();
    await expect
      .poll(async () => (await api<Stats>(a, '/v1/stats')).cluster.online, { timeout: TTL * 3 })
      .toBe(before - 4);
    const took = Date.now() - killedAt;
    expect(took).toBeLessThanOrEqual(TTL + 500);
    const stats = await api<Stats>(c, '/v1/stats');
    expect(stats.cluster.nodes).toBe(2);
    expect(stats.nodes.map((n) => n.id)).not.toContain(b.id);
  });

  it('loses no qos-1 message across a Redis restart; the outage shows in healthz, status and logs', async () => {
    const users = ['q0', 'q1', 'q2', 'q3', 'q4', 'q5'];
    const seen = new Map<string, number[]>();
    const seqs: string[] = [];
    for (const [i, u] of users.entries()) {
      const cl = await client(i % 2 === 0 ? a : c, u);
      seen.set(u, []);
      cl.on<{ n: number }>('m', ({ n }, meta) => {
        seen.get(u)?.push(n);
        seqs.push(`${u}:${n}:${meta.seq}`);
      });
    }
    await expect
      .poll(async () => (await api<Stats>(a, '/v1/stats')).cluster.online)
      .toBeGreaterThanOrEqual(6);

    const accepted = new Map<string, Set<number>>(users.map((u) => [u, new Set()]));
    const failed = new Map<string, Set<number>>(users.map((u) => [u, new Set()]));
    const errors: string[] = [];
    let running = true;
    let n = 0;
    // Producers through both nodes: each push goes to a user held by the other node half the time.
    const producer = async (via: NodeProc) => {
      while (running) {
        const k = ++n;
        const user = users[k % users.length] as string;
        try {
          await api(via, '/v1/push', { to: { user }, type: 'm', data: { n: k }, qos: 1 });
          accepted.get(user)?.add(k);
        } catch (err) {
          failed.get(user)?.add(k);
          errors.push(`${k}: ${(err as Error).message}`);
        }
        await new Promise((r) => setTimeout(r, 5));
      }
    };
    const producers = [producer(a), producer(c)];
    await new Promise((r) => setTimeout(r, 500));

    const health503 = (async () => {
      for (let i = 0; i < 100; i++) {
        const res = await fetch(`${a.admin}/healthz`);
        if (res.status === 503) return (await res.json()) as { error: { code: string; message: string } };
        await new Promise((r) => setTimeout(r, 10));
      }
      return undefined;
    })();
    await redis.restart();
    const outage = await health503;
    expect(outage?.error.code).toBe('UNAVAILABLE');
    expect(outage?.error.message).toMatch(/broker down|registry down/);
    await expect.poll(async () => (await fetch(`${a.admin}/healthz`)).status, { timeout: 10_000 }).toBe(200);
    await expect.poll(async () => (await fetch(`${c.admin}/healthz`)).status, { timeout: 10_000 }).toBe(200);
    // The brokers re-subscribed by themselves: qos 0 (pub/sub only, no store) crosses nodes again.
    const q0 = clients.find((cl) => cl.welcome?.user === 'q0') as PylonClient;
    const q1 = clients.find((cl) => cl.welcome?.user === 'q1') as PylonClient;
    const after0 = collect(q0, 'after');
    const after1 = collect(q1, 'after');
    await api(c, '/v1/push', { to: { user: 'q0' }, type: 'after', data: 'c to a' });
    await api(a, '/v1/push', { to: { user: 'q1' }, type: 'after', data: 'a to c' });
    await expect.poll(() => [...after0, ...after1]).toEqual(['c to a', 'a to c']);
    // Pushes after the restart, too.
    const count = () => users.reduce((sum, u) => sum + (accepted.get(u)?.size ?? 0), 0);
    const afterRestart = count() + 30;
    await expect.poll(count, { timeout: 10_000 }).toBeGreaterThanOrEqual(afterRestart);
    running = false;
    await Promise.all(producers);

    let total = 0;
    for (const u of users) total += accepted.get(u)?.size ?? 0;
    expect(total).toBeGreaterThan(40);
    const missing = () =>
      users.flatMap((u) =>
        [...(accepted.get(u) ?? [])].filter((k) => !seen.get(u)?.includes(k)).map((k) => `${u}:${k}`),
      );
    try {
      await expect.poll(missing, { timeout: 15_000 }).toEqual([]);
    } catch (err) {
      const { RedisStore } = await import('../src/store/redis-store.js');
      const st = await RedisStore.connect(redis.url, { prefix: 'test:store:' });
      for (const m of missing()) {
        const u = m.split(':')[0] as string;
        console.log(
          m,
          'last seq',
          await st.lastSeq(u),
          'pending',
          JSON.stringify(await st.pending(u, 0, 100, Date.now())),
        );
        console.log('client saw', seqs.filter((x) => x.startsWith(`${u}:`)).join(' '));
      }
      await st.close();
      console.log('failed pushes', errors);
      console.log('A', a.child.stderr.slice(-3000));
      console.log('C', c.child.stderr.slice(-3000));
      throw err;
    }
    await new Promise((r) => setTimeout(r, 500));
    for (const u of users) {
      const got = seen.get(u) ?? [];
      expect(
        new Set(got).size,
        `${u} got a message twice: ${seqs.filter((x) => x.startsWith(`${u}:`)).join(' ')}`,
      ).toBe(got.length);
      for (const k of got) expect(accepted.get(u)?.has(k) || failed.get(u)?.has(k)).toBe(true);
    }
    const status = (await api<Stats>(a, '/v1/stats')).cluster.status as unknown as {
      outages: number;
      resyncs: number;
    };
    expect(status.outages).toBeGreaterThanOrEqual(1);
    expect(a.child.stderr).toMatch(/cluster: broker down/);
    expect(a.child.stderr).toMatch(/cluster: broker back/);
  }, 60_000);
});
