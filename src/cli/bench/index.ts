// The engine of `pylon bench`: a coordinator that forks client processes (client-process.ts),
// each owning a slice of the connections and its own loopback source addresses, drives them
// through connect → settle → workload → drain → close over IPC, pushes through the admin API for
// the push workloads, reads the server's memory from `/v1/stats`, and merges everything into one
// report. Every phase is bounded in time; the children are killed at the end or on any error.
import { type ChildProcess, fork } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AdminClient, type ServerReading, ServerView } from './admin.js';
import { Histogram, type LatencySummary } from './histogram.js';
import {
  type ChildConfig,
  type ChildCounters,
  emptyCounters,
  type FromChild,
  type ToChild,
  type Workload,
} from './messages.js';
import {
  assertLoopback,
  defaultSources,
  isLoopback,
  loopbackUrl,
  MAX_PER_PROCESS,
  parseHostPort,
  planSources,
  slices,
} from './target.js';
import type { BenchLatency, BenchOptions, BenchPhase, BenchProgress, BenchReport } from './types.js';

export { formatReport, progressLine } from './report.js';
export type {
  BenchLatency,
  BenchOptions,
  BenchPhase,
  BenchProgress,
  BenchReport,
  Workload,
} from './types.js';

const DEFAULT_PER_PROCESS = 15_000;
const DEFAULT_PAYLOAD = 64;
/** Connects in flight per process when no connect rate is given. */
const MAX_IN_FLIGHT = 200;
const CONNECT_TIMEOUT_MS = 15_000;
const REQUEST_TIMEOUT_MS = 10_000;
const READY_TIMEOUT_MS = 15_000;
const SETTLE_TIMEOUT_MS = 15_000;
/** How long the baseline waits for every node to report (worker nodes report every ~5 s). */
const BASELINE_TIMEOUT_MS = 8_000;
/** Admin pushes in flight at once. */
const MAX_PUSHES_IN_FLIGHT = 32;
/** qos1: users per admin call. */
const QOS1_BATCH = 100;
const DRAIN_STALL_MS = 3_000;
const DRAIN_MAX_MS = 30_000;

const wallNow = (): number => performance.timeOrigin + performance.now();
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const errorText = (err: unknown): string => (err instanceof Error ? err.message : String(err));

/** The compiled client process next to this module, or (running from src/ in tests) in dist/. */
function clientProcessFile(): string {
  const here = fileURLToPath(import.meta.url);
  const sibling = join(dirname(here), 'client-process.js');
  if (existsSync(sibling)) return sibling;
  const compiled = here.replace(
    /([\\/])src([\\/])cli([\\/])bench([\\/])[^\\/]+$/,
    '$1dist$2cli$3bench$4client-process.js',
  );
  if (compiled !== here && existsSync(compiled)) return compiled;
  throw new Error(`pylon bench: ${sibling} not found (npm run build compiles it)`);
}

/** One forked client process: its latest counters, and waits for its messages. */
class ClientChild {
  readonly proc: ChildProcess;
  counters = emptyCounters();
  exited = false;
  private readonly waiters = new Map<
    string,
    { resolve: (m: FromChild) => void; reject: (e: Error) => void }
  >();
  private readonly early = new Map<string, FromChild>();
  private exitError: Error | undefined;
  private stderrLines = 0;

  constructor(
    readonly index: number,
    file: string,
    log: (line: string) => void,
  ) {
    this.proc = fork(file, [], {
      execArgv: [],
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
      serialization: 'json',
    });
    let buf = '';
    this.proc.stderr?.setEncoding('utf8');
    this.proc.stderr?.on('data', (chunk: string) => {
      buf += chunk;
      let i = buf.indexOf('\n');
      while (i >= 0) {
        if (this.stderrLines++ < 20) log(`client process ${index}: ${buf.slice(0, i)}`);
        buf = buf.slice(i + 1);
        i = buf.indexOf('\n');
      }
    });
    this.proc.on('error', (err) => this.fail(new Error(`client process ${index}: ${err.message}`)));
    this.proc.on('exit', (code, signal) => {
      this.exited = true;
      this.fail(new Error(`client process ${index} exited (code ${code}, signal ${signal})`));
    });
    this.proc.on('message', (m: FromChild) => this.onMessage(m));
  }

