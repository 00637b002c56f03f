import { hostname } from 'node:os';
import { type ClusterStatus, clusterOf, type DispatchEntry } from '../cluster/cluster.js';
import { nodeUrls } from '../cluster/support.js';
import type { Gateway } from '../gateway/gateway.js';
import type { ConnectionInfo, GatewayStats, LabelPage, PushOptions, UserInfo } from '../gateway/types.js';
import type { ConnectionFilter } from '../gateway/views.js';
import type { Target } from '../hub/member.js';
import { parseTarget } from '../hub/target.js';
import type { Logger } from '../log/logger.js';
import { PylonError } from '../protocol/errors.js';
import { type ProcessStats, processStats } from '../util/process-stats.js';

/**
 * The admin API, implemented once and independent of any transport: HTTP (http.ts) and gRPC
 * (grpc.ts) turn their requests into these plain input objects and send back the plain output.
 * Every input is checked here; a bad one is refused with PylonError('BAD_REQUEST',
 * '<field path>: <what is wrong>'), e.g. `to.labels.all: must be an array of strings`.
 */

const MAX_TYPE = 256;
const MAX_LABEL = 256;
const MAX_LABEL_LIST = 1000;
const MAX_REASON = 256;
const MAX_ID = 256;
const MAX_DURATION = 3650 * 24 * 3600 * 1000;

export interface PushInput {
  /** `{user}`, `{users}`, `{connection}`, `{labels: {all, any, not}}` or `{all: true}`. */
  to: Target;
  type: string;
  /** Any JSON value. */
  data?: unknown;
  qos?: 0 | 1;
  /** qos 1: ms the message may wait for its ack. */
  ttl?: number;
  /** qos 0: label -> data. */
  variants?: Record<string, unknown>;
  /** qos 0: connections per second; the call answers at once. */
  rate?: number;
  /** Accepted once per key within 24 h across the cluster; a repeat answers the first result. */
  idempotencyKey?: string;
}

export interface PushOutput {
  id: string;
  targeted: number;
  /** qos 1 only. */
  stored?: number;
  /** A repeat of an idempotency key: this is the first push's result, nothing was sent. */
  duplicate?: true;
}

export type KickInput = { user: string; reason?: string } | { connection: string; reason?: string };

export interface NodeStats extends GatewayStats {
  /** hostname:pid unless configured. */
  node: string;
  /** Seconds since the process started. */
  uptime: number;
  /** In a cluster: the gateway's node id (the prefix of its connection ids). */
  id?: string;
  /** The process: pid, memory, event-loop lag, message rates, serving or draining. */
  process?: ProcessStats;
}

/** This node's stats, and every node in `nodes` (one without a cluster; each live node of a cluster, as last reported). */
export interface StatsOutput extends NodeStats {
  nodes: NodeStats[];
  /** In a cluster: totals across the live nodes, and this node's link to the others. */
  cluster?: ClusterTotals;
}

export interface ClusterTotals {
  /** Live nodes. */
  nodes: number;
  /** Open connections across the live nodes. */
  connections: number;
  /** Distinct users online across the live nodes. */
  online: number;
  /** Connections per label across the nodes (each node's largest labels). */
  labels: Record<string, number>;
  status: ClusterStatus;
  /** Set when the registry could not be read: `nodes` then holds this node only. */
  error?: string;
}

export interface DispatchOutput {
  user?: string;
  /** Gateways to try in order: the user's current or last node first, then by load (fewest connections). */
  nodes: DispatchEntry[];
}

export interface PageInput {
  after?: string;
  limit?: number;
}

export interface LabelsOutput {
  labels: Array<{ label: string; count: number }>;
  next?: string;
}

export interface BanOutput {
  user: string;
  /** ISO 8601: when the ban ends. */
  until: string;
  /** Connections this node closed (the other nodes close theirs too). */
  kicked: number;
}

export interface RevokeInput {
  jti?: string;
  user?: string;
  /** ISO 8601 or ms since the epoch; with `user`. Default now. */
  issuedBefore?: string | number;
  /** ms the revocation lasts. Default 24 h. */
  duration?: number;
  reason?: string;
}

export interface RevokeOutput {
  jti?: string;
  user?: string;
  issuedBefore?: string;
  until: string;
  /** Connections this node closed. */
  closed: number;
}

