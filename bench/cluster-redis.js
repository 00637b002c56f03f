// What a Pylon cluster sends to a Redis Cluster, per operation, measured on Redis's side.
// Starts its own 3-master Redis Cluster on loopback (bench/lib/redis-cluster.js), then for 1, 3
// and 6 gateway processes (bench/lib/cluster-redis-gateway.js: TCP, admin API, the Redis store,
// sharded broker and registry on the cluster) measures:
//   - per push through gateway A's admin API (POST /v1/push), in batches of --pushes: a user push
//     qos 0 and qos 1 (users on gateway B), a label push (every member on B), an {all: true} push;
//   - per connect and per disconnect: 1,000 TCP clients (dev auth, token = user), 50 connects in
//     flight, and 1,000 more one at a time;
//   - end to end: a label push from A's admin API to its one member on B (timestamps in the data).
// A = gateway 0, B = gateway N-1 (the same gateway when N = 1). Redis figures are the sum over the
// masters of INFO commandstats (calls, without the bench's own INFO), total_net_input_bytes +
// total_net_output_bytes and used_cpu_user + used_cpu_sys, between snapshots around the batch,
// minus an idle window of the same length right after it (heartbeats, sweeps), divided by the
// batch size. The gateways also count the commands they hand to each ioredis client (registry,
// store, broker; a script call under its script's name): the round trips before Redis runs the
// commands inside the scripts.
//
// Where the registry's work lands (src/cluster/redis-registry.ts): the node list (nodes zset,
// node:{id} hashes, gone set) is in the one slot of <prefix>{nodes}:, every user's keys in one of
// 64 buckets <prefix>{u<b>}: (b = fnv1a(user) % 64), like the store's {b<b>} buckets. So:
//   - "the node-list shard" is the master of the {nodes} slot. Users are picked so that neither
//     their store bucket nor their registry bucket is on it, the prefix, labels and node channels
//     (a gateway whose random id puts its channel there is started again) so that no channel is:
//     that master's counters are the node list's work alone (joins, heartbeats, sweeps, and the
//     pylonRegConns connection count every setOnline call sends).
//   - the registry's per-user work (locate, setOnline, cleaning a dead node's users) runs on the
//     masters of the users' buckets, which also hold their store buckets and the channels. It is
//     counted two ways: round trips from the gateways' "sent" counts (every registry command but
//     the node list's scripts and ZSCORE), and Redis commands = those round trips' EVALSHAs plus,
//     on the masters other than the node-list one, the commands only the registry's bucket
//     scripts run (SADD, SCARD, SREM, EXISTS, SET, INCRBY, SMEMBERS, SPOP: the store's scripts
//     use hashes, sorted sets and INCR, the broker only pub/sub), plus the registry's direct GET,
//     DEL and SSCAN (its idempotency SETs are counted once, in SET).
// Then one master's capacity (redis-benchmark, EVALSHA of the real scripts, each on the master of
// its keys): the registry's locate (KEYS <bucket>online, ARGV <bucket> user) and setOnline (KEYS
// <bucket>online <bucket>users:<node>, ARGV <bucket> node lastTtl user 1) on a user bucket, its
// connection count and heartbeat on the node list, the store's append and inbox read, SPUBLISH.
// The projection puts the node-list shard's counts on one shard and everything else (registry
// buckets, store buckets, node and label channels, slot-map refreshes) over the S shards, and
// costs each round trip at the capacity of its own script.
//
//   npm run build && node bench/cluster-redis.js [--gateways 1,3,6] [--repeats 3] [--pushes 2000]
//     [--connects 1000] [--rate 50] [--latency-seconds 6] [--concurrency 16] [--limit-minutes 15]
//     [--json [FILE]]
//
// Prints markdown tables and the 1,000,000-connection projection; --json writes everything
// (every repeat's raw deltas too) to FILE (default bench/results/cluster-redis-<time>.json).
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { REGISTRY_BUCKETS } from '../dist/cluster/redis-registry.js';
import { fnv1a } from '../dist/util/redis.js';
import { Histogram } from './lib/histogram.js';
import { Child, killAll } from './lib/ipc.js';
import { loadProbe } from './lib/load.js';
import { diff, REFRESH, startRedisCluster } from './lib/redis-cluster.js';
import { cell, fmt, summarize } from './lib/stats.js';

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const arg = (name, fallback) => {
  const i = args.indexOf(name);
  return i >= 0 && args[i + 1] !== undefined && !args[i + 1].startsWith('--') ? args[i + 1] : fallback;
};
const o = {
  gateways: arg('--gateways', '1,3,6').split(',').map(Number),
  repeats: Number(arg('--repeats', 3)),
  pushes: Number(arg('--pushes', 2000)),
  connects: Number(arg('--connects', 1000)),
  rate: Number(arg('--rate', 50)),
  latencySeconds: Number(arg('--latency-seconds', 6)),
  concurrency: Number(arg('--concurrency', 16)),
  targets: 60, // users on B that user pushes go to, round-robin
  members: 30, // of them, members of the label of the label pushes
  othersPerGateway: 5, // connections on every gateway but B, in another label
  buckets: 64, // RedisStore's default on a Redis Cluster
};

/** Registry commands on the node list's slot; every other registry command is on a user bucket. */
const NODE_LIST = new Set([
  'pylonRegBeat',
  'pylonRegConns',
  'pylonRegLive',
  'pylonRegClaim',
  'pylonRegForget',
  'zscore',
]);
/** Commands only the registry's bucket scripts run inside Redis (SET: also its idempotency keys). */
const BUCKET_INNER = ['sadd', 'scard', 'srem', 'exists', 'set', 'incrby', 'smembers', 'spop'];
const json = args.includes('--json')
  ? arg(
      '--json',
      join(here, 'results', `cluster-redis-${new Date().toISOString().replace(/[:.]/g, '-')}.json`),
    )
  : undefined;
const limitMs = Number(arg('--limit-minutes', 15)) * 60_000;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const mono = () => Number(process.hrtime.bigint()) / 1e6;
const log = (s) => process.stderr.write(`${s}\n`);
const uptime = () => {
  try {
    return execFileSync('uptime', { encoding: 'utf8' }).trim();
  } catch {
    return `load average: ${loadavg()
      .map((x) => x.toFixed(2))
      .join(', ')}`;
  }
};

