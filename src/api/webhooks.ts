import { createHmac, randomBytes } from 'node:crypto';
import { Agent, type ClientRequest, request as httpRequest } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { ROOT_CONTEXT } from '@opentelemetry/api';
import type { DeliveredEvent, UndeliveredEvent } from '../delivery/undelivered.js';
import type { Connection } from '../gateway/connection.js';
import type { Gateway } from '../gateway/gateway.js';
import type { Context } from '../gateway/router.js';
import { VERSION } from '../gateway/version.js';
import type { DisconnectInfo } from '../protocol/disconnect.js';
import { PylonError } from '../protocol/errors.js';
import type { WheelTimer } from '../timer/wheel.js';
import { failSpan, SpanKind } from '../trace/tracing.js';

/**
 * How the gateway calls the business over HTTP(S); every endpoint is optional.
 * - connect: POSTed `{event:'connect', connection, user, transport, remoteAddress, labels, at}`.
 * - disconnect: POSTed `{event:'disconnect', connection, user, code, name, reason, at}`.
 * - undelivered: POSTed `{event:'undelivered', user, id, seq, type, data, createdAt, age, attempts, at}` for
 *   a qos-1 message not acknowledged `delivery.undeliveredAfter` ms after it was stored (once across the
 *   cluster), and `{event:'delivered', user, id, seq, type, notifiedAt, after, at}` when such a message is
 *   acknowledged after all. Binary data is sent as base64 with `binary: true`.
 * - upstream: handlers for `types` that POST `{event:'message', type, connection, user, kind, data, at}`
 *   to `url`; a request ('req') is answered with the reply's JSON body. `idempotent`: request types that
 *   may be retried (`true`: all); `timeoutMs`: of a request call (default: `timeoutMs`).
 * - secret: adds `x-pylon-signature: sha256=<hex HMAC-SHA256 of the body>` and `x-pylon-timestamp` (unix s).
 * - headers: extra headers on every call. random: the jitter's source (tests).
 * Defaults: timeoutMs 5000, retries 3, backoffMs 200 (doubled per retry, jittered to half..all of it),
 * maxBackoffMs 30,000, concurrency 8 (event calls in flight), queueSize 10,000 (events waiting to be
 * sent or retried; when full the oldest is dropped), logIntervalMs 10,000 (one warning line per endpoint
 * per interval, with a count).
 */
export interface WebhookOptions {
  connect?: string;
  disconnect?: string;
  undelivered?: string;
  upstream?: { url: string; types: string[]; idempotent?: string[] | boolean; timeoutMs?: number };
  secret?: string;
  headers?: Record<string, string>;
  timeoutMs?: number;
  retries?: number;
  backoffMs?: number;
  maxBackoffMs?: number;
  concurrency?: number;
  queueSize?: number;
  logIntervalMs?: number;
  random?: () => number;
}

/**
 * sent: events delivered (2xx) and requests answered (2xx or a business error); failed: events given
 * up after their retries and requests left without an answer; retried: retries scheduled; dropped:
 * events dropped from a full queue or by close(); queued: events waiting to be sent or retried;
 * inFlight: HTTP calls in flight (events and requests).
 */
export type WebhookStats = Record<'sent' | 'failed' | 'retried' | 'dropped' | 'queued' | 'inFlight', number>;

type Endpoint = 'connect' | 'disconnect' | 'undelivered' | 'upstream';
type Pending = {
  endpoint: Endpoint;
  url: string;
  body: string;
  id: string;
  attempt: number;
  timer?: WheelTimer;
  /** An `undelivered` event: its user and message, while it is not settled. */
  notice?: string;
  /** Withdrawn before it was sent (its message was delivered meanwhile): skipped. */
  withdrawn?: boolean;
  inFlight?: boolean;
  /** Events held until this one is settled (a `delivered` behind its `undelivered`). */
  after?: Array<{ endpoint: Endpoint; url: string; payload: object }>;
};
/** status 0: no answer (network error, timeout: see `error`). */
type Outcome = { ok: boolean; status: number; text: string; error?: string };

