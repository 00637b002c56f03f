// `pylon start` under test, as people run it: the built CLI with its defaults (SQLite store, dev
// auth, admin API and dashboard on; only the log level is warn, and gRPC is off), in its own process. This process starts it, measures it from
// outside (CPU from /proc/<pid>/stat, RSS from /proc/<pid>/status, heap from its own /v1/stats)
// and drives its broadcasts the way a business system does: POST /v1/push every interval,
// without waiting for the previous one. It answers run.js over IPC like bench/server.js.
//   node bench/start-server.js <ws|tcp>
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { emit, serve } from './lib/ipc.js';

const transport = process.argv[2] === 'tcp' ? 'tcp' : 'ws';
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dir = mkdtempSync(join(tmpdir(), 'pylon-start-bench-'));
// run.js --cpu-prof: the CLI is profiled (not this driver), and stopped gently so it writes the profile.
const prof = process.env.PYLON_BENCH_CPU_PROF ? JSON.parse(process.env.PYLON_BENCH_CPU_PROF) : undefined;
const child = spawn(
  process.execPath,
  [
    ...(prof ? ['--cpu-prof', `--cpu-prof-dir=${prof.dir}`, `--cpu-prof-name=${prof.name}`] : []),
    join(root, 'dist/cli/main.js'),
    'start',
    '--ws-port',
    '0',
    '--tcp-port',
    '0',
    '--admin-port',
    '0',
    '--grpc-port',
    '-1',
    // Logs at info would be one line per connection to a pipe nobody reads: warn, as in production.
    '--log-level',
    'warn',
    // More flags for an experiment (space-separated), e.g. PYLON_BENCH_START_ARGS='--store memory'.
    ...(process.env.PYLON_BENCH_START_ARGS?.split(' ').filter(Boolean) ?? []),
  ],
  // In an empty directory: no pylon.yaml is read, and the default store (sqlite:./data/pylon.db) lands there.
  { cwd: dir, stdio: ['ignore', 'pipe', 'inherit'] },
);
const cleanup = () => {
  if (child.exitCode === null) child.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
};
process.on('exit', cleanup);
process.on('SIGTERM', () => process.exit(0));

const found = {};
await new Promise((resolve, reject) => {
  let out = '';
  child.stdout.on('data', (d) => {
    out += d.toString();
    for (const [key, re] of [
      ['ws', /WebSocket on ws:\/\/[^:]+:(\d+)/],
      ['tcp', /TCP on tcp:\/\/[^:]+:(\d+)/],
      ['admin', /admin API on http:\/\/[^:]+:(\d+)/],
    ]) {
      const m = re.exec(out);
      if (m) found[key] = Number(m[1]);
    }
    if (/ready/.test(out)) resolve();
  });
  child.once('exit', (code) => reject(new Error(`pylon start exited (${code}) before it was ready`)));
  setTimeout(() => reject(new Error('pylon start not ready in 30 s')), 30_000).unref();
});
child.stdout.resume();

const agent = new Agent({ keepAlive: true, maxSockets: 64 });
const wallNow = () => performance.timeOrigin + performance.now();
const hrUs = () => Number(process.hrtime.bigint() / 1000n);
const TICK_US = 1_000_000 / 100; // USER_HZ: 100 on Linux

function api(method, path, body) {
  return new Promise((resolve, reject) => {
    const text = body === undefined ? undefined : JSON.stringify(body);
    const req = request(
      {
        host: '127.0.0.1',
        port: found.admin,
        method,
        path,
        agent,
        headers: text
          ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) }
          : {},
      },
      (res) => {
        let data = '';
        res.setEncoding('utf8');
        res.on('data', (c) => {
          data += c;
        });
        res.on('end', () => resolve({ status: res.statusCode, json: data ? JSON.parse(data) : undefined }));
      },
    );
    req.on('error', reject);
    req.end(text);
  });
}

/** utime + stime of the server process, µs (10 ms resolution). */
function cpuUs() {
  const stat = readFileSync(`/proc/${child.pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { user: Number(f[11]) * TICK_US, system: Number(f[12]) * TICK_US };
}

function rss() {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const marks = new Map();

/**
 * A push to everyone every `intervalMs` through POST /v1/push, each sent on schedule whether
 * the previous one was answered or not (a business system does not wait for a broadcast to be
 * written out before the next). Each carries its send time.
 */
async function broadcastLoop({ intervalMs, durationMs, padLength }) {
  const pad = 'x'.repeat(padLength);
  const t0 = performance.now();
  let issued = 0;
  let late = 0;
  let firstSend = 0;
  let lastSend = 0;
  const answers = [];
  const statuses = {};
  for (let i = 0; i * intervalMs < durationMs; i++) {
    const wait = t0 + i * intervalMs - performance.now();
    if (wait >= 1) await sleep(wait);
    else if (i > 0) late++;
    const t = wallNow();
    if (issued === 0) firstSend = t;
    lastSend = t;
    issued++;
    answers.push(
      api('POST', '/v1/push', { to: { all: true }, type: 'b', data: { t, p: pad } }).then(
        (r) => {
          statuses[r.status] = (statuses[r.status] ?? 0) + 1;
          return wallNow() - t;
        },
        () => {
          statuses.error = (statuses.error ?? 0) + 1;
          return wallNow() - t;
        },
      ),
    );
  }
  const took = await Promise.all(answers);
  return {
    issued,
    late,
    firstSend,
    lastSend,
    writtenAt: wallNow(),
    // Here: from each POST until its answer (the push was accepted; its fan-out may go on).
    meanWriteMs: took.reduce((a, b) => a + b, 0) / Math.max(1, took.length),
    maxWriteMs: Math.max(0, ...took),
    statuses,
  };
}

serve({
  exit: async () => {
    if (!prof || child.exitCode !== null) return;
    // SIGTERM: pylon start shuts down and Node writes the profile on its way out.
    const gone = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    await Promise.race([gone, sleep(4_000)]);
  },
  mem: async () => {
    const stats = (await api('GET', '/v1/stats')).json;
    const node = stats?.nodes?.[0]?.process ?? stats?.process ?? {};
    return {
      heapUsed: node.heapUsed ?? 0,
      heapTotal: node.heapTotal ?? 0,
      rss: rss(),
      external: node.external ?? 0,
    };
  },
  count: async () => {
    const stats = (await api('GET', '/v1/stats')).json;
    return stats.connections;
  },
  mark: ({ label }) => {
    const m = { cpu: cpuUs(), hr: hrUs(), wall: wallNow() };
    marks.set(label, m);
    return { hrUs: m.hr, wall: m.wall };
  },
  since: ({ label }) => {
    const m = marks.get(label);
    if (!m) throw new Error(`no mark "${label}"`);
    const c = cpuUs();
    const hr = hrUs();
    const user = c.user - m.cpu.user;
    const system = c.system - m.cpu.system;
    return {
      cpuUs: user + system,
      userUs: user,
      systemUs: system,
      elapsedMs: (hr - m.hr) / 1000,
      hrStartUs: m.hr,
      hrEndUs: hr,
    };
  },
  broadcast: (args) => broadcastLoop(args),
  snapshot: () => {
    throw new Error('no heap snapshots of pylon start here (use POST /v1/debug/heap-snapshot)');
  },
});

const version = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).version;
emit('ready', {
  port: found[transport],
  info: { pylon: version, transport, codec: 'json', server: 'pylon start (defaults)', admin: found.admin },
  pid: child.pid,
  node: process.version,
});
