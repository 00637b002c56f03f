import type { AddressInfo } from 'node:net';
import type { StoreHealthStatus } from '../delivery/store-health.js';
import type { DeliveredEvent, UndeliveredEvent } from '../delivery/undelivered.js';
import type { DisconnectInfo } from '../protocol/disconnect.js';
import type { Connection } from './connection.js';

export interface GatewayEvents {
  /** A connection completed its handshake (and authentication) and can send and receive. */
  connect: [connection: Connection];
  /** A connection that had connected is gone; `info` says why (code from the disconnect table). */
  disconnect: [connection: Connection, info: DisconnectInfo];
  /** A handler threw something that is not a PylonError (the client got INTERNAL). */
  error: [error: Error, connection: Connection | undefined];
  /**
   * A qos-1 message was not acknowledged `delivery.undeliveredAfter` ms after it was stored (the
   * user is offline, or did not ack): reported once across the cluster, for a mobile or web push.
   */
  undelivered: [event: UndeliveredEvent];
  /** A message reported `undelivered` was acknowledged after all. */
  delivered: [event: DeliveredEvent];
}

export interface GatewayAddresses {
  tcp?: AddressInfo;
  ws?: AddressInfo;
  mqtt?: AddressInfo;
}

export interface GatewayStats {
  connections: number;
  users: number;
  labels: number;
  messagesIn: number;
  messagesOut: number;
  /** qos-0 pushes dropped because a connection's buffer was over its high-water mark. */
  pushesDropped: number;
  /** Connections closed as slow consumers. */
  slowConsumers: number;
  /** Connections refused by the validate hook. */
  authFailures: number;
  /** Connections refused before they were accepted (limits, origin, verify). */
  refused: number;
  /** qos 1: messages stored, sent, re-sent, acked, and moved aside (expired, over the cap). */
  qos1: {
    stored: number;
    sent: number;
    redelivered: number;
    acked: number;
    deadLetters: number;
    /** Reported `undelivered` by this gateway. */
    undelivered: number;
    /** Of them, acknowledged later (`delivered`). */
    deliveredAfterNotify: number;
    /** Not watched for `undelivered`: the process already watched `delivery.maxWatched`. */
    unwatched: number;
  };
  /** Dropped sessions waiting to be resumed. */
  resumable: number;
  /** The qos-1 store: failing while one of its calls failed in the last 30 s (then /healthz answers 503). */
  store: StoreHealthStatus;
  /** Label histories kept (`$history`): labels and their estimated bytes. */
  history: { labels: number; bytes: number };
  /** Broadcasts waiting to be written: deliveries, the time they would take (ms), pushes refused for it. */
  fanout: { queued: number; backlogMs: number; refused: number };
}

export interface PushOptions {
  /** Per-label payloads: a connection gets the variant of the first of its labels that has one, else `data` (qos 0 only). */
  variants?: Record<string, unknown>;
  /**
   * 0: at most once (default). 1: at least once — stored in each user's inbox before it is
   * sent, re-sent until acked, delivered on connect if the user is offline.
   */
  qos?: 0 | 1;
  /** qos 1: how long the message may wait for its ack (ms). Default: delivery.ttl. */
  ttl?: number;
  /** qos 0: pace the fan-out to this many connections per second (push returns at once). */
  rate?: number;
  /**
   * A key the caller chose (1 to 256 characters): a push repeated with the same key within 24 h
   * is accepted once across the cluster and answered with the first push's result
   * (`duplicate: true`).
   */
  idempotencyKey?: string;
  /**
   * The W3C `traceparent` of the caller's span (tracing on): the push's spans are its children.
   * The admin API takes it from the request's `traceparent` header.
   */
  trace?: string;
}

export interface PushResult {
  /** The push's id (qos 1: the id stored with the message). */
  id: string;
  /** Connections selected by the target (qos 1: the open connections of the users). */
  targeted: number;
  /** qos 1: users the message was stored for (online or not). */
  stored?: number;
  /** A repeat of an idempotency key: nothing was sent, this is the first push's result. */
  duplicate?: true;
  /** Resolves when the fan-out has written to every one of them (large sets are written in chunks). */
  done: Promise<{ delivered: number; dropped: number }>;
}

/** A connection, as the admin API shows it. */
export interface ConnectionInfo {
  id: string;
  user?: string;
  transport: string;
  /** json, msgpack or proto. */
  codec: string;
  remoteAddress: string;
  labels: string[];
  /** ISO 8601. */
  connectedAt: string;
  /** Bytes written to it that the socket has not taken yet. */
  buffered: number;
  device?: string;
  version?: string;
}

export interface UserInfo {
  user: string;
  online: boolean;
  connections: ConnectionInfo[];
}

export interface LabelPage {
  label: string;
  count: number;
  members: Array<{ connection: string; user: string | undefined }>;
  /** Pass as `after` for the next page. */
  next?: string;
}

/** A session one node hands to the others as it goes away: enough to resume it elsewhere. */
export interface HandedSession {
  id: string;
  user?: string;
  /** Labels the application added (they come back on resume). */
  labels: string[];
  /** Labels the client subscribed to (they come back if authorizeSub allows them again). */
  subscribed?: string[];
}