let redis;
function die(code, msg) {
  log(msg);
  killAll();
  redis?.stop();
  process.exit(code);
}
process.on('SIGINT', () => die(130, '\ninterrupted: stopping every child process'));
process.on('SIGTERM', () => die(143, 'terminated: stopping every child process'));
const watchdog = setTimeout(
  () => die(1, `the run took longer than ${limitMs / 60_000} min: stopped`),
  limitMs,
);

// ---- helpers ----

async function until(what, test, timeoutMs = 60_000, every = 25) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await test();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(every);
  }
}

/** POSTs `count` pushes to the admin API, `concurrency` in flight; rejects on the first failure. */
async function pushBatch(admin, count, body, concurrency) {
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const k = next++;
      const res = await fetch(`${admin}/v1/push`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body(k)),
      });
      const text = await res.text();
      if (!res.ok) throw new Error(`POST /v1/push: ${res.status} ${text}`);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
}

/**
 * Names `${base}${i}` whose store bucket `{b<n>}` and registry bucket `{u<n>}` are both off the
 * node list's master (`offNodes`).
 */
function pickUsers(base, count, offNodes) {
  const out = [];
  for (let i = 0; out.length < count && i < count * 50; i++) {
    const u = `${base}${i}`;
    const h = fnv1a(u);
    if (offNodes(`{b${h % o.buckets}}`) && offNodes(`{u${h % REGISTRY_BUCKETS}}`)) out.push(u);
  }
  if (out.length < count) throw new Error(`only ${out.length} of ${count} users off the node list's master`);
  return out;
}

async function startGateway(name, env, offNodes) {
  for (let attempt = 0; attempt < 20; attempt++) {
    const gw = new Child(name, join(here, 'lib', 'cluster-redis-gateway.js'), { env });
    await gw.once('ready', 30_000);
    const info = await gw.call('info');
    // Its node id is random: keep its channel off the node list's master (start it again if not).
    if (offNodes(info.nodeChannel)) return { gw, info, starts: attempt + 1 };
    await gw.stop();
  }
  throw new Error(`${name}: no node id whose channel is off the node list's master in 20 starts`);
}

/** Commands the gateways handed to each client part, by name, between two counter readings. */
function sentBetween(a, b) {
  const out = { registry: {}, store: {}, broker: {} };
  for (const part of Object.keys(out)) {
    for (let i = 0; i < b.length; i++) {
      for (const [k, v] of Object.entries(b[i].sent[part]))
        out[part][k] = (out[part][k] ?? 0) + v - (a[i].sent[part][k] ?? 0);
    }
  }
  return out;
}

/** Totals of sentBetween: per client, and the registry's split into node list and user buckets. */
function sentParts(byName) {
  const total = (o) => Object.values(o).reduce((x, y) => x + y, 0);
  let regNodes = 0;
  let regUsers = 0;
  let regUsersNotSet = 0;
  for (const [k, v] of Object.entries(byName.registry)) {
    if (NODE_LIST.has(k)) regNodes += v;
    else {
      regUsers += v;
      if (k !== 'set') regUsersNotSet += v;
    }
  }
  return {
    registry: total(byName.registry),
    regNodes,
    regUsers,
    regUsersNotSet,
    store: total(byName.store),
    broker: total(byName.broker),
  };
}

/**
 * Redis commands of the registry's user buckets in a diff: the bucket scripts' inner commands on
 * the masters other than the node list's, plus the round trips the gateways sent to the buckets
 * (their EVALSHAs, direct GET/DEL/SSCAN; SET is already among the inner commands).
 */
function bucketCommands(d, nodesPort, parts) {
  let n = parts.regUsersNotSet;
  for (const m of d.masters) {
    if (m.port === nodesPort) continue;
    for (const k of BUCKET_INNER) n += m.byCommand[k] ?? 0;
  }
  return n;
}

/** Slot-map refresh commands of one master in a diff. */
function refreshOf(m) {
  let n = 0;
  for (const k of REFRESH) n += m?.byCommand[k] ?? 0;
  return n;
}

// ---- one run: N gateways ----

