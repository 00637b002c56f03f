// A paced broadcast (flow control): one push to N connections at R connections/s, and what it
// does to the rest of the gateway meanwhile: heartbeats (ping/pong) and requests keep being
// answered. The gateway runs here; the clients in a child process (bench/paced-clients.js).
// Run after `npm run build`:  node bench/paced.js [--connections 10000] [--rate 2000]
import { fork } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createGateway, createLogger, devValidator } from '../dist/index.js';

const here = dirname(fileURLToPath(import.meta.url));
const arg = (name, fallback) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
};
const N = arg('--connections', 10_000);
const RATE = arg('--rate', 2000);

const gateway = createGateway({
  tcp: { port: 0 },
  validate: devValidator(),
  logger: createLogger('warn'),
  keepalive: { interval: 1000, timeout: 5000 },
});
gateway.handle('echo', (d) => d);
const { tcp } = await gateway.listen();
const clients = fork(join(here, 'paced-clients.js'), [String(tcp.port), String(N)]);
const next = (type) => new Promise((resolve) => clients.on('message', (m) => m.type === type && resolve(m)));
await next('connected');
const t0 = performance.now();
const result = await gateway.push({ all: true }, 'paced', { at: Date.now() }, { rate: RATE });
const answeredIn = performance.now() - t0;
clients.send({ type: 'probe' });
await result.done;
const spreadMs = performance.now() - t0;
clients.send({ type: 'report' });
const report = await next('report');
console.log(
  `paced broadcast: ${result.targeted} connections at ${RATE}/s; push() answered in ${answeredIn.toFixed(1)} ms; ` +
    `fan-out took ${(spreadMs / 1000).toFixed(2)} s (${report.received} received); meanwhile ${report.pongs} heartbeat ` +
    `pongs and ${report.echoes} echo requests answered, slowest echo ${report.maxEchoMs.toFixed(1)} ms, ` +
    `connections closed by keepalive: ${report.closed}`,
);
clients.kill();
await gateway.close();
process.exit(0);
