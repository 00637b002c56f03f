// Soak test (issue 12): a gateway under steady load and churn for a long while, watched for growth.
//   npm run soak -- [--minutes 10] [--connections 10000] [--warmup-seconds S]
// (npm run soak builds first; or, after `npm run build`: node --expose-gc bench/soak.js …)
// Other knobs: --procs 2 (client processes), --qos1-rate 200, --qos0-rate 10, --echo-rate 100 (per
// second), --churn 0.01 (share of connections replaced per second), --sample-seconds 30.
//
// - The gateway runs in its own process (bench/soak-server.js, --expose-gc): TCP and WebSocket,
//   devValidator, a SQLite store in a temporary directory, authorizeSub allowing every label, log
//   level warn, default keepalive and limits. It pushes on a timer: qos 0 to room labels, qos 1 to
//   users (online ones, and some whose link just dropped), and counts what it accepted per user.
// - Two client processes (bench/soak-clients.js) hold the connections with the SDK, half TCP and
//   half WebSocket, each subscribed to one of 100 rooms; every second about 1% of the connections
//   go (flash drops that resume, apps that vanish and come back later, users who leave) and new
//   ones come (returning users first, else new users); echo requests run at a steady rate.
// - Heap after GC and RSS are recorded after a warm-up and at the end (churn and pushes stopped,
//   connections back to the target, qos 1 drained); every 30 s the connections, resumable
//   sessions, store backlog and heap are sampled. At the end every qos-1 message the server
//   accepted is checked: received exactly once, or (for a user offline at the end) still waiting
//   in its inbox.
// - Output: a summary on stdout and bench/results/soak-<time>.json. Exit code 1 when a check
//   fails (heap or RSS more than 10% over the warm-up, a qos-1 message lost or handled twice,
//   the connection counts disagreeing, resumable sessions or the store backlog growing).
// Traffic stays on loopback. Every phase has a deadline and the whole run a hard limit; the
// child processes are killed on exit, on an error and on Ctrl-C.
import { fork } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));

function option(name, fallback) {
  const i = process.argv.indexOf(name);
  if (i < 0) return fallback;
  const v = Number(process.argv[i + 1]);
  if (!Number.isFinite(v) || v <= 0) {
    console.error(`soak: ${name} needs a positive number`);
    process.exit(2);
  }
  return v;
}

const MINUTES = option('--minutes', 10);
const CONNECTIONS = Math.floor(option('--connections', 10_000));
const PROCS = Math.floor(option('--procs', 2));
const QOS1_RATE = option('--qos1-rate', 200); // qos-1 pushes per second, to users
const QOS0_RATE = option('--qos0-rate', 10); // qos-0 pushes per second, each to one room
const ECHO_RATE = option('--echo-rate', 100); // echo requests per second, all clients together
const CHURN = option('--churn', 0.01); // share of connections closed (and opened) per second
const SAMPLE_MS = option('--sample-seconds', 30) * 1000;
const ROOMS = 100;
const HEAP_LIMIT = 0.1; // end may be at most 10% over the warm-up

const RUN_MS = MINUTES * 60_000;
// Heap and RSS are compared between the end and the warm-up: by default 1 min or 10% of the run,
// whichever is longer (at most half of it). The state the gateway legitimately holds under this
// load fills up for longer than that (resumable sessions: the 2 min resume window; the inbox of
// away users: up to 3 min), so a longer --warmup-seconds (e.g. 240) compares steady states.
const WARMUP_MS = Math.min(
  option('--warmup-seconds', Math.max(60, 0.1 * MINUTES * 60)) * 1000,
  0.5 * MINUTES * 60_000,
);
const RAMP_RATE = 1000; // connections opened per second per client process during the ramp
const RAMP_TIMEOUT_MS = 60_000 + (CONNECTIONS / PROCS / RAMP_RATE) * 4000;
const SETTLE_TIMEOUT_MS = 120_000;
const DRAIN_TIMEOUT_MS = 150_000;
const HARD_LIMIT_MS = RAMP_TIMEOUT_MS + RUN_MS + SETTLE_TIMEOUT_MS + DRAIN_TIMEOUT_MS + 240_000;

