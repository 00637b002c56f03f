// Label-push throughput and latency through a Redis cluster of Pylon gateways on this machine:
// 1 node, then 3 nodes (each its own process), all sharing one redis-server (broker + registry).
// Clients (raw TCP, JSON) are spread evenly over the nodes and all join the label "room"; node 0
// pushes to {labels: {all: ['room']}}, so with 3 nodes two thirds of every delivery crosses Redis.
//   paced: `--rate` pushes/s for `--seconds` s: latency from push() to the client's read.
//   burst: `--burst` pushes back to back: deliveries/s until the last one is read.
// Run after `npm run build`:
//   node bench/cluster.js [--clients 2000] [--rate 5] [--seconds 5] [--burst 50] [--repeats 3] [--nodes 1,3]
// Writes bench/results/cluster-<time>.json and prints the markdown table.
import { fork, spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createConnection, connect as netConnect } from 'node:net';
import { cpus, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { frameText, readFrames } from './lib/framing.js';
import { Histogram } from './lib/histogram.js';
import { loadProbe } from './lib/load.js';
import { freePort } from './lib/ports.js';

const here = dirname(fileURLToPath(import.meta.url));
const role = process.argv[2];
const now = () => performance.timeOrigin + performance.now();
const arg = (name, fallback) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : fallback;
};

// ---- role: one gateway node ----
async function runNode() {
  const { createGateway, createLogger } = await import('../dist/index.js');
  const { redisCluster } = await import('../dist/cluster/index.js');
  const cluster = await redisCluster(process.env.REDIS, {
    prefix: process.env.PREFIX,
    ttl: 5000,
    sharedStore: true,
  });
  const gateway = createGateway({
    tcp: { port: 0, host: '127.0.0.1' },
    validate: (token) => ({ user: token }),
    authorizeSub: () => true,
    cluster,
    logger: createLogger('warn'),
    rateLimit: false,
    userRateLimit: false,
    keepalive: false,
  });
  const addr = await gateway.listen();
  await cluster.ready;
  let cpu0 = process.cpuUsage();
  const push = (k) => gateway.push({ labels: { all: ['room'] } }, 'tick', { t: now(), k });
  process.on('message', async (m) => {
    if (m.cmd === 'mark') {
      cpu0 = process.cpuUsage();
      const s = cluster.status();
      process.send({ ok: true, published: s.published, received: s.received });
    } else if (m.cmd === 'cpu') {
      const d = process.cpuUsage(cpu0);
      const s = cluster.status();
      process.send({ cpuMs: (d.user + d.system) / 1000, published: s.published, received: s.received });
    } else if (m.cmd === 'paced') {
      const every = 1000 / m.rate;
      const t0 = now();
      for (let k = 0; k < m.rate * m.seconds; k++) {
        const wait = t0 + k * every - now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        await push(k);
      }
      process.send({ done: true });
    } else if (m.cmd === 'burst') {
      const t0 = now();
      for (let k = 0; k < m.count; k++) await push(k);
      process.send({ done: true, sentAt: t0 });
    } else if (m.cmd === 'stop') {
      await gateway.close();
      process.exit(0);
    }
  });
  process.send({ ready: true, tcp: addr.tcp.port, id: gateway.nodeId });
}

// ---- role: the clients ----
async function runClients() {
  const ports = JSON.parse(process.env.PORTS);
  const count = Number(process.env.CLIENTS);
  const hist = new Histogram();
  let received = 0;
  let lastAt = 0;
  const hello = (user) => frameText(JSON.stringify({ kind: 'hello', data: { token: user } }));
  const sub = frameText(JSON.stringify({ kind: 'sub', id: 1, data: { labels: ['room'] } }));
  const open = (i) =>
    new Promise((resolve, reject) => {
      const s = netConnect({ host: '127.0.0.1', port: ports[i % ports.length] });
      const holder = { rest: null, subscribed: false };
      s.on('error', reject);
      s.on('connect', () => s.write(Buffer.concat([hello(`u${i}`), sub])));
      s.on('data', (chunk) =>
        readFrames(holder, chunk, (h, body) => {
          const text = body.toString();
          if (!h.subscribed) {
            if (text.includes('"res"')) {
              h.subscribed = true;
              resolve(s);
            }
            return;
          }
          const m = JSON.parse(text);
          if (m.type !== 'tick') return;
          const at = now();
          hist.record((at - m.data.t) * 1000);
          received++;
          lastAt = at;
        }),
      );
    });
  for (let i = 0; i < count; i += 200) {
    await Promise.all(Array.from({ length: Math.min(200, count - i) }, (_, j) => open(i + j)));
  }
  let cpu0 = process.cpuUsage();
  process.on('message', (m) => {
    if (m.cmd === 'reset') {
      hist.reset();
      received = 0;
      lastAt = 0;
      cpu0 = process.cpuUsage();
      process.send({ ok: true });
    } else if (m.cmd === 'report') {
      const d = process.cpuUsage(cpu0);
      process.send({ received, lastAt, hist: hist.toJSON(), cpuMs: (d.user + d.system) / 1000 });
    } else if (m.cmd === 'stop') process.exit(0);
  });
  process.send({ ready: true });
}

