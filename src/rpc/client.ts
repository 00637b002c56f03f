import { type BackoffOptions, backoffDelay } from '../client/backoff.js';
import { PylonClient } from '../client/index.js';
import type { Dialer } from '../client/link.js';
import { nodeDialer } from '../client/transport-node.js';
import type { ClientOptions } from '../client/types.js';
import type { CodecName } from '../protocol/codec.js';
import { PylonError, TimeoutError } from '../protocol/errors.js';
import type { Clock } from '../timer/clock.js';
import type { TimingWheel, WheelTimer } from '../timer/wheel.js';
import { batchingDialer } from './link.js';
import { type CallToken, type MonitorOptions, RpcMonitor } from './monitor.js';
import { ConnectionPool, type PoolStats } from './pool.js';
import { sleep, wheelFor } from './wheel.js';

export interface RpcClientOptions {
  /** The server: tcp://host:port (also tls://, ws://, wss://). */
  url?: string | URL;
  /** Several servers (or several addresses of one): connections are spread over them in turn. */
  urls?: Array<string | URL>;
  /**
   * Connections kept open. Default 4: a Pylon gateway is one process, and four connections are
   * enough to keep one busy; for a server with `--workers N`, use N or more.
   */
  connections?: number;
  /** Most connections: more are dialed when every one has `growAbove` calls in flight. Default: `connections`. */
  maxConnections?: number;
  token?: string;
  /** Default "msgpack". */
  codec?: CodecName;
  /** ms for each attempt of a call. Default 10 000. */
  timeout?: number;
  /** Extra attempts of an idempotent call after UNAVAILABLE, TIMEOUT or TOO_MANY_REQUESTS. Default 2. */
  retries?: number;
  /** Backoff between attempts (full jitter). Default { base: 50, max: 2000 }. */
  backoff?: BackoffOptions;
  /**
   * Calls in flight on one connection; more wait in the client (FIFO). Default 256, the gateway's
   * default `maxPendingRequests`: above it the server answers TOO_MANY_REQUESTS.
   */
  maxPending?: number;
  /** Calls waiting for a connection with room; more fail with TOO_MANY_REQUESTS. Default 100 000. */
  maxQueue?: number;
  /** See maxConnections. Default: maxPending / 2. */
  growAbove?: number;
  /** ms without sending before a ping. Default 5000. */
  heartbeat?: number;
  /** ms without receiving anything before the connection is declared dead and replaced. Default 15 000. */
  heartbeatTimeout?: number;
  /** ms to open a connection and get its welcome. Default 5000. */
  connectTimeout?: number;
  /** Backoff between redials of lost connections. Default { base: 100, max: 5000 }. */
  redial?: BackoffOptions;
  /** Write the frames of one tick in one socket write (tcp/tls). Default true. */
  batch?: boolean;
  /** The slow-call monitor (options, or one shared by several clients); false: none. */
  monitor?: RpcMonitor | MonitorOptions | false;
  maxFrame?: number;
  tls?: ClientOptions['tls'];
  /** For tests: the transport and the time source. */
  dialer?: Dialer;
  clock?: Clock;
}

export interface CallOptions {
  /** ms for each attempt. Default: the client's timeout. */
  timeout?: number;
  signal?: AbortSignal;
  /** Safe to run twice: then failed attempts (UNAVAILABLE, TIMEOUT, TOO_MANY_REQUESTS) are retried. */
  idempotent?: boolean;
  /** Extra attempts (idempotent calls only). Default: the client's retries. */
  retries?: number;
}

export interface RpcStats {
  pool: PoolStats;
  /** Calls waiting for room on a connection. */
  queued: number;
  calls: number;
  retries: number;
}

interface Queued {
  method: string;
  data: unknown;
  timeout: number;
  /** When it joined the line (its timeout counts from there). */
  since: number;
  signal: AbortSignal | undefined;
  token: CallToken | undefined;
  resolve(value: unknown): void;
  reject(err: Error): void;
  timer: WheelTimer | undefined;
  done: boolean;
  onAbort: (() => void) | undefined;
  rpc: RpcClient;
}

const RETRYABLE = new Set(['UNAVAILABLE', 'TIMEOUT', 'TOO_MANY_REQUESTS']);

/**
 * Service-to-service calls over a few long connections. Calls are multiplexed by id over the
 * least-loaded connection of a pool of PylonClients, pipelined (the frames of one tick leave in
 * one write), bounded per connection (`maxPending`) with a FIFO queue behind, cancellable with an
 * AbortSignal, and retried with backoff when the caller says they are idempotent. Dead connections
 * (heartbeat silence, closed links) are replaced by the pool.
 */
