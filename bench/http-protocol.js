// The framework's `http` protocol (src/framework/http.ts) against Node's own `http` server, both
// answering the same keep-alive hello world, in one run on this machine. Run after `npm run build`:
//
//   node bench/http-protocol.js [--duration 10] [--connections 100] [--repeats 3]
//
// Each server runs in a child process of its own (`node bench/http-protocol.js --serve <kind>`);
// the load comes from autocannon (a dev dependency, pure JavaScript) in this process: keep-alive
// HTTP/1.1, `--connections` connections, no pipelining. Servers are measured in turns
// (framework, node, framework, …) so a slow minute of the machine hits both; each figure is the
// median of the repeats (min–max) of autocannon's mean req/s over a window, after a warm-up.
// Results go to stdout as a markdown table (docs/benchmarks.md, "HTTP protocol (framework)").

import { fork } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus, release, totalmem } from 'node:os';
import { fileURLToPath } from 'node:url';

const BODY = 'hello world';

// ---- server mode ----

async function serve(kind) {
  let port;
  if (kind === 'framework') {
    const { createServer } = await import('../dist/framework/index.js');
    const { createLogger } = await import('../dist/log/logger.js');
    const server = createServer({
      listen: 'http://127.0.0.1:0',
      logger: createLogger('warn'),
      onMessage(conn) {
        conn.send(BODY);
      },
    });
    port = (await server.listen()).port;
  } else if (kind === 'node') {
    const http = await import('node:http');
    const server = http.createServer((_req, res) => {
      res.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': BODY.length });
      res.end(BODY);
    });
    server.keepAliveTimeout = 60_000;
    await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = server.address().port;
  } else throw new Error(`unknown server kind ${kind}`);
  process.send({ port });
  // The orchestrator asks for this process's CPU time (user + system, µs) around each window.
  process.on('message', () => {
    const u = process.cpuUsage();
    process.send({ cpu: u.user + u.system });
  });
  process.on('disconnect', () => process.exit(0));
}

// ---- orchestrator ----

function parseArgs(argv) {
  const o = { duration: 10, connections: 100, repeats: 3, warmup: 3 };
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i]?.replace(/^--/, '');
    const value = Number(argv[i + 1]);
    if (!(key in o) || !Number.isFinite(value) || value <= 0)
      throw new Error(`bad option ${argv[i]} ${argv[i + 1]}`);
    o[key] = value;
  }
  return o;
}

function start(kind) {
  const child = fork(fileURLToPath(import.meta.url), ['--serve', kind], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  return new Promise((resolve, reject) => {
    child.once('message', (m) => resolve({ child, port: m.port }));
    child.once('exit', (code) => reject(new Error(`${kind} server exited with ${code}`)));
  });
}

function cpuOf(child) {
  return new Promise((resolve) => {
    child.once('message', (m) => resolve(m.cpu));
    child.send('cpu');
  });
}

async function load(autocannon, server, duration, connections) {
  const cpu0 = await cpuOf(server.child);
  const result = await autocannon({
    url: `http://127.0.0.1:${server.port}/`,
    connections,
    pipelining: 1,
    duration,
  });
  const cpu = (await cpuOf(server.child)) - cpu0;
  if (result.errors > 0 || result.non2xx > 0 || result.timeouts > 0) {
    throw new Error(`errors ${result.errors}, non-2xx ${result.non2xx}, timeouts ${result.timeouts}`);
  }
  // Requests per second of the server's own CPU time: what the server costs, whatever the
  // load generator or the rest of the machine could deliver.
  const perCpu = result.requests.total / (cpu / 1e6);
  return { rps: result.requests.average, perCpu, p50: result.latency.p50, p99: result.latency.p99 };
}

function loadavg() {
  try {
    return readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  } catch {
    return 'n/a';
  }
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const fmt = (n) => Math.round(n).toLocaleString('en-US');

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const { default: autocannon } = await import('autocannon');
  const kinds = ['framework', 'node'];
  const servers = {};
  for (const kind of kinds) servers[kind] = await start(kind);
  const runs = { framework: [], node: [] };
  const loadBefore = loadavg();
  try {
    for (const kind of kinds) {
      process.stderr.write(`warm-up ${kind} (${o.warmup} s)\n`);
      await load(autocannon, servers[kind], o.warmup, o.connections);
    }
    for (let r = 0; r < o.repeats; r++) {
      for (const kind of r % 2 === 0 ? kinds : [...kinds].reverse()) {
        const m = await load(autocannon, servers[kind], o.duration, o.connections);
        runs[kind].push(m);
        process.stderr.write(
          `repeat ${r + 1} ${kind}: ${fmt(m.rps)} req/s, ${fmt(m.perCpu)} req per server CPU-second, ` +
            `p50 ${m.p50} ms, p99 ${m.p99} ms (load average ${loadavg()})\n`,
        );
      }
    }
  } finally {
    for (const kind of kinds) servers[kind].child.kill();
  }
  const cpu = cpus();
  console.log(
    `Node ${process.version}, ${cpu.length} × ${cpu[0]?.model ?? '?'}, ${Math.round(totalmem() / 2 ** 30)} GiB, Linux ${release()}; ` +
      `autocannon, ${o.connections} keep-alive connections, ${o.duration} s windows, median of ${o.repeats} (min–max); ` +
      `load average ${loadBefore} before, ${loadavg()} after.\n`,
  );
  console.log('| server | req/s | req per server CPU-second | p50 latency | p99 latency |');
  console.log('|---|---|---|---|---|');
  const cell = (xs) => `${fmt(median(xs))} (${fmt(Math.min(...xs))}–${fmt(Math.max(...xs))})`;
  for (const kind of kinds) {
    const name = kind === 'framework' ? 'Pylon framework, `http://` protocol' : "Node's `http` server";
    const m = runs[kind];
    console.log(
      `| ${name} | **${cell(m.map((x) => x.rps))}** | ${cell(m.map((x) => x.perCpu))} | ` +
        `${median(m.map((x) => x.p50))} ms | ${median(m.map((x) => x.p99))} ms |`,
    );
  }
  const ratio = (f) => median(runs.framework.map(f)) / median(runs.node.map(f));
  console.log(
    `\nframework / node: ${ratio((m) => m.rps).toFixed(2)}× req/s, ${ratio((m) => m.perCpu).toFixed(2)}× req per CPU-second`,
  );
}

const serveAt = process.argv.indexOf('--serve');
if (serveAt >= 0) await serve(process.argv[serveAt + 1]);
else await main();
