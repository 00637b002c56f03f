// Pylon against its peers, side by side, on this machine, in one run: `npm run bench` (quick) or
// `npm run bench -- --full`. Every server runs in its own process (bench/server.js), its clients in
// two others (bench/client.js); this process only starts them, tells them what to do over IPC,
// and collects what they measured. See docs/benchmarks.md.
//
// Options:
//   --full                 large sizes and longer windows (15 to 25 minutes)
//   --repeats N            repeats of every workload (default 3); figures are median (min–max)
//   --servers a,b          subset of: ws, pylon-ws, socket.io, net, pylon-tcp, pylon-start-ws,
//                          pylon-start-tcp (`pylon start` with its defaults, bench/start-server.js:
//                          its broadcasts are POST /v1/push, not awaited), and (only when
//                          named) pylon-ws-traced: pylon-ws with OpenTelemetry spans on
//   --workloads a,b        subset of: idle, echo, fanout (idle is measured in the fan-out process)
//   --cpu-prof[=a,b|all]   run these servers (default: the Pylon ones) with node --cpu-prof;
//                          summarize with `node bench/profile.js <dir>`
//   --heap-snapshot        every server but socket.io writes heap snapshots before and after
//                          connecting (idle); compare with `node bench/heap.js <before> <after>`
//                          (RSS figures of such a run are not meaningful)
//   --render FILE.json     print the tables of an earlier run again (after changing them here)
//   --quiet-wait S         before each measured window, wait up to S seconds for other processes
//                          on the machine to go quiet (default: 0 quick, 10 full)

import { execFileSync } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, release, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Histogram } from './lib/histogram.js';
import { Child, killAll, running } from './lib/ipc.js';
import { loadProbe } from './lib/load.js';
import { EXTRA_KINDS, KINDS, START_KINDS } from './lib/servers.js';
import { cell, fmt, ratio, summarize } from './lib/stats.js';

const here = dirname(fileURLToPath(import.meta.url));
const started = performance.now();
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const log = (msg) =>
  console.error(`[${((performance.now() - started) / 1000).toFixed(0).padStart(4)} s] ${msg}`);

// ---- options ----

function parseArgs(argv) {
  const o = { full: false, repeats: 3, servers: KINDS, workloads: ['idle', 'echo', 'fanout'] };
  for (let i = 0; i < argv.length; i++) {
    const [key, inline] = argv[i].split('=', 2);
    const value = () => inline ?? argv[++i];
    if (key === '--full') o.full = true;
    else if (key === '--repeats') o.repeats = Number(value());
    else if (key === '--servers') o.servers = value().split(',');
    else if (key === '--workloads') o.workloads = value().split(',');
    else if (key === '--cpu-prof')
      o.cpuProf =
        inline === undefined ? ['pylon-ws', 'pylon-tcp'] : inline === 'all' ? KINDS : inline.split(',');
    else if (key === '--heap-snapshot') o.heapSnapshot = true;
    else if (key === '--quiet-wait') o.quietWaitS = Number(value());
    else if (key === '--render') o.render = value();
    else if (key === '--help' || key === '-h') {
      console.log(
        'usage: node bench/run.js [--full] [--repeats N] [--servers a,b] [--workloads idle,echo,fanout]',
      );
      console.log('                         [--cpu-prof[=kinds|all]] [--heap-snapshot] [--quiet-wait S]');
      console.log('       node bench/run.js --render bench/results/<run>.json');
      process.exit(0);
    } else throw new Error(`unknown option ${argv[i]}`);
  }
  for (const s of o.servers)
    if (!KINDS.includes(s) && !EXTRA_KINDS.includes(s)) throw new Error(`unknown server "${s}"`);
  for (const w of o.workloads)
    if (!['idle', 'echo', 'fanout'].includes(w)) throw new Error(`unknown workload "${w}"`);
  if (!Number.isInteger(o.repeats) || o.repeats < 1) throw new Error('--repeats must be a positive integer');
  if (o.repeats < 3) log(`warning: ${o.repeats} repeat(s); the published figures use at least 3`);
  return o;
}

const opts = parseArgs(process.argv.slice(2));
const P = opts.full
  ? {
      name: 'full',
      idleSizes: [10_000, 19_000],
      fanoutConns: 10_000,
      fanoutMs: 15_000,
      echoConns: 100,
      echoMs: 15_000,
      echoWarmupMs: 2_000,
      freshRepeats: true,
      quietMs: 10_000,
    }
  : {
      name: 'quick',
      idleSizes: [10_000],
      fanoutConns: 10_000,
      fanoutMs: 5_000,
      echoConns: 100,
      echoMs: 5_000,
      echoWarmupMs: 500,
      freshRepeats: false,
      quietMs: 0,
    };
