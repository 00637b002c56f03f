import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import type { DeliveryOptions } from '../delivery/delivery.js';
import { DEFAULT_DELIVERY } from '../delivery/delivery.js';
import type { Logger } from '../log/logger.js';
import { createLogger } from '../log/logger.js';
import { DEFAULT_MAX_WILL, DEFAULT_MAX_WILL_TOTAL } from '../mqtt/codec.js';
import { DEFAULT_BUDGET_LIMITS } from '../net/budget.js';
import type { TlsFiles } from '../net/tls.js';
import { DEFAULT_DEFLATE, type DeflateOptions } from '../net/ws-deflate.js';
import { DEFAULT_MAX_FRAME } from '../protocol/framing.js';
import type { MessageStore } from '../store/store.js';
import type { Clock } from '../timer/clock.js';
import { Tracing, type TracingOption } from '../trace/tracing.js';
import type { Validator } from './auth.js';
import type { ClusterLink } from './cluster-link.js';
import type { Connection } from './connection.js';
import { DEFAULT_MAX_DENIALS } from './denials.js';
import { DEFAULT_HISTORY_LIMITS, type HistoryLimits, type HistoryRule } from './history.js';
import { DEFAULT_LABEL_LIMITS, type LabelLimits } from './labels.js';
import type { PresenceRule } from './presence.js';
import type { ResumeOptions } from './resume.js';
import type { KeepaliveOptions, RateLimitOptions } from './settings.js';
import { DEFAULT_TOKEN_REFRESH, type TokenRefreshOptions } from './token-refresh.js';
import { VERSION } from './version.js';

export type { KeepaliveOptions, RateLimitOptions } from './settings.js';

export interface ListenOptions {
  /** 0 picks a free port. */
  port: number;
  /** Default 127.0.0.1. */
  host?: string;
  /** Certificate and key files: the listener speaks TLS (tls://, wss://). */
  tls?: TlsFiles;
}

export interface WsListenOptions extends ListenOptions {
  /** Path that accepts WebSocket upgrades. Default "/ws". */
  path?: string;
  /** Serves plain HTTP requests on the WebSocket port (pages, health). Default: 404. */
  httpHandler?: (req: IncomingMessage, res: ServerResponse) => void;
  /** Allowed `Origin` headers (exact, e.g. "https://app.example.com"); others get 403 before the upgrade. Default: any. */
  origins?: string[];
  /**
   * Called before the upgrade, so a refused client costs no WebSocket state: true to accept,
   * false for 403, or a status and reason.
   */
  verify?: (request: {
    remoteAddress: string;
    headers: IncomingHttpHeaders;
  }) => boolean | { status: number; reason: string } | Promise<boolean | { status: number; reason: string }>;
  /**
   * permessage-deflate for clients that offer it: `true`, or `{ threshold, level,
   * clientMaxWindowBits }` (defaults 1024 bytes, 1, 10). Off by default. A broadcast is compressed
   * once for every compressing connection (the server keeps no context between messages).
   */
  compression?: boolean | Partial<DeflateOptions>;
  /**
   * Pylon over HTTP on the same port, for networks that break WebSocket (the SDK falls back to
   * it): sessions at `path` (POST; default "/http"), one-way streams at `streamPath` (GET;
   * default "/stream", "" for none). `false` turns both off. On by default.
   */
  http?: false | Partial<HttpOptions>;
}

export interface HttpOptions {
  path: string;
  streamPath: string;
  /** Largest POST body, bytes. Default: maxFrame + 64 KiB. */
  maxPost: number;
  /** POSTs to one session per second, and their burst. Default 50/s, burst 100. */
  postRate: { rate: number; burst: number };
  /** Open HTTP streams of the process (sessions and one-way streams). Default 10,000. */
  maxStreams: number;
}

