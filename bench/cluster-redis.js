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
// store, broker): the round trips before Redis runs the commands inside the scripts.
// Users, labels and the prefix are picked so that no store key and no channel hashes to the
// master that holds the registry's slot ({cluster}); that master's counters are the registry's.
//
//   npm run build && node bench/cluster-redis.js [--gateways 1,3,6] [--repeats 3] [--pushes 2000]
//     [--connects 1000] [--rate 50] [--latency-seconds 6] [--concurrency 16] [--limit-minutes 15]
//     [--json [FILE]]
//
// Prints markdown tables and the 1,000,000-connection projection; --json writes everything
// (every repeat's raw deltas too) to FILE (default bench/results/cluster-redis-<time>.json).
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { fnv1a } from '../dist/util/redis.js';
import { Histogram } from './lib/histogram.js';
import { Child, killAll } from './lib/ipc.js';
import { loadProbe } from './lib/load.js';
import { diff, startRedisCluster } from './lib/redis-cluster.js';
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

/** Names `${base}${i}` whose keys stay off the registry's master (store bucket `{b<n>}`). */
function pickUsers(base, count, offRegistry) {
  const out = [];
  for (let i = 0; out.length < count && i < count * 20; i++) {
    const u = `${base}${i}`;
    if (offRegistry(`{b${fnv1a(u) % o.buckets}}`)) out.push(u);
  }
  return out;
}

async function startGateway(name, env, offRegistry) {
  for (let attempt = 0; attempt < 12; attempt++) {
    const gw = new Child(name, join(here, 'lib', 'cluster-redis-gateway.js'), { env });
    await gw.once('ready', 30_000);
    const info = await gw.call('info');
    // Its node id is random: keep its channel off the registry's master (start it again if not).
    if (offRegistry(info.nodeChannel)) return { gw, info };
    await gw.stop();
  }
  throw new Error(`${name}: no node id whose channel is off the registry's master in 12 starts`);
}

// ---- one run: N gateways ----

