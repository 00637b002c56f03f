import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { Delivery } from '../delivery/delivery.js';
import { Fanout } from '../hub/fanout.js';
import { Hub } from '../hub/hub.js';
import type { Target } from '../hub/member.js';
import type { Codec } from '../protocol/codec.js';
import {
  type DisconnectInfo,
  type DisconnectName,
  disconnectInfo,
  disconnectName,
  shouldReconnect,
} from '../protocol/disconnect.js';
import type { Envelope } from '../protocol/envelope.js';
import { PylonError } from '../protocol/errors.js';
import { getCodec, jsonCodec, SUBPROTOCOLS } from '../protocol/index.js';
import { MemoryStore } from '../store/memory-store.js';
import type { MessageStore } from '../store/store.js';
import type { Clock } from '../timer/clock.js';
import { systemClock } from '../timer/clock.js';
import { TimingWheel, type WheelTimer } from '../timer/wheel.js';
import type { Admission, AdmitInfo, Link, LinkInfo, LinkSink } from '../transport/link.js';
import { AdmissionControl, takeToken } from './admission.js';
import { upgradeToken } from './auth.js';
import { Connection, type ConnectionOwner } from './connection.js';
import { dispatchMessage, dispatchRequest } from './dispatch.js';
import { authenticate, type HandshakeHost, hello } from './handshake.js';
import { History } from './history.js';
import { onConnectionTimer } from './keepalive.js';
import { checkLabel, checkRoom, type LabelTotals, rememberSubscribed } from './labels.js';
import { Listeners } from './listeners.js';
import type { Logger } from './logger.js';
import {
  type GatewayOptions,
  type KeepaliveOptions,
  type ResolvedOptions,
  resolveOptions,
} from './options.js';
import { Presence, presenceMatcher } from './presence.js';
import { type Pushing, pushTo } from './push.js';
import { labelsBySource, NOT_RESUMED, type ResumeResult, Resumes } from './resume.js';
import { type Handler, type Middleware, Router } from './router.js';
import { type SubscribeHost, subscribe } from './subscribe.js';
import type {
  ConnectionInfo,
  GatewayAddresses,
  GatewayEvents,
  GatewayStats,
  HandedSession,
  LabelPage,
  PushOptions,
  PushResult,
  UserInfo,
} from './types.js';

const CODEC_BY_SUBPROTOCOL: Record<string, string> = SUBPROTOCOLS;
const MAX_EARLY_FRAMES = 64;

/**
 * The server core: accepts links from its transports, runs the handshake and authentication,
 * routes frames to handlers, keeps connections alive, pushes to targets through the hub, and
 * closes connections with documented codes.
 */