/** `sha256=<hex>`: the signature of `body` with `secret`, as sent in `x-pylon-signature`. */
export function signBody(secret: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

/**
 * Calls the business over HTTP: connect/disconnect events and one-way messages go through a bounded
 * queue drained by a few concurrent senders, with timeouts and retries on the gateway's timing wheel;
 * requests of the upstream types are sent at once and answered with the business's reply.
 */
export class Webhooks {
  private readonly o: Required<
    Omit<WebhookOptions, 'connect' | 'disconnect' | 'undelivered' | 'upstream' | 'secret'>
  >;
  private ready: Ring<Pending>;
  /** Events waiting for their retry, oldest first. */
  private readonly waiting = new Set<Pending>();
  private readonly calls = new Set<ClientRequest>();
  /** Event deliveries under way (a call and its bookkeeping). */
  private readonly running = new Set<Promise<void>>();
  private readonly agents = {
    http: new Agent({ keepAlive: true }),
    https: new HttpsAgent({ keepAlive: true }),
  };
  private readonly logs = new Map<string, { at: number; count: number }>();
  /** `undelivered` events not settled yet, by user and message id. */
  private readonly notices = new Map<string, Pending>();
  private readonly counters = { sent: 0, failed: 0, retried: 0, dropped: 0 };
  private readonly idPrefix = randomBytes(4).toString('hex');
  private nextId = 0;
  private senders = 0;
  private inFlight = 0;
  private started = false;
  private closed = false;
  private onIdle: (() => void) | undefined;
  private onSettled: (() => void) | undefined;
  private closing: Promise<void> | undefined;

  constructor(
    private readonly gateway: Gateway,
    private readonly options: WebhookOptions,
  ) {
    this.o = {
      headers: options.headers ?? {},
      timeoutMs: num('timeoutMs', options.timeoutMs, 5000),
      retries: num('retries', options.retries, 3, 0),
      backoffMs: num('backoffMs', options.backoffMs, 200),
      maxBackoffMs: num('maxBackoffMs', options.maxBackoffMs, 30_000),
      concurrency: num('concurrency', options.concurrency, 8, 1),
      queueSize: num('queueSize', options.queueSize, 10_000, 1),
      logIntervalMs: num('logIntervalMs', options.logIntervalMs, 10_000, 0),
      random: options.random ?? Math.random,
    };
    for (const url of [options.connect, options.disconnect, options.undelivered, options.upstream?.url]) {
      if (url !== undefined && !/^https?:$/.test(new URL(url).protocol))
        throw new TypeError(`not http(s): ${url}`);
    }
    if (options.upstream) num('upstream.timeoutMs', options.upstream.timeoutMs, 1);
    this.ready = new Ring(this.o.queueSize);
  }

  /** Listen to the gateway's events and register the upstream handlers. */
  start(): this {
    if (this.started) throw new Error('webhooks already started');
    this.started = true;
    if (this.options.connect) this.gateway.on('connect', this.onConnect);
    if (this.options.disconnect) this.gateway.on('disconnect', this.onDisconnect);
    if (this.options.undelivered) {
      this.gateway.on('undelivered', this.onUndelivered);
      this.gateway.on('delivered', this.onDelivered);
    }
    for (const type of this.options.upstream?.types ?? []) {
      this.gateway.handle(type, (data, ctx) =>
        ctx.kind === 'req' ? this.request(type, data, ctx) : this.message(type, data, ctx),
      );
    }
    return this;
  }

  stats(): WebhookStats {
    const queued = this.ready.size + this.waiting.size;
    return { ...this.counters, queued, inFlight: this.inFlight };
  }

  /**
   * Stop taking events; wait up to `drainMs` (default 0) for the queue to empty, then drop what is
   * left, abort the calls in flight and resolve once they have settled. Upstream handlers stay
   * registered (the router cannot remove them) and answer UNAVAILABLE.
   */
  close(drainMs = 0): Promise<void> {
    this.closing ??= this.shutdown(drainMs);
    return this.closing;
  }

  private async shutdown(drainMs: number): Promise<void> {
    this.gateway.off('connect', this.onConnect);
    this.gateway.off('disconnect', this.onDisconnect);
    this.gateway.off('undelivered', this.onUndelivered);
    this.gateway.off('delivered', this.onDelivered);
    if (drainMs > 0 && !this.idle()) {
      let timer: NodeJS.Timeout | undefined;
      await new Promise<void>((resolve) => {
        this.onIdle = resolve;
        timer = setTimeout(resolve, drainMs);
      });
      clearTimeout(timer);
      this.onIdle = undefined;
    }
    this.closed = true;
    for (const p of this.waiting) p.timer?.cancel();
    this.counters.dropped += this.waiting.size + this.ready.size;
    this.waiting.clear();
    this.ready = new Ring(1);
    for (const req of this.calls) req.destroy(new Error('webhooks closed'));
    await Promise.all(this.running);
    if (this.inFlight > 0) await new Promise<void>((resolve) => (this.onSettled = resolve));
    this.agents.http.destroy();
    this.agents.https.destroy();
  }

  // ---- events ----

  private readonly onConnect = (c: Connection): void => {
    const { transport, remoteAddress } = c;
    const body = { ...who('connect', c), transport, remoteAddress, labels: c.labels ? [...c.labels] : [] };
    this.enqueue('connect', this.options.connect as string, { ...body, at: new Date().toISOString() });
  };

  private readonly onDisconnect = (c: Connection, { code, name, reason }: DisconnectInfo): void => {
    const body = { ...who('disconnect', c), code, name, reason, at: new Date().toISOString() };
    this.enqueue('disconnect', this.options.disconnect as string, body);
  };

  private readonly onUndelivered = (e: UndeliveredEvent): void => {
    const body =
      e.data instanceof Uint8Array
        ? {
            ...e,
            data: Buffer.from(e.data.buffer, e.data.byteOffset, e.data.byteLength).toString('base64'),
            binary: true,
          }
        : e;
    const p = this.enqueue('undelivered', this.options.undelivered as string, {
      event: 'undelivered',
      ...body,
      at: new Date().toISOString(),
    });
    if (p !== undefined) {
      p.notice = `${e.user}\u0000${e.id}`;
      this.notices.set(p.notice, p);
    }
  };

  /**
   * Never before its `undelivered`: one still waiting to be sent is withdrawn instead (the
   * business was never told, so neither event goes out); one being sent holds it until it is
   * answered (and drops it if it failed for good).
   */
  private readonly onDelivered = (e: DeliveredEvent): void => {
    const payload = { event: 'delivered', ...e, at: new Date().toISOString() };
    const url = this.options.undelivered as string;
    const notice = this.notices.get(`${e.user}\u0000${e.id}`);
    if (notice === undefined) {
      this.enqueue('undelivered', url, payload);
      return;
    }
    if (notice.inFlight) {
      notice.after ??= [];
      notice.after.push({ endpoint: 'undelivered', url, payload });
      return;
    }
    notice.withdrawn = true;
    this.settleNotice(notice, false);
    if (notice.timer !== undefined) {
      notice.timer.cancel();
      notice.timer = undefined;
      this.waiting.delete(notice);
    }
  };

  /** An `undelivered` event is done with: sent (then what it held goes out) or not. */
  private settleNotice(p: Pending, sent: boolean): void {
    if (p.notice === undefined) return;
    this.notices.delete(p.notice);
    p.notice = undefined;
    const held = p.after ?? [];
    p.after = undefined;
    if (sent) for (const h of held) this.enqueue(h.endpoint, h.url, h.payload);
  }

  private message(type: string, data: unknown, ctx: Context): void {
    this.enqueue('upstream', (this.options.upstream as { url: string }).url, messageBody(type, data, ctx));
  }

  private enqueue(endpoint: Endpoint, url: string, payload: object): Pending | undefined {
    if (this.closed) return undefined;
    const body = JSON.stringify(payload);
    if (this.ready.size + this.waiting.size >= this.o.queueSize) this.dropOldest();
    const p: Pending = { endpoint, url, body, id: this.newId(), attempt: 0 };
    this.ready.push(p);
    this.pump();
    return p;
  }

  private dropOldest(): void {
    const oldest = this.ready.shift() ?? this.waiting.values().next().value;
    if (oldest === undefined) return;
    oldest.timer?.cancel();
    this.waiting.delete(oldest);
    this.settleNotice(oldest, false);
    this.counters.dropped++;
    this.warn('queue', { queueSize: this.o.queueSize }, 'webhook queue full: dropped the oldest events');
  }

  private pump(): void {
    while (this.senders < this.o.concurrency && !this.closed) {
      const p = this.ready.shift();
      if (p === undefined) break;
      if (p.withdrawn) continue;
      p.inFlight = true;
      this.senders++;
      const run: Promise<void> = this.deliver(p).then(() => {
        this.running.delete(run);
      });
      this.running.add(run);
    }
    if (this.onIdle && this.idle()) this.onIdle();
  }

  private idle(): boolean {
    return this.ready.size === 0 && this.waiting.size === 0 && this.senders === 0;
  }

  private async deliver(p: Pending): Promise<void> {
    const r = await this.call(p.url, p.body, p.id, this.o.timeoutMs);
    this.senders--;
    p.inFlight = false;
    if (r.ok) {
      this.counters.sent++;
      this.settleNotice(p, true);
    } else if (this.closed) this.counters.dropped++;
    else {
      this.warn(p.endpoint, { url: p.url, ...why(r) }, 'webhook call failed');
      if (!retryable(r) || p.attempt >= this.o.retries || !this.retryLater(p)) {
        this.counters.failed++;
        this.settleNotice(p, false);
      }
    }
    this.pump();
  }

  private retryLater(p: Pending): boolean {
    if (this.ready.size + this.waiting.size >= this.o.queueSize) this.dropOldest();
    p.timer = this.retryTimer(++p.attempt, () => {
      this.waiting.delete(p);
      p.timer = undefined;
      this.ready.push(p);
      this.pump();
    });
    if (p.timer === undefined) return false;
    this.waiting.add(p);
    this.counters.retried++;
    return true;
  }

  private backoff(attempt: number): number {
    const d = Math.min(this.o.maxBackoffMs, this.o.backoffMs * 2 ** (attempt - 1));
    return d / 2 + this.o.random() * (d / 2);
  }

  // ---- requests ----

  private async request(type: string, data: unknown, ctx: Context): Promise<unknown> {
    const up = this.options.upstream as NonNullable<WebhookOptions['upstream']>;
    const idem = up.idempotent === true || (Array.isArray(up.idempotent) && up.idempotent.includes(type));
    const body = JSON.stringify(messageBody(type, data, ctx));
    const id = this.newId();
    for (let attempt = 1; !this.closed; attempt++) {
      const r = await this.call(up.url, body, id, up.timeoutMs ?? this.o.timeoutMs);
      const reply = replyOf(r);
      if (reply !== undefined) {
        this.counters.sent++;
        if (reply instanceof PylonError) throw reply;
        return reply.data;
      }
      if (!this.closed) this.warn('upstream', { url: up.url, type, ...why(r) }, 'webhook request failed');
      if (!idem || attempt > this.o.retries || !retryable(r) || !(await this.sleep(attempt))) {
        this.counters.failed++;
        const what = r.status ? `answered ${r.status}` : `did not answer (${r.error})`;
        throw new PylonError('UNAVAILABLE', `the business ${what}`);
      }
      this.counters.retried++;
    }
    throw new PylonError('UNAVAILABLE', 'the business is not reachable');
  }

  /** Waits the backoff of `attempt` on the wheel; false if the wheel is closed. */
  private sleep(attempt: number): Promise<boolean> {
    return new Promise((resolve) => this.retryTimer(attempt, () => resolve(true)) || resolve(false));
  }

  /** Schedules `fn` after the backoff of `attempt`; undefined if the gateway's wheel is closed. */
  private retryTimer(attempt: number, fn: () => void): WheelTimer | undefined {
    try {
      return this.gateway.after(this.backoff(attempt), fn);
    } catch {
      return undefined;
    }
  }

  // ---- HTTP ----

  /** One POST with a timeout; never rejects. node:http rather than fetch: a third of the CPU per call. */
  private call(url: string, body: string, id: string, timeoutMs: number): Promise<Outcome> {
    const https = url.startsWith('https:');
    const signal = AbortSignal.timeout(timeoutMs);
    const agent = https ? this.agents.https : this.agents.http;
    const headers = this.headers(body, id);
    // Tracing on: a span per call, its traceparent in the headers (the business continues the trace).
    const tr = this.gateway.tracing;
    const span = tr?.start(
      'pylon.webhook',
      { 'url.full': url, 'pylon.delivery': id },
      ROOT_CONTEXT,
      SpanKind.CLIENT,
    );
    if (span !== undefined) {
      const tp = tr?.traceparent(span);
      if (tp !== undefined) headers.traceparent = tp;
    }
    const options = { method: 'POST', signal, agent, headers };
    let req: ClientRequest | undefined;
    this.inFlight++;
    return new Promise<Outcome>((resolve) => {
      const fail = (err: unknown): void => {
        const error = signal.aborted ? `timeout ${timeoutMs} ms` : describe(err);
        resolve({ ok: false, status: 0, text: '', error });
      };
      req = (https ? httpsRequest : httpRequest)(url, options, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          text += chunk;
        });
        res.on('end', () => {
          const status = res.statusCode ?? 0;
          resolve({ ok: status >= 200 && status < 300, status, text });
        });
        res.on('error', fail);
        res.on('close', () => fail(new Error('response cut short'))); // a no-op after 'end'
      });
      this.calls.add(req);
      req.on('error', fail);
      req.end(body);
    })
      .then((outcome) => {
        if (span !== undefined) {
          span.setAttribute('http.response.status_code', outcome.status);
          if (outcome.ok) span.end();
          else failSpan(span, new Error(outcome.error ?? `HTTP ${outcome.status}`));
        }
        return outcome;
      })
      .finally(() => {
        if (req) this.calls.delete(req);
        if (--this.inFlight === 0) this.onSettled?.();
      });
  }

  private headers(body: string, id: string): Record<string, string> {
    const h: Record<string, string> = { ...this.o.headers, 'content-type': 'application/json' };
    h['content-length'] = String(Buffer.byteLength(body));
    h['user-agent'] = `pylon/${VERSION}`;
    h['x-pylon-delivery'] = id;
    if (this.options.secret === undefined) return h;
    h['x-pylon-timestamp'] = String(Math.floor(Date.now() / 1000));
    h['x-pylon-signature'] = signBody(this.options.secret, body);
    return h;
  }

  private newId(): string {
    return `${this.idPrefix}-${(++this.nextId).toString(36)}`;
  }

  /** A warning, at most one line per key per logIntervalMs; the line counts those held back. */
  private warn(key: string, fields: Record<string, unknown>, msg: string): void {
    const now = this.gateway.now();
    const log = this.logs.get(key);
    if (log && now - log.at < this.o.logIntervalMs) {
      log.count++;
      return;
    }
    const count = (log?.count ?? 0) + 1;
    this.logs.set(key, { at: now, count: 0 });
    try {
      this.gateway.logger.warn({ endpoint: key, ...fields, count }, msg);
    } catch {
      // a logger that throws must not stop deliveries
    }
  }
}