if (opts.quietWaitS !== undefined) P.quietMs = opts.quietWaitS * 1000;
const CLIENT_PROCS = 2;
const ECHO_PAYLOAD = 64;
const PUSH_PAD = 35; // makes Pylon's push envelope 100 bytes
const MODES = [
  { name: 'saturated', intervalMs: 50 },
  { name: 'paced', intervalMs: 300 },
];
const WARM_CONNS = 100;
// 127.0.0.2 .. 127.0.0.254: each gives its own ~28,000 ephemeral ports, so neither 19,000
// connections nor the TIME_WAIT sockets of earlier workloads run out of source ports.
const ADDRESSES = Array.from({ length: 253 }, (_, i) => `127.0.0.${i + 2}`);
const stamp = new Date().toISOString().replace(/[:.]/g, '-');
const outDir = join(here, 'results');
const profDir = join(outDir, `profiles-${stamp}`);
const logDir = join(outDir, `logs-${stamp}`);

// ---- process management ----

let watchdog;
function die(code, why) {
  if (why) console.error(why);
  killAll();
  process.exit(code);
}
process.on('SIGINT', () => die(130, '\ninterrupted: stopping every child process'));
process.on('SIGTERM', () => die(143, 'terminated: stopping every child process'));
process.on('uncaughtException', (err) => die(1, err.stack));
process.on('unhandledRejection', (err) => die(1, err instanceof Error ? err.stack : String(err)));

async function startServer(kind, tag) {
  const execArgv = ['--expose-gc'];
  const env = {};
  if (opts.cpuProf?.includes(kind)) {
    mkdirSync(profDir, { recursive: true });
    // pylon start: its driver passes the flags on to the CLI process (the one measured).
    if (START_KINDS[kind])
      env.PYLON_BENCH_CPU_PROF = JSON.stringify({ dir: profDir, name: `${tag}.cpuprofile` });
    else execArgv.push('--cpu-prof', `--cpu-prof-dir=${profDir}`, `--cpu-prof-name=${tag}.cpuprofile`);
  }
  // The server's own output (Pylon logs every connection at level info) goes to a file, as a
  // deployment's would, not to this terminal.
  mkdirSync(logDir, { recursive: true });
  const logFile = join(logDir, `${tag}.log`);
  const fd = openSync(logFile, 'w');
  const start = START_KINDS[kind];
  const child = start
    ? new Child(`server ${kind}`, join(here, 'start-server.js'), {
        args: [kind.endsWith('tcp') ? 'tcp' : 'ws'],
        env,
        log: fd,
      })
    : new Child(`server ${kind}`, join(here, 'server.js'), { args: [kind], execArgv, log: fd });
  closeSync(fd);
  child.logFile = logFile;
  const ready = await child.once('ready', 30_000);
  // pylon start runs as a child of its driver: its CPU is the benchmark's, not other load.
  child.extraPids = ready.pid !== child.proc.pid ? [ready.pid] : [];
  return { child, port: ready.port, info: ready.info };
}

/** A workload's processes: its server and its client processes, all ready. */
async function startProcs(kind, tag) {
  const [server, clients] = await Promise.allSettled([startServer(kind, tag), startClients(kind)]);
  if (server.status === 'rejected' || clients.status === 'rejected') {
    if (server.status === 'fulfilled') retire([server.value.child]);
    if (clients.status === 'fulfilled') retire(clients.value);
    throw server.status === 'rejected' ? server.reason : clients.reason;
  }
  return { ...server.value, clients: clients.value };
}

// The next workload's processes start while this one is connecting (never during a measured
// window: `quiet` waits for them to be ready first), which saves their start-up time.
let prefetched;
function launch(item) {
  if (prefetched?.item === item) {
    const { promise } = prefetched;
    prefetched = undefined;
    return promise;
  }
  return startProcs(item.kind, item.tag);
}
function prefetch(item) {
  if (item === undefined || prefetched !== undefined) return;
  const promise = startProcs(item.kind, item.tag);
  promise.catch(() => {});
  prefetched = { item, promise };
}

async function startClients(kind) {
  const clients = Array.from(
    { length: CLIENT_PROCS },
    (_, i) =>
      new Child(`client ${kind} #${i + 1}`, join(here, 'client.js'), { args: [START_KINDS[kind] ?? kind] }),
  );
  await Promise.all(clients.map((c) => c.once('ready', 30_000)));
  return clients;
}

