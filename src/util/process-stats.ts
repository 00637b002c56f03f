import { type IntervalHistogram, monitorEventLoopDelay } from 'node:perf_hooks';

/** What the sampler reads of a gateway. */
export interface Sampled {
  /** Stopped accepting (a reload or a stop drains it). */
  readonly draining: boolean;
  stats(): { messagesIn: number; messagesOut: number };
}

/**
 * What `pylon status` shows per worker or node, besides the gateway's own stats: the process,
 * its memory, its event-loop lag and its message rates. Sampled once a second by an unref'd
 * timer while anyone reads it; figures are over the last whole second.
 */
export interface ProcessStats {
  pid: number;
  /** Bytes. */
  rss: number;
  heapUsed: number;
  heapTotal: number;
  external: number;
  arrayBuffers: number;
  /** Event-loop delay over the last second, ms (beyond the 10 ms sampling timer: an idle loop reads 0). */
  lag: { p50: number; p99: number; max: number };
  /** Per second, over the last second. */
  rates: { messagesIn: number; messagesOut: number };
  /** `serving`, or `draining` once the gateway stopped accepting (a reload or a stop). */
  state: 'serving' | 'draining';
  /** Workers started by a reload get the next generation (PYLON_GENERATION); 1 otherwise. */
  generation: number;
}

const RESOLUTION = 10;
/** ns → ms beyond the sampling timer's own 10 ms (an idle loop reads 0). */
const ms = (ns: number) => Math.max(0, Math.round(ns / 1e4) / 100 - RESOLUTION);

class Sampler {
  private readonly lag: IntervalHistogram = monitorEventLoopDelay({ resolution: RESOLUTION });
  private timer: NodeJS.Timeout | undefined;
  private last = { at: 0, messagesIn: 0, messagesOut: 0 };
  private latest: Pick<ProcessStats, 'lag' | 'rates'> = {
    lag: { p50: 0, p99: 0, max: 0 },
    rates: { messagesIn: 0, messagesOut: 0 },
  };
  private readAt = 0;

  constructor(private readonly gateway: Sampled) {}

  read(): ProcessStats {
    this.readAt = Date.now();
    if (this.timer === undefined) this.start();
    const m = process.memoryUsage();
    return {
      pid: process.pid,
      rss: m.rss,
      heapUsed: m.heapUsed,
      heapTotal: m.heapTotal,
      external: m.external,
      arrayBuffers: m.arrayBuffers,
      lag: this.latest.lag,
      rates: this.latest.rates,
      state: this.gateway.draining ? 'draining' : 'serving',
      generation: generation(),
    };
  }

  private start(): void {
    this.lag.enable();
    this.mark();
    this.timer = setInterval(() => this.tick(), 1000);
    this.timer.unref();
  }

  private mark(): void {
    const s = this.gateway.stats();
    this.last = { at: performance.now(), messagesIn: s.messagesIn, messagesOut: s.messagesOut };
  }

  private tick(): void {
    const before = this.last;
    this.mark();
    const seconds = (this.last.at - before.at) / 1000;
    const rate = (now: number, then: number) => Math.round((now - then) / seconds);
    this.latest = {
      lag: { p50: ms(this.lag.percentile(50)), p99: ms(this.lag.percentile(99)), max: ms(this.lag.max) },
      rates: {
        messagesIn: rate(this.last.messagesIn, before.messagesIn),
        messagesOut: rate(this.last.messagesOut, before.messagesOut),
      },
    };
    this.lag.reset();
    // Nobody read for a minute (no status, no cluster heartbeat): stop sampling until asked again.
    if (Date.now() - this.readAt > 60_000) {
      clearInterval(this.timer);
      this.timer = undefined;
      this.lag.disable();
    }
  }
}

const samplers = new WeakMap<Sampled, Sampler>();

/** This process's figures for `gateway` (the first call starts the once-a-second sampling). */
export function processStats(gateway: Sampled): ProcessStats {
  let s = samplers.get(gateway);
  if (s === undefined) {
    s = new Sampler(gateway);
    samplers.set(gateway, s);
  }
  return s.read();
}

function generation(): number {
  const n = Number(process.env.PYLON_GENERATION);
  return Number.isInteger(n) && n > 0 ? n : 1;
}
