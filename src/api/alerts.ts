import type { Logger } from '../log/logger.js';

export interface AlertOptions {
  /** The alert webhook (e.g. a chat bot's): each alert is one JSON POST. */
  url: string;
  /** Lowest level posted. Default 'warn'. */
  minLevel?: 'warn' | 'error';
  /** Alerts per minute (token bucket, bursts up to this many). Default 10. */
  perMinute?: number;
  /** Timeout of one POST (ms). Default 5000. */
  timeoutMs?: number;
  /** Extra headers on every POST. */
  headers?: Record<string, string>;
  /** Named in each alert's `source` and `text`. Default 'pylon'. */
  source?: string;
  /** Monotonic ms for the token bucket (tests). Default performance.now. */
  now?: () => number;
}

export interface AlertStats {
  /** Alerts the webhook accepted (2xx). */
  sent: number;
  /** Alerts that got no 2xx (error, timeout, refused). */
  failed: number;
  /** Alerts held back by the rate limit, in all. */
  suppressed: number;
  /** Of those, how many the next alert will report. */
  pending: number;
  inFlight: number;
}

export type AlertingLogger = Logger & { stats(): AlertStats; close(): Promise<void> };

type Level = 'warn' | 'error';

/**
 * Wraps a pino-style logger: every call goes to `base` as is, and warn/error events (from
 * `minLevel` up) are also POSTed to an alert webhook as
 * `{source, level, msg, text, time, suppressed?, ...fields}` (an Error field becomes
 * `{type, message, stack}`). Rate-limited by a token bucket; alerts beyond it are counted and the
 * count is sent with the next one. Posting is fire-and-forget: the log call never throws, never
 * waits, and a dead endpoint only counts failures (and says so through `base`, once a minute).
 */
export function alertingLogger(base: Logger, options: AlertOptions): AlertingLogger {
  const url = new URL(options.url).href;
  const minLevel = options.minLevel ?? 'warn';
  const perMinute = options.perMinute ?? 10;
  const timeoutMs = options.timeoutMs ?? 5000;
  if (!(perMinute > 0 && Number.isFinite(perMinute))) throw new RangeError(`bad perMinute: ${perMinute}`);
  if (!(timeoutMs > 0 && Number.isFinite(timeoutMs))) throw new RangeError(`bad timeoutMs: ${timeoutMs}`);
  if (minLevel !== 'warn' && minLevel !== 'error') throw new RangeError(`bad minLevel: ${minLevel}`);
  const source = options.source ?? 'pylon';
  const now = options.now ?? (() => performance.now());
  const counters = { sent: 0, failed: 0, suppressed: 0 };
  const inFlight = new Set<Promise<void>>();
  let tokens = perMinute;
  let refilledAt = now();
  let pending = 0;
  let lastFailureLog = Number.NEGATIVE_INFINITY;
  let closed = false;

  const take = (): boolean => {
    const t = now();
    tokens = Math.min(perMinute, tokens + ((t - refilledAt) * perMinute) / 60_000);
    refilledAt = t;
    if (tokens < 1) return false;
    tokens -= 1;
    return true;
  };

  const post = async (body: string): Promise<void> => {
    try {
      const res = await fetch(url, {
        method: 'POST',
        headers: { ...options.headers, 'content-type': 'application/json' },
        body,
        signal: AbortSignal.timeout(timeoutMs),
      });
      await res.arrayBuffer();
      if (!res.ok) throw new Error(`alert webhook answered ${res.status}`);
      counters.sent++;
    } catch (err) {
      counters.failed++;
      const t = now();
      if (t - lastFailureLog >= 60_000) {
        lastFailureLog = t;
        const code = (err as { cause?: { code?: unknown } }).cause?.code;
        const reason = typeof code === 'string' ? code : err instanceof Error ? err.message : String(err);
        try {
          base.warn({ url, err: reason, failed: counters.failed }, 'alert webhook failed');
        } catch {
          // nothing left to tell
        }
      }
    }
  };

  const alert = (level: Level, obj: unknown, msg: unknown): void => {
    if (closed || (level === 'warn' && minLevel === 'error')) return;
    if (!take()) {
      counters.suppressed++;
      pending++;
      return;
    }
    const body = alertBody(source, level, obj, msg, pending);
    pending = 0;
    const p = post(body).finally(() => inFlight.delete(p));
    inFlight.add(p);
  };

  const guarded = (level: Level, obj: unknown, msg: unknown): void => {
    try {
      alert(level, obj, msg);
    } catch {
      counters.failed++; // an alert is never worth an exception in the caller
    }
  };

  return {
    debug: (...args: Parameters<Logger['debug']>) => base.debug(...args),
    info: (...args: Parameters<Logger['info']>) => base.info(...args),
    warn: (...args: Parameters<Logger['warn']>) => {
      base.warn(...args);
      guarded('warn', args[0], args[1]);
    },
    error: (...args: Parameters<Logger['error']>) => {
      base.error(...args);
      guarded('error', args[0], args[1]);
    },
    stats: () => ({ ...counters, pending, inFlight: inFlight.size }),
    close: async () => {
      closed = true;
      await Promise.allSettled([...inFlight]);
    },
  };
}

/** The JSON of one alert; never throws (fields that cannot be serialized are left out). */
function alertBody(source: string, level: Level, obj: unknown, msg: unknown, suppressed: number): string {
  // pino also accepts log(msg) with a string first.
  const message = typeof obj === 'string' ? obj : typeof msg === 'string' ? msg : '';
  const fields: Record<string, unknown> = {};
  if (typeof obj === 'object' && obj !== null) {
    for (const [k, v] of Object.entries(obj)) fields[k] = v instanceof Error ? serializeError(v) : v;
  }
  const errMessage = (fields.err as { message?: unknown } | undefined)?.message;
  let text = `[${level}] ${source}: ${message}`;
  if (typeof errMessage === 'string') text += ` (${errMessage})`;
  if (suppressed > 0) text += ` [+${suppressed} suppressed]`;
  const head = { source, level, msg: message, text, time: new Date().toISOString() };
  const tail = suppressed > 0 ? { suppressed } : {};
  try {
    return JSON.stringify({ ...fields, ...head, ...tail }, bigintAsString);
  } catch {
    return JSON.stringify({ ...head, ...tail, fieldsError: 'fields could not be serialized' });
  }
}

function serializeError(err: Error): Record<string, unknown> {
  const out: Record<string, unknown> = { type: err.name, message: err.message, stack: err.stack };
  const code = (err as { code?: unknown }).code;
  if (code !== undefined) out.code = code;
  return out;
}

function bigintAsString(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? value.toString() : value;
}