async function run(N, repeat) {
  // The registry's prefix is `${prefix}cluster:`; its node list's slot is that of the tag {nodes}.
  const nodesPort = redis.ownerOf(redis.slotOf('{nodes}'));
  const offNodes = (key) => redis.ownerOf(redis.slotOf(key)) !== nodesPort;
  let prefix;
  for (let k = 0; ; k++) {
    prefix = `cr${N}r${repeat}k${k}:`;
    if (offNodes(`${prefix}all`)) break;
  }
  const env = { REDIS: redis.seeds, PREFIX: prefix };
  const gws = [];
  for (let i = 0; i < N; i++) gws.push(await startGateway(`gateway ${i}`, env, offNodes));
  const A = gws[0];
  const B = gws[N - 1];
  const clients = new Child('clients', join(here, 'lib', 'cluster-redis-clients.js'));
  await clients.once('ready', 30_000);

  const pick = (base) => {
    for (let k = 0; ; k++) if (offNodes(`${prefix}label:${base}${k}`)) return `${base}${k}`;
  };
  const label = pick('room');
  const latLabel = pick('lat');
  const otherLabel = pick('other');
  const tag = `n${N}r${repeat}`;
  const targets = pickUsers(`t${tag}-`, o.targets, offNodes);
  const [latUser] = pickUsers(`l${tag}-`, 1, offNodes);
  const set = [
    ...targets.map((u, i) => [u, B.info.tcp, i < o.members ? [label] : []]),
    [latUser, B.info.tcp, [latLabel]],
  ];
  for (let g = 0; g < N - 1; g++) {
    for (const u of pickUsers(`o${tag}g${g}-`, o.othersPerGateway, offNodes)) {
      set.push([u, gws[g].info.tcp, [otherLabel]]);
    }
  }
  await clients.call('open', { users: set, concurrency: 20 }, 60_000);
  const working = set.length;
  await sleep(1500); // label subscriptions, registry flushes

  const pids = [...gws.map((g) => g.gw.proc.pid), clients.proc.pid, ...redis.pids];
  const counters = () => Promise.all(gws.map((g) => g.gw.call('counters')));
  const windows = {};

  /** Snapshot, action, wait for `done`, snapshot; then an idle window of the same length. */
  async function measure(name, count, action, done, settleMs = 300) {
    await clients.call('reset');
    const c0 = await counters();
    const probe = loadProbe(pids);
    const s0 = await redis.snapshot();
    const t0 = mono();
    await action();
    const actionMs = mono() - t0;
    await until(name, done, 60_000);
    await sleep(settleMs);
    const s1 = await redis.snapshot();
    const c1 = await counters();
    const report = await clients.call('report');
    const load = probe.end();
    const ms = s1.at - s0.at;
    const c2 = await counters();
    const s2 = await redis.snapshot();
    await sleep(ms);
    const s3 = await redis.snapshot();
    const c3 = await counters();
    const work = diff(s0, s1);
    const idle = diff(s2, s3);
    const per = (f) => (f(work) - f(idle)) / count;
    const sum = (d, key) => d.masters.reduce((x, m) => x + m[key], 0);
    const onNodes = (d, key) => d.masters.find((m) => m.port === nodesPort)[key];
    const offNodesSum = (d, key) => sum(d, key) - onNodes(d, key);
    // Commands by name, summed over the masters, minus idle, per operation.
    const byCommand = {};
    for (const [d, sign] of [
      [work, 1],
      [idle, -1],
    ]) {
      for (const m of d.masters) {
        for (const [k, v] of Object.entries(m.byCommand))
          byCommand[k] = (byCommand[k] ?? 0) + (sign * v) / count;
      }
    }
    // Commands the gateways handed to each client, by name: in the window, in the idle window.
    const sw = sentBetween(c0, c1);
    const si = sentBetween(c2, c3);
    const pw = sentParts(sw);
    const pi = sentParts(si);
    const sent = Object.fromEntries(Object.keys(pw).map((k) => [k, (pw[k] - pi[k]) / count]));
    const sentByName = {};
    for (const part of ['registry', 'store', 'broker']) {
      sentByName[part] = {};
      for (const k of new Set([...Object.keys(sw[part]), ...Object.keys(si[part])])) {
        const v = ((sw[part][k] ?? 0) - (si[part][k] ?? 0)) / count;
        if (v !== 0) sentByName[part][k] = v;
      }
    }
    const gateways = c1.map((c, i) => ({
      received: (c.status.received - c0[i].status.received) / count,
      published: (c.status.published - c0[i].status.published) / count,
      labelChannels: c.status.labelChannels,
    }));
    const w = {
      count,
      ms,
      actionMs,
      commands: per((d) => sum(d, 'commands')),
      commandsOnNodes: per((d) => onNodes(d, 'commands')),
      commandsRegUsers: (bucketCommands(work, nodesPort, pw) - bucketCommands(idle, nodesPort, pi)) / count,
      bytes: per((d) => sum(d, 'bytes')),
      bytesOnNodes: per((d) => onNodes(d, 'bytes')),
      cpuUs: per((d) => sum(d, 'cpuUs')),
      execUs: per((d) => sum(d, 'execUs')),
      execUsOnNodes: per((d) => onNodes(d, 'execUs')),
      cpuUsOnNodes: per((d) => onNodes(d, 'cpuUs')),
      bus: per((d) => sum(d, 'bus')),
      busPublish: per((d) => sum(d, 'busPublish')),
      memoryOnUsers: per((d) => offNodesSum(d, 'memory')),
      memoryOnNodes: per((d) => onNodes(d, 'memory')),
      byCommand,
      sent,
      sentByName,
      gateways,
      delivered: report.received,
      byType: report.byType,
      idle: {
        ms: idle.ms,
        commands: sum(idle, 'commands'),
        commandsOnNodes: onNodes(idle, 'commands'),
        refreshOnNodes: refreshOf(idle.masters.find((m) => m.port === nodesPort)),
        refresh: idle.masters.reduce((x, m) => x + refreshOf(m), 0),
        commandsRegUsers: bucketCommands(idle, nodesPort, pi),
        sent: pi,
        sentByName: si,
      },
      otherCores: load?.otherCores ?? Number.NaN,
      raw: { work, idle },
    };
    windows[name] = w;
    log(
      `  ${name}: ${fmt(w.commands)} commands (${fmt(w.sent.registry + w.sent.store + w.sent.broker)} sent; ` +
        `${fmt(w.commandsOnNodes)} on the node list's master, ${fmt(w.commandsRegUsers)} in registry buckets), ` +
        `${fmt(w.bytes)} B, ${fmt(w.cpuUs)} µs Redis CPU per op; ${fmt(ms)} ms window, other load ${fmt(w.otherCores)} cores`,
    );
    return w;
  }

  const report = () => clients.call('report');
  const delivered = (n) => async () => (await report()).received >= n;

  // Connects and disconnects (registry writes, the store's inbox read).
  const spread = (users) => users.map((u, i) => [u, gws[i % N].info.tcp, []]);
  const par = pickUsers(`c${tag}-`, o.connects, offNodes);
  await measure(
    'connect, 50 in flight',
    par.length,
    () => clients.call('open', { users: spread(par), concurrency: 50 }, 120_000),
    () => true,
  );
  await measure(
    'disconnect, all at once',
    par.length,
    () => clients.call('close', { users: par }, 60_000),
    () => true,
  );
  const seq = pickUsers(`s${tag}-`, o.connects, offNodes);
  await measure(
    'connect, one at a time',
    seq.length,
    () => clients.call('open', { users: spread(seq), concurrency: 1 }, 120_000),
    () => true,
  );
  await measure(
    'disconnect, one at a time',
    seq.length,
    () => clients.call('close', { users: seq, oneAtATime: true }, 120_000),
    () => true,
  );

  // Pushes through A's admin API.
  const n = o.pushes;
  const c = o.concurrency;
  const data = { text: 'hello from the bench', n: 0 };
  await measure(
    'user push, qos 0',
    n,
    () =>
      pushBatch(
        A.info.admin,
        n,
        (k) => ({ to: { user: targets[k % targets.length] }, type: 'u0', data: { ...data, n: k } }),
        c,
      ),
    delivered(n),
  );
  await measure(
    'user push, qos 1',
    n,
    () =>
      pushBatch(
        A.info.admin,
        n,
        (k) => ({ to: { user: targets[k % targets.length] }, type: 'u1', data: { ...data, n: k }, qos: 1 }),
        c,
      ),
    delivered(n),
    600,
  );
  await measure(
    'label push',
    n,
    () =>
      pushBatch(
        A.info.admin,
        n,
        (k) => ({ to: { labels: { all: [label] } }, type: 'lb', data: { ...data, n: k } }),
        c,
      ),
    delivered(n * o.members),
  );
  await measure(
    '{all: true} push',
    n,
    () => pushBatch(A.info.admin, n, (k) => ({ to: { all: true }, type: 'al', data: { ...data, n: k } }), c),
    delivered(n * working),
  );

  // End to end: a label push from A's admin API to its one member on B, paced.
  await clients.call('reset');
  const total = Math.round(o.rate * o.latencySeconds);
  const every = 1000 / o.rate;
  const t0 = mono();
  const sends = [];
  for (let k = 0; k < total; k++) {
    const wait = t0 + k * every - mono();
    if (wait > 0) await sleep(wait);
    sends.push(
      fetch(`${A.info.admin}/v1/push`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ to: { labels: { all: [latLabel] } }, type: 'lat', data: { t: mono(), k } }),
      }).then((r) => r.text()),
    );
  }
  await Promise.all(sends);
  await until('latency pushes', delivered(total), 30_000);
  const lr = await report();
  const hist = new Histogram().merge(lr.hist);
  const latency = {
    samples: lr.received,
    p50: hist.quantile(0.5) / 1000,
    p99: hist.quantile(0.99) / 1000,
    max: hist.quantile(1) / 1000,
  };
  log(`  latency: p50 ${fmt(latency.p50)} ms, p99 ${fmt(latency.p99)} ms (${latency.samples} samples)`);

  await clients.stop();
  await Promise.all(gws.map((g) => g.gw.stop()));
  return {
    gateways: N,
    repeat,
    prefix,
    nodesMaster: nodesPort,
    nodeChannels: gws.map((g) => ({
      port: redis.ownerOf(redis.slotOf(g.info.nodeChannel)),
      starts: g.starts,
    })),
    working,
    windows,
    latency,
  };
}