export interface ConnectionsInput extends PageInput {
  user?: string;
  label?: string;
  transport?: string;
  address?: string;
}

export interface ConnectionsOutput {
  /** The node that answered (its connections only). */
  node: string;
  connections: ConnectionInfo[];
  /** Pass as `after` for the next page. */
  next?: string;
}

export interface AdminServiceOptions {
  /** The node id in stats. Default `hostname:pid`. */
  node?: string;
  /** Where failures of paced fan-outs are logged. Default the gateway's logger. */
  logger?: Logger;
}

export class AdminService {
  readonly node: string;
  private readonly logger: Logger;

  constructor(
    readonly gateway: Gateway,
    options: AdminServiceOptions = {},
  ) {
    this.node = options.node ?? `${hostname()}:${process.pid}`;
    this.logger = options.logger ?? gateway.logger;
  }

  /** Push to a target. Answers once the push is accepted (qos 1: stored); the fan-out goes on. */
  async push(input: PushInput, call: { traceparent?: string } = {}): Promise<PushOutput> {
    const o = fields(input, 'body', [
      'to',
      'type',
      'data',
      'qos',
      'ttl',
      'variants',
      'rate',
      'idempotencyKey',
    ]);
    const to = parseTarget(o.to, 'to');
    const type = nonEmpty(o.type, 'type', MAX_TYPE);
    const options: PushOptions = {};
    if (o.qos !== undefined) {
      if (o.qos !== 0 && o.qos !== 1) bad('qos', 'must be 0 or 1');
      options.qos = o.qos;
    }
    const qos1 = options.qos === 1;
    if (o.ttl !== undefined) {
      if (!qos1) bad('ttl', 'only for qos 1');
      options.ttl = positive(o.ttl, 'ttl', 'must be a positive number of ms');
    }
    if (o.rate !== undefined) {
      if (qos1) bad('rate', 'only for qos 0');
      options.rate = positive(o.rate, 'rate', 'must be a positive number of connections per second');
    }
    if (o.variants !== undefined) {
      if (qos1) bad('variants', 'only for qos 0');
      const v = fields(o.variants, 'variants');
      for (const label of Object.keys(v)) {
        if (label.length === 0 || label.length > MAX_LABEL) {
          bad('variants', `its keys must be labels of 1 to ${MAX_LABEL} characters`);
        }
      }
      options.variants = v;
    }
    if (o.idempotencyKey !== undefined)
      options.idempotencyKey = nonEmpty(o.idempotencyKey, 'idempotencyKey', 256);
    // The caller's trace (a W3C traceparent header): the push's spans join it (tracing on).
    if (
      this.gateway.tracing !== undefined &&
      call.traceparent !== undefined &&
      call.traceparent.length <= 128
    )
      options.trace = call.traceparent;
    const r = await this.gateway.push(to, type, o.data, options);
    r.done.catch((err: unknown) => this.logger.error({ err, push: r.id }, 'admin push: fan-out failed'));
    const out: PushOutput = { id: r.id, targeted: r.targeted };
    if (r.stored !== undefined) out.stored = r.stored;
    if (r.duplicate) out.duplicate = true;
    return out;
  }

  /** Close the connections of a user, or one connection, with `kicked` (4503). */
  async kick(input: KickInput): Promise<{ kicked: number }> {
    const o = fields(input, 'body', ['user', 'connection', 'reason']);
    const reason = o.reason === undefined ? undefined : text(o.reason, 'reason', MAX_REASON);
    if ((o.user === undefined) === (o.connection === undefined))
      bad('body', 'needs exactly one of user, connection');
    const target =
      o.user !== undefined
        ? { user: nonEmpty(o.user, 'user') }
        : { connection: nonEmpty(o.connection, 'connection') };
    return { kicked: this.gateway.kick(target, reason) };
  }