if (PROCS < 1 || PROCS > 16) {
  console.error('soak: --procs must be 1 to 16');
  process.exit(2);
}
if (CONNECTIONS / PROCS > 15_000) {
  console.error('soak: at most 15,000 connections per client process (20,000 open files each)');
  process.exit(2);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const mb = (bytes) => (bytes == null ? null : Math.round((bytes / 1048576) * 10) / 10);
const pct = (end, start) => Math.round(((end - start) / start) * 1000) / 10;
const started = Date.now();
const elapsed = () => `${((Date.now() - started) / 1000).toFixed(0)}s`;
const log = (msg) => console.log(`[soak ${elapsed()}] ${msg}`);

// ---- child processes ----

const children = new Set();

class Proc {
  constructor(name, file, env, execArgv = []) {
    this.name = name;
    this.nextId = 0;
    this.pending = new Map();
    this.events = new Map();
    this.proc = fork(join(here, file), [], {
      execArgv,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      serialization: 'advanced',
    });
    children.add(this);
    this.exited = false;
    this.exit = new Promise((resolve) => {
      this.proc.once('exit', (code, signal) => {
        this.exited = true;
        children.delete(this);
        for (const p of this.pending.values()) {
          clearTimeout(p.timer);
          p.reject(new Error(`${name} exited (code ${code}, signal ${signal})`));
        }
        this.pending.clear();
        resolve({ code, signal });
      });
    });
    this.proc.on('error', () => {});
    this.proc.on('message', (m) => {
      if (m && typeof m.event === 'string') {
        this.events.get(m.event)?.(m.data);
        return;
      }
      const p = this.pending.get(m?.id);
      if (!p) return;
      this.pending.delete(m.id);
      clearTimeout(p.timer);
      if (m.ok) p.resolve(m.result);
      else p.reject(new Error(`${name}: ${m.error}`));
    });
  }

  once(event, timeoutMs) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.name}: no "${event}" in time`)), timeoutMs);
      this.exit.then(() => reject(new Error(`${this.name} exited before "${event}"`)));
      this.events.set(event, (data) => {
        clearTimeout(timer);
        resolve(data);
      });
    });
  }

  call(cmd, args = {}, timeoutMs = 60_000) {
    if (this.exited) return Promise.reject(new Error(`${this.name} has exited`));
    const id = ++this.nextId;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`${this.name}: "${cmd}" not answered in ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
      this.proc.send({ id, cmd, args });
    });
  }

  kill() {
    if (!this.exited) this.proc.kill('SIGKILL');
  }
}

let dir;
function killAll() {
  for (const c of children) c.kill();
  if (dir) {
    try {
      rmSync(dir, { recursive: true, force: true });
    } catch {}
    dir = undefined;
  }
}
process.on('exit', killAll);
for (const [signal, code] of [
  ['SIGINT', 130],
  ['SIGTERM', 143],
  ['SIGHUP', 129],
]) {
  process.on(signal, () => {
    console.error(`soak: ${signal}, stopping`);
    killAll();
    process.exit(code);
  });
}
process.on('uncaughtException', (err) => {
  console.error('soak: failed:', err);
  killAll();
  process.exit(2);
});
process.on('unhandledRejection', (err) => {
  console.error('soak: failed:', err);
  killAll();
  process.exit(2);
});
const hardLimit = setTimeout(() => {
  console.error(`soak: hard time limit (${Math.round(HARD_LIMIT_MS / 1000)} s) reached, stopping`);
  killAll();
  process.exit(2);
}, HARD_LIMIT_MS);
hardLimit.unref();

// ---- the run ----

const timeline = [];
let server;
let clients = [];