// Processes of a finished workload exit while the next one starts; every CPU measurement waits
// until they are gone (`quiet`), so only the server and clients under test are running.
const exiting = new Set();
function retire(children) {
  for (const c of children) {
    const p = c.stop().finally(() => exiting.delete(p));
    exiting.add(p);
  }
}
async function quiet() {
  await Promise.all([...exiting, prefetched?.promise.catch(() => {})]);
}

async function waitCount(server, n, timeoutMs) {
  const t0 = performance.now();
  for (;;) {
    const c = await server.call('count');
    if (c === n) return;
    if (performance.now() - t0 > timeoutMs) throw new Error(`server has ${c} connections, expected ${n}`);
    await sleep(20);
  }
}

/** Opens `n` connections spread over the client processes and waits until the server has them all. */
async function connectAll(server, clients, port, n, first = 0) {
  const t0 = performance.now();
  const per = Math.ceil(n / clients.length);
  const parts = await Promise.all(
    clients.map((c, j) =>
      c.call(
        'connect',
        {
          port,
          count: Math.max(0, Math.min(per, n - j * per)),
          first: first + j * per,
          addresses: ADDRESSES,
          concurrency: 64,
          timeoutMs: 90_000,
        },
        120_000,
      ),
    ),
  );
  const failed = parts.reduce((a, p) => a + p.failed, 0);
  if (failed > 0)
    throw new Error(`${failed} connections failed: ${parts.map((p) => p.lastError).join('; ')}`);
  await waitCount(server, n, 30_000);
  return performance.now() - t0;
}

/**
 * Waits (at most `P.quietMs`) until processes other than ours use under 0.1 core, so that other
 * jobs on the machine do not land in a measured window. Returns the ms waited.
 */
async function waitQuiet(children) {
  if (!P.quietMs) return 0;
  const t0 = performance.now();
  const pids = children.flatMap((c) => [c.proc.pid, ...(c.extraPids ?? [])]);
  while (performance.now() - t0 < P.quietMs) {
    const probe = loadProbe(pids);
    await sleep(300);
    const load = probe.end();
    if (load === undefined || load.otherCores < 0.1) break;
  }
  const waited = performance.now() - t0;
  if (waited > 1_000) log(`waited ${fmt(waited / 1000)} s for other processes to go quiet`);
  return waited;
}

/** Next to a --cpu-prof profile: the measured windows, on the profile's clock (bench/profile.js reads it). */
function profileWindows(kind, tag, results) {
  if (!opts.cpuProf?.includes(kind)) return;
  const windows = results.map((r) => r.window);
  writeFileSync(join(profDir, `${tag}.windows.json`), `${JSON.stringify(windows, null, 2)}\n`);
}

const snapshotting = (kind) => opts.heapSnapshot && kind !== 'socket.io';

// ---- workloads ----

/**
 * Idle memory, then (when asked) fan-out, on one fresh server process: baseline after a warm-up,
 * N connections, settled heap and RSS; then a saturated and a paced broadcast window. With
 * `rounds` > 1 (quick profile) the idle memory is read that many times and the two fan-out
 * windows run that many times, on the same connections: the repeats.
 */
async function connectionsWorkload(item, next) {
  const { kind, n, withFanout, tag } = item;
  const rounds = item.rounds ?? 1;
  const { child: server, port, info, clients } = await launch(item);
  try {
    // Warm-up: the code that accepts and serves a connection is compiled before the baseline.
    await clients[0].call('connect', { port, count: WARM_CONNS, first: 1_000_000, addresses: ADDRESSES });
    await waitCount(server, WARM_CONNS, 20_000);
    await clients[0].call('close');
    await waitCount(server, 0, 20_000);
    const base = await server.call('mem', { rounds: 3 });
    if (snapshotting(kind))
      await server.call('snapshot', { file: join(outDir, `${tag}-before.heapsnapshot`) }, 120_000);
    next();
    const connectMs = await connectAll(server, clients, port, n);
    await sleep(100);
    if (snapshotting(kind))
      await server.call('snapshot', { file: join(outDir, `${tag}-after.heapsnapshot`) }, 300_000);
    const idle = [];
    for (let r = 0; r < rounds; r++) {
      const after = await server.call('mem', { rounds: 3 });
      const x = {
        connections: n,
        connectMs,
        heapPerConn: (after.heapUsed - base.heapUsed) / n,
        rssPerConn: (after.rss - base.rss) / n,
        base,
        after,
      };
      idle.push(x);
      log(
        `${kind} idle ${n}: heap ${fmt(x.heapPerConn)} B/conn, RSS ${fmt(x.rssPerConn)} B/conn ` +
          `(connect ${fmt(connectMs)} ms)`,
      );
    }
    if (!withFanout) return { info, idle };
    await quiet();
    // Fan-out warm-up: a few broadcasts so every path is compiled, not measured.
    await fanWindow(server, clients, { name: 'warm-up', intervalMs: 50 }, 150, 'warm-up');
    const fanout = [];
    for (let r = 0; r < rounds; r++) {
      const windows = {};
      for (const mode of MODES) {
        const label = `fanout-${mode.name}${rounds > 1 ? `-${r + 1}` : ''}`;
        const w = await fanWindow(server, clients, mode, P.fanoutMs, label);
        windows[mode.name] = w;
        log(
          `${kind} fan-out ${mode.name}: ${fmt(w.msgPerSec)} msg/s, p50 ${fmt(w.p50Ms)} ms, ` +
            `p99 ${fmt(w.p99Ms)} ms, ${fmt(w.cpuUsPerDelivery)} µs CPU/delivery, ${w.broadcasts} broadcasts ` +
            `written in ${fmt(w.meanWriteMs)} ms (max ${fmt(w.maxWriteMs)})` +
            (w.delivered < w.expected ? `, ${w.expected - w.delivered} not delivered` : '') +
            (w.statuses ? `, POST answers ${JSON.stringify(w.statuses)}` : ''),
        );
      }
      fanout.push(windows);
    }
    profileWindows(
      kind,
      tag,
      fanout.flatMap((w) => Object.values(w)),
    );
    return { info, idle, fanout };
  } finally {
    retire([server, ...clients]);
  }
}

