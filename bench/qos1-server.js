// The gateway side of bench/qos1.js: a TCP gateway over the store named by $STORE, driven over IPC.
import { createGateway, createLogger, devValidator, openStore } from '../dist/index.js';

const store = await openStore(process.env.STORE);
const gateway = createGateway({
  tcp: { port: 0 },
  validate: devValidator(),
  store,
  logger: createLogger('warn'),
  maxPendingRequests: 10_000,
});
const addr = await gateway.listen();
process.send({ type: 'ready', port: addr.tcp.port });

process.on('message', async (msg) => {
  if (msg.type === 'run') {
    const { messages, users, concurrency } = msg;
    const latencies = new Float64Array(messages);
    const ackedBefore = gateway.stats().qos1.acked;
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    let next = 0;
    const worker = async () => {
      while (next < messages) {
        const i = next++;
        const start = performance.now();
        await gateway.push({ user: `u${i % users}` }, 'm', { i, pad: 'x'.repeat(64) }, { qos: 1 });
        latencies[i] = performance.now() - start;
      }
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
    const stored = performance.now() - t0;
    while (gateway.stats().qos1.acked - ackedBefore < messages) await new Promise((r) => setTimeout(r, 2));
    const elapsed = performance.now() - t0;
    const cpu = process.cpuUsage(cpu0);
    latencies.sort();
    process.send({
      type: 'result',
      elapsedMs: elapsed,
      storedMs: stored,
      cpuUs: cpu.user + cpu.system,
      acceptP50: latencies[Math.floor(messages * 0.5)],
      acceptP99: latencies[Math.floor(messages * 0.99)],
    });
  } else if (msg.type === 'stop') {
    await gateway.close();
    await store.close();
    process.exit(0);
  }
});
