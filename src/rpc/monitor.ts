import { EventEmitter } from 'node:events';
import { build, type Histogram } from 'hdr-histogram-js';
import { Counter, Gauge, type Registry } from 'prom-client';
import { PylonError } from '../protocol/errors.js';
import type { Clock } from '../timer/clock.js';
import type { TimingWheel, WheelTimer } from '../timer/wheel.js';
import { wheelFor } from './wheel.js';

export interface MonitorOptions {
  /** A call pending this long (ms) is reported as slow, once. Default 1000. */
  slowAfter?: number;
  /** ms between sweeps of the pending calls. Default 1000. */
  sweepEvery?: number;
  /** Precision of the histograms, in significant decimal digits (2: within 1 %). Default 2. */
  significantDigits?: 1 | 2 | 3;
  /** Largest latency recorded (ms); longer calls count as this. Default 600 000 (10 min). */
  highest?: number;
  wheel?: TimingWheel;
  clock?: Clock;
}

/** What a `slow` event says: the call is still pending after `age` ms. */
export interface SlowCall {
  method: string;
  /** ms since the call was made (queueing for a connection included). */
  age: number;
  /** The server's id of the connection the call went out on (undefined while still queued). */
  connection: string | undefined;
}

/** Latencies in ms of the calls that finished, since the start or the last reset. */
export interface MethodStats {
  count: number;
  /** Calls that failed (any error, timeouts included). */
  errors: number;
  timeouts: number;
  mean: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

export interface MonitorStats {
  methods: Record<string, MethodStats>;
  /** Calls in flight now. */
  pending: number;
  /** Calls reported slow so far. */
  slow: number;
}

/** One call in flight, from `begin` to `end`. */
export interface CallToken {
  readonly method: string;
  readonly start: number;
  connection: string | undefined;
  reported: boolean;
}

interface MethodEntry {
  histogram: Histogram;
  errors: number;
  timeouts: number;
}

const QUANTILES: Array<[label: string, pick: (s: MethodStats) => number]> = [
  ['0.5', (s) => s.p50],
  ['0.9', (s) => s.p90],
  ['0.99', (s) => s.p99],
  ['1', (s) => s.max],
];

/**
 * The slow-call monitor of an RpcClient: a latency histogram per method (HdrHistogram, fixed
 * memory: about 13 KiB per method at 2 digits), and a sweep on the timing wheel over the calls in
 * flight that emits `slow` for each one pending longer than `slowAfter`. The pending calls are
 * kept in call order, so a sweep stops at the first young one: it costs O(slow calls).
 */
export class RpcMonitor extends EventEmitter<{ slow: [call: SlowCall] }> {
  private readonly methods = new Map<string, MethodEntry>();
  private readonly pending = new Set<CallToken>();
  private readonly wheel: TimingWheel;
  private readonly sweeper: WheelTimer;
  private readonly slowAfter: number;
  private readonly highestUs: number;
  private readonly digits: 1 | 2 | 3;
  private slowCount = 0;

  constructor(options: MonitorOptions = {}) {
    super();
    this.wheel = wheelFor(options.wheel, options.clock);
    this.slowAfter = options.slowAfter ?? 1000;
    this.highestUs = Math.round((options.highest ?? 600_000) * 1000);
    this.digits = options.significantDigits ?? 2;
    this.sweeper = this.wheel.every(options.sweepEvery ?? 1000, onSweep, this);
  }

  /** A call to `method` starts now. */
  begin(method: string, connection?: string): CallToken {
    const token: CallToken = { method, start: this.wheel.now(), connection, reported: false };
    this.pending.add(token);
    return token;
  }

  /** The call finished: record its latency, and whether it failed. */
  end(token: CallToken, error?: unknown): void {
    if (!this.pending.delete(token)) return;
    const us = Math.min(Math.max(Math.round((this.wheel.now() - token.start) * 1000), 1), this.highestUs);
    const m = this.entry(token.method);
    m.histogram.recordValue(us);
    if (error !== undefined) {
      m.errors++;
      if (error instanceof PylonError && error.code === 'TIMEOUT') m.timeouts++;
    }
  }

