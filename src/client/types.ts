import type { CodecName } from '../protocol/codec.js';
import type { DisconnectInfo } from '../protocol/disconnect.js';
import type { Clock } from '../timer/clock.js';
import type { BackoffOptions } from './backoff.js';

export interface ReconnectOptions extends BackoffOptions {
  /** Give up after this many failed attempts in a row. Default: never. */
  maxAttempts: number;
}

export interface ClientOptions {
  /** Sent in the WS URL (?token=) and in hello. */
  token?: string;
  /**
   * Gets a fresh token from the application (its auth server). Called when the server asks for
   * one before the current token expires (the connection stays up: the new token is sent with a
   * `$refresh` request), and before reconnecting after the server closed the connection with
   * `token_expired` (4011). Without it, a `token_expired` close is final.
   */
  getToken?: () => string | Promise<string>;
  /** Default "json". */
  codec?: CodecName;
  /** Default time for a request to be answered (ms). Default 10 s. */
  requestTimeout?: number;
  /** Time to open the link and get `welcome` (ms). Default 10 s. */
  connectTimeout?: number;
  /**
   * Send a ping after this long without sending anything (ms). Default 4 min 55 s, under the
   * 5-minute idle cut of mobile networks; lowered to the server's interval from `welcome`.
   */
  heartbeat?: number;
  /** Declare the link dead after this long without receiving anything (ms). Default: the server's timeout from `welcome`, else twice the heartbeat. */
  heartbeatTimeout?: number;
  /** Automatic reconnection; `false` turns it off. */
  reconnect?: Partial<ReconnectOptions> | false;
  /** Requests and messages issued while disconnected: wait for the link ("queue", the default) or fail at once ("fail"). */
  offline?: 'queue' | 'fail';
  /** Most requests/messages waiting for the link. Default 1000. */
  maxQueue?: number;
  /** Largest frame accepted from the server (bytes). Default 16 MiB. */
  maxFrame?: number;
  /** TLS options for tls:// and wss:// URLs (Node only), e.g. `{ ca }` for a private CA. */
  tls?: { ca?: string | Uint8Array; rejectUnauthorized?: boolean };
  /**
   * Offer permessage-deflate on ws:// and wss:// (Node only; browsers always offer it): used if the
   * server has compression on. Default false.
   */
  compression?: boolean;
  /** Extra headers for the WebSocket upgrade (Node only). */
  headers?: Record<string, string>;
  /**
   * On ws:// and wss:// URLs, the transports to try, in order. Default ['websocket', 'http']:
   * when the WebSocket upgrade is refused, fails or does not open within `transportTimeout`,
   * the client goes on over Pylon's HTTP transport on the same host (JSON codec only), with the
   * same requests, pushes, acks, reconnection and resume. `['websocket']` turns the fallback off.
   * An http:// or https:// URL uses the HTTP transport alone.
   */
  transports?: Array<'websocket' | 'http'>;
  /** Time a transport has to open before the next one is tried (ms). Default 3 s. */
  transportTimeout?: number;
  /** The path of the server's HTTP transport (its ws.http.path). Default "/http". */
  httpPath?: string;
  /** Time source (tests pass a FakeClock). */
  clock?: Clock;
  /**
   * The last qos-1 seq this application processed (persisted by it across restarts), so pushes
   * up to it are acked without running the handlers again. Default 0.
   */
  lastSeq?: number;
  /** Random source for backoff jitter (tests pass a fixed one). */
  random?: () => number;
}

export interface RequestOptions {
  /** ms; default: the client's requestTimeout. */
  timeout?: number;
  signal?: AbortSignal;
}

/** What the server said in `welcome`. */
export interface Welcome {
  connection: string;
  server: string;
  codec: CodecName;
  maxFrame: number;
  heartbeat: { interval: number; timeout: number } | null;
  /** The authenticated user, if any. */
  user?: string;
  labels?: string[];
  /** The session id to resume with after a drop (when the server offers resume). */
  session?: string;
  /** This connection resumed the previous session: labels restored, missed pushes replayed. */
  resumed?: boolean;
  /** Every missed qos-0 push was still in the server's history. */
  recovered?: boolean;
  [key: string]: unknown;
}

export interface PushMeta {
  type: string;
  seq: number | undefined;
  qos: 0 | 1;
}

export type PushHandler<T = unknown> = (data: T, meta: PushMeta) => void | Promise<void>;

export interface CloseEvent extends DisconnectInfo {
  /** The client will try to reconnect. */
  willReconnect: boolean;
}

export interface ClientEvents {
  open: [welcome: Welcome];
  close: [event: CloseEvent];
  reconnecting: [event: { attempt: number; delay: number }];
  reconnected: [welcome: Welcome];
  error: [error: Error];
  /** The connection's token was replaced by a fresh one from `getToken` (its new expiry, labels). */
  refreshed: [result: { expiresAt?: number; labels: string[] }];
}

/** Lifecycle event names; pushes of these types cannot be listened to with `on`. */
export const RESERVED_EVENTS: ReadonlySet<string> = new Set([
  'open',
  'close',
  'reconnecting',
  'reconnected',
  'error',
  'refreshed',
]);