/**
 * One fan-out window: a broadcast every `intervalMs` for `durationMs` (each awaited, so a slow
 * server sends fewer), then until every client has them all. CPU covers the whole window.
 */
async function fanWindow(server, clients, mode, durationMs, label) {
  await Promise.all(clients.map((c) => c.call('fan-reset')));
  const waitedMs = await waitQuiet([server, ...clients]);
  await server.call('mark', { label });
  const probe = loadProbe([server.proc.pid, ...(server.extraPids ?? []), ...clients.map((c) => c.proc.pid)]);
  const sent = await server.call(
    'broadcast',
    { intervalMs: mode.intervalMs, durationMs, padLength: PUSH_PAD },
    durationMs + 60_000,
  );
  const got = await Promise.all(
    clients.map((c) => c.call('fan-wait', { count: sent.issued, timeoutMs: 60_000, stallMs: 3_000 }, 90_000)),
  );
  const cpu = await server.call('since', { label });
  const load = probe.end();
  const hist = new Histogram();
  let delivered = 0;
  let expected = 0;
  let last = 0;
  let negative = 0;
  let lost = 0;
  for (const g of got) {
    lost += g.lost;
    hist.merge(g.hist);
    delivered += g.received;
    expected += g.expected;
    last = Math.max(last, g.last);
    negative += g.negative;
  }
  const elapsedMs = last - sent.firstSend;
  if (lost > 0) throw new Error(`${lost} connections closed during the fan-out (see the server log)`);
  return {
    intervalMs: mode.intervalMs,
    broadcasts: sent.issued,
    late: sent.late,
    meanWriteMs: sent.meanWriteMs,
    maxWriteMs: sent.maxWriteMs,
    // pylon start: the admin API's answers to the pushes (202/200 accepted, 429 refused).
    ...(sent.statuses ? { statuses: sent.statuses } : {}),
    delivered,
    expected,
    negative,
    elapsedMs,
    msgPerSec: delivered / (elapsedMs / 1000),
    p50Ms: hist.quantile(0.5) / 1000,
    p99Ms: hist.quantile(0.99) / 1000,
    maxMs: hist.max / 1000,
    cpuUs: cpu.cpuUs,
    cpuUsPerDelivery: cpu.cpuUs / delivered,
    lost,
    load,
    waitedMs,
    window: { label, startUs: cpu.hrStartUs, endUs: cpu.hrEndUs },
  };
}

/**
 * Echo: 100 connections, one 64-byte request in flight each; a warm-up, then `windows`
 * measured windows back to back.
 */