/** The MQTT listener (docs/mqtt.md). */
export interface MqttListenOptions extends ListenOptions {
  /**
   * Which PUBLISHes from MQTT clients (and their last wills) also go to the topic's subscribers,
   * as a qos-0 push to the label of that name with the topic as its type: true lets it through.
   * Default: none do (a PUBLISH goes to the topic's handler only).
   */
  publish?: (connection: Connection, topic: string) => boolean | Promise<boolean>;
  /** Largest last will (topic and payload) a connection may leave, bytes. Default 4 KiB. */
  maxWill?: number;
  /** Bytes of last wills the gateway holds in all; a CONNECT past it is refused (0x97). Default 16 MiB. */
  maxWillTotal?: number;
}

export interface GatewayOptions {
  /** TCP listener with Pylon framing. Omit for none. */
  tcp?: ListenOptions;
  /** WebSocket listener. Omit for none. */
  ws?: WsListenOptions;
  /**
   * MQTT 3.1.1 and 5.0 listener (docs/mqtt.md): MQTT clients as connections of the same hub,
   * CONNECT through `validate`, topics as labels. Omit for none.
   */
  mqtt?: MqttListenOptions;
  /**
   * Largest frame (TCP) or message (WebSocket) a client may send, in bytes. Default 64 KiB
   * (Centrifugo's limit too): what clients send a gateway is small, and every byte a client may
   * announce is one an attacker may make the server hold. Pushes to clients are not limited by it.
   */
  maxFrame?: number;
  /**
   * Bytes of unfinished frames all connections of the process may hold together; over it the
   * connections holding the most are closed with `buffers_full` (4008). Process-wide: the last
   * gateway or framework server to listen sets it. Default 64 MiB.
   */
  maxPartialBytes?: number;
  /** A frame (WebSocket: a message) that has begun must be whole within this long, or the connection is closed with `frame_timeout` (4009), ms. Default 15 s. */
  frameTimeout?: number;
  /** Bytes queued for writing on all connections of the process together; over it the largest are closed as slow consumers. Process-wide, like maxPartialBytes. Default 512 MiB. */
  maxOutboundBytes?: number;
  /** Proxies (IP addresses, or CIDR ranges such as "10.244.0.0/16") whose X-Forwarded-For / X-Real-IP give a WebSocket client's address (for limits per address, logs, the validate hook). Default: none. */
  trustedProxies?: string[];
  /** Keepalive by server pings; `false` turns it off. Defaults suit mobile networks: 30 s / 75 s. */
  keepalive?: Partial<KeepaliveOptions> | false;
  /** TCP: time to complete `hello`; WS: time to complete the upgrade request (ms). Default 10 s. */
  handshakeTimeout?: number;
  /**
   * Per-connection outgoing buffer, in bytes, above which qos-0 pushes to it are dropped and the
   * slow-consumer clock starts (slowConsumerTimeout). Default 1 MiB.
   */
  highWaterMark?: number;
  /**
   * Hard cap on one connection's outgoing buffer: a write while over it (responses, pongs and
   * qos-1 pushes are never dropped) closes the connection at once as a slow consumer. Default
   * 4 × highWaterMark.
   */
  maxBuffered?: number;
  /** Connections this process holds at most; more are refused (TCP: closed, WS: 503). Default 100,000. */
  maxConnections?: number;
  /** Connections one remote address may hold; more are refused (WS: 429). Default 10,000. */
  maxConnectionsPerIp?: number;
  /**
   * Connections one user may hold on this process at once (whatever their addresses); one more is
   * closed at its handshake with `too_many_user_connections` (4010). Default 100.
   */
  maxConnectionsPerUser?: number;
  /** Inbound frames per connection (token bucket); over it the connection is closed with `rate_limited` (4006). `false`: no limit. Default 1000/s, burst 2000. */
  rateLimit?: RateLimitOptions | false;
  /**
   * Inbound frames of all the connections of one user on this process together (one token bucket
   * per user, apart from `rateLimit`); the connection whose frame is over it is closed with
   * `rate_limited` (4006). `false`: no limit. Default 2000/s, burst 4000.
   */
  userRateLimit?: RateLimitOptions | false;
  /**
   * Tokens with an expiry (`identity.token.expiresAt`): the client is asked for a new one `lead`
   * ms before it (a `$refresh` push; the SDK calls its `getToken`), and the connection is closed
   * with `token_expired` (4011) `grace` ms after it if none came. Default lead 30 s, grace 0.
   */
  tokenRefresh?: TokenRefreshOptions;
  /** Bans and token revocations in force at once; one more is refused (TOO_MANY_REQUESTS). Default 100,000. */
  maxDenials?: number;
  /**
   * `sub`/`unsub` frames per connection (token bucket), apart from `rateLimit`: each change of
   * labels may announce presence to every member. Over it the frame is answered
   * TOO_MANY_REQUESTS. `false`: no limit. Default 10/s, burst 50.
   */
  subRateLimit?: RateLimitOptions | false;
  /** Requests of one connection that may run at once; more are answered TOO_MANY_REQUESTS. Default 256. */
  maxPendingRequests?: number;
  /** Time a closing connection has to finish its close before it is destroyed (ms). Default 5 s. */
  closeTimeout?: number;
  /**
   * Authentication: checks the token (WS `?token=` or `Authorization: Bearer`, TCP `hello`) and
   * returns the identity. Without it connections are anonymous (no user) and anyone may connect.
   */
  validate?: Validator;
  /**
   * May this connection join (`sub`) or leave (`unsub`) this label on its own request, or read
   * its presence and history (`read`; members of the label may always read)? Without this hook
   * every client `sub`/`unsub` is refused with FORBIDDEN.
   */
  authorizeSub?: (
    connection: Connection,
    label: string,
    action: 'sub' | 'unsub' | 'read',
  ) => boolean | Promise<boolean>;
  /** Labels whose members are told when a user joins or leaves (`presence.join` / `presence.leave` pushes). */
  presence?: PresenceRule;
  /** Labels that keep their last pushes for clients to read (`$history`). */
  history?: HistoryRule[];
  /** What all histories together may hold: labels, bytes, and how long one of a label nobody holds is kept. */
  historyLimits?: Partial<HistoryLimits>;
  /** A second login of the same user: keep both ("allow", multi-device) or close the older with `replaced` ("replace"). Default "allow". */
  duplicateLogin?: 'allow' | 'replace';
  /** A connection whose outgoing buffer stays over highWaterMark this long is closed as `slow_consumer` (ms). Default 10 s. */
  slowConsumerTimeout?: number;
  /** Connections written per event-loop turn during a fan-out. Default 1000. */
  fanoutChunk?: number;
  /** Process-wide ceiling on connections written per second by fan-outs (flow control). Default: none. */
  fanoutCeiling?: number;
  /**
   * Backpressure on broadcasts: a qos-0 push to more than a chunk of connections is refused with
   * TOO_MANY_REQUESTS (HTTP 429 from the admin API) while the fan-outs already waiting would take
   * longer than this to write, ms; `false` for no bound but the count of waiting deliveries.
   * Default 100: a business that pushes faster than the sockets drain is told so, instead of
   * every later push reaching its clients later.
   */
  fanoutMaxBacklog?: number | false;
  /** Most labels one connection may have (identity, client `sub`s and the application's joins). Default 128. */
  maxLabels?: number;
  /** Characters (UTF-16 code units) of one connection's labels together. Default 4096. */
  maxLabelChars?: number;
  /** Distinct labels this process holds; a join that would create more is refused. Default 250,000. */
  maxLabelsTotal?: number;
  /** Connection-label pairs this process holds. Default 5,000,000. */
  maxLabelMemberships?: number;
  /**
   * Where qos-1 messages wait for their ack (store-then-send). Default: an in-memory store
   * (volatile: lost on restart); use a SqliteStore or RedisStore for durability.
   */
  store?: MessageStore;
  /** qos-1 redelivery, TTL and window. */
  delivery?: Partial<DeliveryOptions>;
  /** Resume after a flash disconnect; `false` turns it off. */
  resume?: Partial<ResumeOptions> | false;
  /**
   * The name under which this gateway leaves its state in the store (SQLite, Redis) when it
   * stops cleanly — the qos-0 journal resumed sessions replay from, and the pending undelivered
   * checks — for its next run to go on with. Not used in a cluster. Gateways that share a store
   * without a cluster need different names. Default "gateway".
   */
  stateName?: string;
  /** Join a cluster of gateways (see src/cluster): pushes, kicks and label changes reach every node. */
  cluster?: ClusterLink;
  /** Default: pino at level "info" on stderr. */
  logger?: Logger;
  /** Time source for every deadline (tests pass a FakeClock). */
  clock?: Clock;
  /** Resolution of the timing wheel (ms). Default 10. */
  tickMs?: number;
  /**
   * OpenTelemetry: a Tracer or TracerProvider (from `@opentelemetry/api`) that gets the gateway's
   * spans — pushes (accept, store, fan-out, delivery per node), requests, qos-1 delivery up to the
   * ack. Off by default; off, no span is made and nothing is looked up.
   */
  tracing?: TracingOption;
}