// ---- one master's capacity for the registry's scripts ----

/**
 * Commands/s one master sustains for the registry's hot scripts (locate 1 user and setOnline of 1
 * user, on a user bucket; the connection count and a heartbeat, on the node list), the store's
 * append (its heaviest script) and inbox read, and SPUBLISH to one subscriber, driven by
 * redis-benchmark on this machine (so it shares the cores with Redis: a lower bound). Each runs
 * on the master of its keys: the bucket commands on one master that is not the node list's, the
 * node-list scripts on the node list's. 50 connections without pipelining (many gateways, one
 * command each), then pipelines of 16.
 */
async function capacity() {
  const { RedisRegistry } = await import('../dist/cluster/redis-registry.js');
  const { RedisStore } = await import('../dist/index.js');
  const nodesPort = redis.ownerOf(redis.slotOf('{nodes}'));
  const port = redis.ports.find((p) => p !== nodesPort);
  // The registry under prefix "cap:": node list cap:{nodes}:, buckets cap:{u<b>}:.
  let regUser = 'alice';
  for (let i = 0; redis.ownerOf(redis.slotOf(`{u${fnv1a(regUser) % REGISTRY_BUCKETS}}`)) !== port; i++)
    regUser = `alice${i}`;
  const ub = `cap:{u${fnv1a(regUser) % REGISTRY_BUCKETS}}:`;
  const np = 'cap:{nodes}:';
  const reg = await RedisRegistry.connect(redis.seeds, { prefix: 'cap:', cluster: true });
  await reg.join({ id: 'capnode', name: 'capacity', startedAt: Date.now() }, 3_600_000);
  await reg.setOnline('capnode', [{ user: regUser, online: true }], 1);
  await reg.heartbeat('capnode', { connections: 1 });
  await reg.locate([regUser]);
  const sha = (client, name) => client.scriptsSet?.[name]?.sha;
  const locate = sha(reg.redis, 'pylonRegLocate');
  const online = sha(reg.redis, 'pylonRegOnline');
  const conns = sha(reg.redis, 'pylonRegConns');
  const beat = sha(reg.redis, 'pylonRegBeat');
  const store = await RedisStore.connect(redis.seeds, { prefix: 'cap:store:' });
  let b = 0;
  while (redis.ownerOf(redis.slotOf(`{b${b}}`)) !== port) b++;
  let user = 'x';
  for (let i = 0; fnv1a(user) % o.buckets !== b; i++) user = `x${i}`;
  await store.append([user], {
    id: 'm0',
    type: 't',
    data: { text: 'hello from the bench', n: 1 },
    createdAt: Date.now(),
    expiresAt: Date.now() + 3_600_000,
  });
  const append = sha(store.redis, 'pylonTurn');
  await store.pending(user, 0, 64, Date.now());
  const pending = sha(store.redis, 'pylonPending');
  let channel = 'cap:ch';
  for (let i = 0; redis.ownerOf(redis.slotOf(channel)) !== port; i++) channel = `cap:ch${i}`;
  // A subscriber on the channel, so that each SPUBLISH is written to one connection.
  const sub = spawn('redis-cli', ['-h', '127.0.0.1', '-p', String(port), 'SSUBSCRIBE', channel], {
    stdio: ['ignore', 'ignore', 'ignore'],
  });
  await sleep(300);
  await reg.close();
  await store.close();
  if (!locate || !online || !conns || !beat || !append || !pending) {
    sub.kill('SIGKILL');
    return { error: 'script SHAs not found (ioredis internals changed)' };
  }
  const bp = `cap:store:{b${b}}:`;
  const packed = 'x'.repeat(60);
  const far = String(Date.now() + 3_600_000);
  // [port, command]: the registry's bucket scripts take random users of one bucket (their keys
  // are in its slot whatever the user: the cost of the script, not of the user's hash).
  const commands = {
    'registry locate (1 user)': [port, ['evalsha', locate, '1', `${ub}online`, ub, regUser]],
    'registry setOnline (1 user)': [
      port,
      [
        'evalsha',
        online,
        '2',
        `${ub}online`,
        `${ub}users:capnode`,
        ub,
        'capnode',
        '120000',
        'u__rand_int__',
        '1',
      ],
    ],
    'registry connection count (node list)': [
      nodesPort,
      ['evalsha', conns, '1', `${np}node:capnode`, '__rand_int__'],
    ],
    'registry heartbeat (node list, 1 live node)': [
      nodesPort,
      ['evalsha', beat, '2', `${np}nodes`, `${np}node:capnode`, 'capnode', '0', '', '{"connections":1}'],
    ],
    'store append (1 user)': [
      port,
      [
        'evalsha',
        append,
        '3',
        `${bp}expiry`,
        `${bp}stats`,
        `${bp}dead`,
        bp,
        '1000',
        '1000',
        '1000',
        '0',
        '1',
        packed,
        far,
        far,
        'm__rand_int__',
        '1',
        'u__rand_int__',
        '1',
        '0',
      ],
    ],
    'store pending (1 user, empty inbox)': [
      port,
      [
        'evalsha',
        pending,
        '3',
        `${bp}order:u__rand_int__`,
        `${bp}inbox:u__rand_int__`,
        `${bp}expiry`,
        'u__rand_int__',
        '0',
        '64',
        String(Date.now()),
      ],
    ],
    'SPUBLISH of 168 bytes, 1 subscriber': [port, ['spublish', channel, 'y'.repeat(168)]],
  };
  const out = {};
  for (const [name, [on, cmd]] of Object.entries(commands)) {
    out[name] = { port: on };
    for (const pipeline of [1, 16]) {
      const rates = [];
      for (let k = 0; k < o.repeats; k++) {
        // Every repeat on fresh random users (the sets grow: a bound on what is left behind).
        let text = '';
        try {
          text = execFileSync(
            'redis-benchmark',
            [
              '-h',
              '127.0.0.1',
              '-p',
              String(on),
              '-c',
              '50',
              '-P',
              String(pipeline),
              '-n',
              String(pipeline === 1 ? 30_000 : 80_000),
              '-r',
              '100000',
              '--csv',
              ...cmd,
            ],
            { encoding: 'utf8', timeout: 60_000 },
          );
        } catch (err) {
          log(`  capacity ${name}: redis-benchmark failed: ${err instanceof Error ? err.message : err}`);
        }
        // The CSV row: "test","rps", then 6 latencies; the test's name may hold quotes itself.
        const m = text
          .trim()
          .split('\n')
          .pop()
          ?.match(/,"([\d.]+)"(?:,"[\d.]+"){6}$/);
        rates.push(m ? Number(m[1]) : Number.NaN);
      }
      out[name][`P${pipeline}`] = summarize(rates);
      log(`  capacity ${name}, pipeline ${pipeline}: ${cell(out[name][`P${pipeline}`])}/s`);
    }
  }
  // A script that errored would still count as requests: check that they did their work.
  const check = spawnSync('redis-cli', ['-p', String(port), 'SCARD', `${ub}users:capnode`], {
    encoding: 'utf8',
  });
  out.nodesPort = nodesPort;
  out.check = { setOnlineUsers: Number(check.stdout.trim()) };
  log(
    `  capacity check: ${out.check.setOnlineUsers} users in the bucket's users:capnode set after setOnline`,
  );
  sub.kill('SIGKILL');
  return out;
}