async function echoWorkload(item, next) {
  const { kind, windows, tag } = item;
  const { child: server, port, info, clients } = await launch(item);
  try {
    next();
    await connectAll(server, clients, port, P.echoConns);
    await quiet();
    const maxMs = P.echoWarmupMs + windows * P.echoMs + 30_000;
    await Promise.all(clients.map((c) => c.call('echo-start', { payloadLength: ECHO_PAYLOAD, maxMs })));
    await sleep(P.echoWarmupMs);
    const results = [];
    for (let w = 0; w < windows; w++) {
      const waitedMs = await waitQuiet([server, ...clients]);
      await Promise.all([
        server.call('mark', { label: 'echo' }),
        ...clients.map((c) => c.call('window', { on: true })),
      ]);
      const probe = loadProbe([
        server.proc.pid,
        ...(server.extraPids ?? []),
        ...clients.map((c) => c.proc.pid),
      ]);
      await sleep(P.echoMs);
      const [cpu, ...parts] = await Promise.all([
        server.call('since', { label: 'echo' }),
        ...clients.map((c) => c.call('window', { on: false })),
      ]);
      const hist = new Histogram();
      let count = 0;
      let lost = 0;
      for (const part of parts) {
        hist.merge(part.hist);
        count += part.count;
        lost += part.lost;
      }
      if (lost > 0) throw new Error(`${lost} connections closed during the echo (see the server log)`);
      const r = {
        connections: P.echoConns,
        requests: count,
        elapsedMs: cpu.elapsedMs,
        rps: count / (cpu.elapsedMs / 1000),
        p50Us: hist.quantile(0.5),
        p99Us: hist.quantile(0.99),
        maxUs: hist.max,
        cpuUs: cpu.cpuUs,
        cpuUsPerMsg: cpu.cpuUs / count,
        load: probe.end(),
        waitedMs,
        window: { label: `echo-${w + 1}`, startUs: cpu.hrStartUs, endUs: cpu.hrEndUs },
      };
      log(
        `${kind} echo: ${fmt(r.rps)} req/s, p50 ${fmt(r.p50Us)} µs, p99 ${fmt(r.p99Us)} µs, ` +
          `${fmt(r.cpuUsPerMsg)} µs CPU/req`,
      );
      results.push(r);
    }
    await Promise.all(clients.map((c) => c.call('echo-stop')));
    profileWindows(kind, tag, results);
    return { info, echo: results };
  } finally {
    retire([server, ...clients]);
  }
}

// ---- the run ----

/** The commit Pylon was built from, and whether src/ had uncommitted changes (dist/ is what runs). */
function gitState() {
  try {
    const git = (...a) =>
      execFileSync('git', a, {
        cwd: join(here, '..'),
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'ignore'],
      }).trim();
    const dirty = git('status', '--porcelain', '--', 'src').length > 0;
    return `${git('rev-parse', '--short', 'HEAD')}${dirty ? ' + uncommitted changes in src/' : ''}`;
  } catch {
    // Not a git work tree (e.g. an exported copy): say which commit it is if told.
    return process.env.PYLON_COMMIT ?? 'unknown';
  }
}