export interface ResolvedOptions {
  tcp: (Required<Omit<ListenOptions, 'tls'>> & Pick<ListenOptions, 'tls'>) | undefined;
  mqtt:
    | (Required<Omit<ListenOptions, 'tls'>> &
        Pick<MqttListenOptions, 'tls' | 'publish'> & { maxWill: number; maxWillTotal: number })
    | undefined;
  ws:
    | (Required<
        Omit<WsListenOptions, 'httpHandler' | 'tls' | 'origins' | 'verify' | 'compression' | 'http'>
      > &
        Pick<WsListenOptions, 'httpHandler' | 'tls' | 'origins' | 'verify'> & {
          compression: DeflateOptions | undefined;
          http: HttpOptions | undefined;
        })
    | undefined;
  maxConnections: number;
  maxConnectionsPerIp: number;
  maxConnectionsPerUser: number;
  rateLimit: RateLimitOptions | undefined;
  userRateLimit: RateLimitOptions | undefined;
  maxDenials: number;
  tokenRefresh: Required<TokenRefreshOptions>;
  budgets: { maxPartialBytes: number; frameTimeout: number; maxOutboundBytes: number };
  trustedProxies: string[];
  maxBuffered: number;
  subRateLimit: RateLimitOptions | undefined;
  maxFrame: number;
  keepalive: KeepaliveOptions | undefined;
  handshakeTimeout: number;
  highWaterMark: number;
  maxPendingRequests: number;
  closeTimeout: number;
  validate: Validator | undefined;
  authorizeSub: GatewayOptions['authorizeSub'];
  presence: PresenceRule | undefined;
  history: HistoryRule[];
  historyLimits: HistoryLimits;
  duplicateLogin: 'allow' | 'replace';
  slowConsumerTimeout: number;
  fanoutChunk: number;
  fanoutCeiling: number | undefined;
  fanoutMaxBacklog: number | undefined;
  labels: LabelLimits;
  store: MessageStore | undefined;
  delivery: DeliveryOptions;
  resume: ResumeOptions | undefined;
  stateName: string;
  cluster: ClusterLink | undefined;
  logger: Logger;
  clock: Clock | undefined;
  tracing: Tracing | undefined;
  tickMs: number;
}

