import type { Codec } from '../protocol/codec.js';
import { DISCONNECT, type DisconnectInfo, type DisconnectName } from '../protocol/disconnect.js';
import type { Envelope } from '../protocol/envelope.js';
import type { WheelTimer } from '../timer/wheel.js';
import type { Link, TransportName } from '../transport/link.js';
import type { KeepaliveOptions } from './options.js';

/** Where a connection is in its life. */
export type ConnectionState = 'handshake' | 'open' | 'closing' | 'closed';

/**
 * What the gateway does for a connection; the connection knows its gateway only through this
 * (it is the gateway's own object, passed in, not imported).
 */
export interface ConnectionOwner {
  readonly keepalive: KeepaliveOptions | undefined;
  /** The gateway clock's now (monotonic ms). */
  now(): number;
  disconnect(conn: Connection, name: DisconnectName, reason?: string): void;
  countOut(): void;
  /** Handshake deadline passed. */
  handshakeExpired(conn: Connection): void;
  /** Nothing received for keepalive.timeout. */
  keepaliveExpired(conn: Connection, idleMs: number): void;
}

/**
 * One client connection, on any transport. Holds only what every connection needs; the
 * application's own state goes in `data`.
 */
export class Connection {
  /** Monotonic-clock time (ms) of the last frame received: any frame counts as life. */
  lastRecv: number;
  state: ConnectionState = 'handshake';
  /** Requests of this connection whose handlers have not answered yet. */
  pending = 0;
  /** The one timer of this connection (handshake deadline, then keepalive checks). */
  timer: WheelTimer | undefined = undefined;
  /** Set when the server decides to close; reported in the disconnect event. */
  closeInfo: DisconnectInfo | undefined = undefined;
  /** Authenticated user id, if any. */
  user: string | undefined = undefined;
  /** Wall-clock time the connection was accepted (ms since the epoch). */
  readonly connectedAt = Date.now();
  /** Whether the client has sent its hello (TCP: required first; WS: optional). */
  helloSeen = false;
  /** Whether `connect` was emitted (then `disconnect` will be). */
  opened = false;
  private appData: Record<string, unknown> | undefined = undefined;

  constructor(
    readonly id: string,
    readonly link: Link,
    public codec: Codec,
    /** @internal */
    readonly owner: ConnectionOwner,
    now: number,
  ) {
    this.lastRecv = now;
  }

  get transport(): TransportName {
    return this.link.transport;
  }

  get remoteAddress(): string {
    return this.link.remoteAddress;
  }

  /** Bytes queued for this connection and not yet written to its socket. */
  get buffered(): number {
    return this.link.buffered;
  }

  /** The application's per-connection state, created on first use. */
  get data(): Record<string, unknown> {
    this.appData ??= {};
    return this.appData;
  }

  get open(): boolean {
    return this.state === 'open';
  }

  /**
   * Push a one-way message to this client (qos 0, at most once). Returns false when the
   * connection is closed or over its high-water mark (the message is still queued then).
   */
  send(type: string, data?: unknown): boolean {
    if (this.state !== 'open') return false;
    return this.write({ kind: 'push', type, data });
  }

  /** Close with a disconnect code from the table (default "kicked": the client will not reconnect). */
  close(name: DisconnectName = 'kicked', reason?: string): void {
    if (!(name in DISCONNECT)) throw new RangeError(`unknown disconnect name "${name}"`);
    this.owner.disconnect(this, name, reason);
  }

  /** @internal Encode and send one envelope. */
  write(env: Envelope): boolean {
    const bytes = this.codec.encode(env);
    this.owner.countOut();
    return this.link.send(bytes, !this.codec.binary);
  }
}