  private onMessage(m: FromChild): void {
    if (m.type === 'progress' || m.type === 'connected' || m.type === 'stopped') this.counters = m.counters;
    if (m.type === 'fatal') {
      this.fail(new Error(`client process ${this.index} failed: ${m.message.split('\n')[0]}`));
      return;
    }
    const w = this.waiters.get(m.type);
    if (w !== undefined) {
      this.waiters.delete(m.type);
      w.resolve(m);
    } else if (m.type !== 'progress') this.early.set(m.type, m);
  }

  private fail(err: Error): void {
    this.exitError ??= err;
    for (const w of this.waiters.values()) w.reject(err);
    this.waiters.clear();
  }

  send(msg: ToChild): void {
    if (!this.exited && this.proc.connected) this.proc.send(msg);
  }

  /** The next message of `type` (or one that came before the wait), within `ms`. */
  waitFor<T extends FromChild['type']>(type: T, ms: number): Promise<Extract<FromChild, { type: T }>> {
    const got = this.early.get(type);
    if (got !== undefined) {
      this.early.delete(type);
      return Promise.resolve(got as Extract<FromChild, { type: T }>);
    }
    if (this.exitError !== undefined) return Promise.reject(this.exitError);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.delete(type);
        reject(new Error(`client process ${this.index}: no "${type}" within ${Math.round(ms / 1000)} s`));
      }, ms);
      this.waiters.set(type, {
        resolve: (m) => {
          clearTimeout(timer);
          resolve(m as Extract<FromChild, { type: T }>);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
    });
  }

  /** Waits (bounded) for the process to exit, then kills it if it has not. */
  async exit(ms: number): Promise<void> {
    if (this.exited) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.proc.once('exit', () => {
        clearTimeout(timer);
        resolve();
      });
    });
    this.kill();
  }

  kill(): void {
    if (!this.exited) this.proc.kill('SIGKILL');
  }
}

/** Checked options with their defaults. */
interface Plan {
  host: string;
  port: number;
  wsUrl: string | null;
  admin: { url: string; key: string | undefined } | null;
  n: number;
  sizes: number[];
  addresses: string[];
  sources: ReturnType<typeof planSources>;
  connectRate: number;
  rate: number | null;
  payload: number;
  perProcess: number;
  duration: number;
}