async function sampleAll(gc = true) {
  const [s, ...cs] = await Promise.all([
    server.call('sample', { gc }, 60_000),
    ...clients.map((c) => c.call('counts', {}, 30_000)),
  ]);
  const sum = (f) => cs.reduce((a, x) => a + f(x), 0);
  return {
    t: Math.round((Date.now() - runStart) / 1000),
    server: s,
    clients: {
      active: sum((x) => x.active),
      connected: sum((x) => x.connected),
      connecting: sum((x) => x.connecting),
      down: sum((x) => x.down),
      returners: sum((x) => x.returners),
      users: sum((x) => x.users),
      dropsInWindow: sum((x) => x.dropsInWindow),
      rss: cs.map((x) => x.memory),
      echoLatencyMs: cs.map((x) => x.echoLatencyMs),
      counters: cs.map((x) => x.counters),
    },
  };
}

function row(s, label = '') {
  const sv = s.server;
  return {
    t: s.t,
    label,
    connectionsMap: sv.connections,
    hubConnections: sv.stats.connections,
    users: sv.stats.users,
    clientsConnected: s.clients.connected,
    clientsActive: s.clients.active,
    clientsDown: s.clients.down,
    resumable: sv.stats.resumable,
    resumableBound: s.clients.dropsInWindow,
    storePending: sv.store.messages,
    deadLetters: sv.store.deadLetters,
    heapAfterGcMB: mb(sv.heapUsedAfterGc),
    rssMB: mb(sv.rss),
    externalMB: mb(sv.external),
    cpuPct: sv.cpuPct,
    loopDelayP99Ms: sv.loopDelayMs.p99,
    gcMs: sv.gcMs,
    clientsRssMB: s.clients.rss.map(mb),
    loopDelayMaxMs: sv.loopDelayMs.max,
    qos1Accepted: sv.counts.qos1Accepted,
    qos1Sent: sv.stats.qos1.sent,
    qos1Acked: sv.stats.qos1.acked,
    qos1Redelivered: sv.stats.qos1.redelivered,
    pushesDropped: sv.stats.pushesDropped,
    slowConsumers: sv.stats.slowConsumers,
    refused: sv.stats.refused,
  };
}

function printRow(r) {
  log(
    `t=${String(r.t).padStart(4)}s ${r.label.padEnd(7)} conns map ${r.connectionsMap} hub ${r.hubConnections} ` +
      `clients ${r.clientsConnected} (down ${r.clientsDown}) | resumable ${r.resumable} (drops in window ` +
      `${r.resumableBound}) | store pending ${r.storePending} | heap ${r.heapAfterGcMB} MB rss ${r.rssMB} MB | ` +
      `cpu ${r.cpuPct ?? '-'}% loop p99 ${r.loopDelayP99Ms ?? '-'} ms | q1 accepted ${r.qos1Accepted}`,
  );
}

let runStart = Date.now();

