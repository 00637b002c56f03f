import type { IncomingHttpHeaders } from 'node:http';
import type { Link, LinkInfo, TransportName } from '../net/link.js';
import { DISCONNECT, type DisconnectName } from '../protocol/disconnect.js';
import type { WheelTimer } from '../timer/wheel.js';
import { toBytes } from './bytes.js';

/**
 * Why a framework connection closed: the `info` of `onClose`, from the one disconnect table of
 * src/protocol (PROTOCOL.md section 7), shared with the gateway. On ws:// the code is the
 * WebSocket close code sent to the client.
 */
export const CLOSE = {
  /** The peer closed its side (TCP FIN, WebSocket close, UDP: never). */
  normal: DISCONNECT.normal.code,
  /** `connection.close(reason)` or `destroy()` by the application. */
  closed: DISCONNECT.closed.code,
  /** The socket failed (reset, error) without a close. Never sent. */
  connection_lost: DISCONNECT.connection_lost.code,
  /** `server.close()`. */
  shutdown: DISCONNECT.shutdown.code,
  /** Nothing received for `idleTimeout` (UDP: the peer is forgotten). 4002, as the gateway's keepalive. */
  keepalive_timeout: DISCONNECT.keepalive_timeout.code,
  /** More than `maxConnections`. */
  overloaded: DISCONNECT.overloaded.code,
  /** The process-wide budget of unfinished frames is used up; this connection held the most. */
  buffers_full: DISCONNECT.buffers_full.code,
  /** A packet that had begun was not finished within `frameTimeout`. */
  frame_timeout: DISCONNECT.frame_timeout.code,
  /** The outgoing buffer went over its hard cap, or the process-wide outbound budget. */
  slow_consumer: DISCONNECT.slow_consumer.code,
  /** `protocol.input` or `decode` threw (bytes that are not the protocol). */
  protocol_error: DISCONNECT.protocol_error.code,
  /** A packet over the protocol's maximum (ProtocolError code FRAME_TOO_LARGE). */
  frame_too_large: DISCONNECT.frame_too_large.code,
} as const;

export type CloseName = keyof typeof CLOSE;

export interface CloseInfo {
  code: number;
  name: CloseName;
  reason: string;
}

export type TransportKind = TransportName;

/** What a connection asks of its server (the server's own object, passed in: no import cycle). */
export interface ConnectionHost<In, Out> {
  /** How `send` encodes (the server's protocol; undefined: raw mode). */
  readonly protocol:
    | { encode(message: Out, connection: Connection<In, Out>): Uint8Array; readonly text?: boolean }
    | undefined;
  readonly highWaterMark: number;
  /** Reports a failure to `onError` (code ENCODE, HANDLER, …). */
  report(conn: Connection<In, Out>, code: string, err: unknown): void;
  bufferFull(conn: Connection<In, Out>): void;
}

/**
 * One client of a framework server, on any transport: a Link of the one socket layer (src/net)
 * with the framework's callbacks. `In` is what the protocol decodes (onMessage's message), `Out`
 * what `send` takes. Application state goes in `data`.
 */
export class Connection<In = unknown, Out = In> {
  readonly transport: TransportKind;
  /** 'open' until close/destroy or the peer leaves; 'closing' while a soft close finishes writing. */
  state: 'open' | 'closing' | 'closed' = 'open';
  /**
   * The client's address: the peer's, or on ws:// and http:// the one a trusted proxy reported
   * (X-Forwarded-For / X-Real-IP; for http:// updated with each request).
   */
  remoteAddress: string;
  /** The socket's peer address (the proxy's, behind one). */
  readonly peerAddress: string;
  readonly remotePort: number;
  /** ws://: the upgrade request's headers (empty otherwise). */
  readonly headers: IncomingHttpHeaders;
  /** ws://: the upgrade request's URL, path and query ('' otherwise). */
  readonly url: string;
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
    /** @internal */
    readonly link: Link,
    info: LinkInfo,
    /** @internal */
    readonly host: ConnectionHost<In, Out>,
  ) {
    this.transport = link.transport;
    this.remoteAddress = link.remoteAddress;
    this.peerAddress = link.peerAddress;
    this.remotePort = link.remotePort;
    this.headers = info.headers;
    this.url = info.url;
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
  get buffered(): number {
    return this.link.buffered;
  }

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
    const ok = this.link.send(
      bytes,
      protocol === undefined ? typeof message === 'string' : protocol.text === true,
    );
    if (this.endAfterSend !== undefined) {
      const reason = this.endAfterSend;
      this.endAfterSend = undefined;
      this.close(reason);
      return true;
    }
    if (ok) return true;
    if (!this.overWater && this.state === 'open') {
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
    this.link.close(info.code, info.reason);
  }

  /** Close now, dropping what is queued. onClose follows once. */
  destroy(reason = 'destroyed by the server'): void {
    if (this.state === 'closed') return;
    if (this.state === 'open') this.closeInfo = { code: CLOSE.closed, name: 'closed', reason };
    this.state = 'closing';
    this.link.destroy();
  }

  /** Stop reading (inbound backpressure): packets already buffered wait too. UDP: drops the peer's datagrams. */
  pauseRecv(): void {
    if (this.recvPaused) return;
    this.recvPaused = true;
    this.link.pause();
  }

  /** Read again; packets buffered meanwhile are delivered first. */
  resumeRecv(): void {
    if (!this.recvPaused) return;
    this.recvPaused = false;
    if (this.state === 'open') this.link.resume();
  }

  /** @internal Write bytes a protocol framed (ws: as one message, text or binary). */
  write(bytes: Uint8Array, text: boolean): void {
    if (this.state === 'open') this.link.send(bytes, text);
  }
}

/** The name of a close code in the framework's table ('closed' for codes it does not name). */
export function nameOf(code: number): CloseName {
  for (const name of Object.keys(CLOSE) as CloseName[])
    if (CLOSE[name] === code && name !== 'normal') return name;
  return 'closed';
}

/** The framework's close info for a name of the disconnect table. */
export function closeInfo(name: DisconnectName & CloseName, reason: string): CloseInfo {
  return { code: CLOSE[name], name, reason };
}
