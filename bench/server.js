// One server under test in its own process (started by run.js with --expose-gc): listens on a
// free loopback port, then measures itself on command (settled memory, CPU time over a window)
// and drives the broadcasts of the fan-out workload.
//   node --expose-gc bench/server.js <kind>
import { writeHeapSnapshot } from 'node:v8';
import { emit, serve } from './lib/ipc.js';
import { createServer } from './lib/servers.js';

const kind = process.argv[2];
if (typeof globalThis.gc !== 'function') {
  console.error('bench/server.js needs --expose-gc');
  process.exit(2);
}

const server = await createServer(kind);
const marks = new Map();
const wallNow = () => performance.timeOrigin + performance.now();
const hrUs = () => Number(process.hrtime.bigint() / 1000n);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const turn = () => new Promise((resolve) => setImmediate(resolve));

/** Memory once what is garbage is gone: several full GCs with event-loop turns between them. */
async function settledMemory(rounds) {
  for (let i = 0; i < rounds; i++) {
    globalThis.gc();
    await sleep(20);
  }
  const m = process.memoryUsage();
  return { heapUsed: m.heapUsed, heapTotal: m.heapTotal, rss: m.rss, external: m.external };
}

/**
 * Broadcasts a push every `intervalMs` for `durationMs`, on a fixed schedule. Every server's
 * broadcast is awaited before the next starts (for ws, net and socket.io it is synchronous; for
 * Pylon it is `push(...).done`), so a server that cannot keep up sends fewer broadcasts, later
 * (saturation), instead of piling them up. Each push carries its send time, on the time base
 * every process shares.
 */
async function broadcastLoop({ intervalMs, durationMs, padLength }) {
  const pad = 'x'.repeat(padLength);
  const t0 = performance.now();
  let issued = 0;
  let late = 0;
  let firstSend = 0;
  let lastSend = 0;
  let writeMs = 0;
  let maxWriteMs = 0;
  for (let i = 0; i * intervalMs < durationMs; i++) {
    const wait = t0 + i * intervalMs - performance.now();
    if (wait >= 1) await sleep(wait);
    else {
      if (i > 0) late++;
      // A turn of the event loop between broadcasts, so sockets and IPC are served.
      await turn();
    }
    if (performance.now() - t0 >= durationMs) break;
    const t = wallNow();
    if (issued === 0) firstSend = t;
    lastSend = t;
    issued++;
    const done = server.broadcast({ t, p: pad });
    if (done !== undefined) await done;
    const took = wallNow() - t;
    writeMs += took;
    if (took > maxWriteMs) maxWriteMs = took;
  }
  // writeMs: from each broadcast's start until it was written to every socket (kernel or buffer).
  return {
    issued,
    late,
    firstSend,
    lastSend,
    writtenAt: wallNow(),
    meanWriteMs: writeMs / issued,
    maxWriteMs,
  };
}

serve({
  mem: ({ rounds = 3 }) => settledMemory(rounds),
  count: () => server.count(),
  /** Starts a measurement window: CPU time (all threads) and the monotonic clock. */
  mark: ({ label }) => {
    const m = { cpu: process.cpuUsage(), hr: hrUs(), wall: wallNow() };
    marks.set(label, m);
    return { hrUs: m.hr, wall: m.wall };
  },
  /** Ends it: CPU µs used since `mark(label)`, and the window on the profile's clock. */
  since: ({ label }) => {
    const m = marks.get(label);
    if (!m) throw new Error(`no mark "${label}"`);
    const cpu = process.cpuUsage(m.cpu);
    const hr = hrUs();
    return {
      cpuUs: cpu.user + cpu.system,
      userUs: cpu.user,
      systemUs: cpu.system,
      elapsedMs: (hr - m.hr) / 1000,
      hrStartUs: m.hr,
      hrEndUs: hr,
    };
  },
  broadcast: (args) => broadcastLoop(args),
  snapshot: async ({ file }) => {
    globalThis.gc();
    await sleep(20);
    return { file: writeHeapSnapshot(file) };
  },
});

emit('ready', { port: server.port, info: server.info, pid: process.pid, node: process.version });
