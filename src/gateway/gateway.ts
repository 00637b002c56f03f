import { EventEmitter } from 'node:events';
import type { Target } from '../hub/member.js';
import type { Logger } from '../log/logger.js';
import type { MessageStore } from '../store/store.js';
import type { WheelTimer } from '../timer/wheel.js';
import type { Tracing } from '../trace/tracing.js';
import type { ClusterLink } from './cluster-link.js';
import type { Connection } from './connection.js';
import { GatewayCore } from './core.js';
import { type Denial, denialKey } from './denials.js';
import type { HistoryPage } from './history.js';
import type { GatewayOptions } from './options.js';
import type { Handler, Middleware } from './router.js';
import type { TapEvent, TapFilter } from './taps.js';
import type {
  ConnectionInfo,
  GatewayAddresses,
  GatewayEvents,
  GatewayStats,
  LabelPage,
  PushOptions,
  PushResult,
  UserInfo,
} from './types.js';
import { type ConnectionFilter, connectionsPage, labelMembers, labelsPage, userInfo } from './views.js';

/**
 * A gateway: what an application calls. Register handlers and middleware, push to users,
 * labels or everyone, kick, look at who is connected, listen, close. Everything the links,
 * the hub, delivery and the cluster call lives in an internal object that is not exported.
 *
 * Events: `connect` (a connection completed its handshake), `disconnect` (with the reason from
 * the disconnect table), `error` (a handler threw something that is not a PylonError).
 */
export class Gateway extends EventEmitter<GatewayEvents> {
  readonly #core: GatewayCore;

  constructor(options: GatewayOptions = {}) {
    super();
    this.#core = new GatewayCore(options, this);
  }

  /** This gateway's id: the prefix of its connection ids. */
  get nodeId(): string {
    return this.#core.nodeId;
  }

  /** Wall-clock start (ms since the epoch). */
  get startedAt(): number {
    return this.#core.startedAt;
  }

  get logger(): Logger {
    return this.#core.logger;
  }

  /** The listeners' addresses once `listen()` resolved (useful with port 0). */
  get addresses(): GatewayAddresses {
    return this.#core.addresses;
  }

  /** Every connection past the transport's accept, by id (including ones still authenticating). */
  get connections(): ReadonlyMap<string, Connection> {
    return this.#core.connections;
  }

  /** Where qos-1 messages wait for their ack. */
  get store(): MessageStore {
    return this.#core.delivery.store;
  }

  /** @internal The gateway's spans when the `tracing` option is set (webhooks add theirs). */
  get tracing(): Tracing | undefined {
    return this.#core.tracing;
  }

  /** The cluster this gateway joined, if any (the `cluster` option). */
  get cluster(): ClusterLink | undefined {
    return this.#core.options.cluster;
  }

  /** Who is in a label (by user), as clients read it with `$presence`. */
  readonly presence = {
    of: (label: string, limit?: number): { label: string; count: number; users: string[] } =>
      this.#core.presence.of(label, limit),
  };

  /** The last pushes of labels that keep a history, as clients read them with `$history`. */
  readonly history = {
    read: (label: string, limit: number, since = 0): Promise<HistoryPage> =>
      this.#core.history.read(label, limit, since),
  };

  /** Register the handler of requests and one-way messages of `type`. */
  handle<TReq = unknown, TRes = unknown>(type: string, handler: Handler<TReq, TRes>): this {
    this.#core.router.handle(type, handler as Handler);
    return this;
  }

  /** Add a middleware that runs around every handler, in the order added. */
  use(middleware: Middleware): this {
    this.#core.router.use(middleware);
    return this;
  }

  /** Run `fn` once after `ms`, on the timing wheel (cancelled by close()). */
  after(ms: number, fn: () => void): WheelTimer {
    return this.#core.timers.after(ms, fn);
  }

