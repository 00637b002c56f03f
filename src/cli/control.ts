import { readFileSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { alive, runningPid } from './pidfile.js';

/** The flags by which stop, reload, restart and status find the instance `start` ran with. */
export interface ControlFlags {
  pidFile: string;
  logFile: string;
  adminHost: string;
  adminPort: number;
  adminKey: string[];
  workers: number;
  stopTimeout: number;
  drainTimeout: number;
  /** Seconds SIGTERM waits, unready, before the stop begins. */
  shutdownGrace?: number;
}

interface NodeRow {
  node: string;
  id?: string;
  uptime?: number;
  connections?: number;
  users?: number;
  process?: {
    pid: number;
    rss: number;
    heapUsed: number;
    lag: { p50: number; p99: number; max: number };
    rates: { messagesIn: number; messagesOut: number };
    state: string;
    generation: number;
  };
}

export interface StatusOutput {
  running: boolean;
  pid?: number;
  pidFile: string;
  admin?: string;
  /** Why the admin API could not be read. */
  error?: string;
  nodes: NodeRow[];
  connections?: number;
  online?: number;
}

/** The admin API's base URL from the flags (a wildcard bind is reached on loopback). */
export function adminBase(f: ControlFlags): string | undefined {
  if (f.adminPort <= 0) return undefined;
  let host = f.adminHost;
  if (host === '0.0.0.0' || host === '') host = '127.0.0.1';
  if (host === '::') host = '::1';
  return `http://${host.includes(':') ? `[${host}]` : host}:${f.adminPort}`;
}

async function adminGet(f: ControlFlags, path: string): Promise<unknown> {
  const base = adminBase(f);
  if (base === undefined) throw new Error('the admin API is off (admin-port -1 or 0)');
  const headers: Record<string, string> = {};
  if (f.adminKey[0] !== undefined) headers.authorization = `Bearer ${f.adminKey[0]}`;
  const res = await fetch(`${base}${path}`, { headers, signal: AbortSignal.timeout(5000) });
  if (!res.ok) throw new Error(`${base}${path} answered ${res.status}: ${(await res.text()).slice(0, 200)}`);
  return res.json();
}

/** What `pylon status` reads: the pid file, and every worker or node from the admin API. */
export async function readStatus(f: ControlFlags): Promise<StatusOutput> {
  const pid = runningPid(f.pidFile);
  const out: StatusOutput = { running: pid !== undefined, pid, pidFile: resolve(f.pidFile), nodes: [] };
  out.admin = adminBase(f);
  try {
    const s = (await adminGet(f, '/v1/stats')) as {
      nodes: NodeRow[];
      connections: number;
      users: number;
      cluster?: { connections: number; online: number };
    };
    out.running = true;
    out.nodes = s.nodes;
    out.connections = s.cluster?.connections ?? s.connections;
    out.online = s.cluster?.online ?? s.users;
  } catch (err) {
    out.error =
      (err as Error).cause instanceof Error
        ? ((err as Error).cause as Error).message
        : (err as Error).message;
  }
  return out;
}

const num = (n: number | undefined) => (n === undefined ? '-' : Math.round(n).toLocaleString('en-US'));
const mib = (n: number | undefined) => (n === undefined ? '-' : `${(n / 1048576).toFixed(1)} MiB`);

function duration(seconds: number | undefined): string {
  if (seconds === undefined) return '-';
  const s = Math.floor(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
  return `${Math.floor(s / 86400)}d${String(Math.floor((s % 86400) / 3600)).padStart(2, '0')}h`;
}

/** `pylon status` as a table: one row per worker or node. */
export function formatStatus(s: StatusOutput): string {
  const lines: string[] = [];
  const head =
    s.pid !== undefined ? `running, pid ${s.pid} (${s.pidFile})` : s.running ? 'running' : 'not running';
  lines.push(`pylon: ${head}`);
  if (s.error !== undefined) {
    lines.push(`admin API ${s.admin ?? '(off)'}: ${s.error}`);
    return `${lines.join('\n')}\n`;
  }
  lines.push(
    `${s.nodes.length} worker(s)/node(s), ${num(s.connections)} connection(s), ${num(s.online)} user(s) online (admin ${s.admin})`,
  );
  const header = [
    'node',
    'pid',
    'gen',
    'state',
    'uptime',
    'conns',
    'users',
    'in/s',
    'out/s',
    'rss',
    'heap',
    'lag p99',
  ];
  const rows = s.nodes.map((n) => [
    n.id ?? n.node,
    n.process ? String(n.process.pid) : '-',
    n.process ? String(n.process.generation) : '-',
    n.process?.state ?? '-',
    duration(n.uptime),
    num(n.connections),
    num(n.users),
    num(n.process?.rates.messagesIn),
    num(n.process?.rates.messagesOut),
    mib(n.process?.rss),
    mib(n.process?.heapUsed),
    n.process ? `${n.process.lag.p99.toFixed(1)} ms` : '-',
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] as string).length)));
  const fmt = (r: string[]) =>
    r.map((c, i) => (i < 4 ? c.padEnd(widths[i] as number) : c.padStart(widths[i] as number))).join('  ');
  lines.push(fmt(header), ...rows.map(fmt));
  return `${lines.join('\n')}\n`;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * `pylon stop`: SIGTERM to the process the pid file names (the primary stops its workers; each
 * closes its connections with reconnect_elsewhere and flushes its store), then waits for it to
 * exit. With `force`, whatever is left after the stop timeout is killed (the whole process group
 * of a `start -d`). Resolves with what happened.
 */