// ---- orchestrator ----
function ping(port) {
  return new Promise((resolve) => {
    const s = createConnection({ port, host: '127.0.0.1' });
    s.on('error', () => resolve(false));
    s.on('connect', () => s.write('PING\r\n'));
    s.on('data', (d) => {
      s.destroy();
      resolve(d.toString().startsWith('+PONG'));
    });
  });
}

async function startRedis() {
  const port = await freePort();
  const child = spawn(
    'redis-server',
    ['--port', String(port), '--save', '', '--appendonly', 'no', '--bind', '127.0.0.1'],
    {
      stdio: 'ignore',
    },
  );
  for (let i = 0; i < 200 && !(await ping(port)); i++) await new Promise((r) => setTimeout(r, 25));
  return { url: `redis://127.0.0.1:${port}`, port, child };
}

/** INFO commandstats: calls and µs spent, per command. */
function redisCommandStats(port) {
  return new Promise((resolve) => {
    const s = createConnection({ port, host: '127.0.0.1' });
    let text = '';
    s.on('connect', () => s.write('INFO commandstats\r\n'));
    s.on('data', (d) => {
      text += d.toString();
      const header = text.match(/^\$(\d+)\r\n/);
      if (header && text.length >= header[0].length + Number(header[1])) {
        s.destroy();
        const out = {};
        for (const m of text.matchAll(/cmdstat_(\w+):calls=(\d+),usec=(\d+)/g))
          out[m[1]] = { calls: Number(m[2]), usec: Number(m[3]) };
        resolve(out);
      }
    });
  });
}

function redisCpuMs(pid) {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return ((Number(f[11]) + Number(f[12])) * 1000) / 100; // jiffies at USER_HZ = 100
  } catch {
    return Number.NaN;
  }
}

function request(child, msg, pick = (m) => m) {
  return new Promise((resolve) => {
    const on = (m) => {
      const v = pick(m);
      if (v !== undefined) {
        child.off('message', on);
        resolve(v);
      }
    };
    child.on('message', on);
    child.send(msg);
  });
}

const once = (child, key) => new Promise((resolve) => child.on('message', (m) => m[key] && resolve(m)));