export const DEFAULT_KEEPALIVE: KeepaliveOptions = { interval: 30_000, timeout: 75_000 };

function positive(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isFinite(value) || value <= 0) {
    throw new RangeError(`option ${name} must be a positive number, got ${String(value)}`);
  }
  return value;
}

function httpOptions(h: WsListenOptions['http'], maxFrame: number): HttpOptions | undefined {
  if (h === false) return undefined;
  const o = h ?? {};
  const path = o.path ?? '/http';
  const streamPath = o.streamPath ?? '/stream';
  if (!path.startsWith('/') || path.length < 2)
    throw new RangeError(`option ws.http.path must start with "/", got "${path}"`);
  if (streamPath !== '' && !streamPath.startsWith('/'))
    throw new RangeError(`option ws.http.streamPath must start with "/" (or be ""), got "${streamPath}"`);
  return {
    path,
    streamPath,
    maxPost: positive('ws.http.maxPost', o.maxPost, maxFrame + 64 * 1024),
    postRate: {
      rate: positive('ws.http.postRate.rate', o.postRate?.rate, 50),
      burst: positive('ws.http.postRate.burst', o.postRate?.burst, 100),
    },
    maxStreams: positive('ws.http.maxStreams', o.maxStreams, 10_000),
  };
}

function deflateOptions(c: WsListenOptions['compression']): DeflateOptions | undefined {
  if (c === undefined || c === false) return undefined;
  const o = c === true ? {} : c;
  const level = o.level ?? DEFAULT_DEFLATE.level;
  const bits = o.clientMaxWindowBits ?? DEFAULT_DEFLATE.clientMaxWindowBits;
  if (!Number.isInteger(level) || level < 0 || level > 9)
    throw new RangeError(`option ws.compression.level must be an integer from 0 to 9, got ${String(level)}`);
  if (!Number.isInteger(bits) || bits < 9 || bits > 15)
    throw new RangeError(
      `option ws.compression.clientMaxWindowBits must be from 9 to 15, got ${String(bits)}`,
    );
  return {
    threshold: nonNegative('ws.compression.threshold', o.threshold, DEFAULT_DEFLATE.threshold),
    level,
    clientMaxWindowBits: bits,
  };
}

