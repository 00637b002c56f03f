// Service-to-service RPC, side by side on this machine in one run (after `npm run build`):
// Pylon RPC (RpcClient over TCP, JSON and MessagePack), @grpc/grpc-js unary calls, and HTTP/1.1
// keep-alive (undici Pool to node:http), at 1 and 64 concurrent callers (closed loops), for a fixed
// time each. Every server runs in its own process (bench/rpc-server.js), its callers in another
// (bench/rpc-caller.js); this process only starts them and collects what they measured. Repeats
// are interleaved (system after system, then again), figures are median (min–max) of the repeats.
// Prints a markdown table and appends it, with the machine, to docs/benchmarks.md under
// "Service-to-service RPC".
//
//   node bench/rpc.js [--seconds 5] [--warmup 1] [--repeats 3] [--callers 1,64]
//                     [--systems pylon-json,pylon-msgpack,grpc,http] [--quiet-wait S]
//                     [--cpu-prof] [--no-doc]
//   --cpu-prof   servers and callers write V8 CPU profiles to bench/results/rpc-prof-<time>/
//                (summarize with `node bench/profile.js <dir> --all`)
import { fork } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cpuOfOthers, waitQuiet } from './rpc-load.js';

const here = dirname(fileURLToPath(import.meta.url));
const SYSTEMS = ['pylon-json', 'pylon-msgpack', 'grpc', 'http'];
const LABEL = {
  'pylon-json': 'Pylon RPC, JSON',
  'pylon-msgpack': 'Pylon RPC, MessagePack',
  grpc: 'gRPC (@grpc/grpc-js), unary',
  http: 'HTTP/1.1 keep-alive (undici Pool → node:http)',
};

function parseArgs(argv) {
  const o = {
    seconds: 5,
    warmup: 1,
    repeats: 3,
    callers: [1, 64],
    systems: SYSTEMS,
    quietWait: 0,
    doc: true,
  };
  for (let i = 0; i < argv.length; i++) {
    const [key, inline] = argv[i].split('=', 2);
    const value = () => inline ?? argv[++i];
    if (key === '--seconds') o.seconds = Number(value());
    else if (key === '--warmup') o.warmup = Number(value());
    else if (key === '--repeats') o.repeats = Number(value());
    else if (key === '--callers') o.callers = value().split(',').map(Number);
    else if (key === '--systems') o.systems = value().split(',');
    else if (key === '--quiet-wait') o.quietWait = Number(value());
    else if (key === '--cpu-prof') o.cpuProf = true;
    else if (key === '--no-doc') o.doc = false;
    else throw new Error(`unknown option ${argv[i]} (see the comment at the top of bench/rpc.js)`);
  }
  for (const s of o.systems) if (!SYSTEMS.includes(s)) throw new Error(`unknown system "${s}"`);
  return o;
}

const opts = parseArgs(process.argv.slice(2));
const stamp = new Date().toISOString().replace(/[:.]/g, '-');
const profDir = opts.cpuProf ? join(here, 'results', `rpc-prof-${stamp}`) : undefined;
if (profDir) mkdirSync(profDir, { recursive: true });
const execArgv = profDir ? ['--cpu-prof', '--cpu-prof-dir', profDir] : [];
const children = new Set();
const log = (msg) => console.error(`[rpc-bench] ${msg}`);

function start(file, args) {
  const child = fork(join(here, file), args, { execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

function message(child, what, ms) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what}: no answer in ${ms} ms`)), ms);
    child.once('message', (m) => {
      clearTimeout(timer);
      resolve(m);
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${what}: exited with ${code}`));
    });
  });
}

async function stop(child) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.disconnect(); // the child exits when its IPC channel closes (profiles are written on exit)
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}

process.on('SIGINT', () => {
  for (const c of children) c.kill('SIGKILL');
  process.exit(130);
});

