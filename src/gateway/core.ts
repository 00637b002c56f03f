import { randomBytes, randomUUID } from 'node:crypto';
import type { EventEmitter } from 'node:events';
import { type Attributes, ROOT_CONTEXT, type Span } from '@opentelemetry/api';
import { Delivery } from '../delivery/delivery.js';
import { UndeliveredWatch } from '../delivery/undelivered.js';
import { Fanout } from '../hub/fanout.js';
import { Hub } from '../hub/hub.js';
import type { Target } from '../hub/member.js';
import type { Logger } from '../log/logger.js';
import { MqttCodec, WillBudget } from '../mqtt/codec.js';
import { AdmissionControl } from '../net/admission.js';
import {
  type Admission,
  type AdmitInfo,
  disconnectOf,
  type Link,
  type LinkInfo,
  type LinkSink,
} from '../net/link.js';
import { OutFrame } from '../net/out-frame.js';
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
import type { SessionLog } from '../store/session-log.js';
import type { MessageStore } from '../store/store.js';
import { type Clock, systemClock } from '../timer/clock.js';
import { TimerScope } from '../timer/scope.js';
import { isShared, wheelFor } from '../timer/shared.js';
import type { TimingWheel } from '../timer/wheel.js';
import { Qos1Spans } from '../trace/qos1-spans.js';
import { failSpan, SpanKind, type Tracing } from '../trace/tracing.js';
import { upgradeToken } from './auth.js';
import type { ClusterLink, ClusterNode, Operation } from './cluster-link.js';
import { clusterNodeOf } from './cluster-node.js';
import { Connection, type ConnectionOwner } from './connection.js';
import { ConnectionIndex } from './connection-index.js';
import {
  type Denial,
  Denials,
  denialKey,
  denies,
  parseDenial,
  type Refusal,
  refusalOf,
  type TokenInfo,
} from './denials.js';
import { dispatchMessage, dispatchRequest, reply } from './dispatch.js';
import { authenticate, type HandshakeHost, hello } from './handshake.js';
import { History } from './history.js';
import { DEFAULT_KEY_WINDOW, MemoryKeys, pushOnce } from './idempotency.js';
import { joinLabel, leaveLabel, updateLabels } from './label-ops.js';
import { type LabelTotals, rememberSubscribed } from './labels.js';
import { Listeners } from './listeners.js';
import { oneWayHello } from './one-way.js';
import type { GatewayOptions, KeepaliveOptions, MqttListenOptions, ResolvedOptions } from './options.js';
import { resolveOptions } from './options.js';
import { Presence, presenceMatcher } from './presence.js';
import { type Pushing, pushTo } from './push.js';
import { takeToken } from './rate-limit.js';
import { installReadHandlers } from './read-handlers.js';
import { handOffSessions, type ResumeResult, Resumes, resumeSession } from './resume.js';
import { Router } from './router.js';
import { type SubscribeHost, subscribe } from './subscribe.js';
import { Taps } from './taps.js';
import { armExpiry, disarmExpiry, expired, installRefresh, type RefreshHost } from './token-refresh.js';
import type {
  GatewayAddresses,
  GatewayEvents,
  GatewayStats,
  HandedSession,
  PushOptions,
  PushResult,
} from './types.js';
import { UserSlots } from './user-slots.js';

const CODEC_BY_SUBPROTOCOL: Record<string, string> = SUBPROTOCOLS;
const PONG: Envelope = { kind: 'pong' };

/** The adapter of a gateway without a cluster: every operation has run where it was accepted. */
const LOCAL_ADAPTER: ClusterLink = {
  attach() {},
  publish: () => Promise.resolve(),
  detach: () => Promise.resolve(),
};

/**
 * The gateway's insides, never exported: what links, connections, their timers, the handshake,
 * subscriptions and the cluster call. Accepts links from its listeners, runs the handshake and
 * authentication, routes frames to handlers, keeps connections alive, pushes through the hub,
 * and closes connections with documented codes. The public `Gateway` is the application's API
 * over it.
 */