function nonNegative(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isFinite(value) || value < 0) {
    throw new RangeError(`option ${name} must be a number of 0 or more, got ${String(value)}`);
  }
  return value;
}

function oneOf<T extends string>(name: string, value: T | undefined, allowed: readonly T[], fallback: T): T {
  if (value === undefined) return fallback;
  if (!allowed.includes(value))
    throw new RangeError(`option ${name} must be one of ${allowed.join(', ')}, got ${String(value)}`);
  return value;
}

function port(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 0 || value > 65535) {
    throw new RangeError(`option ${name} must be a port number 0-65535, got ${String(value)}`);
  }
  return value;
}

/** Fills defaults and rejects impossible values with a message that names the option. */
export function resolveOptions(o: GatewayOptions): ResolvedOptions {
  let keepalive: KeepaliveOptions | undefined;
  if (o.keepalive !== false) {
    const interval = positive('keepalive.interval', o.keepalive?.interval, DEFAULT_KEEPALIVE.interval);
    const timeout = positive(
      'keepalive.timeout',
      o.keepalive?.timeout,
      Math.max(DEFAULT_KEEPALIVE.timeout, interval),
    );
    if (timeout < interval) {
      throw new RangeError(
        `option keepalive.timeout (${timeout}) must not be less than keepalive.interval (${interval})`,
      );
    }
    keepalive = { interval, timeout };
  }
  return {
    tcp: o.tcp
      ? { port: port('tcp.port', o.tcp.port), host: o.tcp.host ?? '127.0.0.1', tls: o.tcp.tls }
      : undefined,
    mqtt: o.mqtt
      ? {
          port: port('mqtt.port', o.mqtt.port),
          host: o.mqtt.host ?? '127.0.0.1',
          tls: o.mqtt.tls,
          publish: o.mqtt.publish,
          maxWill: positive('mqtt.maxWill', o.mqtt.maxWill, DEFAULT_MAX_WILL),
          maxWillTotal: positive('mqtt.maxWillTotal', o.mqtt.maxWillTotal, DEFAULT_MAX_WILL_TOTAL),
        }
      : undefined,
    ws: o.ws
      ? {
          port: port('ws.port', o.ws.port),
          host: o.ws.host ?? '127.0.0.1',
          path: o.ws.path ?? '/ws',
          httpHandler: o.ws.httpHandler,
          tls: o.ws.tls,
          origins: o.ws.origins,
          verify: o.ws.verify,
          compression: deflateOptions(o.ws.compression),
          http: httpOptions(o.ws.http, positive('maxFrame', o.maxFrame, DEFAULT_MAX_FRAME)),
        }
      : undefined,
    maxFrame: positive('maxFrame', o.maxFrame, DEFAULT_MAX_FRAME),
    budgets: {
      maxPartialBytes: positive('maxPartialBytes', o.maxPartialBytes, DEFAULT_BUDGET_LIMITS.maxPartialBytes),
      frameTimeout: positive('frameTimeout', o.frameTimeout, DEFAULT_BUDGET_LIMITS.frameTimeout),
      maxOutboundBytes: positive(
        'maxOutboundBytes',
        o.maxOutboundBytes,
        DEFAULT_BUDGET_LIMITS.maxOutboundBytes,
      ),
    },
    trustedProxies: o.trustedProxies ?? [],
    maxBuffered: positive('maxBuffered', o.maxBuffered, 4 * (o.highWaterMark ?? 1024 * 1024)),
    maxConnections: Math.floor(positive('maxConnections', o.maxConnections, 100_000)),
    maxConnectionsPerIp: Math.floor(positive('maxConnectionsPerIp', o.maxConnectionsPerIp, 10_000)),
    maxConnectionsPerUser: Math.floor(positive('maxConnectionsPerUser', o.maxConnectionsPerUser, 100)),
    userRateLimit:
      o.userRateLimit === false
        ? undefined
        : {
            rate: positive('userRateLimit.rate', o.userRateLimit?.rate, 2000),
            burst: positive('userRateLimit.burst', o.userRateLimit?.burst, 4000),
          },
    maxDenials: Math.floor(positive('maxDenials', o.maxDenials, DEFAULT_MAX_DENIALS)),
    tokenRefresh: {
      lead: positive('tokenRefresh.lead', o.tokenRefresh?.lead, DEFAULT_TOKEN_REFRESH.lead),
      grace: nonNegative('tokenRefresh.grace', o.tokenRefresh?.grace, DEFAULT_TOKEN_REFRESH.grace),
    },
    rateLimit:
      o.rateLimit === false
        ? undefined
        : {
            rate: positive('rateLimit.rate', o.rateLimit?.rate, 1000),
            burst: positive('rateLimit.burst', o.rateLimit?.burst, 2000),
          },
    subRateLimit:
      o.subRateLimit === false
        ? undefined
        : {
            rate: positive('subRateLimit.rate', o.subRateLimit?.rate, 10),
            burst: positive('subRateLimit.burst', o.subRateLimit?.burst, 50),
          },
    keepalive,
    handshakeTimeout: positive('handshakeTimeout', o.handshakeTimeout, 10_000),
    highWaterMark: positive('highWaterMark', o.highWaterMark, 1024 * 1024),
    maxPendingRequests: positive('maxPendingRequests', o.maxPendingRequests, 256),
    closeTimeout: positive('closeTimeout', o.closeTimeout, 5_000),
    validate: o.validate,
    authorizeSub: o.authorizeSub,
    presence: o.presence,
    history: o.history ?? [],
    historyLimits: {
      labels: Math.floor(
        positive('historyLimits.labels', o.historyLimits?.labels, DEFAULT_HISTORY_LIMITS.labels),
      ),
      bytes: Math.floor(
        positive('historyLimits.bytes', o.historyLimits?.bytes, DEFAULT_HISTORY_LIMITS.bytes),
      ),
      idleTtl: positive('historyLimits.idleTtl', o.historyLimits?.idleTtl, DEFAULT_HISTORY_LIMITS.idleTtl),
    },
    duplicateLogin: oneOf('duplicateLogin', o.duplicateLogin, ['allow', 'replace'] as const, 'allow'),
    slowConsumerTimeout: positive('slowConsumerTimeout', o.slowConsumerTimeout, 10_000),
    fanoutChunk: Math.floor(positive('fanoutChunk', o.fanoutChunk, 1000)),
    fanoutCeiling: o.fanoutCeiling === undefined ? undefined : positive('fanoutCeiling', o.fanoutCeiling, 0),
    fanoutMaxBacklog:
      o.fanoutMaxBacklog === false ? undefined : positive('fanoutMaxBacklog', o.fanoutMaxBacklog, 100),
    labels: {
      perConnection: Math.floor(positive('maxLabels', o.maxLabels, DEFAULT_LABEL_LIMITS.perConnection)),
      chars: Math.floor(positive('maxLabelChars', o.maxLabelChars, DEFAULT_LABEL_LIMITS.chars)),
      distinct: Math.floor(positive('maxLabelsTotal', o.maxLabelsTotal, DEFAULT_LABEL_LIMITS.distinct)),
      memberships: Math.floor(
        positive('maxLabelMemberships', o.maxLabelMemberships, DEFAULT_LABEL_LIMITS.memberships),
      ),
    },
    store: o.store,
    delivery: resolveDelivery(o.delivery ?? {}),
    resume: resolveResume(o.resume),
    stateName: stateName(o.stateName),
    cluster: o.cluster,
    logger: o.logger ?? createLogger('info'),
    clock: o.clock,
    tracing: o.tracing === undefined ? undefined : new Tracing(o.tracing, VERSION),
    tickMs: positive('tickMs', o.tickMs, 10),
  };
}