async function run(redis, nodes, o, repeat) {
  const prefix = `bench${nodes}r${repeat}:`;
  const procs = [];
  for (let i = 0; i < nodes; i++) {
    const p = fork(join(here, 'cluster.js'), ['node'], {
      env: { ...process.env, REDIS: redis.url, PREFIX: prefix },
    });
    procs.push({ p, ready: once(p, 'ready') });
  }
  const ready = await Promise.all(procs.map((x) => x.ready));
  const clients = fork(join(here, 'cluster.js'), ['clients'], {
    env: { ...process.env, PORTS: JSON.stringify(ready.map((r) => r.tcp)), CLIENTS: String(o.clients) },
  });
  await once(clients, 'ready');
  await new Promise((r) => setTimeout(r, 1500)); // registry flushes, heartbeats
  const node0 = procs[0].p;
  const mark = async () => {
    await request(clients, { cmd: 'reset' }, (m) => (m.ok ? m : undefined));
    const before = await Promise.all(
      procs.map((x) => request(x.p, { cmd: 'mark' }, (m) => (m.ok ? m : undefined))),
    );
    const probe = loadProbe([...procs.map((x) => x.p.pid), clients.pid, redis.child.pid]);
    return {
      before,
      probe,
      redis0: redisCpuMs(redis.child.pid),
      cmd0: await redisCommandStats(redis.port),
      at: now(),
    };
  };
  const collect = async (m0) => {
    const c = await request(clients, { cmd: 'report' }, (m) => (m.hist ? m : undefined));
    const n = await Promise.all(
      procs.map((x) => request(x.p, { cmd: 'cpu' }, (m) => (m.cpuMs !== undefined ? m : undefined))),
    );
    const hist = new Histogram().merge(c.hist);
    const published = n.reduce((a, x, i) => a + x.published - m0.before[i].published, 0);
    const receivedByNodes = n.reduce((a, x, i) => a + x.received - m0.before[i].received, 0);
    const load = m0.probe.end();
    const cmd1 = await redisCommandStats(redis.port);
    const delta = (name) => ({
      calls: (cmd1[name]?.calls ?? 0) - (m0.cmd0[name]?.calls ?? 0),
      usec: (cmd1[name]?.usec ?? 0) - (m0.cmd0[name]?.usec ?? 0),
    });
    return {
      received: c.received,
      lastAt: c.lastAt,
      p50: hist.quantile(0.5) / 1000,
      p99: hist.quantile(0.99) / 1000,
      nodeCpuMs: n.map((x) => x.cpuMs),
      clientCpuMs: c.cpuMs,
      redisCpuMs: redisCpuMs(redis.child.pid) - m0.redis0,
      published,
      receivedByNodes,
      otherCores: load?.otherCores ?? Number.NaN,
      clientCores: c.cpuMs / (now() - m0.at),
      redisPublish: delta('publish'),
      redisEvalsha: delta('evalsha'),
    };
  };

  // paced
  let m0 = await mark();
  await request(node0, { cmd: 'paced', rate: o.rate, seconds: o.seconds }, (m) => (m.done ? m : undefined));
  await new Promise((r) => setTimeout(r, 1000));
  const paced = await collect(m0);
  const pushes = o.rate * o.seconds;
  paced.expected = pushes * o.clients;
  paced.deliveredPerSec = paced.received / o.seconds;
  paced.nodeCpuUsPerDelivery =
    (paced.nodeCpuMs.reduce((a, b) => a + b, 0) * 1000) / Math.max(1, paced.received);
  paced.publishesPerPush = paced.published / pushes;
  paced.receiptsPerPush = paced.receivedByNodes / pushes;
  paced.redisUsPerPublish = paced.redisPublish.usec / Math.max(1, paced.redisPublish.calls);

  // burst
  m0 = await mark();
  const b = await request(node0, { cmd: 'burst', count: o.burst }, (m) => (m.done ? m : undefined));
  const deadline = Date.now() + 60_000;
  let burst;
  for (;;) {
    await new Promise((r) => setTimeout(r, 500));
    burst = await collect(m0);
    if (burst.received >= o.burst * o.clients || Date.now() > deadline) break;
  }
  burst.expected = o.burst * o.clients;
  burst.seconds = (burst.lastAt - b.sentAt) / 1000;
  burst.deliveredPerSec = burst.received / burst.seconds;
  burst.pushesPerSec = o.burst / burst.seconds;
  burst.nodeCpuUsPerDelivery =
    (burst.nodeCpuMs.reduce((a, b2) => a + b2, 0) * 1000) / Math.max(1, burst.received);

  for (const x of procs) x.p.send({ cmd: 'stop' });
  clients.send({ cmd: 'stop' });
  await Promise.all([
    ...procs.map((x) => new Promise((r) => x.p.once('exit', r))),
    new Promise((r) => clients.once('exit', r)),
  ]);
  return { nodes, repeat, paced, burst };
}

/** The registry alone, in this process: a connect storm of `users`, lookups, and Redis memory per user. */
async function registryFigures(redis, users) {
  const { RedisRegistry } = await import('../dist/cluster/redis-registry.js');
  const info = async (section) => {
    const s = await redisInfo(redis.port, section);
    return Number(s.match(/used_memory:(\d+)/)?.[1] ?? Number.NaN);
  };
  const reg = await RedisRegistry.connect(redis.url, { prefix: 'benchreg:' });
  await reg.join({ id: 'n1', name: 'bench', startedAt: Date.now() }, 60_000);
  const mem0 = await info('memory');
  const names = Array.from({ length: users }, (_, i) => `user-${i}`);
  let t = now();
  for (let i = 0; i < users; i += 500) {
    await reg.setOnline(
      'n1',
      names.slice(i, i + 500).map((user) => ({ user, online: true })),
      i + 500,
    );
  }
  const storm = now() - t;
  const mem1 = await info('memory');
  t = now();
  for (let i = 0; i < 1000; i++) await reg.nodesOf(names[(i * 7919) % users]);
  const oneLookup = (now() - t) / 1000;
  t = now();
  await reg.locate(names.slice(0, 1000));
  const batchLookup = now() - t;
  t = now();
  await reg.heartbeat('n1', { connections: users });
  const beat = now() - t;
  t = now();
  await reg.leave('n1');
  const leave = now() - t;
  await reg.close();
  return {
    users,
    usersPerSecond: Math.round(users / (storm / 1000)),
    bytesPerUser: Math.round((mem1 - mem0) / users),
    nodesOfMs: oneLookup,
    locate1000Ms: batchLookup,
    heartbeatMs: beat,
    leaveMs: leave,
  };
}

function redisInfo(port, section) {
  return new Promise((resolve) => {
    const s = createConnection({ port, host: '127.0.0.1' });
    let text = '';
    s.on('connect', () => s.write(`INFO ${section}\r\n`));
    s.on('data', (d) => {
      text += d.toString();
      const header = text.match(/^\$(\d+)\r\n/);
      if (header && text.length >= header[0].length + Number(header[1])) {
        s.destroy();
        resolve(text);
      }
    });
  });
}

