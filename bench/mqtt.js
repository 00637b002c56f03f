// Pylon's MQTT face beside Mosquitto (Debian's `mosquitto`) and Aedes (npm), same machine, same
// run: idle memory per connection, and a QoS 0 PUBLISH fanned out to every subscriber.
// Run after `npm run build`:  node bench/mqtt.js [--connections N] [--repeats N] [--brokers a,b]
//   Each repeat: a fresh broker process; N subscribers (MQTT 3.1.1, one topic) in another
//   process; RSS of the broker before and after they connect; then one publisher sends a QoS 0
//   PUBLISH of 64 bytes to the topic every 100 ms for 5 s; deliveries/s, latency from publish to
//   receipt (p50 / p99), and the broker's CPU (from /proc) per delivery.
import { fork, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { cpus, tmpdir, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import mqttPacket from 'mqtt-packet';
import { freePort, waitForPort } from './lib/ports.js';

const here = dirname(fileURLToPath(import.meta.url));
const arg = (name, fallback) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : fallback;
};
const CONNECTIONS = Number(arg('--connections', 10_000));
const REPEATS = Number(arg('--repeats', 3));
const BROKERS = arg('--brokers', 'mosquitto,aedes,pylon').split(',');
const INTERVAL_MS = 100;
const DURATION_MS = 5_000;
const TOPIC = 'bench/fanout';
const TICK_US = 1_000_000 / 100; // USER_HZ
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const range = (xs, d = 0) =>
  `${Math.min(...xs).toLocaleString('en-US', { maximumFractionDigits: d })}–${Math.max(...xs).toLocaleString('en-US', { maximumFractionDigits: d })}`;
const fmt = (x, d = 0) => x.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d });

function rss(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}
function cpuUs(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) * TICK_US;
}