function plan(o: BenchOptions): Plan {
  if (o.transport !== 'tcp' && o.transport !== 'ws') throw new Error(`transport: must be tcp or ws`);
  if (!['idle', 'echo', 'broadcast', 'qos1'].includes(o.workload)) {
    throw new Error(`workload: must be idle, echo, broadcast or qos1, got "${String(o.workload)}"`);
  }
  const { host, port } = parseHostPort(o.tcp, 'tcp');
  assertLoopback(host, 'tcp');
  let wsUrl: string | null = null;
  let dialHost = host;
  if (o.ws !== undefined && o.ws !== '') {
    const url = loopbackUrl(o.ws, 'ws', ['ws:']);
    wsUrl = url.href;
    if (o.transport === 'ws') dialHost = url.hostname.replace(/^\[|\]$/g, '');
  } else if (o.transport === 'ws') throw new Error('ws: the WebSocket URL is required with transport ws');
  let admin: Plan['admin'] = null;
  if (o.admin !== undefined) {
    const url = loopbackUrl(o.admin.url, 'admin', ['http:']);
    admin = { url: url.href, key: o.admin.key };
  }
  if ((o.workload === 'broadcast' || o.workload === 'qos1') && admin === null) {
    throw new Error(`workload ${o.workload} pushes through the admin API: admin.url is required`);
  }
  const n = o.connections;
  if (!Number.isInteger(n) || n < 1) throw new Error('connections: must be a positive integer');
  const perProcess = o.perProcess ?? DEFAULT_PER_PROCESS;
  if (!Number.isInteger(perProcess) || perProcess < 1 || perProcess > MAX_PER_PROCESS) {
    throw new Error(`perProcess: must be an integer from 1 to ${MAX_PER_PROCESS} (open files per process)`);
  }
  if (!(o.duration >= 0) || !Number.isFinite(o.duration)) throw new Error('duration: must be seconds >= 0');
  const connectRate = o.connectRate ?? 0;
  if (!(connectRate >= 0)) throw new Error('connectRate: must be >= 0');
  if (o.rate !== undefined && !(o.rate > 0)) throw new Error('rate: must be > 0');
  const payload = o.payload ?? DEFAULT_PAYLOAD;
  if (!Number.isInteger(payload) || payload < 0 || payload > 512 * 1024) {
    throw new Error('payload: must be an integer number of bytes from 0 to 524,288');
  }
  const k = Math.ceil(n / perProcess);
  const sizes = slices(n, k);
  const v4 = isLoopback(dialHost) && /^\d+\.\d+\.\d+\.\d+$/.test(dialHost);
  let addresses: string[];
  if (o.sourceAddresses !== undefined && o.sourceAddresses.length > 0) {
    if (!v4) throw new Error('sourceAddresses: only with an IPv4 loopback target (127.0.0.0/8)');
    for (const a of o.sourceAddresses) {
      if (!/^\d+\.\d+\.\d+\.\d+$/.test(a) || !isLoopback(a)) {
        throw new Error(`sourceAddresses: "${a}" is not an IPv4 loopback address (127.0.0.0/8)`);
      }
    }
    addresses = [...o.sourceAddresses];
  } else addresses = v4 ? defaultSources(n, k) : [];
  return {
    host: dialHost,
    port,
    wsUrl,
    admin,
    n,
    sizes,
    addresses,
    sources: planSources(sizes, addresses),
    connectRate,
    rate: o.rate ?? null,
    payload,
    perProcess,
    duration: o.duration,
  };
}

function sum(children: ClientChild[], f: (c: ChildCounters) => number): number {
  let s = 0;
  for (const c of children) s += f(c.counters);
  return s;
}

function addCounts(into: Record<string, number>, from: Record<string, number>): void {
  for (const [k, v] of Object.entries(from)) into[k] = (into[k] ?? 0) + v;
}

function latency(s: LatencySummary): BenchLatency {
  return { p50: s.p50, p90: s.p90, p99: s.p99, max: s.max, mean: s.mean };
}

