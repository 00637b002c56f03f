// Timing wheel vs setTimeout: heap and time for 1,000,000 timers at random 30-90 s delays.
// Run after `npm run build`:  node --expose-gc bench/wheel.js
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TimingWheel } from '../dist/timer/index.js';

const N = 1_000_000;
const REPEATS = 3;
const MIN_DELAY_MS = 30_000;
const MAX_DELAY_MS = 90_000;

if (typeof globalThis.gc !== 'function') {
  console.error('run with: node --expose-gc bench/wheel.js');
  process.exit(1);
}

/** Settled heap: a few full GCs so that what is left is what is reachable. */
function heapUsed() {
  for (let i = 0; i < 3; i++) globalThis.gc();
  return process.memoryUsage().heapUsed;
}

// Same whole-ms delays for every run (as real code uses); the handles array is allocated before any measurement.
const delays = new Float64Array(N);
for (let i = 0; i < N; i++)
  delays[i] = MIN_DELAY_MS + Math.floor(Math.random() * (MAX_DELAY_MS - MIN_DELAY_MS + 1));
const handles = new Array(N).fill(null);
const conns = Array.from({ length: N }, (_, id) => ({ id }));

/** What a connection's idle timeout would do; module-level, so no closure per timer. */
function onIdle(conn) {
  conn.id = -1;
}

const subjects = {
  'TimingWheel (10 ms tick)': {
    setup: () => new TimingWheel(),
    schedule(wheel) {
      for (let i = 0; i < N; i++) handles[i] = wheel.schedule(delays[i], onIdle, conns[i]);
    },
    cancel() {
      for (let i = 0; i < N; i++) handles[i].cancel();
    },
    teardown: (wheel) => wheel.close(),
  },
  'setTimeout / clearTimeout': {
    setup: () => null,
    schedule() {
      for (let i = 0; i < N; i++) handles[i] = setTimeout(onIdle, delays[i], conns[i]);
    },
    cancel() {
      for (let i = 0; i < N; i++) clearTimeout(handles[i]);
    },
    teardown: () => {},
  },
};

function runOnce(subject) {
  const ctx = subject.setup();
  const before = heapUsed();
  let t0 = performance.now();
  subject.schedule(ctx);
  const scheduleMs = performance.now() - t0;
  const after = heapUsed();
  t0 = performance.now();
  subject.cancel(ctx);
  const cancelMs = performance.now() - t0;
  subject.teardown(ctx);
  handles.fill(null);
  const released = heapUsed();
  return { heapBytes: after - before, heapBytesAfterCancel: released - before, scheduleMs, cancelMs };
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const summary = (xs) => ({ median: median(xs), min: Math.min(...xs), max: Math.max(...xs) });

const results = {};
// Interleave the subjects so that neither always runs on a warmer or more fragmented heap.
for (let r = 0; r < REPEATS; r++) {
  for (const [name, subject] of Object.entries(subjects)) {
    results[name] ??= [];
    const run = runOnce(subject);
    results[name].push(run);
    console.error(
      `${name} #${r + 1}: heap ${(run.heapBytes / 2 ** 20).toFixed(1)} MiB, ` +
        `schedule ${run.scheduleMs.toFixed(0)} ms, cancel ${run.cancelMs.toFixed(0)} ms`,
    );
  }
}

const mib = (b) => (b / 2 ** 20).toFixed(1);
const ms = (x) => x.toFixed(0);
const cell = (s, fmt) => `${fmt(s.median)} (${fmt(s.min)}–${fmt(s.max)})`;
const rows = [];
const summaries = {};
for (const [name, runs] of Object.entries(results)) {
  const s = {
    heapBytes: summary(runs.map((x) => x.heapBytes)),
    bytesPerTimer: summary(runs.map((x) => x.heapBytes / N)),
    scheduleMs: summary(runs.map((x) => x.scheduleMs)),
    cancelMs: summary(runs.map((x) => x.cancelMs)),
  };
  summaries[name] = s;
  rows.push(
    `| ${name} | ${cell(s.heapBytes, mib)} | ${cell(s.bytesPerTimer, ms)} | ` +
      `${cell(s.scheduleMs, ms)} | ${cell(s.cancelMs, ms)} |`,
  );
}

console.log(
  `\n${N.toLocaleString('en-US')} timers, delays ${MIN_DELAY_MS / 1000}–${MAX_DELAY_MS / 1000} s, ` +
    `${REPEATS} runs each; median (min–max). Node ${process.version}, ${process.platform}/${process.arch}.\n`,
);
console.log('| | heap after scheduling (MiB) | bytes per timer | schedule all (ms) | cancel all (ms) |');
console.log('|---|---|---|---|---|');
for (const row of rows) console.log(row);

const outDir = join(dirname(fileURLToPath(import.meta.url)), 'results');
mkdirSync(outDir, { recursive: true });
const stamp = new Date().toISOString().replace(/[:.]/g, '-');
const file = join(outDir, `wheel-${stamp}.json`);
const json = {
  benchmark: 'timer-wheel',
  date: new Date().toISOString(),
  node: process.version,
  platform: `${process.platform}/${process.arch}`,
  timers: N,
  repeats: REPEATS,
  delayMs: [MIN_DELAY_MS, MAX_DELAY_MS],
  summaries,
  runs: results,
};
writeFileSync(file, `${JSON.stringify(json, null, 2)}\n`);
console.log(`\nwrote ${file}`);