export class RpcClient {
  readonly pool: ConnectionPool<PylonClient>;
  /** Undefined when created with `monitor: false`. */
  readonly monitor: RpcMonitor | undefined;
  private readonly urls: URL[];
  private readonly wheel: TimingWheel;
  private readonly timeout: number;
  private readonly retries: number;
  private readonly backoff: BackoffOptions;
  private readonly maxPending: number;
  private readonly maxQueue: number;
  private readonly ownMonitor: boolean;
  /** Calls waiting for room, oldest first from `head` (settled ones are skipped). */
  private queue: Queued[] = [];
  private head = 0;
  private queued = 0;
  private nextUrl = 0;
  private picking = false;
  private closed = false;
  private counters = { calls: 0, retries: 0 };

  constructor(options: RpcClientOptions) {
    const list = options.urls ?? (options.url === undefined ? [] : [options.url]);
    if (list.length === 0) throw new TypeError('RpcClient: give url or urls');
    this.urls = list.map((u) => new URL(u));
    this.wheel = wheelFor(undefined, options.clock);
    this.timeout = options.timeout ?? 10_000;
    this.retries = options.retries ?? 2;
    this.backoff = options.backoff ?? { base: 50, max: 2000 };
    this.maxPending = options.maxPending ?? 256;
    this.maxQueue = options.maxQueue ?? 100_000;
    const connections = options.connections ?? 4;
    const base = options.dialer ?? nodeDialer;
    const dialer = options.batch === false ? base : batchingDialer(base);
    const clientOptions: ClientOptions = {
      token: options.token,
      codec: options.codec ?? 'msgpack',
      requestTimeout: this.timeout,
      connectTimeout: options.connectTimeout ?? 5000,
      heartbeat: options.heartbeat ?? 5000,
      heartbeatTimeout: options.heartbeatTimeout ?? 15_000,
      reconnect: false, // the pool replaces lost connections
      offline: 'fail',
      maxFrame: options.maxFrame,
      tls: options.tls,
      clock: options.clock,
    };
    this.pool = new ConnectionPool<PylonClient>({
      min: connections,
      max: Math.max(options.maxConnections ?? connections, connections),
      dial: () => this.dial(clientOptions, dialer),
      close: (c) => closeWithin(c, 2000),
      isHealthy: (c) => c.connected,
      load: (c) => c.pendingRequests,
      growAbove: options.growAbove ?? Math.max(1, this.maxPending >> 1),
      redial: options.redial,
      wheel: this.wheel,
      maxWaiters: this.maxQueue,
      acquireTimeout: this.timeout,
    });
    const m = options.monitor;
    this.ownMonitor = !(m instanceof RpcMonitor) && m !== false;
    this.monitor =
      m === false ? undefined : m instanceof RpcMonitor ? m : new RpcMonitor({ wheel: this.wheel, ...m });
  }

  /** Open the connections now (else the first call does). Rejects if a dial fails. */
  start(): Promise<void> {
    return this.pool.warm();
  }

  /** Call `method` with `data` and wait for the answer (or a PylonError with the server's code). */
  call<T = unknown>(method: string, data?: unknown, options: CallOptions = {}): Promise<T> {
    this.counters.calls++;
    const token = this.monitor?.begin(method);
    const timeout = options.timeout ?? this.timeout;
    const retries = options.idempotent === true ? (options.retries ?? this.retries) : 0;
    const p =
      retries > 0
        ? this.withRetries<T>(method, data, timeout, options.signal, retries, token)
        : this.attempt<T>(method, data, timeout, options.signal, token);
    const monitor = this.monitor;
    if (monitor === undefined || token === undefined) return p;
    return p.then(
      (v) => {
        monitor.end(token);
        return v;
      },
      (err: unknown) => {
        monitor.end(token, err);
        throw err;
      },
    );
  }

  /** Send a one-way message on the least-loaded connection (at most once; no answer). */
  notify(method: string, data?: unknown): void {
    const c = this.pool.tryPick();
    if (c === undefined) throw new PylonError('UNAVAILABLE', 'no connection');
    c.send(method, data);
  }

  stats(): RpcStats {
    return { pool: this.pool.stats(), queued: this.queued, ...this.counters };
  }