/** Runs one bench: connect, settle, workload, drain, close; resolves with the report. */
export async function runBench(options: BenchOptions): Promise<BenchReport> {
  const p = plan(options);
  const log = options.log ?? (() => {});
  const signal = options.signal;
  signal?.throwIfAborted();
  const startedAt = new Date();
  const t0 = performance.now();
  const admin = p.admin ? new AdminClient(p.admin.url, p.admin.key) : null;
  const children: ClientChild[] = [];
  const k = p.sizes.length;

  // Everything awaited races the abort signal.
  let onAbort: (() => void) | undefined;
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () =>
      reject(signal?.reason instanceof Error ? signal.reason : new Error('pylon bench: aborted'));
    signal?.addEventListener('abort', onAbort, { once: true });
  });
  aborted.catch(() => {});
  const guard = <T>(promise: Promise<T>): Promise<T> => Promise.race([promise, aborted]);

  // Progress, every 500 ms.
  const state = {
    phase: 'starting' as BenchPhase,
    phaseAt: performance.now(),
    expected: null as number | null,
    adminErrors: 0,
    lastConnected: 0,
    lastMessages: 0,
    lastAt: performance.now(),
  };
  const setPhase = (phase: BenchPhase) => {
    state.phase = phase;
    state.phaseAt = performance.now();
    state.lastMessages = 0;
  };
  const snapshot = (): BenchProgress => {
    const now = performance.now();
    const dt = Math.max(0.001, (now - state.lastAt) / 1000);
    const connected = sum(children, (c) => c.connected);
    const messages = sum(children, (c) => c.messages);
    const failed = sum(children, (c) => c.failed);
    const progress: BenchProgress = {
      phase: state.phase,
      workload: options.workload,
      requested: p.n,
      connected,
      open: sum(children, (c) => c.open),
      failed,
      connectPerSecond: Math.max(0, connected - state.lastConnected) / dt,
      elapsed: (now - state.phaseAt) / 1000,
      duration: p.duration,
      messages,
      messagesPerSecond: Math.max(0, messages - state.lastMessages) / dt,
      expected: state.expected,
      errors: failed + sum(children, (c) => c.closed + c.timeouts + c.requestErrors) + state.adminErrors,
    };
    state.lastAt = now;
    state.lastConnected = connected;
    state.lastMessages = messages;
    return progress;
  };
  const progressTimer = setInterval(() => {
    if (options.progress === undefined) return;
    try {
      options.progress(snapshot());
    } catch (err) {
      log(`progress callback failed: ${errorText(err)}`);
    }
  }, 500);

  try {
    // Client processes, and meanwhile the server before any connection: a report of every node
    // made after this run began (not a worker's heartbeat from before, which may still count the
    // connections of an earlier run).
    const file = clientProcessFile();
    log(
      `starting ${k} client process${k === 1 ? '' : 'es'} for ${p.n} connections` +
        (p.addresses.length > 0
          ? ` from ${p.addresses[0]}${p.addresses.length > 1 ? `…${p.addresses.at(-1)}` : ''}`
          : ''),
    );
    for (let i = 0; i < k; i++) children.push(new ClientChild(i, file, log));
    // (Set in the closure below: typed by `as` so that TypeScript does not narrow them to null.)
    let before = null as ServerReading | null;
    let note = null as string | null;
    const baseline = async () => {
      if (admin === null) return;
      try {
        const r = await pollServer(admin, BASELINE_TIMEOUT_MS, guard);
        before = r.reading;
        if (!r.fresh)
          log('server stats: not every node reported before connecting; the baseline may be stale');
      } catch (err) {
        signal?.throwIfAborted();
        note = `GET /v1/stats failed: ${errorText(err)}`;
        log(`server stats unavailable: ${errorText(err)}`);
      }
    };
    await guard(Promise.all([baseline(), ...children.map((c) => c.waitFor('ready', READY_TIMEOUT_MS))]));

    // Connect.
    setPhase('connecting');
    const perProcessRate = p.connectRate > 0 ? p.connectRate / k : 0;
    const connectT0 = performance.now();
    let phaseTimeoutMs = 0;
    children.forEach((c, i) => {
      const count = p.sizes[i]!;
      const expectedMs = perProcessRate > 0 ? (count / perProcessRate) * 1000 : count * 5;
      const config: ChildConfig = {
        process: i,
        transport: options.transport,
        host: p.host,
        port: p.port,
        wsUrl: p.wsUrl,
        count,
        sources: p.sources[i]!,
        connectRate: perProcessRate,
        maxInFlight:
          perProcessRate > 0 ? Math.max(MAX_IN_FLIGHT, Math.ceil(perProcessRate * 2)) : MAX_IN_FLIGHT,
        connectTimeoutMs: CONNECT_TIMEOUT_MS,
        phaseTimeoutMs: Math.round(expectedMs * 1.5 + 60_000),
      };
      phaseTimeoutMs = Math.max(phaseTimeoutMs, config.phaseTimeoutMs);
      c.send({ type: 'start', config });
    });
    const connected = await guard(
      Promise.all(children.map((c) => c.waitFor('connected', phaseTimeoutMs + CONNECT_TIMEOUT_MS + 30_000))),
    );
    const connectedAt = performance.now();
    const connectSeconds = (connectedAt - connectT0) / 1000;
    const nConnected = sum(children, (c) => c.connected);
    log(`connected ${nConnected}/${p.n} in ${connectSeconds.toFixed(1)} s`);

    // Settle: wait until the nodes report every connection, then read their memory.
    setPhase('settling');
    let after: ServerReading | null = null;
    let settled = false;
    const base: ServerReading | null = before;
    if (admin !== null && base !== null) {
      try {
        const r = await pollServer(
          admin,
          SETTLE_TIMEOUT_MS,
          guard,
          (reading) => reading.connections === base.connections + sum(children, (c) => c.open),
        );
        after = r.reading;
        settled = r.fresh && r.done;
      } catch (err) {
        signal?.throwIfAborted();
        note = `GET /v1/stats failed after connecting: ${errorText(err)}`;
      }
      if (!settled) {
        log(
          `server stats did not settle in ${SETTLE_TIMEOUT_MS / 1000} s ` +
            `(${after?.connections ?? '?'} connections reported, ${base.connections + sum(children, (c) => c.open)} expected)`,
        );
      }
    }

    // Workload.
    setPhase('running');
    const since = wallNow();
    const runT0 = performance.now();
    const openAtStart = sum(children, (c) => c.open);
    for (const c of children) {
      c.send({
        type: 'run',
        workload: options.workload,
        durationMs: p.duration * 1000,
        rate: options.workload === 'echo' ? (p.rate ?? 0) : 0,
        payload: p.payload,
        since,
        requestTimeoutMs: REQUEST_TIMEOUT_MS,
      });
    }
    let pushes: { sent: number; accepted: number; failed: number; behind: number } | null = null;
    let expected: number | null = null;
    if (options.workload === 'broadcast' || options.workload === 'qos1') {
      const failedSets = connected.map((m) => new Set(m.failedIndexes));
      pushes = await guard(
        pushLoop(admin!, options.workload, p, failedSets, (e) => {
          state.adminErrors++;
          if (state.adminErrors <= 5) log(`push failed: ${errorText(e)}`);
        }),
      );
      const left = p.duration * 1000 - (performance.now() - runT0);
      if (left > 0) await guard(sleep(left));
      expected = options.workload === 'broadcast' ? pushes.accepted * openAtStart : pushes.accepted;
      // Drain: until every expected delivery arrived, nothing came for a while, or the cap.
      setPhase('draining');
      state.expected = expected;
      const capAt = performance.now() + DRAIN_MAX_MS;
      let seen = -1;
      let seenAt = performance.now();
      for (;;) {
        const got = sum(children, (c) => c.messages);
        const now = performance.now();
        if (got >= expected || now > capAt) break;
        if (got !== seen) {
          seen = got;
          seenAt = now;
        } else if (now - seenAt > DRAIN_STALL_MS) break;
        await guard(sleep(100));
      }
    } else {
      await guard(sleep(p.duration * 1000));
    }
    for (const c of children) c.send({ type: 'stop' });
    const stopped = await guard(Promise.all(children.map((c) => c.waitFor('stopped', 15_000))));
    const runSeconds =
      options.workload === 'echo' || options.workload === 'idle'
        ? p.duration
        : (performance.now() - runT0) / 1000;

    // The server after the workload.
    let end: ServerReading | null = null;
    if (admin !== null && before !== null) {
      end = await guard(admin.stats())
        .then((v) => v.reading())
        .catch(() => null);
    }

    // Close.
    setPhase('closing');
    for (const c of children) c.send({ type: 'close' });
    await guard(Promise.all(children.map((c) => c.waitFor('closed', 10_000).catch(() => undefined))));
    await Promise.all(children.map((c) => c.exit(5_000)));

    // Merge.
    const connectHist = new Histogram();
    const workHist = new Histogram();
    const total = emptyCounters();
    for (const s of stopped) {
      connectHist.merge(s.connectHist);
      workHist.merge(s.workHist);
      const c = s.counters;
      total.connected += c.connected;
      total.failed += c.failed;
      total.closed += c.closed;
      total.messages += c.messages;
      total.duplicates += c.duplicates;
      total.stale += c.stale;
      total.timeouts += c.timeouts;
      total.requestErrors += c.requestErrors;
      addCounts(total.reasons, c.reasons);
      addCounts(total.kicked, c.kicked);
    }
    const cs = connectHist.summary();
    const ws = workHist.summary();
    const perConn = (a: number | null | undefined, b: number | null | undefined): number | null =>
      a == null || b == null || nConnected === 0 ? null : Math.round((b - a) / nConnected);
    if (before !== null && after !== null && (before.rss === null || after.rss === null)) {
      note ??= 'the nodes in /v1/stats do not report `process` (memory unavailable)';
    }
    const report: BenchReport = {
      options: {
        tcp: options.tcp,
        ws: options.ws ?? null,
        transport: options.transport,
        admin: options.admin ? { url: options.admin.url, key: options.admin.key ? '(set)' : null } : null,
        connections: p.n,
        connectRate: p.connectRate,
        workload: options.workload,
        duration: p.duration,
        rate: p.rate,
        payload: p.payload,
        perProcess: p.perProcess,
        sourceAddresses: p.addresses,
      },
      connect: {
        requested: p.n,
        connected: total.connected,
        failed: total.failed,
        seconds: round3(connectSeconds),
        perSecond: Math.round(total.connected / Math.max(connectSeconds, 0.001)),
        p50: cs.p50,
        p90: cs.p90,
        p99: cs.p99,
        max: cs.max,
        mean: cs.mean,
      },
      workload: {
        kind: options.workload,
        seconds: round3(runSeconds),
        messages: total.messages,
        perSecond: runSeconds > 0 ? Math.round(total.messages / runSeconds) : 0,
        latency: latency(ws),
        pushes,
        expected,
        duplicates: total.duplicates,
        missing: expected === null ? null : Math.max(0, expected - total.messages),
        stale: total.stale,
      },
      errors: {
        connect: total.failed,
        connectReasons: total.reasons,
        closed: total.closed,
        kicked: total.kicked,
        timeouts: total.timeouts,
        requestErrors: total.requestErrors,
        admin: state.adminErrors,
      },
      server:
        admin === null
          ? null
          : {
              nodes: (after ?? before)?.nodes ?? null,
              connections: after?.connections ?? null,
              settled,
              rssBefore: before?.rss ?? null,
              rssAfter: after?.rss ?? null,
              heapBefore: before?.heapUsed ?? null,
              heapAfter: after?.heapUsed ?? null,
              rssEnd: end?.rss ?? null,
              heapEnd: end?.heapUsed ?? null,
              bytesPerConnection: {
                rss: perConn(before?.rss, after?.rss),
                heap: perConn(before?.heapUsed, after?.heapUsed),
              },
              note,
            },
      clientProcesses: k,
      startedAt: startedAt.toISOString(),
      seconds: round3((performance.now() - t0) / 1000),
    };
    if ((total.kicked['4006'] ?? 0) > 0) {
      log(
        'some connections were kicked with rate_limited (4006): cap echo with rate below the gateway limit',
      );
    }
    return report;
  } finally {
    clearInterval(progressTimer);
    if (onAbort !== undefined) signal?.removeEventListener('abort', onAbort);
    for (const c of children) c.kill();
  }
}