async function main() {
  const o = {
    clients: Number(arg('--clients', 2000)),
    rate: Number(arg('--rate', 5)),
    seconds: Number(arg('--seconds', 5)),
    burst: Number(arg('--burst', 50)),
    repeats: Number(arg('--repeats', 3)),
    nodes: arg('--nodes', '1,3').split(',').map(Number),
  };
  const { encodeMessage } = await import('../dist/cluster/messages.js');
  const sample = {
    t: 'push',
    id: crypto.randomUUID(),
    target: { labels: { all: ['room'] } },
    type: 'tick',
    data: { t: now(), k: 1 },
    options: {},
    origin: 'a1b2c3d4',
  };
  const bytesPerPush = encodeMessage(sample).length;
  const redis = await startRedis();
  const runs = [];
  let registry;
  try {
    registry = await registryFigures(redis, Number(arg('--registry-users', 100_000)));
    process.stderr.write(`registry: ${JSON.stringify(registry)}\n`);
    for (let r = 0; r < o.repeats; r++) {
      for (const n of o.nodes) {
        const res = await run(redis, n, o, r);
        runs.push(res);
        process.stderr.write(
          `nodes ${n} repeat ${r}: paced p50 ${res.paced.p50.toFixed(2)} ms p99 ${res.paced.p99.toFixed(2)} ms ` +
            `(${res.paced.received}/${res.paced.expected}); burst ${Math.round(res.burst.deliveredPerSec)} deliveries/s ` +
            `(${res.burst.received}/${res.burst.expected})\n`,
        );
      }
    }
  } finally {
    redis.child.kill('SIGKILL');
  }
  const med = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const rng = (xs, d = 0) => `${Math.min(...xs).toFixed(d)}–${Math.max(...xs).toFixed(d)}`;
  const fmt = (xs, d = 0) =>
    `${med(xs).toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d })} (${rng(xs, d)})`;
  const lines = [
    `${cpus().length} × ${cpus()[0]?.model.trim()}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}, ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC. ` +
      `${o.clients} TCP clients (JSON) in one process, spread evenly over the nodes, all in label "room"; node 0 pushes. ` +
      `Median of ${o.repeats} (min–max). Everything (redis-server, the nodes, the clients) shares this machine's cores.`,
    '',
    `A label push is one PUBLISH of ${bytesPerPush} bytes (this payload) on the all-nodes channel; Redis hands it to every node, and each node but the sender fans it out to its own clients.`,
    '',
    '| nodes | paced: pushes/s | deliveries/s | p50 ms | p99 ms | nodes’ CPU µs/delivery | PUBLISH per push | nodes receiving it | Redis µs per PUBLISH | burst: deliveries/s | burst: pushes/s | burst: client process cores | other load, cores |',
    '|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const n of o.nodes) {
    const rs = runs.filter((r) => r.nodes === n);
    const col = (f, d = 0) => fmt(rs.map(f), d);
    const cells = [
      n,
      o.rate,
      col((r) => r.paced.deliveredPerSec),
      col((r) => r.paced.p50, 2),
      col((r) => r.paced.p99, 2),
      col((r) => r.paced.nodeCpuUsPerDelivery, 1),
      col((r) => r.paced.publishesPerPush, 2),
      col((r) => r.paced.receiptsPerPush, 2),
      col((r) => r.paced.redisUsPerPublish, 1),
      col((r) => r.burst.deliveredPerSec),
      col((r) => r.burst.pushesPerSec, 1),
      col((r) => r.burst.clientCores, 2),
      col((r) => Math.max(r.paced.otherCores, r.burst.otherCores), 2),
    ];
    lines.push(`| ${cells.join(' | ')} |`);
  }
  lines.push(
    '',
    `Registry alone (RedisRegistry, same machine): ${registry.users.toLocaleString('en-US')} users come online in batches of 500 ` +
      `at ${registry.usersPerSecond.toLocaleString('en-US')} users/s, using ${registry.bytesPerUser} bytes of Redis memory per user; ` +
      `nodesOf(user) ${registry.nodesOfMs.toFixed(3)} ms, locate(1,000 users) ${registry.locate1000Ms.toFixed(1)} ms, ` +
      `a heartbeat ${registry.heartbeatMs.toFixed(2)} ms, leave (removing them all) ${registry.leaveMs.toFixed(0)} ms.`,
  );
  const table = lines.join('\n');
  const dir = join(here, 'results');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `cluster-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(file, JSON.stringify({ options: o, bytesPerPush, registry, runs, table }, null, 2));
  process.stdout.write(`${table}\n\nwritten: ${file}\n`);
}

if (role === 'node') await runNode();
else if (role === 'clients') await runClients();
else await main();