  /** @internal Emit `slow` for every call pending past the threshold and not reported yet. */
  sweep(): void {
    const now = this.wheel.now();
    for (const t of this.pending) {
      const age = now - t.start;
      if (age < this.slowAfter) break; // the rest are younger
      if (t.reported) continue;
      t.reported = true;
      this.slowCount++;
      if (this.listenerCount('slow') > 0)
        this.emit('slow', { method: t.method, age, connection: t.connection });
    }
  }

  stats(): MonitorStats {
    const methods: Record<string, MethodStats> = {};
    for (const [name, m] of this.methods) {
      const h = m.histogram;
      const count = h.totalCount;
      const q = (p: number): number => (count === 0 ? 0 : h.getValueAtPercentile(p) / 1000);
      methods[name] = {
        count,
        errors: m.errors,
        timeouts: m.timeouts,
        mean: count === 0 ? 0 : h.mean / 1000,
        p50: q(50),
        p90: q(90),
        p99: q(99),
        max: count === 0 ? 0 : h.maxValue / 1000,
      };
    }
    return { methods, pending: this.pending.size, slow: this.slowCount };
  }

  /** Forget the recorded latencies (pending calls stay tracked). */
  reset(): void {
    for (const m of this.methods.values()) {
      m.histogram.reset();
      m.errors = 0;
      m.timeouts = 0;
    }
  }

  /**
   * Register the monitor's figures in a prom-client registry (read at each scrape):
   * `<prefix>_call_duration_seconds{method,quantile}`, `<prefix>_calls_total{method,outcome}`,
   * `<prefix>_pending_calls`, `<prefix>_slow_calls_total`.
   */
  toPrometheus(registry: Registry, prefix = 'pylon_rpc'): void {
    const monitor = this;
    new Gauge({
      name: `${prefix}_call_duration_seconds`,
      help: 'RPC call latency quantiles (HdrHistogram) since the start or the last reset.',
      labelNames: ['method', 'quantile'],
      registers: [registry],
      collect() {
        this.reset();
        for (const [method, s] of Object.entries(monitor.stats().methods))
          for (const [quantile, pick] of QUANTILES) this.set({ method, quantile }, pick(s) / 1000);
      },
    });
    new Counter({
      name: `${prefix}_calls_total`,
      help: 'RPC calls finished, by outcome (ok, error, timeout; timeouts are not counted as error).',
      labelNames: ['method', 'outcome'],
      registers: [registry],
      collect() {
        this.reset();
        for (const [method, s] of Object.entries(monitor.stats().methods)) {
          this.inc({ method, outcome: 'ok' }, s.count - s.errors);
          this.inc({ method, outcome: 'error' }, s.errors - s.timeouts);
          this.inc({ method, outcome: 'timeout' }, s.timeouts);
        }
      },
    });
    new Gauge({
      name: `${prefix}_pending_calls`,
      help: 'RPC calls in flight.',
      registers: [registry],
      collect() {
        this.set(monitor.pending.size);
      },
    });
    new Counter({
      name: `${prefix}_slow_calls_total`,
      help: 'RPC calls reported slow (pending longer than the threshold).',
      registers: [registry],
      collect() {
        this.reset();
        this.inc(monitor.slowCount);
      },
    });
  }

  /** Stop sweeping. */
  close(): void {
    this.sweeper.cancel();
  }

  private entry(method: string): MethodEntry {
    let m = this.methods.get(method);
    if (m === undefined) {
      m = {
        histogram: build({
          lowestDiscernibleValue: 1,
          highestTrackableValue: Math.max(this.highestUs, 2),
          numberOfSignificantValueDigits: this.digits,
          autoResize: false,
        }),
        errors: 0,
        timeouts: 0,
      };
      this.methods.set(method, m);
    }
    return m;
  }
}

function onSweep(monitor: RpcMonitor): void {
  monitor.sweep();
}
