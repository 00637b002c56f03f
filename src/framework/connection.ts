import type { WheelTimer } from '../timer/wheel.js';
import { type Protocol, toBytes } from './protocol.js';

/**
 * Why a framework connection closed: the `info` of `onClose`. The codes follow the gateway's
 * table (PROTOCOL.md section 7) where the meaning is the same; on ws:// the code is the
 * WebSocket close code sent to the client.
 */
export const CLOSE = {
  /** The peer closed its side (TCP FIN, WebSocket close, UDP: never). */
  normal: 1000,
  /** `connection.close(reason)` or `destroy()` by the application. */
  closed: 1000,
  /** The socket failed (reset, error) without a close. Never sent. */
  connection_lost: 1006,
  /** `server.close()`. */
  shutdown: 4000,
  /** Nothing received for `idleTimeout` (UDP: the peer is forgotten). */
  idle_timeout: 4002,
  /** More than `maxConnections`. */
  overloaded: 4007,
  /** `protocol.input` or `decode` threw (bytes that are not the protocol). */
  protocol_error: 4500,
  /** A packet over the protocol's maximum (ProtocolError code FRAME_TOO_LARGE). */
  frame_too_large: 4501,
} as const;

export type CloseName = keyof typeof CLOSE;

export interface CloseInfo {
  code: number;
  name: CloseName;
  reason: string;
}

export type TransportKind = 'tcp' | 'ws' | 'udp';

/** What a connection asks of its server (the server's own object, passed in: no import cycle). */
export interface ConnectionHost<In, Out> {
  readonly protocol: Protocol<In, Out> | undefined;
  readonly highWaterMark: number;
  /** Reports a failure to `onError` (code ENCODE, HANDLER, …). */
  report(conn: Connection<In, Out>, code: string, err: unknown): void;
  bufferFull(conn: Connection<In, Out>): void;
  /** A soft close began: arm the close deadline. */
  closing(conn: Connection<In, Out>): void;
  /** `resumeRecv` was called: read what is buffered. */
  resumed(conn: Connection<In, Out>): void;
}

/**
 * One client of a framework server, on any transport. `In` is what the protocol decodes
 * (onMessage's message), `Out` what `send` takes. Application state goes in `data`.
 */
export abstract class Connection<In = unknown, Out = In> {
  abstract readonly transport: TransportKind;
  /** 'open' until close/destroy or the peer leaves; 'closing' while a soft close finishes writing. */
  state: 'open' | 'closing' | 'closed' = 'open';
  /**
   * The client's address: the peer's, or on ws:// and http:// the one a trusted proxy reported
   * (X-Forwarded-For / X-Real-IP; for http:// updated with each request).
   */
  remoteAddress: string;
  /** Per-connection state of the protocol (the http protocol keeps its parser state here). */
  protocolState: unknown = undefined;
  /** Set once closed: why. */
  closeInfo: CloseInfo | undefined = undefined;
  /** @internal Monotonic ms of the last packet (idle timeout). */
  lastRecv = 0;
  /** @internal The idle deadline (UDP: the peer's expiry), on the server's wheel. */
  timer: WheelTimer | undefined = undefined;
  /** @internal Over the high-water mark since the last drain. */
  overWater = false;
  /** @internal pauseRecv() called. */
  recvPaused = false;
  /** @internal Close softly once the current send is written (http's Connection: close). */
  endAfterSend: string | undefined = undefined;
  private appData: Record<string, unknown> | undefined = undefined;

  constructor(
    /** Unique per server, from 1. */
    readonly id: number,
    /** The socket's peer address (the proxy's, behind one). */
    readonly peerAddress: string,
    readonly remotePort: number,
    /** @internal */
    readonly host: ConnectionHost<In, Out>,
  ) {
    this.remoteAddress = peerAddress;
  }

  /** The application's per-connection state. */
  get data(): Record<string, unknown> {
    this.appData ??= {};
    return this.appData;
  }

  get open(): boolean {
    return this.state === 'open';
  }

  /** Bytes written and not yet handed to the kernel (0 on UDP). */
  abstract get buffered(): number;

  /**
   * Encode `message` with the protocol (raw mode: a string or bytes as they are) and write it.
   * Returns false when it was not written (the connection is not open, or encoding failed:
   * onError gets code ENCODE) or when the outgoing buffer is now over `highWaterMark`
   * (written; onBufferFull fires once, onBufferDrain when it empties).
   */
  send(message: Out): boolean {
    if (this.state !== 'open') return false;
    const protocol = this.host.protocol;
    let bytes: Uint8Array;
    try {
      bytes = protocol === undefined ? toBytes(message) : protocol.encode(message, this);
    } catch (err) {
      this.host.report(this, 'ENCODE', err);
      return false;
    }
    this.write(bytes, protocol === undefined ? typeof message === 'string' : protocol.text === true);
    if (this.endAfterSend !== undefined) {
      const reason = this.endAfterSend;
      this.endAfterSend = undefined;
      this.close(reason);
      return true;
    }
    if (this.buffered < this.host.highWaterMark) return true;
    if (!this.overWater) {
      this.overWater = true;
      this.host.bufferFull(this);
    }
    return false;
  }

  /** Protocols call this from `encode`: once this message is written, close softly. */
  closeAfterSend(reason = 'closed by the server'): void {
    this.endAfterSend = reason;
  }

  /**
   * Soft close: stop reading, finish writing what is queued, then end (ws: a close frame with
   * `code`). The peer gets `closeTimeout` to finish, then the socket is destroyed. On UDP the
   * peer is forgotten; the shared socket stays open. onClose follows once.
   */
  close(reason = 'closed by the server', code: number = CLOSE.closed): void {
    this.closeWith({ code, name: code === CLOSE.closed ? 'closed' : nameOf(code), reason });
  }

  /** @internal Soft close with a reason from the table. */
  closeWith(info: CloseInfo): void {
    if (this.state !== 'open') return;
    this.state = 'closing';
    this.closeInfo = info;
    this.endWire(info.code, info.reason);
    this.host.closing(this);
  }

  /** Close now, dropping what is queued. onClose follows once. */
  destroy(reason = 'destroyed by the server'): void {
    if (this.state === 'closed') return;
    if (this.state === 'open') this.closeInfo = { code: CLOSE.closed, name: 'closed', reason };
    this.state = 'closing';
    this.destroyWire();
  }

  /** Stop reading (inbound backpressure): packets already buffered wait too. UDP: drops the peer's datagrams. */
  pauseRecv(): void {
    if (this.recvPaused) return;
    this.recvPaused = true;
    this.pauseWire();
  }

  /** Read again; packets buffered meanwhile are delivered first. */
  resumeRecv(): void {
    if (!this.recvPaused) return;
    this.recvPaused = false;
    if (this.state !== 'open') return;
    this.resumeWire();
    this.host.resumed(this);
  }

  /** @internal Write framed bytes (ws: as one message, text or binary). */
  abstract write(bytes: Uint8Array, text: boolean): void;
  /** @internal Flush, then end the transport. */
  protected abstract endWire(code: number, reason: string): void;
  /** @internal End the transport now. */
  protected abstract destroyWire(): void;
  protected abstract pauseWire(): void;
  protected abstract resumeWire(): void;
}

function nameOf(code: number): CloseName {
  for (const name of Object.keys(CLOSE) as CloseName[]) if (CLOSE[name] === code) return name;
  return 'closed';
}