/**
 * Polls `/v1/stats` every 250 ms, up to `ms`, until every node has reported since the first poll
 * (see ServerView) and `done` holds for the sum of the freshest reports.
 */
async function pollServer(
  admin: AdminClient,
  ms: number,
  guard: <T>(p: Promise<T>) => Promise<T>,
  done: (r: ServerReading) => boolean = () => true,
): Promise<{ reading: ServerReading; fresh: boolean; done: boolean }> {
  const view = new ServerView();
  const until = performance.now() + ms;
  let failures = 0;
  for (;;) {
    try {
      await guard(admin.stats(view));
    } catch (err) {
      // A few failures are tolerated (a worker restarting); the first call must succeed.
      if (++failures > 3 || view.reading().nodes === 0) throw err;
    }
    const reading = view.reading();
    const fresh = view.isFresh();
    const ok = fresh && done(reading);
    if (ok || performance.now() >= until) return { reading, fresh, done: done(reading) };
    await guard(sleep(250));
  }
}

function round3(n: number): number {
  return Math.round(n * 1000) / 1000;
}

/**
 * The pushes of the broadcast and qos1 workloads, at `rate` per second for the duration:
 * broadcast, one push to everyone per call; qos1, calls of up to 100 distinct random connected
 * users. Each push carries its send time `t` in its data.
 */