export class GatewayCore implements LinkSink, ConnectionOwner, HandshakeHost, SubscribeHost, RefreshHost {
  /** Every connection past the transport's accept, by id (including ones still authenticating). */
  readonly connections: ConnectionIndex;
  readonly keepalive: KeepaliveOptions | undefined;
  readonly highWaterMark: number;
  readonly maxPendingRequests: number;
  /** MQTT last wills held (kept only when mqtt.publish could send them). */
  private readonly wills: WillBudget | undefined;
  /** mqtt.publish, read once (route looks at it for every message). */
  private readonly mqttPolicy: MqttListenOptions['publish'];
  readonly logger: Logger;
  readonly addresses: GatewayAddresses = {};
  readonly router = new Router();
  readonly handshake: HandshakeHost['handshake'];
  readonly subscriptions: SubscribeHost['subscriptions'];
  readonly hub = new Hub<Connection>();
  readonly delivery: Delivery;
  readonly presence: Presence;
  readonly history: History;
  readonly options: ResolvedOptions;
  /** This gateway's id: the prefix of its connection ids. */
  readonly nodeId = randomBytes(4).toString('hex');
  /** Wall-clock start (ms since the epoch). */
  readonly startedAt = Date.now();
  /** The gateway's own timers (the application's after/every, the cluster's, sweeps): cancelled on close. */
  readonly timers: TimerScope;
  /** What the cluster sees of this gateway. */
  readonly clusterNode: ClusterNode;
  /** Where operations go after running here: the cluster, or nowhere (the local adapter). */
  readonly adapter: ClusterLink;
  /** Live taps on one user's or label's traffic (off until one is added). */
  readonly taps = new Taps();
  /** Spans (the `tracing` option); undefined: tracing is off. */
  readonly tracing: Tracing | undefined;
  /** Bans and token revocations in force (kept in the store too when it is durable). */
  readonly denials: Denials;
  /** Connections and frames per user. */
  private readonly users: UserSlots;
  /** Bumped by every change of `denials` here: a reload from the store that raced one is dropped. */
  private denialChanges = 0;
  private denialVersion: string | undefined;
  /** Idempotency keys of a gateway whose adapter has none (no cluster). */
  private readonly keys = new MemoryKeys();
  private readonly ownStore: MessageStore | undefined;
  private readonly resumes: Resumes | undefined;
  /** Where this gateway leaves its state for its next run (not in a cluster, nor without a durable store). */
  private readonly state: { log: SessionLog; name: string } | undefined;
  private readonly fanout: Fanout;
  private readonly clock: Clock;
  private readonly wheel: TimingWheel;
  private readonly pushing: Pushing;
  private readonly servers: Listeners;
  private readonly admission: AdmissionControl;
  private nextId = 0;
  private listened = false;
  /** listen() resolved: the listeners accept. */
  private listening = false;
  /** withdraw() was called: not ready, still serving. */
  private withdrawn = false;
  private counters = { messagesIn: 0, messagesOut: 0, pushesDropped: 0, slowConsumers: 0, authFailures: 0 };
  private closing: Promise<void> | undefined;
  private stopped: Promise<void> | undefined;
  private onEmpty: (() => void) | undefined;
  /** Connections told to close whose sockets have not closed yet (at most closeTimeout). */
  private readonly lingering = new Set<Connection>();