export async function stopInstance(
  f: ControlFlags,
  options: { force?: boolean; print?: (line: string) => void } = {},
): Promise<'stopped' | 'not running' | 'killed'> {
  const print = options.print ?? (() => {});
  const pid = runningPid(f.pidFile);
  if (pid === undefined) return 'not running';
  print(`pylon: stopping pid ${pid}`);
  process.kill(pid, 'SIGTERM');
  // The primary kills what is left at grace + stop-timeout + 5 s: wait a little longer than that.
  const wait = (f.shutdownGrace ?? 0) + f.stopTimeout + 10;
  const deadline = Date.now() + wait * 1000;
  while (alive(pid) && Date.now() < deadline) await sleep(100);
  if (!alive(pid)) return 'stopped';
  if (!options.force) {
    throw new Error(`pid ${pid} still running ${wait} s after SIGTERM; pylon stop --force kills it`);
  }
  print(`pylon: pid ${pid} still running after ${wait} s: SIGKILL`);
  try {
    process.kill(-pid, 'SIGKILL'); // start -d runs in its own process group: workers too
  } catch {
    process.kill(pid, 'SIGKILL');
  }
  while (alive(pid)) await sleep(50);
  return 'killed';
}

/**
 * `pylon reload`: SIGHUP to the supervising process, then (with the admin API) waits until a new
 * generation of workers serves, and says how many old ones are draining.
 */
export async function reloadInstance(f: ControlFlags, print: (line: string) => void): Promise<void> {
  const pid = runningPid(f.pidFile);
  if (pid === undefined) throw new Error(`not running (no live process in ${resolve(f.pidFile)})`);
  const before = adminBase(f) ? await readStatus(f) : undefined;
  const admin = before !== undefined && before.error === undefined;
  if (admin && before.nodes.some((n) => n.process?.pid === pid)) {
    throw new Error(
      `pid ${pid} serves the connections itself (one process, no supervisor): a reload needs start -d or --workers 2 or more; use pylon restart`,
    );
  }
  const was = Math.max(0, ...(before?.nodes ?? []).map((n) => n.process?.generation ?? 0));
  const logFrom = size(f.logFile);
  process.kill(pid, 'SIGHUP');
  print(`pylon: sent SIGHUP to pid ${pid}`);
  const deadline = Date.now() + 90_000;
  while (Date.now() < deadline) {
    await sleep(500);
    // The primary says how the reload went in its log (start -d); the admin API shows the workers.
    const said = logSince(f.logFile, logFrom);
    const failed = /pylon: (reload failed|\S+: reload refused|\S+: a reload is already)[^\n]*/.exec(said);
    if (failed) throw new Error(failed[0].replace(/^pylon: /, ''));
    const done = /pylon: reloaded:[^\n]*/.exec(said);
    if (done) return print(done[0]);
    if (!admin) {
      if (size(f.logFile) === 0) return print('pylon: no log file and no admin API to follow the reload');
      continue;
    }
    // No log (a foreground --workers start with --pid-file): the admin API shows the new workers.
    const s = await readStatus(f);
    if (s.error !== undefined) continue;
    const fresh = s.nodes.filter((n) => (n.process?.generation ?? 0) > was && n.process?.state === 'serving');
    if (fresh.length >= f.workers) {
      const old = s.nodes.filter((n) => (n.process?.generation ?? 0) <= was);
      const gen = fresh[0]?.process?.generation;
      print(
        `pylon: reloaded: generation ${gen}, ${fresh.length} worker(s) serving; ${old.length} old worker(s) draining (at most ${f.drainTimeout} s)`,
      );
      return;
    }
    if (runningPid(f.pidFile) === undefined) throw new Error(`pid ${pid} exited during the reload`);
  }
  throw new Error('no new generation serving after 90 s: see the log (a new worker may fail to start)');
}

function size(file: string): number {
  try {
    return statSync(file).size;
  } catch {
    return 0;
  }
}

function logSince(file: string, from: number): string {
  try {
    return readFileSync(file).subarray(from).toString('utf8');
  } catch {
    return '';
  }
}