function resolveDelivery(d: Partial<DeliveryOptions>): DeliveryOptions {
  const D = DEFAULT_DELIVERY;
  return {
    ttl: positive('delivery.ttl', d.ttl, D.ttl),
    redeliveryBase: positive('delivery.redeliveryBase', d.redeliveryBase, D.redeliveryBase),
    redeliveryMax: positive('delivery.redeliveryMax', d.redeliveryMax, D.redeliveryMax),
    redeliveryCap: Math.floor(positive('delivery.redeliveryCap', d.redeliveryCap, D.redeliveryCap)),
    window: Math.floor(positive('delivery.window', d.window, D.window)),
    expireEvery: positive('delivery.expireEvery', d.expireEvery, D.expireEvery),
    batch: Math.floor(positive('delivery.batch', d.batch, D.batch)),
    undeliveredAfter: positive('delivery.undeliveredAfter', d.undeliveredAfter, D.undeliveredAfter),
    maxWatched: Math.floor(positive('delivery.maxWatched', d.maxWatched, D.maxWatched)),
  };
}

function stateName(name: string | undefined): string {
  if (name === undefined) return 'gateway';
  if (typeof name !== 'string' || name === '' || name.length > 200)
    throw new Error(`stateName must be a name of 1 to 200 characters, got ${JSON.stringify(name)}`);
  return name;
}

function resolveResume(r: Partial<ResumeOptions> | false | undefined): ResumeOptions | undefined {
  if (r === false) return undefined;
  const window = positive('resume.window', r?.window, 120_000);
  return {
    window,
    historySize: Math.floor(positive('resume.historySize', r?.historySize, 10_000)),
    historyAge: positive('resume.historyAge', r?.historyAge, window),
    maxSessions: Math.floor(positive('resume.maxSessions', r?.maxSessions, 100_000)),
    maxSessionsPerUser: Math.floor(positive('resume.maxSessionsPerUser', r?.maxSessionsPerUser, 16)),
    maxSessionsPerAddress: Math.floor(
      positive('resume.maxSessionsPerAddress', r?.maxSessionsPerAddress, 10_000),
    ),
    durable: r?.durable ?? true,
  };
}
