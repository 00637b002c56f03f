import type { Codec, CodecName } from '../protocol/codec.js';
import { DISCONNECT, type DisconnectInfo, disconnectName, shouldReconnect } from '../protocol/disconnect.js';
import { type Envelope, MAX_ID } from '../protocol/envelope.js';
import { PylonError, TimeoutError } from '../protocol/errors.js';
import { DEFAULT_CLIENT_MAX_FRAME } from '../protocol/framing.js';
import { jsonCodec } from '../protocol/json-codec.js';
import { lookupCodec } from '../protocol/registry.js';
import { wheelFor } from '../timer/shared.js';
import type { TimingWheel, WheelTimer } from '../timer/wheel.js';
import { backoffDelay, DEFAULT_BACKOFF } from './backoff.js';
import { fallbackDialer } from './fallback.js';
import type { ClientLink, ClientLinkEvents, Dialer } from './link.js';
import {
  type ClientEvents,
  type ClientOptions,
  type PushHandler,
  type PushMeta,
  RESERVED_EVENTS,
  type ReconnectOptions,
  type RequestOptions,
  type Welcome,
} from './types.js';

type ClientState = 'connecting' | 'open' | 'waiting' | 'closed';

interface Pending {
  id: number;
  env: Envelope;
  resolve(value: unknown): void;
  reject(err: Error): void;
  timer: WheelTimer | undefined;
  /** Sent on the current link (else still in the offline queue). */
  sent: boolean;
  client: PylonClient;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
}

/**
 * A Pylon client over one link at a time: requests matched by id, one-way messages, pushes
 * with auto-ack and dedup for qos 1, heartbeat, and reconnection with backoff.
 */
export class PylonClient {
  /** The current welcome, or undefined while not connected. */
  welcome: Welcome | undefined;
  /** Highest qos-1 push seq handled: pushes at or below it are acked again but not re-run. */
  lastSeq = 0;
  private state: ClientState = 'connecting';
  private link: ClientLink | undefined;
  private readonly codec: Codec;
  private readonly wheel: TimingWheel;
  private readonly pushHandlers = new Map<string, PushHandler[]>();
  private readonly listeners = new Map<string, Array<(...args: never[]) => void>>();
  private readonly pending = new Map<number, Pending>();
  /** Labels asked for with subscribe() (and not unsubscribed): asked for again on a new session. */
  private readonly subscribed = new Set<string>();
  private readonly queue: Pending[] = [];
  /**
   * On a new session after a reconnect, while the labels are asked for again: requests and
   * messages wait in the queue, so that none reaches the server before its labels are back.
   */
  private restoring = false;
  /** Counts restores, so a late end of an older one does not end a newer one. */
  private restores = 0;
  private nextId = 0;
  private lastSent = 0;
  private lastRecv = 0;
  private heartbeatMs = 0;
  private deadAfterMs = 0;
  private timer: WheelTimer | undefined;
  private attempt = 0;
  private kick: DisconnectInfo | undefined;
  private connectWaiter: { resolve(): void; reject(err: Error): void } | undefined;
  private pushChain: Promise<void> = Promise.resolve();
  private gate: Promise<unknown> = Promise.resolve();
  private closedWaiter: (() => void) | undefined;
  private readonly reconnectOptions: ReconnectOptions | undefined;
  /** The token sent on the next connect: `options.token`, then each fresh one from getToken. */
  private token: string | undefined;
  /** The server closed with token_expired: get a fresh token before the next connect. */
  private tokenExpired = false;

  private readonly dialer: Dialer;

  constructor(
    readonly url: URL,
    private readonly options: ClientOptions,
    dialer: Dialer,
  ) {
    this.dialer = fallbackDialer(dialer, {
      transports: options.transports ?? ['websocket', 'http'],
      transportTimeout: options.transportTimeout ?? 3000,
      httpPath: options.httpPath ?? '/http',
    });
    const codec = lookupCodec(options.codec ?? 'json');
    if (codec === undefined) {
      throw new TypeError(
        `codec "${options.codec}" is not in this build (the browser build has json; use the full build for msgpack and proto)`,
      );
    }
    this.codec = codec;
    this.lastSeq = options.lastSeq ?? 0;
    this.token = options.token;
    this.wheel = wheelFor(options.clock);
    this.reconnectOptions =
      options.reconnect === false
        ? undefined
        : { ...DEFAULT_BACKOFF, maxAttempts: Infinity, ...options.reconnect };
  }