// ---- the projection ----

/** Idle background of a run, pooled over all its idle windows: per gateway per second. */
function background(r) {
  const ws = Object.values(r.windows);
  const ms = ws.reduce((a, w) => a + w.idle.ms, 0);
  const per = (f) => ((ws.reduce((a, w) => a + f(w.idle), 0) / ms) * 1000) / r.gateways;
  const byName = {};
  for (const part of ['registry', 'store', 'broker']) {
    byName[part] = {};
    const names = new Set(ws.flatMap((w) => Object.keys(w.idle.sentByName[part])));
    for (const k of names) byName[part][k] = per((i) => i.sentByName[part][k] ?? 0);
  }
  return {
    seconds: ms / 1000,
    commands: per((i) => i.commands),
    commandsOnNodes: per((i) => i.commandsOnNodes),
    refreshOnNodes: per((i) => i.refreshOnNodes),
    nodeList: per((i) => i.commandsOnNodes - i.refreshOnNodes),
    refresh: per((i) => i.refresh),
    commandsRegUsers: per((i) => i.commandsRegUsers),
    sentRegNodes: per((i) => i.sent.regNodes),
    sentRegUsers: per((i) => i.sent.regUsers),
    sentOther: per((i) => i.sent.store + i.sent.broker),
    sentByName: byName,
  };
}

/** The capacity (table name) a round trip is costed at, by client part and command name. */
function capacityOf(part, name) {
  if (part === 'registry') {
    if (name === 'pylonRegLocate') return 'registry locate (1 user)';
    if (name === 'pylonRegConns') return 'registry connection count (node list)';
    if (NODE_LIST.has(name)) return 'registry heartbeat (node list, 1 live node)';
    return 'registry setOnline (1 user)'; // setOnline, and a dead node's clean-up, on a bucket
  }
  if (part === 'store')
    return name === 'pylonPending' ? 'store pending (1 user, empty inbox)' : 'store append (1 user)';
  return 'SPUBLISH of 168 bytes, 1 subscriber';
}

/**
 * Commands/s per shard for 1,000,000 connections, from the per-operation costs of the largest
 * measured cluster (medians of its repeats). What the node list's master counted (the node list:
 * heartbeats, sweeps, the connection count of every setOnline) lands on one shard; the rest (the
 * registry's user buckets, the store's buckets, node and label channels) spreads over the shards,
 * evenly if users and labels are many. The background's slot-map refreshes go to any master:
 * spread.
 */