export class Gateway
  extends EventEmitter<GatewayEvents>
  implements LinkSink, ConnectionOwner, HandshakeHost, SubscribeHost
{
  /** Every connection past the transport's accept, by id (including ones still authenticating). */
  readonly connections = new Map<string, Connection>();
  readonly keepalive: KeepaliveOptions | undefined;
  readonly highWaterMark: number;
  readonly maxPendingRequests: number;
  readonly logger: Logger;
  readonly addresses: GatewayAddresses = {};
  readonly router = new Router();
  /** @internal Settings the handshake and subscriptions read. */
  readonly handshake: HandshakeHost['handshake'];
  readonly subscriptions: SubscribeHost['subscriptions'];
  private readonly hub = new Hub<Connection>();
  /** qos-1 delivery over the store. */
  readonly delivery: Delivery;
  private readonly ownStore: MessageStore | undefined;
  private readonly resumes: Resumes | undefined;
  private readonly fanout: Fanout;
  private readonly options: ResolvedOptions;
  private readonly clock: Clock;
  private readonly wheel: TimingWheel;
  /** This gateway's id: the prefix of its connection ids. */
  readonly nodeId = randomBytes(4).toString('hex');
  /** Wall-clock start (ms since the epoch). */
  readonly startedAt = Date.now();
  private nextId = 0;
  private readonly servers: Listeners;
  private readonly admission: AdmissionControl;
  /** Who is in a label, with join/leave announcements where configured. */
  readonly presence: Presence;
  /** The last pushes of labels that keep a history. */
  readonly history: History;
  private readonly pushing: Pushing;
  private counters = { messagesIn: 0, messagesOut: 0, pushesDropped: 0, slowConsumers: 0, authFailures: 0 };
  private closing: Promise<void> | undefined;
  private stopped: Promise<void> | undefined;
  private onEmpty: (() => void) | undefined;
  /** Connections told to close whose sockets have not closed yet (at most closeTimeout). */
  private readonly lingering = new Set<Connection>();

  constructor(options: GatewayOptions = {}) {
    super();
    this.options = resolveOptions(options);
    this.keepalive = this.options.keepalive;
    this.highWaterMark = this.options.highWaterMark;
    this.maxPendingRequests = this.options.maxPendingRequests;
    this.logger = this.options.logger;
    const o = this.options;
    this.handshake = {
      validate: o.validate,
      maxFrame: o.maxFrame,
      labels: o.labels,
      duplicateLogin: o.duplicateLogin,
    };
    this.subscriptions = { authorizeSub: o.authorizeSub, labels: o.labels, rateLimit: o.subRateLimit };
    this.clock = this.options.clock ?? systemClock;
    this.fanout = new Fanout({
      chunk: this.options.fanoutChunk,
      ceiling: this.options.fanoutCeiling,
      maxPaced: 1000,
      after: (ms, fn) => {
        this.wheel.after(ms, fn);
      },
      onError: (err) => this.logger.error({ err }, 'push could not be encoded; its fan-out stopped'),
    });
    this.wheel = new TimingWheel({
      clock: this.clock,
      tickMs: this.options.tickMs,
      onError: (err) => this.logger.error({ err }, 'timer callback failed'),
    });
    if (o.store === undefined) this.ownStore = new MemoryStore();
    this.delivery = new Delivery(
      o.store ?? (this.ownStore as MessageStore),
      {
        recipientsOf: (user) => this.hub.ofUser(user),
        onError: (err, what) => this.logger.error({ err }, `qos 1: ${what} failed`),
      },
      this.wheel,
      o.delivery,
    );
    this.resumes = o.resume ? new Resumes(this.wheel, o.resume) : undefined;
    this.servers = new Listeners(o, this, this.wheel);
    this.admission = new AdmissionControl(o);
    this.presence = new Presence(
      this.hub,
      presenceMatcher(o.presence),
      this.fanout,
      (ms, fn) => {
        this.wheel.after(ms, fn);
      },
      () => this.clock.now(),
    );
    this.history = new History(o.history, o.historyLimits, (label) => this.hub.ofLabel(label).size);
    if (this.history.enabled) {
      const every = Math.min(60_000, Math.max(1000, o.historyLimits.idleTtl / 4));
      this.wheel.every(every, sweepHistory, this.history);
    }
    this.pushing = {
      hub: this.hub,
      fanout: this.fanout,
      delivery: this.delivery,
      resumes: this.resumes,
      history: this.history,
    };
    installReadHandlers(this, o.authorizeSub);
    o.cluster?.attach(this);
  }

  // ---- application API ----

  /** Register the handler of requests and one-way messages of `type`. */
  handle<TReq = unknown, TRes = unknown>(type: string, handler: Handler<TReq, TRes>): this {
    this.router.handle(type, handler as Handler);
    return this;
  }

  /** Add a middleware that runs around every handler, in the order added. */
  use(middleware: Middleware): this {
    this.router.use(middleware);
    return this;
  }

  /** Run `fn` once after `ms`, on the gateway's timing wheel. */
  after(ms: number, fn: () => void): WheelTimer {
    return this.wheel.after(ms, fn);
  }

  /** Run `fn` every `ms` until the returned timer is cancelled. */
  every(ms: number, fn: () => void): WheelTimer {
    return this.wheel.every(ms, callNoArg, fn);
  }

  /**
   * Push `type`/`data` to every connection the target selects: a user, a list of users, a
   * connection, labels ({all, any, not}) or everyone.
   * - qos 0 (default): at most once; a connection over its high-water mark drops it. Encoded once
   *   per (codec, variant), written as the same bytes; remembered for resumed sessions.
   * - qos 1: at least once, to users: stored in each user's inbox first (resolves once stored),
   *   then sent with the user's next seq and re-sent until acked. User targets reach offline
   *   users too; label/all/connection targets reach the users of the connections they select.
   */
  async push(target: Target, type: string, data?: unknown, options: PushOptions = {}): Promise<PushResult> {
    const result = await pushTo(this.pushing, target, type, data, options);
    if (this.options.cluster) await this.options.cluster.push(result.id, target, type, data, options);
    return result;
  }

  /** @internal A push from another node of the cluster: this node's connections only. */
  pushLocal(target: Target, type: string, data: unknown, options: PushOptions): Promise<PushResult> {
    return pushTo(this.pushing, target, type, data, options);
  }

  /** Close the connections of a user, or one connection, with `kicked` (4503). Returns how many. */
  kick(target: { user: string } | { connection: string }, reason?: string): number {
    this.options.cluster?.kick(target, reason);
    return this.kickLocal(target, reason);
  }

  /** @internal Close this node's connections of a user, or one of its connections. */
  kickLocal(target: { user: string } | { connection: string }, reason?: string): number {
    const conns = 'user' in target ? this.hub.ofUser(target.user) : [this.connections.get(target.connection)];
    let n = 0;
    for (const c of conns) {
      if (c && c.state !== 'closing' && c.state !== 'closed') {
        this.disconnect(c, 'kicked', reason);
        n++;
      }
    }
    return n;
  }

  /** @internal The labels this process holds (for the label limits). */
  get labelTotals(): LabelTotals {
    return this.hub;
  }

  /** Whether `user` has at least one open connection on this gateway. */
  online(user: string): boolean {
    return this.hub.countUser(user) > 0;
  }

  /** The open connections of `user`. */
  connectionsOf(user: string): Connection[] {
    return this.hub.ofUser(user);
  }

  /** How many open connections have each label. */
  labelCounts(): Map<string, number> {
    return this.hub.labelCounts();
  }

  /** What an operator sees of a user: online or not, and each connection. */
  userInfo(user: string): UserInfo {
    const connections = this.connectionsOf(user).map(describeConnection);
    return { user, online: connections.length > 0, connections };
  }

  /** Add and remove labels on every open connection of `user`. Returns how many connections there were. */
  updateUserLabels(user: string, change: { add?: string[]; remove?: string[] }): number {
    const n = this.updateUserLabelsLocal(user, change);
    this.options.cluster?.updateUserLabels(user, change);
    return n;
  }

  /** @internal Change the labels of this node's connections of `user`. */
  updateUserLabelsLocal(user: string, change: { add?: string[]; remove?: string[] }): number {
    const conns = this.connectionsOf(user);
    const add = change.add ?? [];
    const remove = new Set(change.remove ?? []);
    for (const l of add) checkLabel(l);
    // All or nothing: check every connection's room for the new labels before changing any.
    for (const c of conns) {
      try {
        checkRoom(this.options.labels, this.hub, c.labels, add, remove);
      } catch (err) {
        throw new PylonError('TOO_MANY_REQUESTS', `add: connection ${c.id}: ${(err as Error).message}`);
      }
    }
    for (const c of conns) {
      for (const l of change.remove ?? []) c.leave(l);
      for (const l of change.add ?? []) c.join(l);
    }
    return conns.length;
  }

  /** Labels in name order with their counts, a page at a time (`after`: the last label of the previous page). */
  labels(page: { after?: string; limit?: number } = {}): {
    labels: Array<{ label: string; count: number }>;
    next?: string;
  } {
    const limit = clampLimit(page.limit);
    const names = [...this.hub.labelCounts().keys()].sort();
    const start = page.after === undefined ? 0 : upperBound(names, page.after);
    const slice = names.slice(start, start + limit);
    const labels = slice.map((label) => ({ label, count: this.hub.ofLabel(label).size }));
    const next = start + limit < names.length ? slice.at(-1) : undefined;
    return next === undefined ? { labels } : { labels, next };
  }

  /** One label: its count and a page of its connections, in connection-id order. */
  labelMembers(label: string, page: { after?: string; limit?: number } = {}): LabelPage {
    const limit = clampLimit(page.limit);
    const members = [...this.hub.ofLabel(label)].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    const ids = members.map((m) => m.id);
    const start = page.after === undefined ? 0 : upperBound(ids, page.after);
    const slice = members.slice(start, start + limit).map((m) => ({ connection: m.id, user: m.user }));
    const result: LabelPage = { label, count: members.length, members: slice };
    if (start + limit < members.length) result.next = slice.at(-1)?.connection;
    return result;
  }

  stats(): GatewayStats {
    const hub = this.hub.stats();
    return {
      connections: hub.connections,
      users: hub.users,
      labels: hub.labels,
      ...this.counters,
      refused: this.admission.refused,
      qos1: { ...this.delivery.counters },
      resumable: this.resumes?.size ?? 0,
      store: this.delivery.health.status(),
      history: this.history.stats(),
    };
  }

  /** Start the configured listeners. Resolves with their addresses (useful with port 0). */
  async listen(): Promise<GatewayAddresses> {
    const addresses = await this.servers.start();
    Object.assign(this.addresses, addresses);
    return this.addresses;
  }

  /** Monotonic ms of the gateway's clock. */
  now(): number {
    return this.clock.now();
  }

  /**
   * Stop accepting, close every connection with `shutdown` (4000: clients reconnect) and
   * wait for their sockets to close, at most `closeTimeout`, then drop the rest. With
   * `{ code: 'reconnect_elsewhere' }` (4001) the clients are told this node is going away
   * (a reload or a stop) rather than the service.
   */
  close(options: { code?: 'shutdown' | 'reconnect_elsewhere' } = {}): Promise<void> {
    this.closing ??= this.shutdown(options.code ?? 'shutdown');
    return this.closing;
  }

  /**
   * Draining: close the listeners (no new connection; in a worker of node:cluster the primary
   * stops handing it connections) and go on serving the open ones, pushes and the cluster
   * included. `close()` ends the drain. Resolves once the listeners are closed.
   */
  stopAccepting(): Promise<void> {
    this.stopped ??= this.servers.stop();
    return this.stopped;
  }

  /** Whether `stopAccepting()` or `close()` was called. */
  get draining(): boolean {
    return this.stopped !== undefined;
  }

  private async shutdown(code: 'shutdown' | 'reconnect_elsewhere'): Promise<void> {
    await this.stopAccepting();
    // Going away while the service stays: the other nodes get the sessions, so clients resume there.
    if (code === 'reconnect_elsewhere') await this.handOffSessions();
    const drained = new Promise<void>((resolve) => {
      this.onEmpty = resolve;
    });
    for (const conn of [...this.connections.values()]) this.disconnect(conn, code);
    this.checkDrained();
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, this.options.closeTimeout);
    });
    await Promise.race([drained, deadline]);
    clearTimeout(timer);
    for (const conn of this.lingering) conn.link.destroy();
    this.fanout.close();
    this.delivery.close();
    this.resumes?.close();
    await this.options.cluster?.detach();
    await this.ownStore?.close();
    this.wheel.close();
  }

  /** @internal Sessions another node handed over as it went away (ClusterLink.handOffSessions). */
  adoptSessions(sessions: readonly HandedSession[]): void {
    this.resumes?.adopt(sessions);
  }

  private async handOffSessions(): Promise<void> {
    const cluster = this.options.cluster;
    if (cluster?.handOffSessions === undefined || this.resumes === undefined) return;
    const sessions = this.resumes.own();
    for (const c of this.connections.values()) {
      if (c.state === 'open' && c.session !== undefined) {
        const { granted, subscribed } = labelsBySource(c);
        sessions.push({ id: c.session, user: c.user, labels: granted, subscribed });
      }
    }
    if (sessions.length === 0) return;
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        cluster.handOffSessions(sessions),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error('no answer in 2 s')), 2000);
        }),
      ]);
      // Let the other nodes take them in before the clients, told to reconnect, get there.
      await new Promise((resolve) => setTimeout(resolve, 100));
    } catch (err) {
      this.logger.warn({ err, sessions: sessions.length }, 'sessions not handed to the other nodes');
    } finally {
      clearTimeout(timer);
    }
  }

  /** Re-read the TLS certificate files of the tls:// and wss:// listeners (new connections use them). */
  reloadTls(): void {
    this.servers.reloadTls();
  }

  // ---- LinkSink: what transports call ----

  admit(info: AdmitInfo): Admission | Promise<Admission> {
    return this.admission.admit(info, this.closing !== undefined);
  }

  onOpen(link: Link, info: LinkInfo): void {
    let codec: Codec | undefined = jsonCodec;
    if (info.transport === 'ws') {
      const name = info.protocol ? CODEC_BY_SUBPROTOCOL[info.protocol] : (info.query.get('codec') ?? 'json');
      codec = name ? getCodec(name) : undefined;
    }
    const id = `${this.nodeId}-${(++this.nextId).toString(36)}`;
    const conn = new Connection(id, link, codec ?? jsonCodec, this, Math.floor(this.clock.now()));
    link.owner = conn;
    this.connections.set(id, conn);
    if (!this.admission.opened(info.remoteAddress)) {
      this.disconnect(conn, 'overloaded');
      return;
    }
    if (this.closing) {
      this.disconnect(conn, 'shutdown');
      return;
    }
    if (codec === undefined) {
      this.disconnect(conn, 'bad_hello', `unknown codec "${info.query.get('codec')}"`);
      return;
    }
    if (info.transport === 'ws') {
      // WebSocket credentials come with the upgrade (?token= or Authorization); hello is optional.
      if (this.options.validate === undefined) this.openConnection(conn);
      else {
        // A validate hook that never answers must not hold the connection forever.
        conn.timer = this.wheel.schedule(this.options.handshakeTimeout, onConnectionTimer, conn);
        const meta = { transport: 'ws' as const, remoteAddress: info.remoteAddress, headers: info.headers };
        authenticate(this, conn, upgradeToken(info.query, info.headers), meta);
      }
      return;
    }
    conn.timer = this.wheel.schedule(this.options.handshakeTimeout, onConnectionTimer, conn);
  }

  onFrame(link: Link, payload: Uint8Array): void {
    const conn = link.owner as Connection;
    const state = conn.state;
    if (state === 'closing' || state === 'closed') return;
    // Whole ms: small integers stay unboxed in the connection object (no heap number each).
    const now = Math.floor(this.clock.now());
    conn.lastRecv = now;
    this.counters.messagesIn++;
    const limit = this.options.rateLimit;
    if (limit !== undefined && !takeToken(conn, limit, now)) {
      this.logger.warn({ conn: conn.id, user: conn.user, remote: conn.remoteAddress }, 'rate limited');
      this.disconnect(conn, 'rate_limited', `more than ${limit.rate} frames/s`);
      return;
    }
    if (state === 'auth') {
      // The validate hook is running; keep what the client pipelined, in order.
      conn.early ??= [];
      if (conn.early.length >= MAX_EARLY_FRAMES)
        this.disconnect(conn, 'protocol_error', 'too many frames before welcome');
      else conn.early.push(payload.slice());
      return;
    }
    let env: Envelope;
    try {
      env = conn.codec.decode(payload);
    } catch (err) {
      this.protocolError(conn, err);
      return;
    }
    if (state === 'handshake') {
      if (env.kind === 'hello') hello(this, conn, env);
      else this.disconnect(conn, 'bad_hello', `the first frame must be hello, got ${env.kind}`);
      return;
    }
    this.route(conn, env);
  }

  onFrameError(link: Link, err: Error): void {
    this.protocolError(link.owner as Connection, err);
  }

  onDrain(link: Link): void {
    const conn = link.owner as Connection;
    if (conn.slowTimer !== undefined && link.buffered < this.highWaterMark) {
      conn.slowTimer.cancel();
      conn.slowTimer = undefined;
    }
  }

  onClose(link: Link, code: number, reason: string): void {
    const conn = link.owner as Connection | undefined;
    if (conn === undefined) return;
    this.admission.closed(conn.remoteAddress);
    this.lingering.delete(conn);
    if (conn.state !== 'closed') {
      this.finish(conn, {
        code,
        name: code === 1006 ? 'connection_lost' : disconnectName(code),
        reason,
        reconnect: shouldReconnect(code),
      });
    }
    this.checkDrained();
  }

  // ---- ConnectionOwner: what connections and their timers call ----

  /**
   * Close `conn` with a code from the disconnect table. The connection is gone for the
   * application at once (disconnect event, hub, stats); its socket gets a kick frame and up to
   * closeTimeout to finish closing.
   */
  disconnect(conn: Connection, name: DisconnectName, reason?: string): void {
    this.release(conn, disconnectInfo(name, reason), true);
  }

  countOut(): void {
    this.counters.messagesOut++;
  }

  dropped(_conn: Connection): void {
    this.counters.pushesDropped++;
  }

  overWater(conn: Connection): void {
    if (conn.slowTimer === undefined && conn.state === 'open') {
      conn.slowTimer = this.wheel.schedule(this.options.slowConsumerTimeout, onSlowCheck, conn);
    }
  }

  /** @internal The slow-consumer deadline of `conn` passed. */
  slowCheck(conn: Connection): void {
    conn.slowTimer = undefined;
    if (conn.state !== 'open' || conn.link.buffered < this.highWaterMark) return;
    this.counters.slowConsumers++;
    this.logger.warn(
      { conn: conn.id, user: conn.user, remote: conn.remoteAddress, buffered: conn.link.buffered },
      'slow consumer',
    );
    // Its buffer is full: a kick would never arrive. Free the memory now.
    this.release(conn, disconnectInfo('slow_consumer'), false);
    conn.link.destroy();
  }

  join(conn: Connection, label: string): boolean {
    checkLabel(label);
    if (conn.state === 'closing' || conn.state === 'closed') return false;
    conn.labels ??= [];
    if (conn.labels.includes(label)) return false;
    checkRoom(this.options.labels, this.hub.has(conn) ? this.hub : undefined, conn.labels, [label]);
    conn.labels.push(label);
    this.hub.indexLabel(conn, label);
    if (conn.state === 'open') this.presence.joined(conn, label);
    return true;
  }

  leave(conn: Connection, label: string): boolean {
    const at = conn.labels?.indexOf(label) ?? -1;
    if (at < 0) return false;
    conn.labels?.splice(at, 1);
    const sub = conn.subscribed?.indexOf(label) ?? -1;
    if (sub >= 0) conn.subscribed?.splice(sub, 1);
    this.hub.unindexLabel(conn, label);
    if (conn.state === 'open') this.presence.left(conn, label);
    return true;
  }

  handshakeExpired(conn: Connection): void {
    this.logger.info({ conn: conn.id, remote: conn.remoteAddress }, 'handshake timeout');
    this.disconnect(conn, 'handshake_timeout');
  }

  keepaliveExpired(conn: Connection, idleMs: number): void {
    this.logger.info(
      {
        conn: conn.id,
        user: conn.user,
        remote: conn.remoteAddress,
        lastFrameAt: new Date(Date.now() - idleMs).toISOString(),
        idleMs: Math.round(idleMs),
      },
      'keepalive timeout',
    );
    this.disconnect(conn, 'keepalive_timeout', `no frame for ${Math.round(idleMs / 1000)} s`);
  }

  /**
   * Resume the session `conn` asked for: the labels the application had added come back, those
   * the client had subscribed to come back if authorizeSub allows them again (the identity's
   * are the new identity's), then the qos-0 pushes it missed are encoded for it.
   */
  resume(conn: Connection): ResumeResult | Promise<ResumeResult> {
    const resumes = this.resumes;
    if (resumes === undefined) return NOT_RESUMED;
    const asked = conn.resumeFrom;
    conn.resumeFrom = undefined;
    conn.session = resumes.newId();
    const s = asked === undefined ? undefined : resumes.take(asked, conn.user);
    if (s === undefined) return NOT_RESUMED;
    for (const l of s.labels) this.rejoin(conn, l, false);
    const authorize = this.options.authorizeSub;
    if (s.subscribed.length === 0 || authorize === undefined) return resumes.replay(s, conn);
    return Promise.all(
      s.subscribed.map(async (l) => [l, (await authorize(conn, l, 'sub')) === true] as const),
    ).then((answers) => {
      for (const [l, ok] of answers) if (ok) this.rejoin(conn, l, true);
      return resumes.replay(s, conn);
    });
  }

  /** A label back on resume; one over the limits now is left out (logged), not fatal. */
  private rejoin(conn: Connection, label: string, subscribed: boolean): void {
    try {
      this.join(conn, label);
      if (subscribed) rememberSubscribed(conn, label);
    } catch (err) {
      this.logger.info({ conn: conn.id, label, err: (err as Error).message }, 'label not restored on resume');
    }
  }

  attachDelivery(conn: Connection): void {
    this.delivery.attach(conn);
  }

  replay(conn: Connection, frame: Uint8Array): void {
    this.onFrame(conn.link, frame);
  }

  authFailure(): void {
    this.counters.authFailures++;
  }

  handlerFailed(conn: Connection, type: string | undefined, error: Error): void {
    this.logger.error({ err: error, conn: conn.id, type }, 'handler failed');
    if (this.listenerCount('error') > 0) this.emit('error', error, conn);
  }

  // ---- inside ----

  private route(conn: Connection, env: Envelope): void {
    switch (env.kind) {
      case 'req':
        dispatchRequest(this, conn, env);
        return;
      case 'msg':
        dispatchMessage(this, conn, env);
        return;
      case 'ping':
        conn.write(env.data === undefined ? PONG : { kind: 'pong', data: env.data });
        return;
      case 'pong':
        return;
      case 'ack':
        this.delivery.ack(conn, env.seq as number);
        return;
      case 'hello':
        if (conn.helloSeen) this.disconnect(conn, 'protocol_error', 'hello sent twice');
        else hello(this, conn, env);
        return;
      case 'sub':
      case 'unsub':
        subscribe(this, conn, env);
        return;
      case 'bye':
        this.release(conn, disconnectInfo('normal', 'bye'), false);
        return;
      default:
        this.disconnect(conn, 'protocol_error', `kind "${env.kind}" is not sent by clients`);
    }
  }

  /** @internal Registers the connection (hub, keepalive) and emits connect. */
  openConnection(conn: Connection): void {
    conn.state = 'open';
    conn.opened = true;
    this.hub.add(conn);
    if (conn.labels) for (const label of conn.labels) this.presence.joined(conn, label);
    const ka = this.keepalive;
    if (ka) {
      if (conn.timer) conn.timer.reschedule(ka.interval);
      else conn.timer = this.wheel.schedule(ka.interval, onConnectionTimer, conn);
    } else {
      conn.timer?.cancel();
    }
    this.logger.info(
      { conn: conn.id, user: conn.user, transport: conn.transport, remote: conn.remoteAddress },
      'connect',
    );
    this.emit('connect', conn);
  }

  private release(conn: Connection, info: DisconnectInfo, kick: boolean): void {
    if (conn.state === 'closing' || conn.state === 'closed') return;
    conn.state = 'closing';
    if (kick) {
      try {
        conn.write({
          kind: 'kick',
          data: { code: info.code, name: info.name, reason: info.reason, reconnect: info.reconnect },
        });
      } catch (err) {
        this.logger.warn({ err, conn: conn.id }, 'could not encode kick');
      }
    }
    this.lingering.add(conn);
    conn.link.close(info.code, info.reason);
    this.finish(conn, info);
  }

  /** The connection is gone for the application: once, whoever closed it. */
  private finish(conn: Connection, info: DisconnectInfo): void {
    conn.state = 'closed';
    conn.closeInfo = info;
    conn.timer?.cancel();
    conn.timer = undefined;
    conn.slowTimer?.cancel();
    conn.slowTimer = undefined;
    conn.early = undefined;
    this.connections.delete(conn.id);
    const wasIndexed = this.hub.has(conn);
    this.hub.remove(conn);
    if (wasIndexed && conn.labels) for (const label of conn.labels) this.presence.left(conn, label);
    this.delivery.detach(conn);
    if (conn.session !== undefined && conn.opened && info.reconnect) this.resumes?.save(conn);
    const fields = { conn: conn.id, user: conn.user, code: info.code, name: info.name, reason: info.reason };
    if (conn.opened) this.logger.info(fields, info.name === 'kicked' ? 'kick' : 'disconnect');
    else this.logger.debug(fields, 'closed before connect');
    if (conn.opened) this.emit('disconnect', conn, info);
  }

  private checkDrained(): void {
    if (this.onEmpty && this.connections.size === 0 && this.lingering.size === 0) this.onEmpty();
  }

  private protocolError(conn: Connection, err: unknown): void {
    const tooLarge =
      (err instanceof PylonError && err.code === 'FRAME_TOO_LARGE') ||
      (err as { code?: string }).code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH';
    const message = err instanceof Error ? err.message : String(err);
    this.logger.info({ conn: conn.id, remote: conn.remoteAddress, err: message }, 'protocol error');
    this.disconnect(conn, tooLarge ? 'frame_too_large' : 'protocol_error', message);
  }
}