async function main() {
  const limitMs = (opts.full ? 45 : 10) * 60_000 * Math.max(1, opts.repeats / 3);
  watchdog = setTimeout(() => die(1, `the run took longer than ${limitMs / 60_000} min: stopped`), limitMs);
  mkdirSync(outDir, { recursive: true });
  const machine = {
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model ?? 'unknown',
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    os: `${process.platform} ${release()}`,
    date: new Date().toISOString(),
    pylon: gitState(),
  };
  log(
    `profile ${P.name}, ${opts.repeats} repeats, servers ${opts.servers.join(', ')}; ` +
      `${machine.cpus} cores, ${machine.memoryGiB} GiB, Node ${machine.node}`,
  );
  const runs = Object.fromEntries(opts.servers.map((k) => [k, []]));
  const errors = [];
  const want = (w) => opts.workloads.includes(w);
  const attempt = async (kind, repeat, what, fn) => {
    try {
      return await fn();
    } catch (err) {
      errors.push({ kind, repeat, what, error: String(err?.message ?? err) });
      log(`${kind} ${what} failed: ${err?.message ?? err} (server logs in ${logDir})`);
      return undefined;
    }
  };
  // The plan: every workload in the order it runs. Each repeat rotates the servers, so no server
  // always runs first or last.
  const plan = [];
  // Quick profile: one process per server for idle memory and fan-out; its rounds are the repeats.
  if (!P.freshRepeats && (want('idle') || want('fanout'))) {
    const n = P.fanoutConns;
    for (const kind of opts.servers) {
      const tag = `${kind}-conns${n}`;
      plan.push({ kind, repeat: 0, type: 'conns', n, withFanout: want('fanout'), rounds: opts.repeats, tag });
    }
  }
  for (let r = 1; r <= opts.repeats; r++) {
    const order = opts.servers.map((_, i) => opts.servers[(i + r - 1) % opts.servers.length]);
    for (const kind of order) {
      if (P.freshRepeats && (want('idle') || want('fanout'))) {
        const n = P.fanoutConns;
        plan.push({
          kind,
          repeat: r,
          type: 'conns',
          n,
          withFanout: want('fanout'),
          tag: `${kind}-conns${n}-r${r}`,
        });
      }
      if (want('idle')) {
        for (const n of P.idleSizes.filter((x) => x !== P.fanoutConns))
          plan.push({ kind, repeat: r, type: 'conns', n, withFanout: false, tag: `${kind}-conns${n}-r${r}` });
      }
      if (want('echo') && P.freshRepeats)
        plan.push({ kind, repeat: r, type: 'echo', windows: 1, tag: `${kind}-echo-r${r}` });
    }
  }
  // Quick profile: one echo process per server, its windows back to back are the repeats.
  if (want('echo') && !P.freshRepeats) {
    for (const kind of opts.servers)
      plan.push({ kind, repeat: 0, type: 'echo', windows: opts.repeats, tag: `${kind}-echo` });
  }
  const runOf = (kind, r) => {
    runs[kind][r - 1] ??= { repeat: r, idle: {} };
    return runs[kind][r - 1];
  };
  for (const [i, item] of plan.entries()) {
    const next = () => prefetch(plan[i + 1]);
    const what = item.type === 'echo' ? 'echo' : `idle ${item.n}${item.withFanout ? ' + fan-out' : ''}`;
    const x = await attempt(item.kind, item.repeat, what, () =>
      item.type === 'echo' ? echoWorkload(item, next) : connectionsWorkload(item, next),
    );
    if (!x) continue;
    if (item.type === 'echo') {
      for (const [w, e] of x.echo.entries()) {
        const run = runOf(item.kind, item.repeat || w + 1);
        run.info ??= x.info;
        run.echo = e;
      }
    } else {
      for (const [r, idle] of x.idle.entries()) {
        const run = runOf(item.kind, item.repeat || r + 1);
        run.info ??= x.info;
        run.idle[item.n] = idle;
        if (x.fanout) run.fanout = x.fanout[r];
      }
    }
  }
  await quiet();
  const left = await prefetched?.promise.catch(() => undefined);
  if (left) retire([left.child, ...left.clients]);
  await quiet();
  clearTimeout(watchdog);
  const totalS = (performance.now() - started) / 1000;
  const summary = summarizeRuns(runs);
  const targets = evaluateTargets(summary);
  const busy = busyWindows(runs);
  if (busy.length > 0) log(`warning: other processes were busy during ${busy.length} measured window(s)`);
  const md = renderMarkdown(machine, summary, targets, totalS, busy);
  const file = join(outDir, `bench-${P.name}-${stamp}.json`);
  const json = {
    benchmark: 'pylon-vs-peers',
    profile: P.name,
    config: {
      ...P,
      repeats: opts.repeats,
      clientProcesses: CLIENT_PROCS,
      echoPayload: ECHO_PAYLOAD,
      modes: MODES,
    },
    machine,
    durationS: totalS,
    summary,
    targets,
    errors,
    runs,
    profiles: opts.cpuProf ? profDir : undefined,
  };
  writeFileSync(file, `${JSON.stringify(json, null, 2)}\n`);
  writeFileSync(file.replace(/\.json$/, '.md'), md);
  console.log(md);
  console.log(`\nwrote ${file} (and .md); ${running()} child processes left`);
  if (errors.length > 0) {
    console.error(`${errors.length} workload(s) failed:`);
    for (const e of errors) console.error(`  ${e.kind} r${e.repeat} ${e.what}: ${e.error}`);
    process.exitCode = 1;
  }
}

// ---- summaries, targets, tables ----

function summarizeRuns(runs) {
  const out = {};
  for (const [kind, list] of Object.entries(runs)) {
    const s = { idle: {}, echo: {}, fanout: {} };
    const sizes = new Set(list.flatMap((r) => Object.keys(r.idle ?? {})));
    for (const n of sizes) {
      const xs = list.map((r) => r.idle?.[n]).filter(Boolean);
      s.idle[n] = {
        heapPerConn: summarize(xs.map((x) => x.heapPerConn)),
        rssPerConn: summarize(xs.map((x) => x.rssPerConn)),
        connectMs: summarize(xs.map((x) => x.connectMs)),
      };
    }
    const echoes = list.map((r) => r.echo).filter(Boolean);
    if (echoes.length > 0) {
      for (const k of ['rps', 'p50Us', 'p99Us', 'cpuUsPerMsg'])
        s.echo[k] = summarize(echoes.map((e) => e[k]));
    }
    for (const mode of MODES) {
      const fs = list.map((r) => r.fanout?.[mode.name]).filter(Boolean);
      if (fs.length === 0) continue;
      s.fanout[mode.name] = {};
      for (const k of ['msgPerSec', 'p50Ms', 'p99Ms', 'cpuUsPerDelivery'])
        s.fanout[mode.name][k] = summarize(fs.map((f) => f[k]));
      s.fanout[mode.name].deliveredShare = summarize(fs.map((f) => f.delivered / f.expected));
    }
    out[kind] = s;
  }
  return out;
}