async function main() {
  dir = mkdtempSync(join(tmpdir(), 'pylon-soak-'));
  const perProc = Math.floor(CONNECTIONS / PROCS);
  const expectedConnections = perProc * PROCS;
  const runSeconds = RUN_MS / 1000;
  const maxUsers = PROCS * Math.ceil(perProc * (2 + CHURN * runSeconds)) + 1024;
  const lifetime = HARD_LIMIT_MS + 60_000;
  log(
    `${expectedConnections} connections in ${PROCS} client processes, ${MINUTES} min (warm-up ${WARMUP_MS / 1000} s); ` +
      `churn ${CHURN * 100}%/s, qos 1 ${QOS1_RATE}/s, qos 0 ${QOS0_RATE}/s to ${ROOMS} rooms, echo ${ECHO_RATE}/s`,
  );

  server = new Proc(
    'soak-server',
    'soak-server.js',
    {
      SOAK_CONFIG: JSON.stringify({
        dir,
        rooms: ROOMS,
        qos1Rate: QOS1_RATE,
        qos0Rate: QOS0_RATE,
        maxUsers,
        maxLifetimeMs: lifetime,
      }),
    },
    ['--expose-gc'],
  );
  const ports = await server.once('ready', 30_000);
  log(`gateway ready: tcp ${ports.tcp}, ws ${ports.ws} (pid ${server.proc.pid})`);

  clients = [];
  for (let p = 0; p < PROCS; p++) {
    const c = new Proc(`soak-clients-${p}`, 'soak-clients.js', {
      SOAK_CONFIG: JSON.stringify({
        proc: p,
        procs: PROCS,
        connections: perProc,
        rooms: ROOMS,
        churn: CHURN,
        echoRate: ECHO_RATE / PROCS,
        tcpPort: ports.tcp,
        wsPort: ports.ws,
        localAddresses: [1, 2, 3, 4].map((h) => `127.0.${p + 1}.${h}`),
        rampTimeoutMs: RAMP_TIMEOUT_MS,
        maxLifetimeMs: lifetime,
      }),
    });
    clients.push(c);
  }
  await Promise.all(clients.map((c) => c.once('ready', 30_000)));

  // Ramp.
  const ramp = await Promise.all(
    clients.map((c) => c.call('ramp', { rate: RAMP_RATE }, RAMP_TIMEOUT_MS + 30_000)),
  );
  const rampConnected = ramp.reduce((a, r) => a + r.connected, 0);
  log(`ramp: ${rampConnected}/${expectedConnections} connected in ${Math.max(...ramp.map((r) => r.ms))} ms`);
  if (rampConnected < expectedConnections * 0.99)
    throw new Error('the ramp did not reach 99% of the connections');

  // Run: churn, echo and pushes.
  runStart = Date.now();
  await server.call('push', { on: true });
  await Promise.all(clients.map((c) => c.call('churn', { on: true })));
  await Promise.all(clients.map((c) => c.call('echo', { on: true })));
  log(`running for ${MINUTES} min`);

  let warmup;
  let nextSample = runStart + SAMPLE_MS;
  const warmupAt = runStart + WARMUP_MS;
  const runEnd = runStart + RUN_MS;
  while (Date.now() < runEnd) {
    const now = Date.now();
    const next = Math.min(warmup ? Infinity : warmupAt, nextSample, runEnd);
    if (next > now) {
      await sleep(Math.min(1000, next - now));
      continue;
    }
    if (!warmup && now >= warmupAt) {
      warmup = await sampleAll(true);
      const r = row(warmup, 'warm-up');
      timeline.push(r);
      printRow(r);
      if (nextSample <= Date.now() + 5000) nextSample += SAMPLE_MS;
      continue;
    }
    if (now >= nextSample) {
      const s = await sampleAll(true);
      const r = row(s);
      timeline.push(r);
      printRow(r);
      nextSample += SAMPLE_MS;
    }
  }

  // End: stop churning, bring the connections back to the target, stop pushing, drain.
  log('stopping churn; back to the target number of connections');
  await Promise.all(clients.map((c) => c.call('fill')));
  await Promise.all(clients.map((c) => c.call('echo', { on: false })));
  await server.call('push', { on: false });
  const settleStart = Date.now();
  let settled;
  while (Date.now() - settleStart < SETTLE_TIMEOUT_MS) {
    await sleep(2000);
    const s = await sampleAll(false);
    const cl = s.clients;
    if (
      cl.active === expectedConnections &&
      cl.connected === expectedConnections &&
      cl.connecting === 0 &&
      cl.down === 0 &&
      s.server.connections === expectedConnections &&
      s.server.stats.connections === expectedConnections
    ) {
      settled = s;
      break;
    }
  }
  log(
    settled
      ? `settled in ${Math.round((Date.now() - settleStart) / 1000)} s`
      : `did not settle in ${SETTLE_TIMEOUT_MS / 1000} s`,
  );

  // Drain: wait until nothing is in flight and the store's backlog has stopped moving.
  const drainStart = Date.now();
  let last = -1;
  let still = 0;
  let drained = false;
  while (Date.now() - drainStart < DRAIN_TIMEOUT_MS) {
    await sleep(2000);
    const s = await server.call('sample', { gc: false });
    const backlog = s.store.messages;
    still = backlog === last && s.pushInFlight === 0 ? still + 1 : 0;
    last = backlog;
    if (still >= 3 && Date.now() - drainStart >= 10_000) {
      drained = true;
      break;
    }
  }
  log(`qos 1 ${drained ? 'drained' : 'did not drain'} in ${Math.round((Date.now() - drainStart) / 1000)} s`);

  const end = await sampleAll(true);
  const endRow = row(end, 'end');
  timeline.push(endRow);
  printRow(endRow);

  // What was delivered.
  const [fin, ...reports] = await Promise.all([
    server.call('final', {}, 120_000),
    ...clients.map((c) => c.call('report', {}, 60_000)),
  ]);
  const endCounts = await Promise.all(clients.map((c) => c.call('counts', {}, 30_000)));

  log('shutting down');
  await Promise.allSettled(clients.map((c) => c.call('shutdown', {}, 20_000)));
  await Promise.allSettled([server.call('stop', {}, 20_000)]);
  await Promise.race([Promise.all([server, ...clients].map((c) => c.exit)), sleep(15_000)]);
  killAll();

  return analyse({
    warmup,
    end,
    settled: settled !== undefined,
    drained,
    fin,
    reports,
    endCounts,
    expectedConnections,
    ramp,
  });
}