const PONG: Envelope = { kind: 'pong' };

/**
 * `$presence` and `$history`: clients read who is in a label and what was said there, if they
 * have the label or the authorizeSub hook allows `read`. Types starting with `$` are Pylon's.
 */
function installReadHandlers(gateway: Gateway, authorize: GatewayOptions['authorizeSub']): void {
  const mayRead = async (conn: Connection, label: unknown): Promise<string> => {
    const l = checkLabel(label);
    if (conn.has(l) || (authorize !== undefined && (await authorize(conn, l, 'read')) === true)) return l;
    throw new PylonError('FORBIDDEN', `not allowed to read "${l}"`);
  };
  gateway.handle<{ label?: unknown }>('$presence', async (data, ctx) => {
    const label = await mayRead(ctx.connection, data?.label);
    return gateway.presence.of(label);
  });
  gateway.handle<{ label?: unknown; limit?: unknown }>('$history', async (data, ctx) => {
    const label = await mayRead(ctx.connection, data?.label);
    const limit = data?.limit === undefined ? 50 : data.limit;
    if (!Number.isInteger(limit) || (limit as number) < 1 || (limit as number) > 1000) {
      throw new PylonError('BAD_REQUEST', 'limit: must be an integer from 1 to 1000');
    }
    return { label, messages: gateway.history.of(label, limit as number) };
  });
}