const get = (summary, kind, path) => path.split('.').reduce((o, k) => o?.[k], summary[kind])?.median;

/** The targets of issue 5, on the medians of this run. Lower is better unless `higher`. */
function evaluateTargets(summary) {
  const list = [];
  const add = (name, kind, base, path, limit, higher = false) => {
    const a = get(summary, kind, path);
    const b = get(summary, base, path);
    if (!Number.isFinite(a) || !Number.isFinite(b)) return;
    // `limit` is the largest allowed value of a/b (or, with `higher`, the smallest).
    const r = a / b;
    list.push({
      name,
      kind,
      base,
      metric: path,
      value: a,
      baseline: b,
      ratio: r,
      limit,
      higher,
      met: higher ? r >= limit : r <= limit,
    });
  };
  const idleN = String(P.fanoutConns);
  add('WS heap per idle connection ≤ 1.25× ws', 'pylon-ws', 'ws', `idle.${idleN}.heapPerConn`, 1.25);
  add('WS echo CPU per message ≤ 1.0× ws', 'pylon-ws', 'ws', 'echo.cpuUsPerMsg', 1.0);
  for (const m of MODES) {
    add(
      `WS fan-out (${m.name}) CPU per delivery ≤ 0.9× ws`,
      'pylon-ws',
      'ws',
      `fanout.${m.name}.cpuUsPerDelivery`,
      0.9,
    );
    add(`WS fan-out (${m.name}) p99 no worse than ws`, 'pylon-ws', 'ws', `fanout.${m.name}.p99Ms`, 1.0);
  }
  const better = [
    [`idle.${idleN}.heapPerConn`, 'heap per idle connection', false],
    [`idle.${idleN}.rssPerConn`, 'RSS per idle connection', false],
    ['echo.rps', 'echo req/s', true],
    ['echo.p50Us', 'echo p50', false],
    ['echo.p99Us', 'echo p99', false],
    ['echo.cpuUsPerMsg', 'echo CPU per request', false],
    ...MODES.flatMap((m) => [
      [`fanout.${m.name}.msgPerSec`, `fan-out (${m.name}) msg/s`, true],
      [`fanout.${m.name}.p50Ms`, `fan-out (${m.name}) p50`, false],
      [`fanout.${m.name}.p99Ms`, `fan-out (${m.name}) p99`, false],
      [`fanout.${m.name}.cpuUsPerDelivery`, `fan-out (${m.name}) CPU per delivery`, false],
    ]),
  ];
  for (const [path, label, higher] of better) {
    add(`WS ${label} ≥ 2× better than socket.io`, 'pylon-ws', 'socket.io', path, higher ? 2 : 0.5, higher);
  }
  add('TCP heap per idle connection ≤ 1.5× net', 'pylon-tcp', 'net', `idle.${idleN}.heapPerConn`, 1.5);
  add('TCP echo CPU per message ≤ 1.15× net', 'pylon-tcp', 'net', 'echo.cpuUsPerMsg', 1.15);
  for (const m of MODES)
    add(
      `TCP fan-out (${m.name}) CPU per delivery ≤ 1.1× net`,
      'pylon-tcp',
      'net',
      `fanout.${m.name}.cpuUsPerDelivery`,
      1.1,
    );
  return list;
}

/** Measured windows during which processes outside the benchmark used more than 0.1 core. */
function busyWindows(runs) {
  const out = [];
  for (const [kind, list] of Object.entries(runs)) {
    for (const run of list) {
      if (!run) continue;
      const windows = [run.echo, ...Object.values(run.fanout ?? {})].filter(Boolean);
      for (const w of windows) {
        if ((w.load?.otherCores ?? 0) > 0.1)
          out.push({ kind, repeat: run.repeat, window: w.window.label, ...w.load });
      }
    }
  }
  return out;
}

