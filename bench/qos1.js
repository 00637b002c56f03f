// qos 1 end to end: push (store) -> send -> client handler -> ack -> removed from the inbox, for
// the memory, sqlite and redis stores. The gateway runs in its own process (bench/qos1-server.js);
// 100 SDK clients (one per user) run in this one.
// Run after `npm run build`:  node bench/qos1.js [--messages N] [--repeats N] [--stores a,b]
//   [--cpu-prof DIR] (the gateway process writes a .cpuprofile per run there; bench/profile.js reads them)
import { fork, spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { connect } from '../dist/client/index.js';
import { freePort, waitForPort } from './lib/ports.js';

const here = dirname(fileURLToPath(import.meta.url));
const arg = (name, fallback) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
};
const text = (name) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : undefined;
};
const CPU_PROF = text('--cpu-prof');
const ONLY = text('--stores')?.split(',');
const MESSAGES = arg('--messages', 20_000);
const REPEATS = arg('--repeats', 3);
const USERS = 100;
const CONCURRENCY = 100;

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const spread = (xs) => `${Math.min(...xs).toFixed(1)}–${Math.max(...xs).toFixed(1)}`;

async function startRedis() {
  if (spawnSync('sh', ['-c', 'command -v redis-server']).status !== 0) return undefined;
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'pylon-bench-redis-'));
  const child = spawn(
    'redis-server',
    [
      '--save',
      '',
      '--appendonly',
      'yes',
      '--appendfsync',
      'everysec',
      '--dir',
      dir,
      '--bind',
      '127.0.0.1',
      '--port',
      String(port),
    ],
    { stdio: 'ignore' },
  );
  await waitForPort(port);
  return {
    url: `redis://127.0.0.1:${port}`,
    stop: () => {
      child.kill('SIGTERM');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function once(store) {
  const server = fork(join(here, 'qos1-server.js'), [], {
    env: { ...process.env, STORE: store },
    execArgv: CPU_PROF ? ['--cpu-prof', '--cpu-prof-dir', CPU_PROF] : [],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const next = (type) => new Promise((resolve) => server.on('message', (m) => m.type === type && resolve(m)));
  const { port } = await next('ready');
  const clients = [];
  let handled = 0;
  for (let u = 0; u < USERS; u++) {
    const c = await connect(`tcp://127.0.0.1:${port}`, { token: `u${u}`, reconnect: false });
    c.on('m', () => {
      handled++;
    });
    clients.push(c);
  }
  const result = next('result');
  server.send({ type: 'run', messages: MESSAGES, users: USERS, concurrency: CONCURRENCY });
  const r = await result;
  await Promise.all(clients.map((c) => c.close()));
  server.send({ type: 'stop' });
  await new Promise((resolve) => server.on('exit', resolve));
  if (handled !== MESSAGES) throw new Error(`handled ${handled} of ${MESSAGES}`);
  return r;
}

const dir = mkdtempSync(join(tmpdir(), 'pylon-bench-qos1-'));
const redis = await startRedis();
const stores = [
  ['memory', () => 'memory'],
  ['sqlite', (i) => `sqlite:${join(dir, `run-${i}.db`)}`],
  ...(redis ? [['redis', (i) => `${redis.url}/${i % 16}`]] : []),
];
const rows = [];
try {
  for (const [name, spec] of stores) {
    if (ONLY && !ONLY.includes(name)) continue;
    const runs = [];
    for (let i = 0; i < REPEATS; i++) runs.push(await once(spec(i)));
    const rate = runs.map((r) => MESSAGES / (r.elapsedMs / 1000));
    const cpu = runs.map((r) => r.cpuUs / MESSAGES);
    rows.push({
      store: name,
      rate: median(rate),
      rateSpread: `${Math.min(...rate).toFixed(0)}–${Math.max(...rate).toFixed(0)}`,
      cpu: median(cpu),
      cpuSpread: spread(cpu),
      p50: median(runs.map((r) => r.acceptP50)),
      p99: median(runs.map((r) => r.acceptP99)),
      runs,
    });
    console.error(`${name}: ${median(rate).toFixed(0)} msg/s`);
  }
} finally {
  redis?.stop();
  rmSync(dir, { recursive: true, force: true });
}

const lines = [
  `qos 1 end to end (push -> store -> send -> handler -> ack), ${MESSAGES} messages to ${USERS} users, ${CONCURRENCY} pushes in flight, median of ${REPEATS} (min–max); ${cpus().length} cores, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}`,
  '',
  '| store | delivered and acked msg/s | gateway CPU µs per message | push accepted (stored) p50 / p99 ms |',
  '|---|---|---|---|',
  ...rows.map(
    (r) =>
      `| ${r.store} | ${r.rate.toFixed(0)} (${r.rateSpread}) | ${r.cpu.toFixed(1)} (${r.cpuSpread}) | ${r.p50.toFixed(2)} / ${r.p99.toFixed(2)} |`,
  ),
];
console.log(lines.join('\n'));
mkdirSync(join(here, 'results'), { recursive: true });
writeFileSync(
  join(here, 'results', `qos1-${new Date().toISOString().replace(/[:.]/g, '-')}.json`),
  JSON.stringify({ messages: MESSAGES, users: USERS, rows }, null, 2),
);