function who(event: string, c: Connection): { event: string; connection: string; user: string | null } {
  return { event, connection: c.id, user: c.user ?? null };
}

function messageBody(type: string, data: unknown, ctx: Context): object {
  const { event, connection, user } = who('message', ctx.connection);
  return { event, type, connection, user, kind: ctx.kind, data, at: new Date().toISOString() };
}

/**
 * The business's answer: a 2xx's JSON body (empty: undefined), or the error of a non-2xx reply with
 * `{error:{code,message}}`. Undefined when there is no answer (no reply, or a bare non-2xx).
 */
function replyOf(r: Outcome): { data: unknown } | PylonError | undefined {
  let body: { error?: { code?: unknown; message?: unknown } } | null | undefined;
  try {
    body = r.text.trim() === '' ? undefined : JSON.parse(r.text);
  } catch {
    return r.ok
      ? new PylonError('UNAVAILABLE', 'the business answered with something that is not JSON')
      : undefined;
  }
  if (r.ok) return { data: body };
  const e = body?.error;
  if (typeof e?.code !== 'string' || e.code === '') return undefined;
  return new PylonError(e.code, typeof e.message === 'string' ? e.message : undefined);
}

function why(r: Outcome): { status: number } | { error: string | undefined } {
  return r.status ? { status: r.status } : { error: r.error };
}