async function run(N, repeat) {
  const regPort = redis.ownerOf(redis.slotOf('{cluster}'));
  const offRegistry = (key) => redis.ownerOf(redis.slotOf(key)) !== regPort;
  let prefix;
  for (let k = 0; ; k++) {
    prefix = `cr${N}r${repeat}k${k}:`;
    if (offRegistry(`${prefix}all`)) break;
  }
  const env = { REDIS: redis.seeds, PREFIX: prefix };
  const gws = [];
  for (let i = 0; i < N; i++) gws.push(await startGateway(`gateway ${i}`, env, offRegistry));
  const A = gws[0];
  const B = gws[N - 1];
  const clients = new Child('clients', join(here, 'lib', 'cluster-redis-clients.js'));
  await clients.once('ready', 30_000);

  const pick = (base) => {
    for (let k = 0; ; k++) if (offRegistry(`${prefix}label:${base}${k}`)) return `${base}${k}`;
  };
  const label = pick('room');
  const latLabel = pick('lat');
  const otherLabel = pick('other');
  const tag = `n${N}r${repeat}`;
  const targets = pickUsers(`t${tag}-`, o.targets, offRegistry);
  const [latUser] = pickUsers(`l${tag}-`, 1, offRegistry);
  const set = [
    ...targets.map((u, i) => [u, B.info.tcp, i < o.members ? [label] : []]),
    [latUser, B.info.tcp, [latLabel]],
  ];
  for (let g = 0; g < N - 1; g++) {
    for (const u of pickUsers(`o${tag}g${g}-`, o.othersPerGateway, offRegistry)) {
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
    const sum = (d, key) => d.masters.reduce((a, m) => a + m[key], 0);
    const onReg = (d, key) => d.masters.find((m) => m.port === regPort)[key];
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
    // Commands the gateways handed to each client, minus idle, per operation.
    const sent = {};
    const sentByName = {};
    for (const part of ['registry', 'store', 'broker']) {
      const total = (cs) =>
        cs.reduce((a, c) => a + Object.values(c.sent[part]).reduce((x, y) => x + y, 0), 0);
      sent[part] = (total(c1) - total(c0) - (total(c3) - total(c2))) / count;
      const names = new Set(c1.flatMap((c) => Object.keys(c.sent[part])));
      const of = (cs, k) => cs.reduce((a, c) => a + (c.sent[part][k] ?? 0), 0);
      sentByName[part] = {};
      for (const k of names) {
        const v = (of(c1, k) - of(c0, k) - (of(c3, k) - of(c2, k))) / count;
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
      commandsOnRegistry: per((d) => onReg(d, 'commands')),
      bytes: per((d) => sum(d, 'bytes')),
      bytesOnRegistry: per((d) => onReg(d, 'bytes')),
      cpuUs: per((d) => sum(d, 'cpuUs')),
      execUs: per((d) => sum(d, 'execUs')),
      execUsOnRegistry: per((d) => onReg(d, 'execUs')),
      cpuUsOnRegistry: per((d) => onReg(d, 'cpuUs')),
      bus: per((d) => sum(d, 'bus')),
      busPublish: per((d) => sum(d, 'busPublish')),
      memoryOnRegistry: per((d) => onReg(d, 'memory')),
      byCommand,
      sent,
      sentByName,
      gateways,
      delivered: report.received,
      byType: report.byType,
      idle: {
        ms: idle.ms,
        commands: sum(idle, 'commands'),
        commandsOnRegistry: onReg(idle, 'commands'),
        sent: Object.fromEntries(
          ['registry', 'store', 'broker'].map((part) => {
            const total = (cs) =>
              cs.reduce((a, c) => a + Object.values(c.sent[part]).reduce((x, y) => x + y, 0), 0);
            return [part, total(c3) - total(c2)];
          }),
        ),
      },
      otherCores: load?.otherCores ?? Number.NaN,
      raw: { work, idle },
    };
    windows[name] = w;
    log(
      `  ${name}: ${fmt(w.commands)} commands (${fmt(w.sent.registry + w.sent.store + w.sent.broker)} sent), ` +
        `${fmt(w.bytes)} B, ${fmt(w.cpuUs)} µs Redis CPU per op; ${fmt(ms)} ms window, other load ${fmt(w.otherCores)} cores`,
    );
    return w;
  }

  const report = () => clients.call('report');
  const delivered = (n) => async () => (await report()).received >= n;

  // Connects and disconnects (registry writes, the store's inbox read).
  const spread = (users) => users.map((u, i) => [u, gws[i % N].info.tcp, []]);
  const par = pickUsers(`c${tag}-`, o.connects, offRegistry);
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
  const seq = pickUsers(`s${tag}-`, o.connects, offRegistry);
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
    registryMaster: regPort,
    nodeChannels: gws.map((g) => ({ port: redis.ownerOf(redis.slotOf(g.info.nodeChannel)) })),
    working,
    windows,
    latency,
  };
}

// ---- one master's capacity for the registry's scripts ----

/**
 * EVALSHA/s one master sustains for the registry's two hot scripts (locate 1 user; setOnline of
 * 1 user) and for the store's append (its heaviest script, a bucket on that master), driven by
 * redis-benchmark on this machine (so it shares the cores with Redis: a lower bound). 50
 * connections without pipelining (many gateways, one command each), then pipelines of 16.
 */
async function capacity() {
  const { RedisRegistry } = await import('../dist/cluster/redis-registry.js');
  const { RedisStore } = await import('../dist/index.js');
  const regPort = redis.ownerOf(redis.slotOf('{cluster}'));
  const p = 'cap:{cluster}:';
  const reg = await RedisRegistry.connect(redis.seeds, { prefix: p, cluster: true });
  await reg.join({ id: 'capnode', name: 'capacity', startedAt: Date.now() }, 3_600_000);
  await reg.setOnline('capnode', [{ user: 'alice', online: true }]);
  await reg.locate(['alice']);
  const sha = (client, name) => client.scriptsSet?.[name]?.sha;
  const locate = sha(reg.redis, 'pylonRegLocate');
  const online = sha(reg.redis, 'pylonRegOnline');
  const store = await RedisStore.connect(redis.seeds, { prefix: 'cap:store:' });
  let b = 0;
  while (redis.ownerOf(redis.slotOf(`{b${b}}`)) !== regPort) b++;
  let user = 'x';
  for (let i = 0; fnv1a(user) % o.buckets !== b; i++) user = `x${i}`;
  await store.append([user], {
    id: 'm0',
    type: 't',
    data: { text: 'hello from the bench', n: 1 },
    createdAt: Date.now(),
    expiresAt: Date.now() + 3_600_000,
  });
  const append = sha(store.redis, 'pylonAppend');
  await store.pending(user, 0, 64, Date.now());
  const pending = sha(store.redis, 'pylonPending');
  let channel = 'cap:ch';
  for (let i = 0; redis.ownerOf(redis.slotOf(channel)) !== regPort; i++) channel = `cap:ch${i}`;
  // A subscriber on the channel, so that each SPUBLISH is written to one connection.
  const sub = spawn('redis-cli', ['-h', '127.0.0.1', '-p', String(regPort), 'SSUBSCRIBE', channel], {
    stdio: ['ignore', 'ignore', 'ignore'],
  });
  await sleep(300);
  await reg.close();
  await store.close();
  if (!locate || !online || !append || !pending) {
    sub.kill('SIGKILL');
    return { error: 'script SHAs not found (ioredis internals changed)' };
  }
  const bp = `cap:store:{b${b}}:`;
  const packed = 'x'.repeat(60);
  const far = String(Date.now() + 3_600_000);
  const commands = {
    'registry locate (1 user)': ['evalsha', locate, '1', `${p}nodes`, p, 'alice'],
    'registry setOnline (1 user)': [
      'evalsha',
      online,
      '3',
      `${p}online`,
      `${p}users:capnode`,
      `${p}node:capnode`,
      p,
      'capnode',
      '120000',
      '-1',
      'u__rand_int__',
      '1',
    ],
    'store append (1 user)': [
      'evalsha',
      append,
      '7',
      `${bp}seq:u__rand_int__`,
      `${bp}order:u__rand_int__`,
      `${bp}inbox:u__rand_int__`,
      `${bp}expiry`,
      `${bp}stats`,
      `${bp}dead`,
      `${bp}ids:u__rand_int__`,
      'u__rand_int__',
      packed,
      far,
      far,
      '1000',
      '1000',
      'm__rand_int__',
      '1000',
    ],
    'store pending (1 user, empty inbox)': [
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
    'SPUBLISH of 168 bytes, 1 subscriber': ['spublish', channel, 'y'.repeat(168)],
  };
  const out = {};
  for (const [name, cmd] of Object.entries(commands)) {
    out[name] = {};
    for (const pipeline of [1, 16]) {
      const rates = [];
      for (let k = 0; k < o.repeats; k++) {
        // Every repeat on fresh random users (the sets grow: a bound on what is left behind).
        const text = execFileSync(
          'redis-benchmark',
          [
            '-h',
            '127.0.0.1',
            '-p',
            String(regPort),
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
        const m = text
          .trim()
          .split('\n')
          .pop()
          .match(/^"[^"]*","([\d.]+)"/);
        rates.push(m ? Number(m[1]) : Number.NaN);
      }
      out[name][`P${pipeline}`] = summarize(rates);
      log(`  capacity ${name}, pipeline ${pipeline}: ${cell(out[name][`P${pipeline}`])}/s`);
    }
  }
  sub.kill('SIGKILL');
  return out;
}

// ---- the projection ----

/** Idle background of a run, pooled over all its idle windows: per gateway per second. */
function background(r) {
  const ws = Object.values(r.windows);
  const ms = ws.reduce((a, w) => a + w.idle.ms, 0);
  const per = (f) => ((ws.reduce((a, w) => a + f(w.idle), 0) / ms) * 1000) / r.gateways;
  return {
    seconds: ms / 1000,
    commands: per((i) => i.commands),
    commandsOnRegistry: per((i) => i.commandsOnRegistry),
    sentRegistry: per((i) => i.sent.registry),
    sentOther: per((i) => i.sent.store + i.sent.broker),
  };
}

/**
 * Commands/s per shard for 1,000,000 connections, from the per-operation costs of the largest
 * measured cluster (medians of its repeats). The registry part of every cost lands on the one
 * shard of the {cluster} slot; the rest (store buckets, node and label channels) spreads over the
 * shards, evenly if users and labels are many.
 */
function project(runs, N, cap) {
  const rs = runs.filter((r) => r.gateways === N);
  const med = (name, f) => summarize(rs.map((r) => f(r.windows[name]))).median;
  const cost = (name) => ({
    cmds: med(name, (w) => w.commands),
    reg: med(name, (w) => w.commandsOnRegistry),
    sentReg: med(name, (w) => w.sent.registry),
    sentOther: med(name, (w) => w.sent.store + w.sent.broker),
    bytes: med(name, (w) => w.bytes),
  });
  const conns = 1_000_000;
  const gateways = 20;
  // `script`: the registry script of the op's registry round trips (for the capacity estimate).
  const ops = [
    {
      name: 'user push, qos 1',
      rate: conns / 60,
      why: 'each user gets one stored message a minute',
      script: 'locate',
    },
    { name: 'user push, qos 0', rate: conns / 60, why: 'and one qos-0 push a minute', script: 'locate' },
    { name: 'label push', rate: 1000, why: 'group messages, members on one gateway', script: 'locate' },
    { name: '{all: true} push', rate: 1 / 60, why: 'one broadcast a minute', script: 'locate' },
    {
      name: 'connect, one at a time',
      rate: conns / 600,
      why: 'each connection reconnects every 10 min',
      script: 'online',
    },
    { name: 'disconnect, one at a time', rate: conns / 600, why: 'and drops as often', script: 'online' },
  ].map((x) => ({ ...x, ...cost(x.name) }));
  const bgs = rs.map(background);
  const m = (f) => summarize(bgs.map(f)).median;
  ops.push({
    name: 'background',
    rate: gateways,
    why: 'per gateway: heartbeats, sweeps, the store expiry pass',
    script: 'online',
    cmds: m((b) => b.commands),
    reg: m((b) => b.commandsOnRegistry),
    sentReg: m((b) => b.sentRegistry),
    sentOther: m((b) => b.sentOther),
    bytes: Number.NaN,
  });
  const t = { R: 0, P: 0, Rsent: 0, Psent: 0, locate: 0, online: 0 };
  for (const x of ops) {
    x.regPerSec = x.rate * x.reg;
    x.restPerSec = x.rate * (x.cmds - x.reg);
    x.sentRegPerSec = x.rate * x.sentReg;
    x.sentRestPerSec = x.rate * x.sentOther;
    t.R += x.regPerSec;
    t.P += x.restPerSec;
    t.Rsent += x.sentRegPerSec;
    t.Psent += x.sentRestPerSec;
    t[x.script] += Math.max(0, x.sentRegPerSec);
  }
  // Share of one master's measured capacity, each round trip at the capacity of its own command:
  // registry locate / setOnline (heartbeats costed as a setOnline); the store's scripts of an op
  // as the code sends them (a qos-1 push: append, pending, ack; a connect: pending twice), an ack
  // costed as an append (it deletes what the append wrote); SPUBLISH with one subscriber.
  const capOf = (name, pl) => cap?.[name]?.[pl]?.median ?? Number.NaN;
  const STORE_MIX = {
    'user push, qos 1': { append: 2 / 3, pending: 1 / 3 },
    'connect, one at a time': { pending: 1 },
  };
  const share = (pl) => {
    let spread = 0;
    for (const x of ops) {
      if (x.name === 'background') continue;
      const store = Math.max(
        0,
        med(x.name, (w) => w.sent.store),
      );
      const pub = Math.max(
        0,
        med(x.name, (w) => w.sentByName.broker.spublish ?? 0),
      );
      const mix = STORE_MIX[x.name] ?? { append: 1 };
      spread +=
        x.rate *
        (store *
          ((mix.append ?? 0) / capOf('store append (1 user)', pl) +
            (mix.pending ?? 0) / capOf('store pending (1 user, empty inbox)', pl)) +
          pub / capOf('SPUBLISH of 168 bytes, 1 subscriber', pl));
    }
    return {
      registry:
        t.locate / capOf('registry locate (1 user)', pl) +
        t.online / capOf('registry setOnline (1 user)', pl),
      spread,
    };
  };
  const s1 = share('P1');
  const s16 = share('P16');
  const shards = [3, 6, 12].map((S) => ({
    shards: S,
    registryShard: t.R + t.P / S,
    otherShard: t.P / S,
    registryShardSent: t.Rsent + t.Psent / S,
    otherShardSent: t.Psent / S,
    registryShardShare: s1.registry + s1.spread / S,
    registryShardSharePipelined: s16.registry + s16.spread / S,
    otherShardShare: s1.spread / S,
    otherShardSharePipelined: s16.spread / S,
  }));
  return { from: N, conns, gateways, ops, totals: t, shards };
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
    '| operation | gateways | sent: registry | sent: store | sent: broker | Redis commands | of which on the registry shard | bytes in+out | Redis executing µs | Redis process CPU µs | bus messages | other load, cores |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  );
  for (const name of names) {
    for (const n of ns) {
      const rs = runs.filter((r) => r.gateways === n);
      if (rs.length === 0) continue;
      out.push(
        `| ${name} | ${n} | ${col(rs, name, (w) => w.sent.registry)} | ${col(rs, name, (w) => w.sent.store)} | ${col(rs, name, (w) => w.sent.broker)} | ` +
          `${col(rs, name, (w) => w.commands)} | ${col(rs, name, (w) => w.commandsOnRegistry)} | ${col(rs, name, (w) => w.bytes)} | ` +
          `${col(rs, name, (w) => w.execUs)} | ${col(rs, name, (w) => w.cpuUs)} | ${col(rs, name, (w) => w.bus)} | ${col(rs, name, (w) => w.otherCores)} |`,
      );
    }
  }
  out.push(
    '',
    '"sent": commands the gateways handed to their ioredis clients (an EVALSHA counts once). "Redis commands": INFO commandstats summed over the masters, the commands run inside scripts included. Store keys and channels are kept off the registry\'s master, so its column is the registry\'s own work. "executing": commandstats time of the commands sent (scripts whole, no network I/O); "process CPU": used_cpu_user + used_cpu_sys of the masters (network I/O included). Both are wall-clock or CPU time on this machine\'s 2 cores, shared by Redis, the gateways and the clients: inflated by contention, not capacities. ' +
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
  out.push('', 'Registry memory per online user (used_memory of its master, over the connects):');
  for (const n of ns) {
    const rs = runs.filter((r) => r.gateways === n);
    if (rs.length === 0) continue;
    out.push(
      `- ${n} gateway(s): ${cell(summarize(rs.map((r) => r.windows['connect, 50 in flight'].memoryOnRegistry)))} bytes (50 in flight), ` +
        `${cell(summarize(rs.map((r) => r.windows['connect, one at a time'].memoryOnRegistry)))} bytes (one at a time)`,
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
    '| idle background, per gateway per second | gateways | Redis commands | of which on the registry shard | sent: registry | sent: store + broker | idle seconds pooled, per repeat |',
    '|---|---:|---:|---:|---:|---:|---:|',
  );
  for (const n of ns) {
    const rs = runs.filter((r) => r.gateways === n);
    if (rs.length === 0) continue;
    const b = rs.map(background);
    const c = (f) => cell(summarize(b.map(f)));
    out.push(
      `| heartbeats, sweeps | ${n} | ${c((x) => x.commands)} | ${c((x) => x.commandsOnRegistry)} | ${c((x) => x.sentRegistry)} | ${c((x) => x.sentOther)} | ${c((x) => x.seconds)} |`,
    );
  }
  if (proj) {
    out.push(
      '',
      `Projection for ${proj.conns.toLocaleString('en-US')} connections on ${proj.gateways} gateways, from the per-operation medians of the ${proj.from}-gateway runs. ` +
        'The registry part (what the registry master counted) lands on one shard; the rest spreads over the S shards.',
      '',
      '| operation | rate /s | assumption | Redis commands per op | of which registry | sent per op: registry / other | registry shard: commands/s | sent/s | spread: commands/s | sent/s |',
      '|---|---:|---|---:|---:|---:|---:|---:|---:|---:|',
    );
    for (const x of proj.ops) {
      out.push(
        `| ${x.name} | ${fmt(x.rate)}${x.name === 'background' ? ' gateways' : ''} | ${x.why} | ${fmt(x.cmds)} | ${fmt(x.reg)} | ${fmt(x.sentReg)} / ${fmt(x.sentOther)} | ` +
          `${fmt(x.regPerSec)} | ${fmt(x.sentRegPerSec)} | ${fmt(x.restPerSec)} | ${fmt(x.sentRestPerSec)} |`,
      );
    }
    const t = proj.totals;
    out.push(
      `| total | | | | | | R = ${fmt(t.R)} | ${fmt(t.Rsent)} | P = ${fmt(t.P)} | ${fmt(t.Psent)} |`,
      '',
      '| shards S | registry shard: R + P/S commands/s | sent/s | other shards: P/S commands/s | sent/s | registry shard: share of one master (no pipelining / pipelines of 16) | other shards: share |',
      '|---:|---:|---:|---:|---:|---:|---:|',
    );
    const pct = (x) => (Number.isFinite(x) ? `${fmt(x * 100)} %` : '–');
    for (const x of proj.shards) {
      out.push(
        `| ${x.shards} | ${fmt(x.registryShard)} | ${fmt(x.registryShardSent)} | ${fmt(x.otherShard)} | ${fmt(x.otherShardSent)} | ` +
          `${pct(x.registryShardShare)} / ${pct(x.registryShardSharePipelined)} | ${pct(x.otherShardShare)} / ${pct(x.otherShardSharePipelined)} |`,
      );
    }
    out.push(
      '',
      `Registry round trips/s on its shard: locate ${fmt(t.locate)}, setOnline and heartbeats ${fmt(t.online)}. Share of one master = Σ round trips/s ÷ the measured capacity of their command (table below): locate and setOnline (heartbeats costed as setOnline) on the registry shard; on every shard 1/S of the store scripts (a qos-1 push: append, pending, ack, the ack costed as an append; a connect: two pendings) and of the SPUBLISHes.`,
    );
  }
  if (cap && !cap.error) {
    out.push(
      '',
      '| one master, redis-benchmark on the same 2 cores | 50 connections, no pipelining: commands/s | pipelines of 16: commands/s |',
      '|---|---:|---:|',
    );
    for (const [name, c] of Object.entries(cap)) out.push(`| ${name} | ${cell(c.P1)} | ${cell(c.P16)} |`);
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