  /** Run `fn` every `ms` until the returned timer is cancelled (or the gateway closes). */
  every(ms: number, fn: () => void): WheelTimer {
    return this.#core.timers.every(ms, fn);
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
  push(target: Target, type: string, data?: unknown, options: PushOptions = {}): Promise<PushResult> {
    return this.#core.push(target, type, data, options);
  }

  /** Close the connections of a user, or one connection, with `kicked` (4503). Returns how many. */
  kick(target: { user: string } | { connection: string }, reason?: string): number {
    return this.#core.kick(target, reason);
  }

  /**
   * Ban `user` for `duration` ms (default 24 h): every connection of the user is closed with
   * `banned` (4508, clients do not reconnect), on every node of the cluster, and new ones are
   * refused at the handshake (a resume too) until the ban ends. Kept in a durable store, so the
   * gateways of the store and their later runs refuse the user too. A second ban replaces the
   * first. Resolves with the end and how many connections this node closed.
   */
  async ban(user: string, options: DenyOptions = {}): Promise<{ until: number; kicked: number }> {
    checkId(user, 'user');
    const until = endOf(options);
    const d: Denial = { kind: 'ban', user, until, at: Date.now(), ...reasonOf(options) };
    return { until, kicked: await this.#core.deny(d) };
  }

  /** Lift the ban of `user` (everywhere). Resolves false if it was not banned (here). */
  unban(user: string): Promise<boolean> {
    checkId(user, 'user');
    return this.#core.allow(`ban:${user}`);
  }

  /** The ban of `user` in force, if any. */
  banned(user: string): { until: number; reason?: string } | undefined {
    const b = this.#core.denials.ban(user);
    return b && (b.reason === undefined ? { until: b.until } : { until: b.until, reason: b.reason });
  }

  /**
   * Revoke a token: by its id (`{jti}`), or every token of a user issued before a time
   * (`{user, issuedBefore}`, ms since the epoch, default the start of this second). Connections that authenticated
   * with it are closed with `token_revoked` (4509), on every node, and it is refused at every
   * handshake and resume for `duration` ms (default 24 h: make it your tokens' lifetime). The
   * token's id and issue time are the identity's `token` (the JWT validator reads `jti`, `iat`).
   */
  async revoke(
    target: { jti: string } | { user: string; issuedBefore?: number },
    options: DenyOptions = {},
  ): Promise<{ until: number; closed: number; issuedBefore?: number }> {
    const until = endOf(options);
    const at = Date.now();
    let d: Denial;
    if ('jti' in target) {
      checkId(target.jti, 'jti');
      d = { kind: 'jti', jti: target.jti, until, at, ...reasonOf(options) };
    } else {
      checkId(target.user, 'user');
      // JWT iat has whole seconds: "now" is the start of this second, so a token issued a moment
      // after the revocation (in the same second) is not refused.
      const before = target.issuedBefore ?? Math.floor(at / 1000) * 1000;
      if (!Number.isFinite(before)) throw new TypeError('issuedBefore: must be ms since the epoch');
      d = { kind: 'before', user: target.user, before, until, at, ...reasonOf(options) };
    }
    const closed = await this.#core.deny(d);
    const rule = this.#core.denials.get(denialKey(d));
    return rule?.kind === 'before'
      ? { until: rule.until, closed, issuedBefore: rule.before }
      : { until, closed };
  }

  /**
   * Watch one user's or one label's traffic on this gateway: the pushes accepted here for it, and
   * the requests and messages the user's connections send (data cut to 1,024 characters). At
   * most 16 taps per process (TOO_MANY_REQUESTS). Returns the function that closes the tap.
   */
  tap(filter: TapFilter, listener: (e: TapEvent) => void): () => void {
    return this.#core.taps.add(filter, listener);
  }

  /** Whether `user` has at least one open connection on this gateway. */
  online(user: string): boolean {
    return this.#core.hub.countUser(user) > 0;
  }

  /** The open connections of `user`. */
  connectionsOf(user: string): Connection[] {
    return this.#core.connectionsOf(user);
  }

  /** How many open connections have each label. */
  labelCounts(): Map<string, number> {
    return this.#core.hub.labelCounts();
  }

  /** What an operator sees of a user: online or not, and each connection. */
  userInfo(user: string): UserInfo {
    return userInfo(this.#core.hub, user);
  }

  /** Add and remove labels on every open connection of `user` (all or nothing). Returns how many connections there were. */
  updateUserLabels(user: string, change: { add?: string[]; remove?: string[] }): number {
    return this.#core.updateUserLabels(user, change);
  }

  /** Labels in name order with their counts, a page at a time (`after`: the last label of the previous page). */
  labels(page: { after?: string; limit?: number } = {}): {
    labels: Array<{ label: string; count: number }>;
    next?: string;
  } {
    return labelsPage(this.#core.hub, page);
  }

  /**
   * A page of the open connections (in the order they were accepted), narrowed by user, label,
   * transport and address (an IP or a CIDR range); `after`: the `next` of the previous page.
   */
  connectionsList(
    filter: ConnectionFilter = {},
    page: { after?: string; limit?: number } = {},
  ): { connections: ConnectionInfo[]; next?: string } {
    return connectionsPage(this.#core.connections, this.#core.hub, filter, page);
  }

  /** One label: its count and a page of its connections, in connection-id order. */
  labelMembers(label: string, page: { after?: string; limit?: number } = {}): LabelPage {
    return labelMembers(this.#core.hub, label, page);
  }

  stats(): GatewayStats {
    return this.#core.stats();
  }

  /** Start the configured listeners. Resolves with their addresses (useful with port 0). */
  listen(): Promise<GatewayAddresses> {
    return this.#core.listen();
  }

  /** Monotonic ms of the gateway's clock. */
  now(): number {
    return this.#core.now();
  }

  /**
   * Stop accepting, close every connection with `shutdown` (4000: clients reconnect) and
   * wait for their sockets to close, at most `closeTimeout`, then drop the rest. With
   * `{ code: 'reconnect_elsewhere' }` (4001) the clients are told this node is going away
   * (a reload or a stop) rather than the service.
   */
  close(options: { code?: 'shutdown' | 'reconnect_elsewhere' } = {}): Promise<void> {
    return this.#core.close(options.code ?? 'shutdown');
  }

  /**
   * Draining: close the listeners (no new connection; in a worker of node:cluster the primary
   * stops handing it connections) and go on serving the open ones, pushes and the cluster
   * included. `close()` ends the drain. Resolves once the listeners are closed.
   */
  stopAccepting(): Promise<void> {
    return this.#core.stopAccepting();
  }

  /** Whether `stopAccepting()` or `close()` was called. */
  get draining(): boolean {
    return this.#core.draining;
  }

  /**
   * Report the gateway not ready (`readiness()`, `/readyz`) while it goes on serving and
   * accepting: the first step of a graceful stop behind a load balancer, which stops sending new
   * connections before `close()` moves the open ones.
   */
  withdraw(): void {
    this.#core.withdraw();
  }

  /**
   * Whether a load balancer should send connections here: listening, not withdrawn or draining,
   * the store not failing (a call failed in the last 30 s). The cluster's state is the admin
   * API's to add (`/readyz`). `reasons` says what is missing.
   */
  readiness(): { ready: boolean; reasons: string[] } {
    return this.#core.readiness();
  }

  /** Re-read the TLS certificate files of the tls:// and wss:// listeners (new connections use them). */
  reloadTls(): void {
    this.#core.reloadTls();
  }
}

/** How long a ban or revocation lasts, and why (the reason is told to the connections it closes). */
export interface DenyOptions {
  /** ms; default 24 h, at most 10 years. */
  duration?: number;
  /** At most 256 characters. */
  reason?: string;
}

const DAY = 24 * 3600 * 1000;
const MAX_DENY = 3650 * DAY;

function endOf(o: DenyOptions): number {
  const d = o.duration ?? DAY;
  if (typeof d !== 'number' || !Number.isFinite(d) || d <= 0 || d > MAX_DENY)
    throw new TypeError('duration: must be a positive number of ms, at most 10 years');
  return Date.now() + d;
}

function reasonOf(o: DenyOptions): { reason?: string } {
  if (o.reason === undefined) return {};
  if (typeof o.reason !== 'string' || o.reason.length > 256)
    throw new TypeError('reason: must be a string of at most 256 characters');
  return { reason: o.reason };
}

function checkId(v: unknown, field: string): void {
  if (typeof v !== 'string' || v.length === 0 || v.length > 256)
    throw new TypeError(`${field}: must be a string of 1 to 256 characters`);
}

/** Create a gateway; call `listen()` to start its listeners. */
export function createGateway(options?: GatewayOptions): Gateway {
  return new Gateway(options);
}