  constructor(
    options: GatewayOptions,
    /** Where connect, disconnect and error go (the public Gateway). */
    readonly events: EventEmitter<GatewayEvents>,
  ) {
    const o = resolveOptions(options);
    this.options = o;
    this.keepalive = o.keepalive;
    this.highWaterMark = o.highWaterMark;
    this.maxPendingRequests = o.maxPendingRequests;
    this.mqttPolicy = o.mqtt?.publish;
    this.wills =
      o.mqtt?.publish === undefined ? undefined : new WillBudget(o.mqtt.maxWill, o.mqtt.maxWillTotal);
    this.logger = o.logger;
    this.handshake = {
      validate: o.validate,
      maxFrame: o.maxFrame,
      labels: o.labels,
      duplicateLogin: o.duplicateLogin,
    };
    this.subscriptions = { authorizeSub: o.authorizeSub, labels: o.labels, rateLimit: o.subRateLimit };
    this.clock = o.clock ?? systemClock;
    this.connections = new ConnectionIndex(this.hub);
    // The process's wheel, unless a test gives a clock of its own.
    this.wheel = wheelFor(o.clock, o.tickMs);
    this.timers = new TimerScope(this.wheel);
    this.fanout = new Fanout({
      chunk: o.fanoutChunk,
      ceiling: o.fanoutCeiling,
      maxBacklogMs: o.fanoutMaxBacklog,
      maxPaced: 1000,
      after: (ms, fn) => {
        this.timers.after(ms, fn);
      },
      onError: (err) => this.logger.error({ err }, 'push could not be encoded; its fan-out stopped'),
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
    this.delivery.watch = new UndeliveredWatch(
      this.delivery.store,
      this.wheel,
      {
        enabled: () => events.listenerCount('undelivered') > 0,
        undelivered: (e) => events.emit('undelivered', e),
        delivered: (e) => events.emit('delivered', e),
        attempts: (user, seq) => this.delivery.attempts(user, seq),
        keys: o.cluster?.keys ?? new MemoryKeys(o.delivery.maxWatched),
        onError: (err, what) => this.logger.error({ err }, `qos 1: ${what} failed`),
      },
      { after: o.delivery.undeliveredAfter, maxWatched: o.delivery.maxWatched },
    );
    const log = this.delivery.store.sessions;
    this.state = log && o.cluster === undefined ? { log, name: o.stateName } : undefined;
    const sessionLog = o.resume?.durable ? log : undefined;
    this.resumes = o.resume
      ? new Resumes(
          this.wheel,
          o.resume,
          sessionLog && {
            log: sessionLog,
            // In a cluster, pushes accepted while this gateway is down go on elsewhere: its journal would have holes.
            journal: o.cluster === undefined ? `${o.stateName}:journal` : undefined,
            onError: (err, what) => this.logger.error({ err }, what),
          },
        )
      : undefined;
    if (this.resumes) this.resumes.unwritten = (conn) => this.fanout.unwrittenFrom(conn);
    this.tracing = o.tracing;
    if (o.tracing !== undefined) this.delivery.spans = new Qos1Spans(o.tracing);
    this.denials = new Denials(o.maxDenials);
    this.users = new UserSlots(o.maxConnectionsPerUser);
    this.timers.every(30_000, () => {
      this.denials.sweep();
      void this.loadDenials();
    });
    this.servers = new Listeners(o, this, {
      nodeId: this.nodeId,
      // A POST for an HTTP session of another node is carried there by the cluster.
      forward:
        o.cluster === undefined
          ? undefined
          : (_node, session, messages) =>
              this.options.cluster?.publish({ op: 'post', session, messages }) ?? Promise.resolve(),
    });
    this.admission = new AdmissionControl({
      maxConnections: o.maxConnections,
      maxConnectionsPerIp: o.maxConnectionsPerIp,
      ...(o.ws?.origins ? { origins: o.ws.origins } : {}),
      ...(o.ws?.verify ? { verify: o.ws.verify } : {}),
    });
    this.presence = new Presence(
      this.hub,
      presenceMatcher(o.presence),
      this.fanout,
      (ms, fn) => {
        this.timers.after(ms, fn);
      },
      () => this.clock.now(),
    );
    this.history = new History(
      o.history,
      o.historyLimits,
      (label) => this.hub.ofLabel(label).size,
      this.delivery.store.history,
      (err) => this.logger.error({ err }, 'history: store write failed'),
    );
    if (this.history.enabled) {
      const every = Math.min(60_000, Math.max(1000, o.historyLimits.idleTtl / 4));
      this.timers.every(every, () => this.history.sweep());
    }
    this.pushing = {
      hub: this.hub,
      fanout: this.fanout,
      delivery: this.delivery,
      resumes: this.resumes,
      history: this.history,
    };
    this.clusterNode = clusterNodeOf(this);
    installReadHandlers({
      router: this.router,
      presence: this.presence,
      history: this.history,
      authorizeSub: o.authorizeSub,
    });
    installRefresh(this);
    this.adapter = o.cluster ?? LOCAL_ADAPTER;
    this.adapter.attach(this.clusterNode);
  }

  // ---- what the Gateway's API calls ----

  /** A push accepted here: run on this node's connections, then carried by the adapter. */
  push(target: Target, type: string, data: unknown, options: PushOptions): Promise<PushResult> {
    if (this.taps.active) this.taps.push(target, type, data, options.qos ?? 0);
    const { idempotencyKey, ...rest } = options;
    if (idempotencyKey === undefined) return this.pushHere(target, type, data, rest, randomUUID());
    return pushOnce(this.adapter.keys ?? this.keys, idempotencyKey, DEFAULT_KEY_WINDOW, rest.qos ?? 0, (id) =>
      this.pushHere(target, type, data, rest, id),
    );
  }

  private async pushHere(
    target: Target,
    type: string,
    data: unknown,
    options: PushOptions,
    id: string,
  ): Promise<PushResult> {
    if (this.tracing !== undefined) return this.tracedPush(this.tracing, target, type, data, options, id);
    const result = await pushTo(this.pushing, target, type, data, options, id);
    await this.adapter.publish({ op: 'push', id, target, type, data, options });
    return result;
  }

  /**
   * A push with its spans: `pylon.push` from accept to handed to the cluster (its children:
   * `pylon.store` for a qos-1 push, `pylon.fanout` until written to this node's connections, with
   * counts); the other nodes' spans are children of it through the traceparent in its options.
   */
  private async tracedPush(
    tr: Tracing,
    target: Target,
    type: string,
    data: unknown,
    options: PushOptions,
    id: string,
  ): Promise<PushResult> {
    const qos = options.qos ?? 0;
    const span = tr.start(
      'pylon.push',
      {
        'pylon.push.id': id,
        'pylon.push.type': type,
        'pylon.push.qos': qos,
        'pylon.push.target': targetKind(target),
      },
      tr.parent(options.trace),
      SpanKind.PRODUCER,
    );
    const within = tr.within(span);
    const traceparent = tr.traceparent(span);
    const opts: PushOptions = traceparent === undefined ? options : { ...options, trace: traceparent };
    if (qos === 1 && traceparent !== undefined) this.delivery.spans?.remember(id, traceparent);
    const step = tr.start(qos === 1 ? 'pylon.store' : 'pylon.fanout', {}, within);
    let result: PushResult;
    try {
      result = await pushTo(this.pushing, target, type, data, opts, id);
    } catch (err) {
      failSpan(step, err);
      failSpan(span, err);
      throw err;
    }
    span.setAttribute('pylon.targeted', result.targeted);
    if (qos === 1) {
      step.setAttribute('pylon.stored', result.stored ?? 0);
      step.end();
    } else {
      step.setAttribute('pylon.targeted', result.targeted);
      result.done.then(
        (d) => {
          step.setAttributes({ 'pylon.delivered': d.delivered, 'pylon.dropped': d.dropped });
          step.end();
        },
        (err: unknown) => failSpan(step, err),
      );
    }
    try {
      await this.adapter.publish({ op: 'push', id, target, type, data, options: opts });
    } catch (err) {
      failSpan(span, err);
      throw err;
    }
    span.end();
    return result;
  }

  kick(target: { user: string } | { connection: string }, reason?: string): number {
    this.publish(reason === undefined ? { op: 'kick', target } : { op: 'kick', target, reason });
    return this.kickHere(target, reason);
  }

  /**
   * An operation another node accepted: run here only. The one place each cross-node
   * operation is carried out on arrival.
   */
  async run(op: Operation): Promise<void> {
    switch (op.op) {
      case 'push': {
        const tr = this.tracing;
        const trace = op.options.trace;
        if (tr === undefined || trace === undefined) {
          const r = await pushTo(this.pushing, op.target, op.type, op.data, op.options, op.id, false);
          await r.done;
          return;
        }
        // This node's part of a traced push: one span with its counts.
        if (op.options.qos === 1) this.delivery.spans?.remember(op.id, trace);
        const span = tr.start(
          'pylon.deliver',
          { 'pylon.push.id': op.id, 'pylon.node': this.nodeId },
          tr.parent(trace),
          SpanKind.CONSUMER,
        );
        try {
          const r = await pushTo(this.pushing, op.target, op.type, op.data, op.options, op.id, false);
          const d = await r.done;
          span.setAttributes({
            'pylon.targeted': r.targeted,
            'pylon.delivered': d.delivered,
            'pylon.dropped': d.dropped,
          });
          span.end();
        } catch (err) {
          failSpan(span, err);
          throw err;
        }
        return;
      }
      case 'kick':
        this.kickHere(op.target, op.reason);
        return;
      case 'labels':
        updateLabels(this.hub, this.options.labels, op.user, op.change);
        return;
      case 'post':
        if (typeof op.session === 'string' && Array.isArray(op.messages))
          this.servers.post(
            op.session,
            op.messages.filter((m) => m instanceof Uint8Array),
          );
        return;
      case 'deny': {
        this.denialChanges++;
        if (typeof op.remove === 'string') this.denials.remove(op.remove);
        if (op.add === undefined) return;
        const d = parseDenial(op.add);
        if (d === undefined) {
          this.logger.warn({ rule: op.add }, 'bans: a rule from another node is not readable; ignored');
          return;
        }
        try {
          // A later "issued before" never revives tokens an earlier one here revoked.
          this.denyHere(this.denials.merge(d));
        } catch (err) {
          this.logger.error(
            { err, rule: denialKey(d) },
            'bans: a rule from another node could not be put in force',
          );
        }
        return;
      }
    }
  }

  /**
   * A ban or revocation: kept in the store first (every gateway of the store refuses it, a later
   * one too), then in force here (open connections it concerns closed), then on the other nodes.
   */
  async deny(rule: Denial): Promise<number> {
    const previous = this.denials.get(denialKey(rule));
    const d = this.denials.merge(rule);
    this.denials.add(d); // refused here when too many are in force, before the store has it
    this.denialChanges++;
    try {
      await this.delivery.store.denials?.put(d);
    } catch (err) {
      // The rule in force before stays in force.
      if (previous === undefined) this.denials.remove(denialKey(d));
      else this.denials.add(previous);
      throw new PylonError('UNAVAILABLE', `the store could not keep it: ${(err as Error).message}`, {
        cause: err,
      });
    }
    this.publish({ op: 'deny', add: d });
    return this.denyHere(d);
  }

  /** Lifts the rule of `key` everywhere; false if none was in force here. */
  async allow(key: string): Promise<boolean> {
    await this.delivery.store.denials?.remove(key);
    this.denialChanges++;
    const had = this.denials.remove(key);
    this.publish({ op: 'deny', remove: key });
    return had;
  }

  /** Puts `d` in force here and closes the open connections it concerns; returns how many. */
  private denyHere(d: Denial): number {
    this.denials.add(d);
    const { name, reason } = refusalOf(d);
    // A jti can be anyone's: every connection is looked at (a revocation is rare, the scan O(connections)).
    const conns = d.kind === 'jti' ? this.connections.values() : this.hub.ofUser(d.user);
    let n = 0;
    for (const c of [...conns]) {
      if (c.state === 'closing' || c.state === 'closed' || !denies(d, c.user, c.token)) continue;
      this.disconnect(c, name, reason);
      n++;
    }
    return n;
  }

  /** Reads the rules from the store (at listen, then every 30 s when another gateway changed them). */
  private async loadDenials(): Promise<void> {
    const log = this.delivery.store.denials;
    if (log === undefined) return;
    const changes = this.denialChanges;
    try {
      const version = await log.version();
      if (version === this.denialVersion) return;
      const list = await log.list();
      if (changes !== this.denialChanges) return; // one came meanwhile: the next round reads again
      // Rules this gateway did not have (their broadcast was missed) close what they concern now.
      const fresh = list.filter((d) => !this.denials.known(d));
      this.denials.replace(list);
      this.denialVersion = version;
      for (const d of fresh) this.denyHere(d);
    } catch (err) {
      this.logger.error({ err }, 'bans: reading them from the store failed');
    }
  }

  /** Hands an operation that needs no answer to the adapter; a failure is logged. */
  private publish(op: Operation): void {
    this.adapter
      .publish(op)
      .catch((err: unknown) =>
        this.logger.warn({ err, op: op.op }, `cluster: a ${op.op} could not reach the other nodes`),
      );
  }

  private kickHere(target: { user: string } | { connection: string }, reason?: string): number {
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

  connectionsOf(user: string): Connection[] {
    return this.hub.ofUser(user);
  }

  join(conn: Connection, label: string): boolean {
    return joinLabel(this.hub, this.presence, this.options.labels, conn, label);
  }

  leave(conn: Connection, label: string): boolean {
    return leaveLabel(this.hub, this.presence, conn, label);
  }

  updateUserLabels(user: string, change: { add?: string[]; remove?: string[] }): number {
    const n = updateLabels(this.hub, this.options.labels, user, change);
    this.publish({ op: 'labels', user, change });
    return n;
  }

  /** The labels this process holds (for the label limits). */
  get labelTotals(): LabelTotals {
    return this.hub;
  }

  stats(): GatewayStats {
    const hub = this.hub.stats();
    const watch = (this.delivery.watch as UndeliveredWatch).counters;
    return {
      connections: hub.connections,
      users: hub.users,
      labels: hub.labels,
      ...this.counters,
      refused: this.admission.refused,
      qos1: {
        ...this.delivery.counters,
        undelivered: watch.reported,
        deliveredAfterNotify: watch.deliveredAfter,
        unwatched: watch.unwatched,
      },
      resumable: this.resumes?.size ?? 0,
      store: this.delivery.health.status(),
      history: this.history.stats(),
      fanout: { ...fanoutBacklog(this.fanout.backlog()), refused: this.fanout.refused },
    };
  }

  async listen(): Promise<GatewayAddresses> {
    await this.resumes?.start();
    await this.loadDenials();
    await this.takeState();
    const addresses = await this.servers.start();
    Object.assign(this.addresses, addresses);
    this.listening = true;
    return this.addresses;
  }

  now(): number {
    return this.clock.now();
  }

  close(code: 'shutdown' | 'reconnect_elsewhere'): Promise<void> {
    this.closing ??= this.shutdown(code);
    return this.closing;
  }

  stopAccepting(): Promise<void> {
    this.stopped ??= this.servers.stop();
    return this.stopped;
  }

  get draining(): boolean {
    return this.stopped !== undefined;
  }

  withdraw(): void {
    this.withdrawn = true;
  }

  /** Whether a load balancer should send connections here, and if not why (store and cluster apart). */
  readiness(): { ready: boolean; reasons: string[] } {
    const reasons: string[] = [];
    if (!this.listening) reasons.push('starting');
    if (this.withdrawn) reasons.push('stopping');
    if (this.stopped !== undefined) reasons.push('draining');
    const store = this.delivery.health.status();
    if (!store.ok) reasons.push(`store failing: ${store.error}`);
    return { ready: reasons.length === 0, reasons };
  }

  reloadTls(): void {
    this.servers.reloadTls();
  }

  adoptSessions(sessions: readonly HandedSession[]): void {
    this.resumes?.adopt(sessions);
  }

  private async shutdown(code: 'shutdown' | 'reconnect_elsewhere'): Promise<void> {
    await this.stopAccepting();
    // Sessions in the store before the clients are told to go, so one back at once finds its own.
    await this.resumes?.saveOpen(this.connections.values());
    // Going away while the service stays: the other nodes get the sessions, so clients resume there.
    if (code === 'reconnect_elsewhere')
      await handOffSessions(this.adapter, this.resumes, this.connections.values(), this.logger);
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
    await this.leaveState();
    this.delivery.close();
    await this.resumes?.stop();
    this.resumes?.close();
    this.timers.close();
    await this.adapter.detach();
    await this.ownStore?.close();
    if (!isShared(this.wheel)) this.wheel.close();
  }

  /** Goes on with the undelivered checks the last run of this gateway left. */
  private async takeState(): Promise<void> {
    if (this.state === undefined || this.listened) return;
    this.listened = true;
    const { log, name } = this.state;
    const watch = this.delivery.watch;
    try {
      const snap = await log.takeState(`${name}:undelivered`);
      if (snap !== undefined && watch !== undefined && !watch.restore(snap))
        this.logger.error({ name }, 'undelivered: the checks left by the last run are not readable');
    } catch (err) {
      this.logger.error({ err }, 'undelivered: reading the checks left by the last run');
    }
  }

  /** Leaves the undelivered checks still waiting for the next run. */
  private async leaveState(): Promise<void> {
    const watch = this.delivery.watch;
    if (this.state === undefined || watch === undefined || watch.size === 0) return;
    const { log, name } = this.state;
    watch.close(); // no check runs while the snapshot is written: each is reported once, here or next run
    try {
      await log.putState(`${name}:undelivered`, watch.snapshot(), watch.snapshotTtl());
    } catch (err) {
      this.logger.error({ err }, 'undelivered: leaving the waiting checks for the next run');
    }
  }

  // ---- LinkSink: what the listeners and links call ----

  admit(info: AdmitInfo): Admission | Promise<Admission> {
    return this.admission.admit(info, this.closing !== undefined);
  }

  onOpen(link: Link, info: LinkInfo): void {
    let codec: Codec | undefined = jsonCodec;
    // An MQTT client: a codec of its own (MQTT needs per-connection state), its CONNECT the hello.
    if (info.protocol === 'mqtt') codec = new MqttCodec(this.wills);
    else if (info.transport === 'ws') {
      const name = info.protocol ? CODEC_BY_SUBPROTOCOL[info.protocol] : (info.query.get('codec') ?? 'json');
      codec = name ? getCodec(name) : undefined;
    }
    const id = `${this.nodeId}-${(++this.nextId).toString(36)}`;
    const conn = new Connection(id, link, codec ?? jsonCodec, this, Math.floor(this.clock.now()));
    link.owner = conn;
    this.connections.add(conn);
    if (!this.admission.opened(link.remoteAddress)) {
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
        this.wheel.start(conn, this.options.handshakeTimeout);
        const meta = { transport: 'ws' as const, remoteAddress: link.remoteAddress, headers: info.headers };
        authenticate(this, conn, upgradeToken(info.query, info.headers), meta);
      }
      return;
    }
    this.wheel.start(conn, this.options.handshakeTimeout);
    if (info.transport === 'http' && info.protocol === 'stream') {
      // A one-way stream sends nothing: its hello comes from its URL.
      const { hello: env, oneWay } = oneWayHello(info.query, info.headers);
      conn.oneWay = oneWay;
      hello(this, conn, env);
    }
  }

  /** A WebSocket ping or pong: life, like any frame (PROTOCOL.md, section 5). */
  onLife(link: Link): void {
    const conn = link.owner as Connection;
    if (conn.state === 'open') conn.lastRecv = Math.floor(this.clock.now());
  }

  onPacket(link: Link, payload: Uint8Array): void {
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
    const perUser = this.options.userRateLimit;
    const ub = conn.userBucket;
    if (ub !== undefined && perUser !== undefined && !takeToken(ub, perUser, now)) {
      this.logger.warn({ conn: conn.id, user: conn.user, remote: conn.remoteAddress }, 'user rate limited');
      this.disconnect(conn, 'rate_limited', `the user's connections sent more than ${perUser.rate} frames/s`);
      return;
    }
    if (state === 'auth') {
      // Reading pauses while the validate hook runs: nothing should arrive.
      this.disconnect(conn, 'protocol_error', 'a frame arrived during authentication');
      return;
    }
    let env: Envelope;
    try {
      env = conn.codec.decode(payload);
    } catch (err) {
      // Before the hello, anything that is not a hello is a bad hello (PROTOCOL.md, section 4).
      if (state === 'handshake')
        this.disconnect(conn, 'bad_hello', `the first frame must be a hello: ${(err as Error).message}`);
      else this.protocolError(conn, err);
      return;
    }
    if (state === 'handshake') {
      if (env.kind === 'hello') hello(this, conn, env);
      else this.disconnect(conn, 'bad_hello', `the first frame must be hello, got ${env.kind}`);
      return;
    }
    this.route(conn, env);
  }

  onPacketError(link: Link, err: Error): void {
    const conn = link.owner as Connection;
    const name = disconnectOf(err);
    if (name === 'slow_consumer') {
      this.slowConsumer(conn, err.message);
      return;
    }
    this.protocolError(conn, err, name);
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
    this.admission.closed(link.remoteAddress);
    this.lingering.delete(conn);
    if (conn.state !== 'closed') {
      // TCP has no close handshake: a peer that ends without `bye` dropped its link (and may resume).
      const lost = code === 1006 || (code === 1000 && link.transport === 'tcp');
      this.finish(conn, {
        code: lost ? 1006 : code,
        name: lost ? 'connection_lost' : disconnectName(code),
        reason,
        reconnect: lost || shouldReconnect(code),
      });
    }
    this.checkDrained();
  }

  // ---- ConnectionOwner: what connections and their timers call ----

  internLabel(label: string): string {
    return this.hub.intern(label);
  }

  rearm(conn: Connection, delayMs: number): void {
    if (conn.state !== 'closed') this.wheel.start(conn, delayMs);
  }

  /**
   * Close `conn` with a code from the disconnect table. The connection is gone for the
   * application at once (disconnect event, hub, stats); its socket gets a kick frame and up to
   * closeTimeout to finish closing.
   */
  disconnect(conn: Connection, name: DisconnectName, reason?: string): void {
    this.release(conn, disconnectInfo(name, reason), true);
  }

  countOut(messages = 1): void {
    this.counters.messagesOut += messages;
  }

  dropped(_conn: Connection, messages = 1): void {
    this.counters.pushesDropped += messages;
  }

  overWater(conn: Connection): void {
    if (conn.slowTimer === undefined && conn.state === 'open') {
      conn.slowTimer = this.wheel.schedule(this.options.slowConsumerTimeout, onSlowCheck, conn);
    }
  }

  /** The slow-consumer deadline of `conn` passed. */
  slowCheck(conn: Connection): void {
    conn.slowTimer = undefined;
    if (conn.state !== 'open' || conn.link.buffered < this.highWaterMark) return;
    this.slowConsumer(conn, undefined);
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

  // ---- HandshakeHost ----

  resume(conn: Connection): ResumeResult | Promise<ResumeResult> {
    return resumeSession(this.resumes, conn, this.options.authorizeSub, (l, subscribed) =>
      this.rejoin(conn, l, subscribed),
    );
  }

  attachDelivery(conn: Connection): void {
    const ow = conn.oneWay;
    // The position a stream's reader came back with acknowledges what it had seen.
    if (ow !== undefined && ow.seen > 0) this.delivery.ackSeen(conn, ow.seen);
    this.delivery.attach(conn);
    if (ow !== undefined && ow.labels.length > 0 && conn.state === 'open') {
      this.route(conn, { kind: 'sub', id: 0, data: { labels: ow.labels } });
    }
  }

  authFailure(): void {
    this.counters.authFailures++;
  }

  refusal(user: string | undefined, token: TokenInfo | undefined): Refusal | undefined {
    if (token?.expiresAt !== undefined && expired(token, this.options.tokenRefresh.grace))
      return { name: 'token_expired', reason: `token expired at ${new Date(token.expiresAt).toISOString()}` };
    return this.denials.check(user, token);
  }

  // ---- RefreshHost ----

  get tokenRefresh(): ResolvedOptions['tokenRefresh'] {
    return this.options.tokenRefresh;
  }

  get authorizeSub(): RefreshHost['authorizeSub'] {
    return this.options.authorizeSub;
  }

  wheelOf(): TimingWheel {
    return this.wheel;
  }

  takeSlot(conn: Connection): boolean {
    if (conn.user === undefined) return true;
    const bucket = this.users.take(conn.user);
    if (bucket === undefined) return false;
    conn.userBucket = bucket;
    return true;
  }

  handlerFailed(conn: Connection, type: string | undefined, error: Error): void {
    this.logger.error({ err: error, conn: conn.id, type }, 'handler failed');
    if (this.events.listenerCount('error') > 0) this.events.emit('error', error, conn);
  }

  /** Registers the connection (hub, keepalive) and emits connect. */
  openConnection(conn: Connection): void {
    conn.state = 'open';
    conn.opened = true;
    this.hub.add(conn);
    this.connections.opened(conn);
    if (conn.labels) for (const label of conn.labels) this.presence.joined(conn, label);
    const ka = this.keepalive;
    // A client that keeps itself alive (MQTT) is first looked at when its own timeout is due.
    if (ka) this.wheel.start(conn, Math.min(ka.interval, conn.codec.keepaliveMs ?? ka.interval));
    else this.wheel.stop(conn);
    if (conn.token?.expiresAt !== undefined) armExpiry(this, conn);
    this.logger.info(
      { conn: conn.id, user: conn.user, transport: conn.transport, remote: conn.remoteAddress },
      'connect',
    );
    this.events.emit('connect', conn);
  }

  /**
   * An MQTT client subscribed: the latest history entry of each label is its retained message,
   * sent on the label's topic with RETAIN set (docs/mqtt.md). It holds the label now, so it may
   * read its history.
   */
  subscribed(conn: Connection, labels: readonly string[]): void {
    const codec = conn.codec;
    if (!(codec instanceof MqttCodec) || !this.history.enabled) return;
    for (const label of labels) {
      this.history.read(label, 1).then(
        (page) => {
          const e = page.messages.at(-1);
          if (e === undefined || conn.state !== 'open' || !conn.has(label)) return;
          const env: Envelope = { kind: 'push', type: e.type, data: e.data };
          conn.deliver(new OutFrame(codec.encodeRetained(label, env), false), 0);
        },
        (err: unknown) =>
          this.logger.warn({ err, conn: conn.id, label }, 'retained message: history read failed'),
      );
    }
  }

  // ---- inside ----

  /**
   * A PUBLISH from an MQTT client, when `mqtt.publish` is set: also pushed to the topic's label
   * if the policy lets it, then handled as any message or request. A QoS 1 PUBLISH that went to
   * subscribers and has no handler is answered with success (its PUBACK).
   */
  private mqttPublish(
    conn: Connection,
    env: Envelope,
    policy: NonNullable<MqttListenOptions['publish']>,
  ): void {
    const topic = env.type as string;
    // The policy and the push are work in flight for the connection, bounded as its requests are.
    if (conn.pending >= this.maxPendingRequests) {
      if (env.kind === 'req')
        reply(
          this,
          conn,
          env.id as number,
          undefined,
          new PylonError('TOO_MANY_REQUESTS', 'too many publishes in flight'),
        );
      else this.logger.warn({ conn: conn.id, topic }, 'mqtt publish dropped: too many in flight');
      return;
    }
    conn.pending++;
    // What happened to the push to subscribers: 'sent', 'not' (the policy said no), or its error.
    const forward = async (): Promise<'sent' | 'not' | { err: unknown }> => {
      let ok: boolean;
      try {
        ok = (await policy(conn, topic)) === true;
      } catch (err) {
        this.logger.warn({ err, conn: conn.id, topic }, 'mqtt.publish policy failed');
        return 'not';
      }
      if (!ok) return 'not';
      try {
        await this.push({ labels: { all: [topic] } }, topic, env.data, {});
        return 'sent';
      } catch (err) {
        return { err };
      }
    };
    void forward().then((r) => {
      conn.pending--;
      if (conn.state !== 'open') return;
      if (env.kind === 'msg') {
        if (typeof r === 'object')
          this.logger.warn({ err: r.err, conn: conn.id, topic }, 'mqtt publish to subscribers failed');
        dispatchMessage(this, conn, env);
      } else if (typeof r === 'object') reply(this, conn, env.id as number, undefined, r.err);
      else if (r === 'sent' && !this.router.has(topic))
        reply(this, conn, env.id as number, undefined, undefined);
      else dispatchRequest(this, conn, env);
    });
  }

  /** An MQTT client's last will, on a close it did not ask for: through the same policy. */
  private mqttWill(conn: Connection, will: { topic: string; data: unknown }): void {
    const policy = this.options.mqtt?.publish;
    if (policy === undefined) return;
    Promise.resolve()
      .then(() => policy(conn, will.topic))
      .then((ok) =>
        ok === true ? this.push({ labels: { all: [will.topic] } }, will.topic, will.data, {}) : undefined,
      )
      .catch((err: unknown) =>
        this.logger.warn({ err, conn: conn.id, topic: will.topic }, 'mqtt last will not sent'),
      );
  }

  private route(conn: Connection, env: Envelope): void {
    const mqttPolicy = this.mqttPolicy;
    if (
      mqttPolicy !== undefined &&
      (env.kind === 'msg' || env.kind === 'req') &&
      conn.codec instanceof MqttCodec
    ) {
      this.mqttPublish(conn, env, mqttPolicy);
      return;
    }
    switch (env.kind) {
      case 'req':
        if (this.taps.active && conn.user !== undefined) this.taps.inbound(conn.id, conn.user, env);
        if (this.tracing === undefined) dispatchRequest(this, conn, env);
        else dispatchRequest(this, conn, env, this.requestSpan(this.tracing, conn, env));
        return;
      case 'msg':
        if (this.taps.active && conn.user !== undefined) this.taps.inbound(conn.id, conn.user, env);
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

  private requestSpan(tr: Tracing, conn: Connection, env: Envelope): Span {
    const attributes: Attributes = { 'pylon.request.type': env.type ?? '', 'pylon.connection': conn.id };
    if (conn.user !== undefined) attributes['pylon.user'] = conn.user;
    return tr.start('pylon.request', attributes, ROOT_CONTEXT, SpanKind.SERVER);
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

  /** Its buffer is full: a kick would never arrive. Free the memory now. */
  private slowConsumer(conn: Connection, why: string | undefined): void {
    if (conn.state === 'closed') return;
    this.counters.slowConsumers++;
    this.logger.warn(
      { conn: conn.id, user: conn.user, remote: conn.remoteAddress, buffered: conn.link.buffered, why },
      'slow consumer',
    );
    this.release(conn, disconnectInfo('slow_consumer', why), false);
    conn.link.destroy();
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
    this.wheel.stop(conn);
    conn.slowTimer?.cancel();
    conn.slowTimer = undefined;
    if (conn.token?.expiresAt !== undefined) disarmExpiry(conn);
    this.connections.delete(conn);
    const wasIndexed = this.hub.has(conn);
    this.hub.remove(conn);
    if (wasIndexed && conn.labels) for (const label of conn.labels) this.presence.left(conn, label);
    this.delivery.detach(conn);
    if (conn.userBucket !== undefined) {
      conn.userBucket = undefined;
      this.users.give(conn.user as string);
    }
    if (conn.session !== undefined && conn.opened && info.reconnect) this.resumes?.save(conn);
    const fields = { conn: conn.id, user: conn.user, code: info.code, name: info.name, reason: info.reason };
    if (conn.opened) this.logger.info(fields, info.name === 'kicked' ? 'kick' : 'disconnect');
    else this.logger.debug(fields, 'closed before connect');
    if (conn.opened) this.events.emit('disconnect', conn, info);
    const codec = conn.codec;
    if (codec instanceof MqttCodec && codec.will !== undefined) {
      if (conn.opened && info.name !== 'normal') this.mqttWill(conn, codec.will);
      codec.dropWill();
    }
  }

  private checkDrained(): void {
    if (this.onEmpty && this.connections.size === 0 && this.lingering.size === 0) this.onEmpty();
  }

  private protocolError(conn: Connection, err: unknown, name?: DisconnectName): void {
    const message = err instanceof Error ? err.message : String(err);
    const reason = name ?? (disconnectOf(err as Error) as DisconnectName);
    this.logger.info(
      { conn: conn.id, remote: conn.remoteAddress, err: message, name: reason },
      'protocol error',
    );
    this.disconnect(conn, reason, message);
  }
}

function onSlowCheck(conn: Connection): void {
  (conn.owner as GatewayCore).slowCheck(conn);
}

/** What a push is addressed to, for its span. */
function targetKind(t: Target): string {
  if ('user' in t) return 'user';
  if ('users' in t) return 'users';
  if ('connection' in t) return 'connection';
  if ('labels' in t) return 'labels';
  return 'all';
}

function fanoutBacklog(b: { queued: number; ms: number }): { queued: number; backlogMs: number } {
  return { queued: b.queued, backlogMs: b.ms };
}
