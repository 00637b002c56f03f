import type { AddressInfo } from 'node:net';
import type { Clock } from '../timer/clock.js';
import type { Connection, ConnectionHost } from './connection.js';

/**
 * What the framework's transports (stream, ws, udp) ask of the server: one object per server,
 * reached from each connection's `host`, so socket listeners are module-level functions.
 */
export interface ServerCore<In, Out> extends ConnectionHost<In, Out> {
  readonly clock: Clock;
  /** Largest packet a protocol may ask to buffer, and largest incomplete packet kept. */
  readonly maxPacket: number;
  readonly maxConnections: number;
  /** Trusted reverse proxies (normalized addresses). */
  readonly trusted: ReadonlySet<string>;
  /** Whether the server is shutting down (new connections are refused). */
  readonly stopping: boolean;
  /** Open connections (a new one is refused at maxConnections). */
  readonly connectionCount: number;
  /** Next connection id. */
  nextId(): number;
  /** A new connection is ready: register it, arm its idle deadline, call onConnect. */
  opened(conn: Connection<In, Out>): void;
  /** A packet arrived (before decoding): idle bookkeeping. */
  touch(conn: Connection<In, Out>): void;
  /** A decoded message: to the connection's group, else onMessage. Never throws. */
  deliver(conn: Connection<In, Out>, message: In): void;
  /** input/decode threw: report, answer (errorReply), close with protocol_error or frame_too_large. */
  protocolError(conn: Connection<In, Out>, err: unknown): void;
  /** The outgoing buffer drained below the high-water mark. */
  drained(conn: Connection<In, Out>): void;
  /** The transport is gone: onClose, once. `err`: it failed. */
  closedWire(conn: Connection<In, Out>, err?: Error): void;
  /** A connection was refused (maxConnections or shutting down). */
  refused(): void;
  /** Logs a failure that belongs to no connection. */
  warn(err: unknown, message: string): void;
}

/** A started listener. */
export interface Listener {
  readonly address: AddressInfo;
  /** Stop accepting; open connections stay. */
  stop(): Promise<void>;
}