  async stats(): Promise<StatsOutput> {
    const own: NodeStats = {
      node: this.node,
      uptime: process.uptime(),
      ...this.gateway.stats(),
      process: processStats(this.gateway),
    };
    const cluster = clusterOf(this.gateway);
    if (cluster === undefined) return { ...own, nodes: [own] };
    own.id = cluster.nodeId;
    const status = cluster.status();
    try {
      const cs = await cluster.stats();
      const nodes = cs.nodes.map((n) =>
        n.id === cluster.nodeId
          ? own
          : // Uptime from the node's start, not as of its last heartbeat.
            ({
              node: n.name,
              id: n.id,
              ...n.load.stats,
              uptime: (Date.now() - n.startedAt) / 1000,
            } as NodeStats),
      );
      if (!cs.nodes.some((n) => n.id === cluster.nodeId)) nodes.unshift(own);
      const totals = {
        nodes: cs.nodes.length,
        connections: cs.connections,
        online: cs.online,
        labels: cs.labels,
      };
      return { ...own, nodes, cluster: { ...totals, status } };
    } catch (err) {
      const error = err instanceof Error ? err.message : String(err);
      const totals = { nodes: 1, connections: own.connections, online: own.users, labels: {} };
      return { ...own, nodes: [own], cluster: { ...totals, status, error } };
    }
  }

  /**
   * Liveness: refused (UNAVAILABLE, 503 over HTTP) with the reason while the qos-1 store fails
   * (a call failed in the last 30 s) or, in a cluster, while the broker or registry is down.
   */
  /** The process serves its event loop (answering is the proof). */
  live(): { ok: true } {
    return { ok: true };
  }

  /** Ready for new connections: listening, not stopping or draining, store and cluster working. */
  async ready(): Promise<{ ready: true }> {
    const { reasons } = this.gateway.readiness();
    const cluster = clusterOf(this.gateway);
    if (cluster !== undefined) {
      const status = cluster.status();
      if (!status.up) reasons.push(`cluster ${status.reason ?? 'down'}`);
    }
    if (reasons.length > 0) throw new PylonError('UNAVAILABLE', `not ready: ${reasons.join(', ')}`);
    return { ready: true };
  }

  async health(): Promise<{ ok: true; cluster?: ClusterStatus }> {
    const store = this.gateway.stats().store;
    if (!store.ok) throw new PylonError('UNAVAILABLE', `store failing: ${store.error}`);
    const cluster = clusterOf(this.gateway);
    if (cluster === undefined) return { ok: true };
    const status = cluster.status();
    if (!status.up) throw new PylonError('UNAVAILABLE', `cluster ${status.reason ?? 'down'}`);
    return { ok: true, cluster: status };
  }

  /**
   * Where a client should connect: live gateways ordered by load, the user's current node (or
   * the one it was last seen on, to resume its session) first. Without a cluster: this gateway.
   */
  async dispatch(input: { user?: string } = {}): Promise<DispatchOutput> {
    const o = fields(input, 'query', ['user']);
    const user = o.user === undefined ? undefined : nonEmpty(o.user, 'user');
    const cluster = clusterOf(this.gateway);
    const nodes: DispatchEntry[] = cluster
      ? await cluster.dispatch(user)
      : [
          {
            node: this.gateway.nodeId,
            name: this.node,
            connections: this.gateway.stats().connections,
            ...nodeUrls(this.gateway.addresses, {}),
          },
        ];
    return user === undefined ? { nodes } : { user, nodes };
  }

  /** Online or not, each open connection of the user (an unknown user is simply offline), and its ban. */
  async getUser(input: {
    user: string;
  }): Promise<UserInfo & { banned?: { until: string; reason?: string } }> {
    const o = fields(input, 'body', ['user']);
    const user = nonEmpty(o.user, 'user');
    const info = this.gateway.userInfo(user);
    const ban = this.gateway.banned(user);
    if (ban === undefined) return info;
    const banned: { until: string; reason?: string } = { until: new Date(ban.until).toISOString() };
    if (ban.reason !== undefined) banned.reason = ban.reason;
    return { ...info, banned };
  }

  /**
   * Ban a user for `duration` ms (default 24 h): its connections on every node closed with
   * `banned` (4508), new ones refused until the ban ends.
   */
  async ban(input: { user: string; duration?: number; reason?: string }): Promise<BanOutput> {
    const o = fields(input, 'body', ['user', 'duration', 'reason']);
    const user = nonEmpty(o.user, 'user', MAX_ID);
    const r = await this.gateway.ban(user, denyOptions(o));
    return { user, until: new Date(r.until).toISOString(), kicked: r.kicked };
  }

  /** Lift a user's ban on every node. */
  async unban(input: { user: string }): Promise<{ user: string; unbanned: boolean }> {
    const o = fields(input, 'body', ['user']);
    const user = nonEmpty(o.user, 'user', MAX_ID);
    return { user, unbanned: await this.gateway.unban(user) };
  }

