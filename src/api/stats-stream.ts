import type { ServerResponse } from 'node:http';
import { type IntervalHistogram, monitorEventLoopDelay } from 'node:perf_hooks';
import type { AdminService, StatsOutput } from './admin-service.js';
import type { DisconnectLog, DisconnectRecord } from './dashboard.js';
import { RESPONDED, type Route } from './http.js';

/**
 * `GET /v1/stats/stream`: the live feed of the dashboard, as Server-Sent Events. Once a second
 * every open stream gets one `data:` line of JSON (a StreamSample): the stats (as /v1/stats),
 * the rates per second of the counters since the previous sample, the event-loop lag over that
 * second (perf_hooks.monitorEventLoopDelay) and the disconnects recorded since the previous
 * sample. One sample is computed per second, listened to or not: the last five minutes of the
 * charted figures are kept (a ring of HISTORY points, ~100 bytes each) and sent with the first
 * sample a new stream gets, so the page's charts start from what happened before it opened
 * (after a reload too) instead of from nothing.
 *
 * It is authenticated like the rest of the API, with `Authorization: Bearer <key>`: the page
 * reads it with fetch() and a stream reader rather than EventSource (which cannot send
 * headers), so the key is never in a URL, and so never in a proxy's access log.
 */

export interface StreamSample {
  /** ms since the epoch. */
  t: number;
  stats: StatsOutput;
  /** Per second, over the time since the previous sample. */
  rates: { messagesIn: number; messagesOut: number; pushesDropped: number; redelivered: number };
  /** Event-loop delay over the time since the previous sample, ms. */
  lag: { p50: number; p99: number; max: number };
  /** Disconnects since the previous sample, oldest first (`seq` orders them). */
  disconnects: DisconnectRecord[];
  /** In the first sample of a stream only: the charted figures of the last minutes, oldest first. */
  history?: HistoryPoint[];
}

/** What the charts draw of one sample. */
export interface HistoryPoint {
  t: number;
  stats: { connections: number; users: number };
  rates: StreamSample['rates'];
  lag: { p99: number; max: number };
}

/** Points kept: five minutes at one a second. */
const HISTORY = 300;

export interface StatsStreamOptions {
  /** ms between samples. Default 1000. */
  interval?: number;
  /** A stream whose unsent data is over this many bytes skips samples until it drains. Default 64 KiB. */
  maxBuffered?: number;
  /**
   * Sample whether watched or not, and keep the last minutes for new streams (the dashboard's
   * charts). Default true. False: sample only while a stream is open, no history.
   */
  history?: boolean;
}

type Counters = { messagesIn: number; messagesOut: number; pushesDropped: number; redelivered: number };

export class StatsStream {
  private readonly clients = new Set<ServerResponse>();
  private readonly interval: number;
  private readonly maxBuffered: number;
  private timer: NodeJS.Timeout | undefined;
  private lag: IntervalHistogram | undefined;
  private previous: { at: number; counters: Counters; seq: number } | undefined;
  private latest: StreamSample | undefined;
  private ticking = false;
  private readonly history: HistoryPoint[] = [];
  private readonly keepHistory: boolean;
  private closed = false;
  private warned = 0;

  constructor(
    private readonly service: AdminService,
    private readonly disconnects: DisconnectLog,
    options: StatsStreamOptions = {},
  ) {
    this.interval = options.interval ?? 1000;
    this.maxBuffered = options.maxBuffered ?? 64 * 1024;
    this.keepHistory = options.history ?? true;
    if (this.keepHistory) void this.start();
  }