/** One window: a caller process runs `callers` closed loops against the server on `port`. */
async function measure(system, port, callers, server) {
  if (opts.quietWait > 0) await waitQuiet(opts.quietWait * 1000);
  const caller = start('rpc-caller.js', []);
  const answer = message(caller, `${system} callers`, (opts.warmup + opts.seconds) * 1000 + 30_000);
  caller.send({ kind: system, port, callers, warmupMs: opts.warmup * 1000, ms: opts.seconds * 1000 });
  const probe = cpuOfOthers([caller.pid, server.pid]);
  const m = await answer;
  const others = probe();
  await stop(caller);
  if (!m.ok) throw new Error(m.error);
  return { ...m.result, rate: m.result.calls / m.result.seconds, others };
}

const results = []; // { system, callers, repeat, rate, p50, p99, ... }
for (let repeat = 1; repeat <= opts.repeats; repeat++) {
  for (const system of opts.systems) {
    const server = start('rpc-server.js', [system.startsWith('pylon') ? 'pylon' : system]);
    const { ready: port } = await message(server, `${system} server`, 15_000);
    for (const callers of opts.callers) {
      const r = await measure(system, port, callers, server);
      results.push({ system, callers, repeat, ...r });
      log(
        `${repeat}/${opts.repeats} ${system} ×${callers}: ${Math.round(r.rate)} calls/s, p50 ${r.p50} µs, p99 ${r.p99} µs` +
          (r.errors ? `, ${r.errors} errors` : '') +
          (r.others !== undefined && r.others > 0.1 ? ` (others used ${r.others} cores)` : ''),
      );
    }
    await stop(server);
  }
}

// ---- summary ----

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const num = (x) => Math.round(x).toLocaleString('en-US');
const spread = (xs, f = num) =>
  xs.length > 1 ? `${f(median(xs))} (${f(Math.min(...xs))}–${f(Math.max(...xs))})` : f(xs[0]);
const ms = (us) => (us / 1000).toFixed(us < 10_000 ? 3 : 1);

const rows = [];
for (const callers of opts.callers) {
  for (const system of opts.systems) {
    const rs = results.filter((r) => r.system === system && r.callers === callers);
    rows.push(
      `| ${LABEL[system]} | ${callers} | ${spread(rs.map((r) => r.rate))} | ${spread(
        rs.map((r) => r.p50),
        ms,
      )} | ${spread(
        rs.map((r) => r.p99),
        ms,
      )} |`,
    );
  }
}
const table = ['| system | callers | calls/s | p50 ms | p99 ms |', '|---|---:|---:|---:|---:|', ...rows].join(
  '\n',
);
const othersMax = Math.max(0, ...results.map((r) => r.others ?? 0));
const machine = `${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}, ${new Date().toISOString().slice(0, 10)}`;
const section = [
  '',
  `### Run of ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC`,
  '',
  `Machine: ${machine}. ${opts.seconds} s measured per window after ${opts.warmup} s of warm-up, ` +
    `${opts.repeats} interleaved repeats: median (min–max). Other processes used up to ${othersMax} cores during a window.`,
  '',
  table,
  '',
].join('\n');
console.log(section);

mkdirSync(join(here, 'results'), { recursive: true });
writeFileSync(
  join(here, 'results', `rpc-${stamp}.json`),
  JSON.stringify({ opts, machine, results }, null, 2),
);
if (profDir) log(`profiles in ${profDir}: node bench/profile.js ${profDir} --all`);
if (opts.doc) {
  const doc = join(here, '..', 'docs', 'benchmarks.md');
  const heading = '## Service-to-service RPC';
  const has = existsSync(doc) && readFileSync(doc, 'utf8').includes(`\n${heading}\n`);
  appendFileSync(
    doc,
    has ? section : `\n${heading}\n\nRuns of \`node bench/rpc.js\`, newest last.\n${section}`,
  );
  log(`appended to ${doc}`);
}