  /**
   * Revoke a token by its id (`jti`), or a user's tokens issued before a time (`user`,
   * `issuedBefore`: ISO 8601 or ms since the epoch, default now): connections that use it are
   * closed with `token_revoked` (4509), and it is refused for `duration` ms (default 24 h).
   */
  async revoke(input: RevokeInput): Promise<RevokeOutput> {
    const o = fields(input, 'body', ['jti', 'user', 'issuedBefore', 'duration', 'reason']);
    if ((o.jti === undefined) === (o.user === undefined)) bad('body', 'needs exactly one of jti, user');
    const options = denyOptions(o);
    if (o.jti !== undefined) {
      if (o.issuedBefore !== undefined) bad('issuedBefore', 'only with user');
      const jti = nonEmpty(o.jti, 'jti', MAX_ID);
      const r = await this.gateway.revoke({ jti }, options);
      return { jti, until: new Date(r.until).toISOString(), closed: r.closed };
    }
    const user = nonEmpty(o.user, 'user', MAX_ID);
    let before: number | undefined;
    if (o.issuedBefore !== undefined) {
      before = instant(o.issuedBefore, 'issuedBefore');
      if (before < 0 || before > Date.now() + 60_000) bad('issuedBefore', 'must not be in the future');
    }
    const r = await this.gateway.revoke(
      before === undefined ? { user } : { user, issuedBefore: before },
      options,
    );
    return {
      user,
      issuedBefore: new Date(r.issuedBefore ?? 0).toISOString(),
      until: new Date(r.until).toISOString(),
      closed: r.closed,
    };
  }

  /**
   * A page of this node's open connections, in the order they were accepted, narrowed by user,
   * label, transport and address (an IP address or a CIDR range).
   */
  async listConnections(input: ConnectionsInput = {}): Promise<ConnectionsOutput> {
    const o = fields(input, 'query', ['user', 'label', 'transport', 'address', 'after', 'limit']);
    const filter: ConnectionFilter = {};
    if (o.user !== undefined) filter.user = nonEmpty(o.user, 'user');
    if (o.label !== undefined) filter.label = nonEmpty(o.label, 'label', MAX_LABEL);
    if (o.transport !== undefined) {
      if (o.transport !== 'tcp' && o.transport !== 'ws' && o.transport !== 'http')
        bad('transport', 'must be tcp, ws or http');
      filter.transport = o.transport;
    }
    if (o.address !== undefined) filter.address = nonEmpty(o.address, 'address', 64);
    const r = this.gateway.connectionsList(filter, page(o));
    return { node: this.gateway.nodeId, ...r };
  }

  /** Add and remove labels on every open connection of a user; answers how many there were. */
  async updateUserLabels(input: {
    user: string;
    add?: string[];
    remove?: string[];
  }): Promise<{ connections: number }> {
    const o = fields(input, 'body', ['user', 'add', 'remove']);
    const user = nonEmpty(o.user, 'user');
    const add = labelList(o.add, 'add');
    const remove = labelList(o.remove, 'remove');
    return { connections: this.gateway.updateUserLabels(user, { add, remove }) };
  }

  /** Labels in name order with their connection counts, a page at a time. */
  async listLabels(input: PageInput = {}): Promise<LabelsOutput> {
    const o = fields(input, 'query', ['after', 'limit']);
    return this.gateway.labels(page(o));
  }

  /** One label: how many connections have it, and a page of them in connection-id order. */
  async getLabel(input: PageInput & { label: string }): Promise<LabelPage> {
    const o = fields(input, 'query', ['label', 'after', 'limit']);
    const label = nonEmpty(o.label, 'label', MAX_LABEL);
    const result = this.gateway.labelMembers(label, page(o));
    return { ...result, members: result.members.map(dropUndefined) };
  }

  /** Who is in a label on this node, by user (each once, sorted), as clients read it with `$presence`. */
  async labelPresence(input: { label: string; limit?: number }): Promise<LabelPresence> {
    const o = fields(input, 'query', ['label', 'limit']);
    const label = nonEmpty(o.label, 'label', MAX_LABEL);
    return this.gateway.presence.of(label, page({ limit: o.limit }).limit ?? 100);
  }