  /** The route to add to the admin server's table. */
  route(): Route {
    return {
      method: 'GET',
      path: '/v1/stats/stream',
      handler: async ({ req, res }) => {
        res.writeHead(200, {
          'content-type': 'text/event-stream; charset=utf-8',
          'cache-control': 'no-store',
          'x-content-type-options': 'nosniff',
          'x-accel-buffering': 'no', // nginx: do not buffer the stream
          connection: 'keep-alive',
        });
        res.flushHeaders();
        req.socket.setNoDelay(true);
        this.clients.add(res);
        res.once('close', () => {
          this.clients.delete(res);
          if (!this.keepHistory && this.clients.size === 0) this.stop();
        });
        if (this.closed) {
          res.end();
          return RESPONDED;
        }
        if (this.timer === undefined) {
          await this.start(); // its first sample went to every open stream, this one included
          return RESPONDED;
        }
        // At once: the latest sample (numbers without waiting) with the minutes before it.
        const latest = this.latest;
        if (latest === undefined) return RESPONDED; // the first tick is under way: it writes to every stream
        if (!res.writableEnded) {
          const history = this.history.filter((p) => p.t < latest.t);
          res.write(`data: ${JSON.stringify({ ...latest, history })}\n\n`);
        }
        return RESPONDED;
      },
    };
  }

  /** How many streams are open. */
  get size(): number {
    return this.clients.size;
  }

  /** End every stream and stop sampling. */
  close(): void {
    this.closed = true;
    for (const res of this.clients) res.end();
    this.clients.clear();
    this.stop();
  }

  private async start(): Promise<void> {
    this.lag = monitorEventLoopDelay({ resolution: 10 });
    this.lag.enable();
    this.timer = setInterval(() => void this.tick(), this.interval);
    this.timer.unref();
    await this.tick();
  }

  private stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    this.lag?.disable();
    this.lag = undefined;
    this.previous = undefined;
    this.latest = undefined;
  }

  /** One sample: kept in the history (from the second on: the first has no rates) and sent to every stream. */
  private async tick(): Promise<StreamSample | undefined> {
    if (this.ticking) return this.latest;
    this.ticking = true;
    try {
      const first = this.previous === undefined;
      const sample = await this.sample();
      if (this.timer === undefined) return undefined; // stopped meanwhile
      this.latest = sample;
      if (!first && this.keepHistory) {
        this.history.push({
          t: sample.t,
          stats: { connections: sample.stats.connections, users: sample.stats.users },
          rates: sample.rates,
          lag: { p99: sample.lag.p99, max: sample.lag.max },
        });
        if (this.history.length > HISTORY) this.history.shift();
      }
      if (this.clients.size > 0) {
        const line = `data: ${JSON.stringify(sample)}\n\n`;
        for (const res of this.clients) {
          if (res.writableLength > this.maxBuffered) continue; // a slow reader misses samples
          res.write(line);
        }
      }
      return sample;
    } catch (err) {
      // The stats could not be read this second: said (at most once a minute), the next tick tries again.
      const now = Date.now();
      if (now - this.warned > 60_000) {
        this.warned = now;
        this.service.gateway.logger.warn({ err }, 'stats stream: a sample failed');
      }
      return this.latest;
    } finally {
      this.ticking = false;
    }
  }

  private async sample(): Promise<StreamSample> {
    const stats = await this.service.stats();
    const now = performance.now();
    const counters: Counters = {
      messagesIn: stats.messagesIn,
      messagesOut: stats.messagesOut,
      pushesDropped: stats.pushesDropped,
      redelivered: stats.qos1.redelivered,
    };
    const prev = this.previous;
    const seconds = prev === undefined ? 0 : (now - prev.at) / 1000;
    const rate = (k: keyof Counters) =>
      prev === undefined || seconds <= 0 ? 0 : round(Math.max(0, counters[k] - prev.counters[k]) / seconds);
    const rates = {
      messagesIn: rate('messagesIn'),
      messagesOut: rate('messagesOut'),
      pushesDropped: rate('pushesDropped'),
      redelivered: rate('redelivered'),
    };
    const ms = (ns: number | undefined) => (ns !== undefined && Number.isFinite(ns) ? round(ns / 1e6) : 0);
    const h = this.lag;
    const lag = { p50: ms(h?.percentile(50)), p99: ms(h?.percentile(99)), max: ms(h?.max) };
    h?.reset();
    const disconnects = this.disconnects.since(prev?.seq ?? this.disconnects.last);
    this.previous = { at: now, counters, seq: this.disconnects.last };
    return { t: Date.now(), stats, rates, lag, disconnects };
  }
}

function round(n: number): number {
  return Math.round(n * 100) / 100;
}