  /** Fail queued calls with UNAVAILABLE, close every connection (calls in flight fail too). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const err = new PylonError('UNAVAILABLE', 'rpc client closed');
    this.failQueue(err);
    if (this.ownMonitor) this.monitor?.close();
    await this.pool.close();
  }

  // ---- inside ----

  private async dial(options: ClientOptions, dialer: Dialer): Promise<PylonClient> {
    const url = this.urls[this.nextUrl++ % this.urls.length]!;
    const client = new PylonClient(url, options, dialer);
    // A dead link (heartbeat silence, reset, kick) frees its slot at once; the pool redials.
    client.on('close', () => this.pool.destroy(client));
    client.on('error', () => {});
    await client.start();
    return client;
  }

  private async withRetries<T>(
    method: string,
    data: unknown,
    timeout: number,
    signal: AbortSignal | undefined,
    retries: number,
    token: CallToken | undefined,
  ): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.attempt<T>(method, data, timeout, signal, token);
      } catch (err) {
        const code = err instanceof PylonError ? err.code : '';
        if (attempt >= retries || !RETRYABLE.has(code) || signal?.aborted || this.closed) throw err;
        this.counters.retries++;
        await sleep(this.wheel, backoffDelay(attempt, this.backoff), signal, cancelled);
      }
    }
  }

  /** One attempt: on the least-loaded connection with room, else in line for one. */
  private attempt<T>(
    method: string,
    data: unknown,
    timeout: number,
    signal: AbortSignal | undefined,
    token: CallToken | undefined,
  ): Promise<T> {
    if (this.closed) return Promise.reject(new PylonError('UNAVAILABLE', 'rpc client closed'));
    if (this.queued === 0) {
      const c = this.pool.tryPick();
      if (c !== undefined && c.pendingRequests < this.maxPending)
        return this.send<T>(c, method, data, timeout, signal, token);
    }
    if (this.queued >= this.maxQueue)
      return Promise.reject(new PylonError('TOO_MANY_REQUESTS', 'too many calls waiting for a connection'));
    if (signal?.aborted) return Promise.reject(cancelled());
    return new Promise<T>((resolve, reject) => {
      const q: Queued = {
        method,
        data,
        timeout,
        since: this.wheel.now(),
        signal,
        token,
        resolve: resolve as (v: unknown) => void,
        reject,
        timer: undefined,
        done: false,
        onAbort: undefined,
        rpc: this,
      };
      q.timer = this.wheel.schedule(timeout, onQueuedTimeout, q);
      if (signal) {
        q.onAbort = () => this.finish(q, cancelled());
        signal.addEventListener('abort', q.onAbort, { once: true });
      }
      // Calls that timed out or were aborted in line stay until passed over: compact when many.
      if (this.queue.length - this.head > 2 * this.queued + 1024) {
        this.queue = this.queue.slice(this.head).filter((x) => !x.done);
        this.head = 0;
      }
      this.queue.push(q);
      this.queued++;
      this.drain();
    });
  }

  private send<T>(
    c: PylonClient,
    method: string,
    data: unknown,
    timeout: number,
    signal: AbortSignal | undefined,
    token: CallToken | undefined,
  ): Promise<T> {
    if (token) token.connection = c.welcome?.connection;
    const p = c.request<T>(method, data, signal === undefined ? { timeout } : { timeout, signal });
    return p.finally(this.afterCall);
  }

  /** A call finished: its connection has room for a queued one. */
  private readonly afterCall = (): void => {
    if (this.queued > 0) this.drain();
  };

  /** Dispatch queued calls, oldest first, while a connection has room; dial when there is none. */
  private drain(): void {
    const queue = this.queue;
    for (; this.head < queue.length; this.head++) {
      const q = queue[this.head]!;
      if (q.done) continue;
      const c = this.pool.tryPick();
      if (c === undefined) {
        this.waitForConnection();
        break;
      }
      if (c.pendingRequests >= this.maxPending) break;
      const remaining = q.timeout - (this.wheel.now() - q.since);
      this.take(q);
      this.send(c, q.method, q.data, Math.max(1, remaining), q.signal, q.token).then(q.resolve, q.reject);
    }
    if (this.head === queue.length) {
      this.queue = [];
      this.head = 0;
    } else if (this.head > 1024 && this.head * 2 > queue.length) {
      this.queue = queue.slice(this.head);
      this.head = 0;
    }
  }

  private failQueue(err: Error): void {
    const queue = this.queue;
    this.queue = [];
    this.head = 0;
    for (const q of queue) this.finish(q, err);
  }

  /** No healthy connection: wait for the pool to dial one, or fail the queue if it cannot. */
  private waitForConnection(): void {
    if (this.picking) return;
    this.picking = true;
    this.pool.pick().then(
      () => {
        this.picking = false;
        this.drain();
      },
      (err: Error) => {
        this.picking = false;
        if (this.pool.tryPick() !== undefined) {
          this.drain();
          return;
        }
        this.failQueue(
          err instanceof PylonError ? err : new PylonError('UNAVAILABLE', err.message, { cause: err }),
        );
      },
    );
  }

  /** Out of the line, for dispatch. */
  private take(q: Queued): void {
    q.done = true;
    this.queued--;
    q.timer?.cancel();
    if (q.onAbort) q.signal?.removeEventListener('abort', q.onAbort);
  }

  /** @internal Fail a queued call (timeout, abort, close). */
  finish(q: Queued, err: Error): void {
    if (q.done) return;
    this.take(q);
    q.reject(err);
  }
}

function cancelled(): PylonError {
  return new PylonError('CANCELLED', 'call aborted');
}

function onQueuedTimeout(q: Queued): void {
  q.rpc.finish(q, new TimeoutError(`call "${q.method}" timed out waiting for a connection`));
}

async function closeWithin(c: PylonClient, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([c.close(), new Promise<void>((r) => (timer = setTimeout(r, ms).unref()))]);
  clearTimeout(timer);
}