async function pushLoop(
  admin: AdminClient,
  workload: Workload,
  p: Plan,
  failed: Set<number>[],
  onError: (err: unknown) => void,
): Promise<{ sent: number; accepted: number; failed: number; behind: number }> {
  const rate = p.rate ?? (workload === 'broadcast' ? 1 : 100);
  const planned = Math.max(1, Math.floor(rate * p.duration));
  const padding = 'x'.repeat(p.payload);
  const totals = { sent: 0, accepted: 0, failed: 0, behind: 0 };
  const tasks = new Set<Promise<void>>();
  const starts: number[] = [];
  let s = 0;
  for (const size of p.sizes) {
    starts.push(s);
    s += size;
  }
  /** A random connected user: `bench-<process>-<i>`. */
  const pickUser = (): string => {
    let name = '';
    for (let attempt = 0; attempt < 20; attempt++) {
      const g = Math.floor(Math.random() * p.n);
      let proc = starts.length - 1;
      while (starts[proc]! > g) proc--;
      const i = g - starts[proc]!;
      name = `bench-${proc}-${i}`;
      if (!failed[proc]?.has(i)) break;
    }
    return name;
  };
  const issue = (n: number) => {
    const data = { t: wallNow(), p: padding };
    let body: Record<string, unknown>;
    if (workload === 'broadcast') body = { to: { all: true }, type: 'bench', data };
    else {
      const users = new Set<string>();
      for (let i = 0; users.size < n && i < n * 4; i++) users.add(pickUser());
      const list = [...users];
      body = { to: list.length === 1 ? { user: list[0] } : { users: list }, type: 'bench', data, qos: 1 };
      n = list.length;
    }
    totals.sent += n;
    const task = admin.push(body).then(
      (r) => {
        totals.accepted += workload === 'broadcast' ? 1 : r.stored;
      },
      (err: unknown) => {
        totals.failed += n;
        onError(err);
      },
    );
    tasks.add(task);
    task.finally(() => tasks.delete(task));
  };
  const t0 = performance.now();
  const stopAt = t0 + p.duration * 1000 + 5_000;
  let issued = 0;
  while (issued < planned && performance.now() < stopAt) {
    const now = performance.now();
    const due = Math.min(planned, Math.floor(((now - t0) / 1000) * rate) + 1);
    while (issued < due && tasks.size < MAX_PUSHES_IN_FLIGHT) {
      const n = workload === 'qos1' ? Math.min(due - issued, QOS1_BATCH) : 1;
      issue(n);
      issued += n;
    }
    if (issued >= planned) break;
    // qos1 sends what is due every 20 ms or more, in batches (one call per user would cost the
    // coordinator more than the gateway at a few hundred pushes per second).
    const nextAt = t0 + (issued / rate) * 1000;
    const floor = workload === 'qos1' ? 20 : 1;
    await sleep(Math.min(50, Math.max(floor, nextAt - performance.now())));
  }
  totals.behind = planned - issued;
  await Promise.all([...tasks]);
  return totals;
}