function project(runs, N, cap) {
  const rs = runs.filter((r) => r.gateways === N);
  const med = (name, f) => summarize(rs.map((r) => f(r.windows[name]))).median;
  const byNameOf = (f) => {
    const out = { registry: {}, store: {}, broker: {} };
    for (const part of Object.keys(out)) {
      const names = new Set(rs.flatMap((r) => Object.keys(f(r)[part])));
      for (const k of names) out[part][k] = summarize(rs.map((r) => f(r)[part][k] ?? 0)).median;
    }
    return out;
  };
  const cost = (name) => ({
    cmds: med(name, (w) => w.commands),
    nodes: med(name, (w) => w.commandsOnNodes),
    regUsers: med(name, (w) => w.commandsRegUsers),
    sentRegNodes: med(name, (w) => w.sent.regNodes),
    sentRegUsers: med(name, (w) => w.sent.regUsers),
    sentOther: med(name, (w) => w.sent.store + w.sent.broker),
    bytes: med(name, (w) => w.bytes),
    byName: byNameOf((r) => r.windows[name].sentByName),
  });
  const conns = 1_000_000;
  const gateways = 20;
  const ops = [
    { name: 'user push, qos 1', rate: conns / 60, why: 'each user gets one stored message a minute' },
    { name: 'user push, qos 0', rate: conns / 60, why: 'and one qos-0 push a minute' },
    { name: 'label push', rate: 1000, why: 'group messages, members on one gateway' },
    { name: '{all: true} push', rate: 1 / 60, why: 'one broadcast a minute' },
    { name: 'connect, one at a time', rate: conns / 600, why: 'each connection reconnects every 10 min' },
    { name: 'disconnect, one at a time', rate: conns / 600, why: 'and drops as often' },
  ].map((x) => ({ ...x, ...cost(x.name) }));
  const bgs = rs.map(background);
  const m = (f) => summarize(bgs.map(f)).median;
  const bgByName = { registry: {}, store: {}, broker: {} };
  for (const part of Object.keys(bgByName)) {
    for (const k of new Set(bgs.flatMap((b) => Object.keys(b.sentByName[part]))))
      bgByName[part][k] = m((b) => b.sentByName[part][k] ?? 0);
  }
  ops.push({
    name: 'background',
    rate: gateways,
    why: 'per gateway: heartbeats, sweeps, slot-map refreshes',
    cmds: m((b) => b.commands),
    nodes: m((b) => b.nodeList),
    regUsers: m((b) => b.commandsRegUsers),
    sentRegNodes: m((b) => b.sentRegNodes),
    sentRegUsers: m((b) => b.sentRegUsers),
    sentOther: m((b) => b.sentOther),
    bytes: Number.NaN,
    byName: bgByName,
  });
  // N: the node list's shard; P: spread over the S shards; U: of P, the registry's user buckets.
  const t = { N: 0, P: 0, U: 0, Nsent: 0, Psent: 0, Usent: 0, roundTrips: {} };
  // A median below 0 (the noise of the idle subtraction around a true 0) counts as 0.
  const pos = (v) => Math.max(0, v);
  for (const x of ops) {
    x.nodesPerSec = x.rate * pos(x.nodes);
    x.spreadPerSec = x.rate * pos(x.cmds - pos(x.nodes));
    x.regUsersPerSec = x.rate * pos(x.regUsers);
    x.sentNodesPerSec = x.rate * pos(x.sentRegNodes);
    x.sentSpreadPerSec = x.rate * (pos(x.sentRegUsers) + pos(x.sentOther));
    t.N += x.nodesPerSec;
    t.P += x.spreadPerSec;
    t.U += x.regUsersPerSec;
    t.Nsent += x.sentNodesPerSec;
    t.Psent += x.sentSpreadPerSec;
    t.Usent += x.rate * pos(x.sentRegUsers);
    for (const part of ['registry', 'store', 'broker']) {
      for (const [k, v] of Object.entries(x.byName[part])) {
        if (part === 'broker' && k !== 'spublish') continue; // (un)subscribes: a few per label change
        const key = `${part} ${k}`;
        t.roundTrips[key] = (t.roundTrips[key] ?? 0) + x.rate * Math.max(0, v);
      }
    }
  }
  // Share of one master's measured capacity: each round trip/s at the capacity of its own command
  // (capacityOf: an ack costed as an append, heartbeats and sweeps as a heartbeat, a dead node's
  // clean-up as a setOnline); the node list's on its shard, the rest 1/S on every shard.
  const capOf = (name, pl) => cap?.[name]?.[pl]?.median ?? Number.NaN;
  const share = (pl) => {
    let nodes = 0;
    let spread = 0;
    const parts = {};
    for (const [key, perSec] of Object.entries(t.roundTrips)) {
      const [part, k] = key.split(' ');
      const x = perSec / capOf(capacityOf(part, k), pl);
      parts[key] = x;
      if (part === 'registry' && NODE_LIST.has(k)) nodes += x;
      else spread += x;
    }
    return { nodes, spread, parts };
  };
  const s1 = share('P1');
  const s16 = share('P16');
  const shards = [3, 6, 12].map((S) => ({
    shards: S,
    nodesShard: t.N + t.P / S,
    otherShard: t.P / S,
    nodesShardSent: t.Nsent + t.Psent / S,
    otherShardSent: t.Psent / S,
    registryBucketsPerShard: t.U / S,
    nodesShardShare: s1.nodes + s1.spread / S,
    nodesShardSharePipelined: s16.nodes + s16.spread / S,
    otherShardShare: s1.spread / S,
    otherShardSharePipelined: s16.spread / S,
  }));
  return { from: N, conns, gateways, ops, totals: t, share: { P1: s1, P16: s16 }, shards };
}

// ---- output ----