function retryable(r: Outcome): boolean {
  return r.status === 0 || r.status >= 500 || r.status === 408 || r.status === 429;
}

function describe(err: unknown): string {
  const cause = (err as { cause?: { code?: unknown; message?: unknown } } | undefined)?.cause;
  if (cause && typeof cause.code === 'string') return cause.code;
  return err instanceof Error ? err.message : String(err);
}

/** `value` or the default; `min` given: an integer >= min, else a finite number > 0. */
function num(name: string, value: number | undefined, fallback: number, min?: number): number {
  if (value === undefined) return fallback;
  const ok =
    min === undefined ? Number.isFinite(value) && value > 0 : Number.isInteger(value) && value >= min;
  if (!ok) throw new RangeError(`webhooks: bad ${name}: ${value}`);
  return value;
}

/** A fixed-capacity FIFO: O(1) push and shift. */
class Ring<T> {
  private readonly items: Array<T | undefined>;
  private head = 0;
  size = 0;
  constructor(capacity: number) {
    this.items = new Array<T | undefined>(capacity);
  }
  push(item: T): void {
    if (this.size === this.items.length) throw new Error('ring full');
    this.items[(this.head + this.size++) % this.items.length] = item;
  }
  shift(): T | undefined {
    if (this.size === 0) return undefined;
    const item = this.items[this.head];
    this.items[this.head] = undefined;
    this.head = (this.head + 1) % this.items.length;
    this.size--;
    return item;
  }
}