function renderMarkdown(machine, summary, targets, totalS, busy) {
  const kinds = Object.keys(summary);
  const lines = [];
  const base = (kind) => (kind === 'net' || kind === 'pylon-tcp' ? 'net' : undefined);
  const table = (title, columns) => {
    const head = ['server'];
    for (const c of columns) head.push(c.label, '×ws', ...(c.net ? ['×net'] : []));
    const rows = [];
    for (const kind of kinds) {
      const row = [kind];
      let any = false;
      for (const c of columns) {
        const s = c.path.split('.').reduce((o, k) => o?.[k], summary[kind]);
        any ||= Boolean(s?.n);
        row.push(cell(s), ratio(s?.median, get(summary, 'ws', c.path)));
        if (c.net) row.push(base(kind) ? ratio(s?.median, get(summary, 'net', c.path)) : '');
      }
      if (any) rows.push(`| ${row.join(' | ')} |`);
    }
    if (rows.length === 0) return;
    lines.push(
      `### ${title}`,
      '',
      `| ${head.join(' | ')} |`,
      `|${head.map(() => '---').join('|')}|`,
      ...rows,
      '',
    );
  };
  lines.push(
    `## Pylon and its peers — ${P.name} profile`,
    '',
    `${machine.cpus} cores (${machine.cpuModel}), ${machine.memoryGiB} GiB, Node ${machine.node}, ` +
      `${machine.os}, ${machine.date.slice(0, 10)}. Each figure is the median of ${opts.repeats} repeats ` +
      `(min–max); ×ws is its ratio to the ws baseline, ×net to the raw net server. Lower is better ` +
      'except for throughput. The run took ' +
      `${Math.round(totalS)} s. Pylon: ${machine.pylon}.` +
      (P.freshRepeats ? '' : ' Quick profile: the repeats are taken inside one server process per server.'),
    '',
  );
  if (busy.length > 0) {
    const worst = Math.max(...busy.map((b) => b.otherCores));
    const mean = busy.reduce((a, b) => a + b.otherCores, 0) / busy.length;
    const which =
      busy.length <= 6 ? `: ${busy.map((b) => `${b.kind} r${b.repeat} ${b.window}`).join(', ')}` : '';
    lines.push(
      `**Warning:** other processes on this machine used more than 0.1 core during ${busy.length} ` +
        `measured window(s) (${fmt(mean)} cores on average, up to ${fmt(worst)})${which}. ` +
        'Those figures are less reliable; the JSON file has the load of every window.',
      '',
    );
  }
  for (const n of [...new Set(kinds.flatMap((k) => Object.keys(summary[k].idle)))]) {
    table(`Idle memory, ${Number(n).toLocaleString('en-US')} connections (bytes per connection)`, [
      { label: 'heap used', path: `idle.${n}.heapPerConn`, net: true },
      { label: 'RSS', path: `idle.${n}.rssPerConn`, net: true },
    ]);
  }
  table(
    `Echo: ${P.echoConns} connections, 1 request in flight each, ${ECHO_PAYLOAD}-byte payload, ` +
      `${P.echoMs / 1000} s`,
    [
      { label: 'req/s', path: 'echo.rps' },
      { label: 'p50 µs', path: 'echo.p50Us' },
      { label: 'p99 µs', path: 'echo.p99Us' },
      { label: 'server CPU µs/req', path: 'echo.cpuUsPerMsg', net: true },
    ],
  );
  for (const m of MODES) {
    table(
      `Fan-out ${m.name}: ${P.fanoutConns.toLocaleString('en-US')} connections, a push to all every ` +
        `${m.intervalMs} ms for ${P.fanoutMs / 1000} s`,
      [
        { label: 'delivered msg/s', path: `fanout.${m.name}.msgPerSec` },
        { label: 'p50 ms', path: `fanout.${m.name}.p50Ms` },
        { label: 'p99 ms', path: `fanout.${m.name}.p99Ms` },
        { label: 'server CPU µs/delivery', path: `fanout.${m.name}.cpuUsPerDelivery`, net: true },
      ],
    );
  }
  if (targets.length > 0) {
    lines.push('### Targets', '', '| target | Pylon | baseline | ratio | met |', '|---|---|---|---|---|');
    for (const t of targets) {
      lines.push(
        `| ${t.name} | ${fmt(t.value)} | ${fmt(t.baseline)} (${t.base}) | ${t.ratio.toFixed(3)}× | ` +
          `${t.met ? 'yes' : '**no**'} |`,
      );
    }
    lines.push('');
  }
  return lines.join('\n');
}

function render(file) {
  const json = JSON.parse(readFileSync(file, 'utf8'));
  Object.assign(P, json.config);
  P.freshRepeats = json.config.freshRepeats ?? json.profile === 'full';
  opts.repeats = json.config.repeats;
  const runs = Object.fromEntries(Object.entries(json.runs).map(([k, list]) => [k, list.filter(Boolean)]));
  const summary = summarizeRuns(runs);
  console.log(
    renderMarkdown(json.machine, summary, evaluateTargets(summary), json.durationS, busyWindows(runs)),
  );
}

if (opts.render) render(opts.render);
else main().catch((err) => die(1, err?.stack ?? String(err)));