  /**
   * The last pushes kept for a label (labels with a history rule; the store's when it keeps
   * them), oldest first: `limit` of them (default 50), after position `since` when given.
   */
  async labelHistory(input: { label: string; limit?: number; since?: number }): Promise<LabelHistory> {
    const o = fields(input, 'query', ['label', 'limit', 'since']);
    const label = nonEmpty(o.label, 'label', MAX_LABEL);
    const limit = page({ limit: o.limit }).limit ?? 50;
    let since = 0;
    if (o.since !== undefined) {
      if (typeof o.since !== 'number' || !Number.isSafeInteger(o.since) || o.since < 0) {
        bad('since', 'must be a position (an integer, 0 or more)');
      }
      since = o.since;
    }
    const h = await this.gateway.history.read(label, limit, since);
    return {
      ...h,
      messages: h.messages.map(({ type, data, at, pos }) =>
        data instanceof Uint8Array
          ? {
              type,
              binary: Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('base64'),
              at,
              pos,
            }
          : { type, data, at, pos },
      ),
    };
  }
}

/** What GET /v1/labels/{label}/history answers: binary data is given as base64 in `binary`. */
export interface LabelHistory {
  label: string;
  epoch: string;
  last: number;
  messages: Array<{ type: string; data?: unknown; binary?: string; at: number; pos: number }>;
}

/** What GET /v1/labels/{label}/presence answers. */
export interface LabelPresence {
  label: string;
  /** Users present (a user with several connections counts once). */
  count: number;
  /** The first `limit` of them, sorted. */
  users: string[];
}

// ---- checks ----

function bad(field: string, message: string): never {
  throw new PylonError('BAD_REQUEST', `${field}: ${message}`);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array);
}

/** `value` as a plain object; with `known`, a key outside it is refused (catches typos). */
function fields(value: unknown, field: string, known?: readonly string[]): Record<string, unknown> {
  if (!isObject(value)) bad(field, 'must be a JSON object');
  if (known) {
    for (const k of Object.keys(value)) if (!known.includes(k)) bad(k, 'unknown field');
  }
  return value;
}

function text(value: unknown, field: string, max: number): string {
  if (typeof value !== 'string') bad(field, 'must be a string');
  if (value.length > max) bad(field, `at most ${max} characters`);
  return value;
}

function nonEmpty(value: unknown, field: string, max = 1024): string {
  if (typeof value !== 'string' || value.length === 0) bad(field, 'must be a non-empty string');
  if (value.length > max) bad(field, `at most ${max} characters`);
  return value;
}

function positive(value: unknown, field: string, message: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) bad(field, message);
  return value;
}

function denyOptions(o: Record<string, unknown>): { duration?: number; reason?: string } {
  const out: { duration?: number; reason?: string } = {};
  if (o.duration !== undefined) {
    const d = positive(o.duration, 'duration', 'must be a positive number of ms');
    if (d > MAX_DURATION) bad('duration', 'at most 10 years');
    out.duration = d;
  }
  if (o.reason !== undefined) out.reason = text(o.reason, 'reason', MAX_REASON);
  return out;
}

/** ISO 8601 text or ms since the epoch, as ms. */
function instant(v: unknown, field: string): number {
  const ms = typeof v === 'number' ? v : typeof v === 'string' && v.length <= 64 ? Date.parse(v) : Number.NaN;
  if (!Number.isFinite(ms)) bad(field, 'must be an ISO 8601 time or ms since the epoch');
  return ms;
}

function labelList(value: unknown, field: string): string[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) bad(field, 'must be an array of labels');
  if (value.length > MAX_LABEL_LIST) bad(field, `at most ${MAX_LABEL_LIST} labels`);
  for (const [i, l] of value.entries()) {
    if (typeof l !== 'string' || l.length === 0 || l.length > MAX_LABEL) {
      bad(`${field}[${i}]`, `must be a string of 1 to ${MAX_LABEL} characters`);
    }
  }
  return value as string[];
}

function page(o: Record<string, unknown>): { after?: string; limit?: number } {
  const p: { after?: string; limit?: number } = {};
  if (o.after !== undefined) p.after = text(o.after, 'after', 1024);
  if (o.limit !== undefined) {
    const n = o.limit;
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > 1000) {
      bad('limit', 'must be an integer from 1 to 1000');
    }
    p.limit = n;
  }
  return p;
}

function dropUndefined<T extends object>(o: T): T {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) if (v !== undefined) out[k] = v;
  return out as T;
}