function render(runs, meta, proj, cap) {
  const ns = o.gateways;
  const names = [
    'user push, qos 0',
    'user push, qos 1',
    'label push',
    '{all: true} push',
    'connect, 50 in flight',
    'connect, one at a time',
    'disconnect, all at once',
    'disconnect, one at a time',
  ];
  const col = (rs, name, f) => cell(summarize(rs.map((r) => f(r.windows[name]))));
  const out = [];
  out.push(
    `${meta.machine}. Redis ${meta.redis}, a Redis Cluster of 3 masters (no replicas) on loopback. ` +
      `Median of ${o.repeats} (min–max); every figure per operation, minus an idle window of the same length. ` +
      `Batches of ${o.pushes} pushes through gateway A's admin API (${o.concurrency} in flight); ${o.targets} target users on gateway B, ` +
      `${o.members} of them in the pushed label; ${o.othersPerGateway} connections on every other gateway in another label. ` +
      `Uptime before: ${meta.uptimeBefore}; after: ${meta.uptimeAfter}.`,
    '',
    '| operation | gateways | sent: registry, user buckets | sent: registry, node list | sent: store | sent: broker | Redis commands | of which on the node-list shard | of which registry user buckets | bytes in+out | Redis executing µs | Redis process CPU µs | bus messages | other load, cores |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  );
  for (const name of names) {
    for (const n of ns) {
      const rs = runs.filter((r) => r.gateways === n);
      if (rs.length === 0) continue;
      out.push(
        `| ${name} | ${n} | ${col(rs, name, (w) => w.sent.regUsers)} | ${col(rs, name, (w) => w.sent.regNodes)} | ${col(rs, name, (w) => w.sent.store)} | ${col(rs, name, (w) => w.sent.broker)} | ` +
          `${col(rs, name, (w) => w.commands)} | ${col(rs, name, (w) => w.commandsOnNodes)} | ${col(rs, name, (w) => w.commandsRegUsers)} | ${col(rs, name, (w) => w.bytes)} | ` +
          `${col(rs, name, (w) => w.execUs)} | ${col(rs, name, (w) => w.cpuUs)} | ${col(rs, name, (w) => w.bus)} | ${col(rs, name, (w) => w.otherCores)} |`,
      );
    }
  }
  out.push(
    '',
    '"sent": commands the gateways handed to their ioredis clients (an EVALSHA counts once); the registry\'s split into its node-list scripts and ZSCORE (the {nodes} slot) and everything else (the user buckets). "Redis commands": INFO commandstats summed over the masters, the commands run inside scripts included. No user bucket (store or registry) and no channel is on the node list\'s master, so its column is the node list\'s work alone. "registry user buckets": the EVALSHAs sent to the bucket scripts plus the commands only they run (SADD, SCARD, SREM, EXISTS, SET, INCRBY, SMEMBERS, SPOP) on the other masters. "executing": commandstats time of the commands sent (scripts whole, no network I/O); "process CPU": used_cpu_user + used_cpu_sys of the masters (network I/O included). Both are wall-clock or CPU time on this machine\'s 2 cores, shared by Redis, the gateways and the clients: inflated by contention, not capacities. ' +
      `A push of this payload is a cluster message of ${meta.messageBytes} bytes.`,
    '',
    'Commands by name per operation (all masters, median of the repeats, largest cluster):',
    '',
  );
  const big = ns[ns.length - 1];
  for (const name of names) {
    const rs = runs.filter((r) => r.gateways === big);
    const keys = new Set(rs.flatMap((r) => Object.keys(r.windows[name].byCommand)));
    const parts = [];
    for (const k of [...keys].sort()) {
      const m = summarize(rs.map((r) => r.windows[name].byCommand[k] ?? 0)).median;
      if (Math.abs(m) >= 0.005) parts.push(`${k} ${fmt(m)}`);
    }
    const sentParts = [];
    for (const part of ['registry', 'store', 'broker']) {
      const ks = new Set(rs.flatMap((r) => Object.keys(r.windows[name].sentByName[part])));
      for (const k of [...ks].sort()) {
        const m = summarize(rs.map((r) => r.windows[name].sentByName[part][k] ?? 0)).median;
        if (Math.abs(m) >= 0.005) sentParts.push(`${part} ${k} ${fmt(m)}`);
      }
    }
    out.push(`- ${name}: ${parts.join(', ')} (sent: ${sentParts.join(', ') || 'nothing'})`);
  }
  out.push(
    '',
    "Registry memory per online user (used_memory of the masters other than the node list's, over the connects; the store writes nothing on a connect):",
  );
  for (const n of ns) {
    const rs = runs.filter((r) => r.gateways === n);
    if (rs.length === 0) continue;
    out.push(
      `- ${n} gateway(s): ${cell(summarize(rs.map((r) => r.windows['connect, 50 in flight'].memoryOnUsers)))} bytes (50 in flight), ` +
        `${cell(summarize(rs.map((r) => r.windows['connect, one at a time'].memoryOnUsers)))} bytes (one at a time)`,
    );
  }
  out.push(
    '',
    '| pushes to | gateways | received per push, by gateway (A … B) | published per push by A | label channels held, by gateway |',
    '|---|---:|---|---:|---|',
  );
  for (const name of ['user push, qos 0', 'label push', '{all: true} push']) {
    for (const n of ns) {
      const rs = runs.filter((r) => r.gateways === n);
      if (rs.length === 0) continue;
      const per = Array.from({ length: n }, (_, g) =>
        fmt(summarize(rs.map((r) => r.windows[name].gateways[g].received)).median),
      );
      const chans = Array.from(
        { length: n },
        (_, g) => summarize(rs.map((r) => r.windows[name].gateways[g].labelChannels)).median,
      );
      out.push(
        `| ${name} | ${n} | ${per.join(' · ')} | ${col(rs, name, (w) => w.gateways[0].published)} | ${chans.join(' · ')} |`,
      );
    }
  }
  out.push(
    '',
    `| end to end, label push A → member on B | gateways | p50 ms | p99 ms | samples per repeat |`,
    '|---|---:|---:|---:|---:|',
  );
  for (const n of ns) {
    const rs = runs.filter((r) => r.gateways === n);
    if (rs.length === 0) continue;
    out.push(
      `| ${o.rate} pushes/s for ${o.latencySeconds} s | ${n} | ${cell(summarize(rs.map((r) => r.latency.p50)))} | ${cell(summarize(rs.map((r) => r.latency.p99)))} | ${fmt(summarize(rs.map((r) => r.latency.samples)).median)} |`,
    );
  }
  out.push(
    '',
    '| idle background, per gateway per second | gateways | Redis commands | of which slot-map refreshes (any master) | on the node-list shard | of which node list (not refreshes) | sent: registry, node list | sent: registry, user buckets | sent: store + broker | idle seconds pooled, per repeat |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  );
  for (const n of ns) {
    const rs = runs.filter((r) => r.gateways === n);
    if (rs.length === 0) continue;
    const b = rs.map(background);
    const c = (f) => cell(summarize(b.map(f)));
    out.push(
      `| heartbeats, sweeps, refreshes | ${n} | ${c((x) => x.commands)} | ${c((x) => x.refresh)} | ${c((x) => x.commandsOnNodes)} | ${c((x) => x.nodeList)} | ${c((x) => x.sentRegNodes)} | ${c((x) => x.sentRegUsers)} | ${c((x) => x.sentOther)} | ${c((x) => x.seconds)} |`,
    );
  }
  if (proj) {
    out.push(
      '',
      `Projection for ${proj.conns.toLocaleString('en-US')} connections on ${proj.gateways} gateways, from the per-operation medians of the ${proj.from}-gateway runs. ` +
        "What the node list's master counted lands on one shard (N); the rest, the registry's user buckets (U) among it, spreads over the S shards (P). A cell is rate × per-op cost; a per-op median below 0 (idle-subtraction noise) counts as 0.",
      '',
      '| operation | rate /s | assumption | Redis commands per op | of which node list | of which registry user buckets | sent per op: node list / user buckets / store + broker | node-list shard: commands/s | sent/s | spread: commands/s | sent/s | of which registry user buckets: commands/s |',
      '|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    );
    for (const x of proj.ops) {
      out.push(
        `| ${x.name} | ${fmt(x.rate)}${x.name === 'background' ? ' gateways' : ''} | ${x.why} | ${fmt(x.cmds)} | ${fmt(x.nodes)} | ${fmt(x.regUsers)} | ${fmt(x.sentRegNodes)} / ${fmt(x.sentRegUsers)} / ${fmt(x.sentOther)} | ` +
          `${fmt(x.nodesPerSec)} | ${fmt(x.sentNodesPerSec)} | ${fmt(x.spreadPerSec)} | ${fmt(x.sentSpreadPerSec)} | ${fmt(x.regUsersPerSec)} |`,
      );
    }
    const t = proj.totals;
    out.push(
      `| total | | | | | | | N = ${fmt(t.N)} | ${fmt(t.Nsent)} | P = ${fmt(t.P)} | ${fmt(t.Psent)} | U = ${fmt(t.U)} (${fmt(t.Usent)} sent/s) |`,
      '',
      '| shards S | node-list shard: N + P/S commands/s | sent/s | other shards: P/S commands/s | sent/s | registry user buckets per shard: U/S commands/s | node-list shard: share of one master (no pipelining / pipelines of 16) | other shards: share |',
      '|---:|---:|---:|---:|---:|---:|---:|---:|',
    );
    const pct = (x) => (Number.isFinite(x) ? `${fmt(x * 100)} %` : '–');
    for (const x of proj.shards) {
      out.push(
        `| ${x.shards} | ${fmt(x.nodesShard)} | ${fmt(x.nodesShardSent)} | ${fmt(x.otherShard)} | ${fmt(x.otherShardSent)} | ${fmt(x.registryBucketsPerShard)} | ` +
          `${pct(x.nodesShardShare)} / ${pct(x.nodesShardSharePipelined)} | ${pct(x.otherShardShare)} / ${pct(x.otherShardSharePipelined)} |`,
      );
    }
    const rt = Object.entries(t.roundTrips)
      .filter(([, v]) => v >= 0.5)
      .sort((a, b) => b[1] - a[1])
      .map(([k, v]) => `${k} ${fmt(v)}`)
      .join(', ');
    const parts = (pl) =>
      Object.entries(proj.share[pl].parts)
        .filter(([, v]) => Number.isFinite(v) && v >= 0.0005)
        .sort((a, b) => b[1] - a[1])
        .map(([k, v]) => `${k} ${pct(v)}`)
        .join(', ');
    out.push(
      '',
      `Round trips/s: ${rt}.`,
      '',
      `Share of one master = Σ round trips/s ÷ the measured capacity of their command (table below; an ack costed as an append, heartbeats and sweeps as a heartbeat, a dead node's clean-up as a setOnline): ` +
        `the node list ${pct(proj.share.P1.nodes)} (${pct(proj.share.P16.nodes)} with pipelines of 16) on its shard, the rest ${fmt(proj.share.P1.spread)} masters' worth (${fmt(proj.share.P16.spread)}) over the S shards. ` +
        `By round trip, no pipelining: ${parts('P1')}; pipelines of 16: ${parts('P16')}.`,
    );
  }
  if (cap && !cap.error) {
    out.push(
      '',
      '| one master, redis-benchmark on the same 2 cores | master | 50 connections, no pipelining: commands/s | pipelines of 16: commands/s |',
      '|---|---|---:|---:|',
    );
    for (const [name, c] of Object.entries(cap)) {
      if (c?.P1)
        out.push(
          `| ${name} | ${c.port === cap.nodesPort ? 'node list' : 'user buckets'} | ${cell(c.P1)} | ${cell(c.P16)} |`,
        );
    }
  } else if (cap?.error) out.push('', `capacity: ${cap.error}`);
  return out.join('\n');
}

async function main() {
  const uptimeBefore = uptime();
  log(`uptime before: ${uptimeBefore}`);
  const started = Date.now();
  redis = await startRedisCluster({ masters: 3, timeoutMs: 60_000, log });
  const redisVersion = execFileSync('redis-server', ['--version'], { encoding: 'utf8' }).match(
    /v=(\S+)/,
  )?.[1];
  const runs = [];
  let cap;
  try {
    for (let r = 0; r < o.repeats; r++) {
      for (const n of o.gateways) {
        log(
          `gateways ${n}, repeat ${r + 1}/${o.repeats} (${Math.round((Date.now() - started) / 1000)} s in)`,
        );
        runs.push(await run(n, r));
      }
    }
    log('capacity of one master (redis-benchmark on the same cores)');
    cap = await capacity();
  } finally {
    redis.stop();
  }
  const uptimeAfter = uptime();
  log(`uptime after: ${uptimeAfter}`);
  const meta = {
    machine: `${cpus().length} × ${cpus()[0]?.model.trim()}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}, ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC`,
    redis: redisVersion,
    uptimeBefore,
    uptimeAfter,
    seconds: Math.round((Date.now() - started) / 1000),
  };
  const { encodeMessage } = await import('../dist/cluster/messages.js');
  meta.messageBytes = encodeMessage({
    t: 'op',
    op: {
      op: 'push',
      id: crypto.randomUUID(),
      target: { labels: { all: ['room0'] } },
      type: 'lb',
      data: { text: 'hello from the bench', n: 1234 },
      options: {},
    },
    origin: 'a1b2c3d4',
  }).length;
  const proj = project(runs, o.gateways[o.gateways.length - 1], cap);
  const table = render(runs, meta, proj, cap);
  process.stdout.write(`${table}\n\nrun took ${meta.seconds} s\n`);
  if (json) {
    mkdirSync(dirname(json), { recursive: true });
    writeFileSync(
      json,
      JSON.stringify({ options: o, meta, runs, capacity: cap, projection: proj, table }, null, 2),
    );
    process.stdout.write(`written: ${json}\n`);
  }
}

try {
  await main();
  clearTimeout(watchdog);
} catch (err) {
  die(1, err instanceof Error ? err.stack : String(err));
}