function analyse({ warmup, end, settled, drained, fin, reports, endCounts, expectedConnections, ramp }) {
  // ---- qos 1: every accepted message received exactly once, or waiting in an offline user's inbox ----
  const byGid = new Map();
  for (const list of reports) for (const u of list) byGid.set(u.gid, u);
  const failed = new Set(fin.failedPushes.map(([gid, n]) => `${gid}:${n}`));
  const q = {
    users: 0,
    usersOnlineAtEnd: 0,
    usersOfflineAtEnd: 0,
    accepted: 0,
    receivedOnce: 0,
    waiting: 0,
    waitingReceivedNotAcked: 0,
    lost: 0,
    duplicates: 0,
    unknownArrived: 0,
    undeliveredOnline: 0,
  };
  const lostExamples = [];
  for (const s of fin.users) {
    const c = byGid.get(s.gid) ?? { count: 0, lastN: 0, dupes: 0, gaps: 0, gapList: [] };
    const online = s.online > 0;
    q.users++;
    if (online) q.usersOnlineAtEnd++;
    else q.usersOfflineAtEnd++;
    q.duplicates += c.dupes;
    const waiting = new Set(s.waiting);
    const gapSet = new Set(c.gapList);
    // n from 1 to accepted, minus those whose push failed (unknown), is what was accepted.
    for (let n = 1; n <= s.accepted; n++) {
      if (failed.has(`${s.gid}:${n}`)) continue;
      q.accepted++;
      const received = n <= c.lastN && !gapSet.has(n);
      if (received) {
        q.receivedOnce++;
        if (waiting.has(n)) q.waitingReceivedNotAcked++;
      } else if (waiting.has(n) && !online) {
        q.waiting++;
      } else if (waiting.has(n)) {
        q.undeliveredOnline++;
        if (lostExamples.length < 20)
          lostExamples.push({ gid: s.gid, n, why: 'online at the end, still in inbox' });
      } else {
        q.lost++;
        if (lostExamples.length < 20) lostExamples.push({ gid: s.gid, n, online, lastN: c.lastN });
      }
    }
    for (let n = s.accepted + 1; n <= c.lastN; n++) if (failed.has(`${s.gid}:${n}`)) q.unknownArrived++;
  }
  // A gap of more than 20 (gapList is capped) would be missed above; count the gaps in full too.
  let gapsTotal = 0;
  for (const u of byGid.values()) gapsTotal += u.gaps;

  const sumCounters = (f) => endCounts.reduce((a, x) => a + f(x.counters), 0);
  const mergeMaps = (f) => {
    const out = {};
    for (const x of endCounts) for (const [k, v] of Object.entries(f(x.counters))) out[k] = (out[k] ?? 0) + v;
    return out;
  };
  const clientTotals = {
    connects: sumCounters((c) => c.connects),
    connectFailures: sumCounters((c) => c.connectFailures),
    newUsers: sumCounters((c) => c.newUsers),
    returns: sumCounters((c) => c.returns),
    drops: sumCounters((c) => c.drops),
    vanishes: sumCounters((c) => c.vanishes),
    leaves: sumCounters((c) => c.leaves),
    reconnects: sumCounters((c) => c.reconnects),
    resumed: sumCounters((c) => c.resumed),
    notResumed: sumCounters((c) => c.notResumed),
    resumedRecovered: sumCounters((c) => c.recovered),
    resumedNotRecovered: sumCounters((c) => c.notRecovered),
    subscribeFailures: sumCounters((c) => c.subscribeFailures),
    clientErrors: sumCounters((c) => c.clientErrors),
    closeEvents: mergeMaps((c) => c.closeEvents),
    echoSent: sumCounters((c) => c.echoSent),
    echoOk: sumCounters((c) => c.echoOk),
    echoMismatch: sumCounters((c) => c.echoMismatch),
    echoFailed: mergeMaps((c) => c.echoFailed),
    qos0Received: sumCounters((c) => c.q0),
    qos1HandlerRuns: sumCounters((c) => c.q1),
  };

  // ---- growth over time (samples after the warm-up) ----
  const after = timeline.filter((r) => r.t >= warmup.t && r.label !== 'end');
  const half = Math.max(1, Math.floor(after.length / 2));
  const first = after.slice(0, half);
  const second = after.slice(half);
  const max = (rows, f) => Math.max(0, ...rows.map(f));
  const pendingFirst = max(first, (r) => r.storePending);
  const pendingSecond = second.length > 0 ? max(second, (r) => r.storePending) : pendingFirst;
  const slack = Math.ceil(expectedConnections * 0.01);
  const resumableOver = timeline.filter((r) => r.resumable > r.resumableBound + slack);
  const mapMismatch = timeline.filter(
    (r) => Math.abs(r.connectionsMap - r.clientsConnected) > Math.max(20, expectedConnections * CHURN * 5),
  );
  const heapSlope = slope(after.map((r) => [r.t / 60, r.heapAfterGcMB]));

  const sv = end.server;
  const wv = warmup.server;
  const heapChange = pct(sv.heapUsedAfterGc, wv.heapUsedAfterGc);
  const rssChange = pct(sv.rss, wv.rss);
  const checks = [
    {
      check: 'heap after GC, end vs warm-up',
      value: `${mb(wv.heapUsedAfterGc)} -> ${mb(sv.heapUsedAfterGc)} MB (${heapChange >= 0 ? '+' : ''}${heapChange}%)`,
      limit: `<= +${HEAP_LIMIT * 100}%`,
      pass: heapChange <= HEAP_LIMIT * 100,
    },
    {
      check: 'RSS, end vs warm-up',
      value: `${mb(wv.rss)} -> ${mb(sv.rss)} MB (${rssChange >= 0 ? '+' : ''}${rssChange}%)`,
      limit: `<= +${HEAP_LIMIT * 100}%`,
      pass: rssChange <= HEAP_LIMIT * 100,
    },
    {
      check: 'qos-1 messages lost',
      value: `${q.lost + q.undeliveredOnline} of ${q.accepted} accepted`,
      limit: '0',
      pass: q.lost + q.undeliveredOnline === 0 && gapsTotal === 0,
    },
    {
      check: 'qos-1 messages handled twice',
      value: String(q.duplicates),
      limit: '0',
      pass: q.duplicates === 0,
    },
    {
      check: 'connections at the end: map = hub = clients = target',
      value: `${sv.connections} = ${sv.stats.connections} = ${end.clients.connected} = ${expectedConnections}`,
      limit: 'all equal',
      pass:
        settled &&
        sv.connections === expectedConnections &&
        sv.stats.connections === expectedConnections &&
        end.clients.connected === expectedConnections,
    },
    {
      check: 'connections map vs open client connections, every sample',
      value: `${mapMismatch.length} samples off`,
      limit: `|diff| <= ${Math.max(20, expectedConnections * CHURN * 5)}`,
      pass: mapMismatch.length === 0,
    },
    {
      check: 'resumable sessions <= link drops in the last resume window',
      value: `max ${max(timeline, (r) => r.resumable)}; ${resumableOver.length} samples over`,
      limit: `+${slack} slack`,
      pass: resumableOver.length === 0,
    },
    {
      check: 'store backlog bounded (2nd half max vs 1st half max)',
      value: `${pendingFirst} -> ${pendingSecond}`,
      limit: '<= 1.5x + 200',
      pass: pendingSecond <= pendingFirst * 1.5 + 200,
    },
    {
      check: 'echo answers match',
      value: `${clientTotals.echoMismatch} mismatches of ${clientTotals.echoOk + clientTotals.echoMismatch}`,
      limit: '0',
      pass: clientTotals.echoMismatch === 0,
    },
    { check: 'qos 1 drained after the pushes stopped', value: String(drained), limit: 'true', pass: drained },
  ];
  const pass = checks.every((c) => c.pass);

  const memory = [
    ['heap used after GC (MB)', mb(wv.heapUsedAfterGc), mb(sv.heapUsedAfterGc), heapChange],
    ['RSS (MB)', mb(wv.rss), mb(sv.rss), rssChange],
    ['heap total (MB)', mb(wv.heapTotal), mb(sv.heapTotal), pct(sv.heapTotal, wv.heapTotal)],
    ['external (MB)', mb(wv.external), mb(sv.external), pct(sv.external, wv.external)],
    ['connections (map)', wv.connections, sv.connections, null],
    ['resumable sessions', wv.stats.resumable, sv.stats.resumable, null],
    ['store backlog (messages)', wv.store.messages, sv.store.messages, null],
  ];

  const result = {
    when: new Date(started).toISOString(),
    pass,
    config: {
      minutes: MINUTES,
      connections: expectedConnections,
      clientProcesses: PROCS,
      warmupSeconds: WARMUP_MS / 1000,
      churnPerSecond: CHURN,
      qos1PerSecond: QOS1_RATE,
      qos0PerSecond: QOS0_RATE,
      echoPerSecond: ECHO_RATE,
      rooms: ROOMS,
      sampleSeconds: SAMPLE_MS / 1000,
      store: 'sqlite',
      gateway: 'defaults: keepalive 30 s / 75 s, resume window 120 s, delivery defaults',
    },
    machine: {
      node: process.version,
      cpus: cpus().length,
      cpu: cpus()[0]?.model,
      memoryGiB: Math.round(totalmem() / 2 ** 30),
    },
    ramp: ramp.map((r) => ({ ms: r.ms, connected: r.connected })),
    memory: Object.fromEntries(memory.map(([k, w, e, c]) => [k, { warmup: w, end: e, changePct: c }])),
    heapSlopeMBPerMinute: heapSlope,
    checks,
    qos1: {
      ...q,
      gaps: gapsTotal,
      failedPushes: fin.failedPushes.length,
      lostExamples,
      deadLetters: fin.deadLetters.slice(0, 10),
    },
    server: {
      stats: sv.stats,
      counts: sv.counts,
      disconnects: sv.disconnects,
      store: sv.store,
      untrackedConnections: fin.untracked,
    },
    clients: clientTotals,
    settled,
    drained,
    timeline,
  };
  return result;
}