function describeConnection(c: Connection): ConnectionInfo {
  const info: ConnectionInfo = {
    id: c.id,
    transport: c.transport,
    remoteAddress: c.remoteAddress,
    labels: c.labels ? [...c.labels] : [],
    connectedAt: new Date(c.connectedAt).toISOString(),
  };
  if (c.user !== undefined) info.user = c.user;
  if (c.device !== undefined) info.device = c.device;
  if (c.version !== undefined) info.version = c.version;
  return info;
}

function clampLimit(limit: number | undefined): number {
  if (limit === undefined) return 100;
  if (!Number.isInteger(limit) || limit < 1 || limit > 1000) {
    throw new PylonError('BAD_REQUEST', 'limit: must be an integer from 1 to 1000');
  }
  return limit;
}

/** Index of the first name greater than `after` in sorted `names`. */
function upperBound(names: string[], after: string): number {
  let lo = 0;
  let hi = names.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((names[mid] as string) <= after) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function sweepHistory(history: History): void {
  history.sweep();
}

function callNoArg(fn: () => void): void {
  fn();
}

function onSlowCheck(conn: Connection): void {
  (conn.owner as Gateway).slowCheck(conn);
}

/** Create a gateway; call `listen()` to start its listeners. */
export function createGateway(options?: GatewayOptions): Gateway {
  return new Gateway(options);
}