async function startBroker(kind, dir) {
  if (kind === 'mosquitto') {
    const port = await freePort();
    const conf = join(dir, 'mosquitto.conf');
    writeFileSync(
      conf,
      `listener ${port} 127.0.0.1\nallow_anonymous true\nmax_connections -1\npersistence false\nlog_type none\n`,
    );
    const child = spawn('mosquitto', ['-c', conf], { stdio: 'ignore' });
    await waitForPort(port);
    return { child, port };
  }
  const child = spawn(process.execPath, [join(here, 'mqtt-server.js'), kind], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const port = await new Promise((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
      const m = /port (\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    child.once('exit', (code) => reject(new Error(`${kind} exited (${code})`)));
  });
  return { child, port };
}

function clientsProcess() {
  const child = fork(join(here, 'mqtt-clients.js'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const next = (cmd) =>
    new Promise((resolve) => {
      const on = (m) => {
        if (m.cmd !== cmd) return;
        child.off('message', on);
        resolve(m);
      };
      child.on('message', on);
    });
  return { child, next, ready: next('ready') };
}

/** One publisher: a QoS 0 PUBLISH every INTERVAL_MS for DURATION_MS, its send time in the payload. */
async function publish(port) {
  const s = connect({ port, host: '127.0.0.1' });
  await new Promise((resolve) => s.once('connect', resolve));
  s.write(
    mqttPacket.generate({
      cmd: 'connect',
      protocolVersion: 4,
      clientId: 'publisher',
      clean: true,
      keepalive: 0,
      username: 'pub',
    }),
  );
  await sleep(200);
  let sent = 0;
  const t0 = performance.now();
  while (performance.now() - t0 < DURATION_MS) {
    const stamp = String(performance.timeOrigin + performance.now()).padEnd(20, ' ');
    const payload = Buffer.from(stamp + 'x'.repeat(44));
    s.write(
      mqttPacket.generate({ cmd: 'publish', topic: TOPIC, payload, qos: 0, retain: false, dup: false }),
    );
    sent++;
    await sleep(INTERVAL_MS);
  }
  s.destroy();
  return sent;
}

async function once(kind) {
  const dir = mkdtempSync(join(tmpdir(), 'pylon-mqtt-bench-'));
  const broker = await startBroker(kind, dir);
  const clients = clientsProcess();
  try {
    await clients.ready;
    await sleep(1_000);
    const before = rss(broker.child.pid);
    clients.child.send({ cmd: 'open', port: broker.port, count: CONNECTIONS, topic: TOPIC });
    const { ms: connectMs } = await clients.next('opened');
    await sleep(2_000);
    const after = rss(broker.child.pid);
    clients.child.send({ cmd: 'reset' });
    await clients.next('reset');
    const cpu0 = cpuUs(broker.child.pid);
    const w0 = performance.timeOrigin + performance.now();
    const sent = await publish(broker.port);
    // Until every delivery arrived, or 10 s more.
    let r;
    for (let i = 0; i < 100; i++) {
      clients.child.send({ cmd: 'report' });
      r = await clients.next('report');
      if (r.received >= sent * CONNECTIONS) break;
      await sleep(100);
    }
    // From the first PUBLISH to the last delivery (not to the end of the wait for missing ones).
    const wall = Math.max(0.001, (r.lastAt - w0) / 1000);
    const cpu = cpuUs(broker.child.pid) - cpu0;
    return {
      rssPerConn: (after - before) / CONNECTIONS,
      connectMs,
      sent,
      delivered: r.received,
      perSec: r.received / wall,
      p50: r.p50,
      p99: r.p99,
      cpuPerDelivery: cpu / Math.max(1, r.received),
    };
  } finally {
    clients.child.send({ cmd: 'close' });
    broker.child.kill('SIGKILL');
    await sleep(300);
    rmSync(dir, { recursive: true, force: true });
  }
}

const rows = [];
for (const kind of BROKERS) {
  const runs = [];
  for (let i = 0; i < REPEATS; i++) {
    const run = await once(kind);
    console.error(
      `${kind} #${i + 1}: ${fmt(run.rssPerConn)} B/conn RSS, ${run.delivered}/${run.sent * CONNECTIONS} delivered, ${fmt(run.perSec)}/s, p50 ${fmt(run.p50, 1)} ms, p99 ${fmt(run.p99, 1)} ms, ${fmt(run.cpuPerDelivery, 2)} µs CPU/delivery`,
    );
    runs.push(run);
  }
  rows.push({ kind, runs });
}

const col = (runs, key, d) =>
  `${fmt(median(runs.map((r) => r[key])), d)} (${range(
    runs.map((r) => r[key]),
    d,
  )})`;
const base = rows.find((r) => r.kind === 'mosquitto');
const ratio = (runs, key) =>
  base ? `${fmt(median(runs.map((r) => r[key])) / median(base.runs.map((r) => r[key])), 2)}×` : '';
const lines = [
  `MQTT brokers, ${CONNECTIONS.toLocaleString('en-US')} subscribers of one topic (MQTT 3.1.1, QoS 0), a 64-byte PUBLISH every ${INTERVAL_MS} ms for ${DURATION_MS / 1000} s; median of ${REPEATS} (min–max); ${cpus().length} cores, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}, ${new Date().toISOString().slice(0, 10)}`,
  '',
  '| broker | RSS per idle connection (B) | ×mosquitto | delivered/s | p50 ms | p99 ms | ×mosquitto | broker CPU µs per delivery | ×mosquitto | delivered |',
  '|---|---|---|---|---|---|---|---|---|---|',
  ...rows.map(
    ({ kind, runs }) =>
      `| ${kind} | ${col(runs, 'rssPerConn', 0)} | ${ratio(runs, 'rssPerConn')} | ${col(runs, 'perSec', 0)} | ${col(runs, 'p50', 1)} | ${col(runs, 'p99', 1)} | ${ratio(runs, 'p99')} | ${col(runs, 'cpuPerDelivery', 2)} | ${ratio(runs, 'cpuPerDelivery')} | ${runs.map((r) => `${r.delivered}/${r.sent * CONNECTIONS}`).join(', ')} |`,
  ),
];
console.log(lines.join('\n'));
mkdirSync(join(here, 'results'), { recursive: true });
writeFileSync(
  join(here, 'results', `mqtt-${new Date().toISOString().replace(/[:.]/g, '-')}.json`),
  JSON.stringify({ connections: CONNECTIONS, rows }, null, 2),
);