/** Least-squares slope of [x, y] points. */
function slope(points) {
  const pts = points.filter(([, y]) => y != null);
  if (pts.length < 2) return null;
  const n = pts.length;
  const mx = pts.reduce((a, [x]) => a + x, 0) / n;
  const my = pts.reduce((a, [, y]) => a + y, 0) / n;
  let num = 0;
  let den = 0;
  for (const [x, y] of pts) {
    num += (x - mx) * (y - my);
    den += (x - mx) ** 2;
  }
  return den === 0 ? null : Math.round((num / den) * 100) / 100;
}

function table(headers, rows) {
  const cells = [headers, ...rows].map((r) => r.map((v) => (v == null ? '-' : String(v))));
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => r[i].length)));
  const line = (r) => `| ${r.map((v, i) => v.padEnd(widths[i])).join(' | ')} |`;
  return [
    line(cells[0]),
    `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`,
    ...cells.slice(1).map(line),
  ].join('\n');
}

function report(r) {
  const out = [];
  out.push('');
  out.push(
    `Soak: ${r.config.connections} connections, ${r.config.minutes} min, warm-up ${r.config.warmupSeconds} s ` +
      `(${r.machine.cpus} CPUs, Node ${r.machine.node})`,
  );
  out.push('');
  out.push(
    table(
      ['gateway process', 'warm-up', 'end', 'change %'],
      Object.entries(r.memory).map(([k, v]) => [k, v.warmup, v.end, v.changePct]),
    ),
  );
  out.push(`heap trend after the warm-up: ${r.heapSlopeMBPerMinute} MB/min (least squares over the samples)`);
  out.push('loop p99: event-loop delay between two 10 ms checks (an idle loop reads about 10 ms)');
  out.push('');
  out.push(
    table(
      [
        't (s)',
        'conns',
        'clients',
        'resumable',
        'drops/window',
        'store backlog',
        'heap MB',
        'rss MB',
        'cpu %',
        'loop p99 ms',
      ],
      r.timeline.map((x) => [
        `${x.t}${x.label ? ` ${x.label}` : ''}`,
        x.connectionsMap,
        x.clientsConnected,
        x.resumable,
        x.resumableBound,
        x.storePending,
        x.heapAfterGcMB,
        x.rssMB,
        x.cpuPct,
        x.loopDelayP99Ms,
      ]),
    ),
  );
  out.push('');
  const q = r.qos1;
  const c = r.clients;
  out.push(
    table(
      ['counts', 'value'],
      [
        ['qos-1 pushes accepted by the server', q.accepted],
        ['  received once by the handlers', q.receivedOnce],
        ['  waiting in the inbox of a user offline at the end', q.waiting],
        ['  lost', q.lost + q.undeliveredOnline],
        ['  handled twice', q.duplicates],
        ['  (received, not yet acked, still in the inbox)', q.waitingReceivedNotAcked],
        [
          'users with qos 1 (online / offline at the end)',
          `${q.users} (${q.usersOnlineAtEnd} / ${q.usersOfflineAtEnd})`,
        ],
        [
          'qos-1 sent / re-sent / acked (server)',
          `${r.server.stats.qos1.sent} / ${r.server.stats.qos1.redelivered} / ${r.server.stats.qos1.acked}`,
        ],
        ['dead letters', r.server.store.deadLetters],
        [
          'qos-0 pushes (calls / connections written / received by clients)',
          `${r.server.counts.qos0Calls} / ${r.server.counts.qos0Delivered} / ${c.qos0Received}`,
        ],
        ['qos-0 dropped for backpressure', r.server.stats.pushesDropped],
        ['connections opened (new users / returns)', `${c.connects} (${c.newUsers} / ${c.returns})`],
        [
          'flash drops / reconnects / resumed (recovered)',
          `${c.drops} / ${c.reconnects} / ${c.resumed} (${c.resumedRecovered})`,
        ],
        ['vanished apps / users who left', `${c.vanishes} / ${c.leaves}`],
        ['server disconnects by name', JSON.stringify(r.server.disconnects)],
        [
          'echo ok / failed / mismatched',
          `${c.echoOk} / ${JSON.stringify(c.echoFailed)} / ${c.echoMismatch}`,
        ],
        ['connect failures / subscribe failures', `${c.connectFailures} / ${c.subscribeFailures}`],
      ],
    ),
  );
  out.push('');
  out.push(
    table(
      ['check', 'value', 'limit', 'result'],
      r.checks.map((x) => [x.check, x.value, x.limit, x.pass ? 'pass' : 'FAIL']),
    ),
  );
  out.push('');
  out.push(`soak: ${r.pass ? 'PASS' : 'FAIL'}`);
  return out.join('\n');
}

try {
  const result = await main();
  const resultsDir = join(here, 'results');
  mkdirSync(resultsDir, { recursive: true });
  const file = join(resultsDir, `soak-${new Date(started).toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
  console.log(report(result));
  console.log(`results: ${file}`);
  process.exitCode = result.pass ? 0 : 1;
} catch (err) {
  console.error('soak: failed:', err);
  process.exitCode = 2;
} finally {
  killAll();
  clearTimeout(hardLimit);
}