  /** The transport of the current link: "tcp", "websocket" or "http" (undefined while none is up). */
  get transport(): string | undefined {
    return this.link?.transport;
  }

  get connected(): boolean {
    return this.state === 'open';
  }

  /** Requests waiting for an answer (sent or queued). */
  get pendingRequests(): number {
    return this.pending.size;
  }

  /** Open the link and wait for `welcome`. Rejects if the first attempt fails. */
  start(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.connectWaiter = { resolve, reject };
      // Only getToken: the first token comes from it too.
      if (this.token === undefined && this.options.getToken !== undefined) this.tokenExpired = true;
      this.dialWithToken();
    });
  }

  /**
   * Call `type` on the server and wait for its answer. Rejects with a PylonError carrying the
   * server's error code, a TimeoutError, or UNAVAILABLE if the link is lost before the answer.
   */
  request<T = unknown>(type: string, data?: unknown, options: RequestOptions = {}): Promise<T> {
    return this.ask<T>('req', type, data, options);
  }

  /**
   * Ask the server to add labels to this connection (the server's authorizeSub hook decides,
   * all or nothing). Resolves to the connection's labels after the change.
   */
  async subscribe(labels: string[], options: RequestOptions = {}): Promise<string[]> {
    const res = await this.ask<{ labels: string[] }>('sub', undefined, { labels }, options);
    for (const l of labels) this.subscribed.add(l);
    return res.labels;
  }

  /** Who is in `label` (users, each once) — for members of the label, or where the server allows reading. */
  presence(
    label: string,
    options: RequestOptions = {},
  ): Promise<{ label: string; count: number; users: string[] }> {
    return this.request('$presence', { label }, options);
  }

  /**
   * The last `limit` pushes to `label` after position `since` (default 0: all kept), oldest first,
   * for labels with a history on the server. `epoch` changes when the history started again: a
   * client that kept `epoch` and the last `pos` it saw knows it missed nothing when the epoch is
   * the same and the first message's `pos` is its own + 1 (or none came and `last` is its own).
   */
  history(
    label: string,
    limit = 50,
    options: RequestOptions & { since?: number } = {},
  ): Promise<{
    label: string;
    epoch: string;
    last: number;
    messages: Array<{ type: string; data: unknown; at: number; pos: number }>;
  }> {
    const { since, ...rest } = options;
    return this.request('$history', since === undefined ? { label, limit } : { label, limit, since }, rest);
  }

  /** Ask the server to remove labels from this connection. Resolves to the labels left. */
  async unsubscribe(labels: string[], options: RequestOptions = {}): Promise<string[]> {
    const res = await this.ask<{ labels: string[] }>('unsub', undefined, { labels }, options);
    for (const l of labels) this.subscribed.delete(l);
    return res.labels;
  }

  private ask<T>(
    kind: 'req' | 'sub' | 'unsub',
    type: string | undefined,
    data: unknown,
    options: RequestOptions,
    /** Sent even while the session is being restored (the restoring `sub` itself). */
    first = false,
  ): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      if (this.state === 'closed') {
        reject(new PylonError('UNAVAILABLE', 'client is closed'));
        return;
      }
      if (options.signal?.aborted) {
        reject(new PylonError('CANCELLED', 'request aborted'));
        return;
      }
      const id = this.allocateId();
      const p: Pending = {
        id,
        env: { kind, id, type, data },
        resolve: resolve as (value: unknown) => void,
        reject,
        timer: undefined,
        sent: false,
        client: this,
        signal: options.signal,
        onAbort: undefined,
      };
      const timeout = options.timeout ?? this.options.requestTimeout ?? 10_000;
      p.timer = this.wheel.schedule(timeout, onRequestTimeout, p);
      if (options.signal) {
        p.onAbort = () => this.settle(p, new PylonError('CANCELLED', 'request aborted'));
        options.signal.addEventListener('abort', p.onAbort, { once: true });
      }
      this.pending.set(id, p);
      if (this.state === 'open' && (!this.restoring || first)) {
        p.sent = true;
        this.write(p.env);
      } else if (this.state === 'open') {
        this.queue.push(p); // connected, its labels being restored: not offline, so queued whatever `offline` says
      } else if (!this.enqueue(p)) {
        this.settle(p, this.offlineError());
      }
    });
  }

  /** Send a one-way message (at most once). Queued while disconnected, unless offline is "fail". */
  send(type: string, data?: unknown): void {
    const env: Envelope = data === undefined ? { kind: 'msg', type } : { kind: 'msg', type, data };
    if (this.state === 'open' && !this.restoring) {
      this.write(env);
      return;
    }
    if (this.state === 'closed') throw new PylonError('UNAVAILABLE', 'client is closed');
    const restoring = this.state === 'open';
    const p: Pending = {
      id: 0,
      env,
      resolve: noop,
      reject: noop,
      timer: undefined,
      sent: false,
      client: this,
      signal: undefined,
      onAbort: undefined,
    };
    if (restoring) this.queue.push(p);
    else if (!this.enqueue(p)) throw this.offlineError();
  }

  /**
   * Listen to pushes of `type` ("*" for every push), or to a lifecycle event: open, close,
   * reconnecting, reconnected, error.
   */
  on<E extends keyof ClientEvents>(event: E, listener: (...args: ClientEvents[E]) => void): this;
  on<T = unknown>(type: string, handler: PushHandler<T>): this;
  on(name: string, fn: (...args: never[]) => unknown): this {
    if (RESERVED_EVENTS.has(name)) {
      const list = this.listeners.get(name) ?? [];
      list.push(fn as (...args: never[]) => void);
      this.listeners.set(name, list);
    } else {
      const list = this.pushHandlers.get(name) ?? [];
      list.push(fn as PushHandler);
      this.pushHandlers.set(name, list);
    }
    return this;
  }

  off(name: string, fn: (...args: never[]) => unknown): this {
    const map = RESERVED_EVENTS.has(name) ? this.listeners : this.pushHandlers;
    const list = map.get(name) as Array<unknown> | undefined;
    const i = list?.indexOf(fn) ?? -1;
    if (list && i >= 0) list.splice(i, 1);
    return this;
  }

  /** Say bye and close for good (no reconnect). Pending requests fail with UNAVAILABLE. */
  close(): Promise<void> {
    if (this.state === 'closed' && !this.link) return Promise.resolve();
    const wasOpen = this.state === 'open';
    this.state = 'closed';
    this.timer?.cancel();
    this.failAll(new PylonError('UNAVAILABLE', 'client closed'));
    const link = this.link;
    if (!link) return Promise.resolve();
    return new Promise<void>((resolve) => {
      this.closedWaiter = resolve;
      if (wasOpen) this.write({ kind: 'bye' });
      link.close(1000, 'bye');
    });
  }

  // ---- link lifecycle ----

  private dial(): void {
    this.kick = undefined;
    const events: ClientLinkEvents = {
      open: () => this.onLinkOpen(link),
      frame: (payload) => this.onFrame(link, payload),
      close: (code, reason) => this.onLinkClose(link, code, reason),
    };
    let link: ClientLink;
    try {
      link = this.dialer(
        this.url,
        {
          codec: this.codec.name as CodecName,
          token: this.token,
          headers: this.options.headers,
          maxFrame: this.options.maxFrame ?? DEFAULT_CLIENT_MAX_FRAME,
          tls: this.options.tls,
          compression: this.options.compression,
        },
        events,
      );
    } catch (err) {
      this.connectWaiter?.reject(err as Error);
      this.connectWaiter = undefined;
      this.state = 'closed';
      return;
    }
    this.link = link;
    this.lastRecv = this.wheel.now();
    this.timer?.cancel();
    this.timer = this.wheel.schedule(this.options.connectTimeout ?? 10_000, onConnectTimeout, this);
  }

  private onLinkOpen(link: ClientLink): void {
    if (link !== this.link) return;
    const data: Record<string, unknown> = { codec: this.codec.name, client: 'pylon-js/0.1.0' };
    if (this.token !== undefined) data.token = this.token;
    // Resume the last session: labels come back and missed pushes are replayed.
    if (this.welcome?.session !== undefined) data.session = this.welcome.session;
    const hello: Envelope = { kind: 'hello', data };
    // On TCP the hello is always JSON; on WebSocket the subprotocol already set the codec.
    const stream = this.url.protocol === 'tcp:' || this.url.protocol === 'tls:' || link.transport === 'http';
    const helloCodec = stream ? jsonCodec : this.codec;
    link.send(helloCodec.encode(hello), !helloCodec.binary);
    this.lastSent = this.wheel.now();
  }

  private onFrame(link: ClientLink, payload: Uint8Array): void {
    if (link !== this.link) return;
    this.lastRecv = this.wheel.now();
    let env: Envelope;
    try {
      env = this.codec.decode(payload);
    } catch (err) {
      this.emit('error', err as Error);
      link.close(4500, 'protocol error');
      return;
    }
    switch (env.kind) {
      case 'welcome':
        this.onWelcome(env);
        return;
      case 'res':
        this.onResponse(env);
        return;
      case 'push':
        this.onPush(env);
        return;
      case 'ping':
        this.write({ kind: 'pong' });
        return;
      case 'kick':
        this.onKick(env);
        return;
      default:
        return;
    }
  }

  private onWelcome(env: Envelope): void {
    const welcome = (env.data ?? {}) as Welcome;
    this.welcome = welcome;
    // Pushes that arrive right behind the welcome wait one macrotask, so that the code that
    // awaited connect() has registered its handlers before they run.
    this.gate = new Promise((resolve) => setTimeout(resolve, 0));
    const reconnected = this.attempt > 0 || this.connectWaiter === undefined;
    this.state = 'open';
    this.attempt = 0;
    const own = this.options.heartbeat ?? 295_000;
    const server = welcome.heartbeat;
    this.heartbeatMs = server ? Math.min(own, server.interval) : own;
    this.deadAfterMs = this.options.heartbeatTimeout ?? (server ? server.timeout : 2 * this.heartbeatMs);
    this.timer?.cancel();
    this.timer = this.wheel.schedule(this.nextCheck(), onHeartbeat, this);
    // A new session (the old one expired, or its node went away in a reload or a stop): the
    // labels this client subscribed to are asked for again before what waited in the queue goes
    // out (a message to a room must not arrive before the room is joined again).
    const restore = reconnected && welcome.resumed !== true && this.subscribed.size > 0;
    if (restore) {
      this.restoring = true;
      const n = ++this.restores;
      this.ask<{ labels: string[] }>('sub', undefined, { labels: [...this.subscribed] }, {}, true)
        .catch((err: unknown) => {
          // A link lost meanwhile (or close()) is not worth an error: the next session restores again.
          if ((err as PylonError).code !== 'UNAVAILABLE') this.emit('error', err as Error);
        })
        .finally(() => {
          if (n !== this.restores) return;
          this.restoring = false;
          if (this.state === 'open') this.flushQueue();
        });
    } else this.flushQueue();
    if (this.connectWaiter) {
      this.connectWaiter.resolve();
      this.connectWaiter = undefined;
    }
    this.emit('open', welcome);
    if (reconnected) this.emit('reconnected', welcome);
  }

  private onResponse(env: Envelope): void {
    const p = this.pending.get(env.id as number);
    if (p === undefined) return;
    if (env.error) this.settle(p, new PylonError(env.error.code, env.error.message));
    else this.settle(p, undefined, env.data);
  }

  private onPush(env: Envelope): void {
    const type = env.type as string;
    if (type === '$refresh' && env.seq === undefined) {
      void this.refreshToken();
      return;
    }
    const meta: PushMeta = { type, seq: env.seq, qos: env.qos === 1 ? 1 : 0 };
    if (meta.qos === 0 || env.seq === undefined) {
      this.gate.then(() => this.runHandlers(env.data, meta)).catch((err) => this.emit('error', err as Error));
      return;
    }
    // qos 1: handlers run one push at a time, in arrival order; the ack goes after they return,
    // so a crash before that means the server sends it again. Seen seqs are acked, not re-run.
    const seq = env.seq;
    this.pushChain = this.pushChain.then(async () => {
      await this.gate;
      if (seq > this.lastSeq) {
        // A handler that throws has still had its one run: the error goes to the 'error'
        // listeners and the push is acked (acks are cumulative, so holding it back would only
        // hold back every push after it).
        try {
          await this.runHandlers(env.data, meta);
        } catch (err) {
          this.emit('error', err as Error);
        }
        this.lastSeq = seq;
      }
      if (this.state === 'open') this.write({ kind: 'ack', seq: this.lastSeq });
    });
  }

  private async runHandlers(data: unknown, meta: PushMeta): Promise<void> {
    const list = this.pushHandlers.get(meta.type);
    const any = this.pushHandlers.get('*');
    if (list) for (const h of list) await h(data, meta);
    if (any) for (const h of any) await h(data, meta);
  }

  private onKick(env: Envelope): void {
    const d = (env.data ?? {}) as Partial<DisconnectInfo>;
    if (typeof d.code === 'number') {
      this.kick = {
        code: d.code,
        name: typeof d.name === 'string' ? d.name : disconnectName(d.code),
        reason: typeof d.reason === 'string' ? d.reason : '',
        reconnect: typeof d.reconnect === 'boolean' ? d.reconnect : shouldReconnect(d.code),
      };
    }
  }

  private onLinkClose(link: ClientLink, code: number, reason: string): void {
    if (link !== this.link) return;
    this.link = undefined;
    this.timer?.cancel();
    const wasOpen = this.state === 'open';
    const info: DisconnectInfo = this.kick ?? {
      code,
      name: code === 1006 ? 'connection_lost' : disconnectName(code),
      reason,
      reconnect: code === 1000 ? false : shouldReconnect(code),
    };
    if (this.state === 'closed') {
      this.emit('close', { ...info, willReconnect: false });
      this.closedWaiter?.();
      this.closedWaiter = undefined;
      return;
    }
    // In-flight requests may or may not have run: fail them rather than guess.
    for (const p of [...this.pending.values()]) {
      if (p.sent)
        this.settle(p, new PylonError('UNAVAILABLE', `connection lost before the answer (${info.name})`));
    }
    const first = this.connectWaiter;
    const ro = this.reconnectOptions;
    // token_expired: come back only with a fresh token, from getToken.
    const expiredToken = info.code === DISCONNECT.token_expired.code;
    if (expiredToken) this.tokenExpired = true;
    const retry =
      ro !== undefined &&
      info.reconnect &&
      first === undefined &&
      this.attempt < ro.maxAttempts &&
      !(expiredToken && this.options.getToken === undefined);
    this.state = retry ? 'waiting' : 'closed';
    if (wasOpen || !retry) this.emit('close', { ...info, willReconnect: retry });
    // A close listener may have called close(): then there is nothing to retry.
    if ((this.state as ClientState) === 'closed' && retry) {
      this.failAll(new PylonError('UNAVAILABLE', 'client closed'));
      return;
    }
    if (first) {
      this.connectWaiter = undefined;
      first.reject(
        new PylonError('UNAVAILABLE', `could not connect: ${info.reason || info.name} (${info.code})`),
      );
    }
    if (!retry) {
      this.failAll(new PylonError('UNAVAILABLE', `disconnected: ${info.name} (${info.code})`));
      return;
    }
    const delay = backoffDelay(this.attempt, ro, this.options.random);
    this.attempt++;
    this.emit('reconnecting', { attempt: this.attempt, delay });
    this.timer = this.wheel.schedule(delay, onRetry, this);
  }

  // ---- timers (module-level callbacks below call these) ----

  /** @internal */
  retry(): void {
    if (this.state !== 'waiting') return;
    this.state = 'connecting';
    this.dialWithToken();
  }

  /**
   * Dial, after getting a fresh token from getToken when the last one expired (or there is none
   * yet). A getToken that fails is a failed attempt: backoff, then again, up to maxAttempts.
   */
  private dialWithToken(): void {
    const getToken = this.options.getToken;
    if (!this.tokenExpired || getToken === undefined) {
      this.dial();
      return;
    }
    Promise.resolve()
      .then(getToken)
      .then(
        (token) => {
          this.token = token;
          this.tokenExpired = false;
          if (this.state === 'connecting') this.dial();
        },
        (err: unknown) => {
          const e = err instanceof Error ? err : new Error(String(err));
          this.emit('error', e);
          if (this.state !== 'connecting') return;
          const first = this.connectWaiter;
          const ro = this.reconnectOptions;
          if (first !== undefined || ro === undefined || this.attempt >= ro.maxAttempts) {
            this.state = 'closed';
            this.connectWaiter = undefined;
            const reason = `could not get a token: ${e.message}`;
            if (first !== undefined) first.reject(new PylonError('UNAVAILABLE', reason));
            else
              this.emit('close', {
                code: 4011,
                name: 'token_expired',
                reason,
                reconnect: true,
                willReconnect: false,
              });
            this.failAll(new PylonError('UNAVAILABLE', reason));
            return;
          }
          this.state = 'waiting';
          const delay = backoffDelay(this.attempt, ro, this.options.random);
          this.attempt++;
          this.emit('reconnecting', { attempt: this.attempt, delay });
          this.timer = this.wheel.schedule(delay, onRetry, this);
        },
      );
  }

  /** The server asked for a new token: get one and send it; the connection stays up meanwhile. */
  private async refreshToken(): Promise<void> {
    const getToken = this.options.getToken;
    if (getToken === undefined) return; // the server will close with token_expired; a reconnect is final
    try {
      const token = await getToken();
      this.token = token;
      const result = (await this.request('$refresh', { token })) as { expiresAt?: number; labels: string[] };
      this.emit('refreshed', result);
    } catch (err) {
      this.emit('error', err instanceof Error ? err : new Error(String(err)));
    }
  }

  /** @internal */
  connectExpired(): void {
    if (this.state === 'open' || !this.link) return;
    // A kick that already arrived says why better than the timeout does.
    this.kick ??= { code: 4003, name: 'handshake_timeout', reason: 'no welcome in time', reconnect: true };
    this.link.close(4003, 'connect timeout');
  }

  /** @internal */
  heartbeatCheck(): void {
    if (this.state !== 'open' || !this.link) return;
    const now = this.wheel.now();
    if (now - this.lastRecv >= this.deadAfterMs) {
      this.kick = {
        code: 4002,
        name: 'keepalive_timeout',
        reason: `nothing received for ${Math.round((now - this.lastRecv) / 1000)} s`,
        reconnect: true,
      };
      this.link.close(4002, 'heartbeat timeout');
      return;
    }
    if (now - this.lastSent >= this.heartbeatMs) this.write({ kind: 'ping' });
    this.timer?.reschedule(this.nextCheck());
  }

  /** @internal */
  expire(p: Pending): void {
    this.settle(p, new TimeoutError(`${p.env.kind} "${p.env.type ?? ''}" timed out`));
  }

  private nextCheck(): number {
    const now = this.wheel.now();
    const untilPing = this.heartbeatMs - (now - this.lastSent);
    const untilDead = this.deadAfterMs - (now - this.lastRecv);
    return Math.max(1, Math.min(untilPing, untilDead));
  }

  // ---- helpers ----

  private write(env: Envelope): void {
    const link = this.link;
    if (!link) return;
    link.send(this.codec.encode(env), !this.codec.binary);
    this.lastSent = this.wheel.now();
  }

  private allocateId(): number {
    do {
      this.nextId = this.nextId >= MAX_ID ? 1 : this.nextId + 1;
    } while (this.pending.has(this.nextId));
    return this.nextId;
  }

  private enqueue(p: Pending): boolean {
    if ((this.options.offline ?? 'queue') === 'fail') return false;
    if (this.queue.length >= (this.options.maxQueue ?? 1000)) return false;
    this.queue.push(p);
    return true;
  }

  private offlineError(): PylonError {
    return (this.options.offline ?? 'queue') === 'fail'
      ? new PylonError('UNAVAILABLE', 'not connected')
      : new PylonError('TOO_MANY_REQUESTS', 'offline queue is full');
  }

  private flushQueue(): void {
    const items = this.queue.splice(0);
    for (const p of items) {
      if (p.id !== 0 && !this.pending.has(p.id)) continue; // timed out or aborted while queued
      p.sent = true;
      this.write(p.env);
    }
  }

  private settle(p: Pending, err: Error | undefined, value?: unknown): void {
    if (p.id !== 0) {
      if (this.pending.get(p.id) !== p) return;
      this.pending.delete(p.id);
    }
    p.timer?.cancel();
    if (p.onAbort) p.signal?.removeEventListener('abort', p.onAbort);
    if (err) p.reject(err);
    else p.resolve(value);
  }

  private failAll(err: PylonError): void {
    for (const p of [...this.pending.values()]) this.settle(p, err);
    this.queue.length = 0;
  }

  private emit<E extends keyof ClientEvents>(event: E, ...args: ClientEvents[E]): void {
    const list = this.listeners.get(event);
    if (!list) return;
    for (const fn of [...list]) {
      try {
        (fn as unknown as (...a: ClientEvents[E]) => void)(...args);
      } catch (err) {
        if (event !== 'error') this.emit('error', err as Error);
      }
    }
  }
}

function noop(): void {}

function onRequestTimeout(p: Pending): void {
  p.client.expire(p);
}

function onConnectTimeout(client: PylonClient): void {
  client.connectExpired();
}

function onHeartbeat(client: PylonClient): void {
  client.heartbeatCheck();
}

function onRetry(client: PylonClient): void {
  client.retry();
}
