import type { IncomingHttpHeaders } from 'node:http';
import type { DisconnectName } from '../protocol/disconnect.js';
import { PylonError } from '../protocol/errors.js';
import type { OutFrame } from './out-frame.js';

export type TransportName = 'tcp' | 'ws' | 'udp' | 'http';

/**
 * One peer's byte pipe, as a sink (the envelope gateway, a framework server) sees it: whole
 * packets in, through its LinkSink; whole messages out. Every transport implements it, and it
 * is the only connection contract of the server side (centrifuge's transport.go is the model):
 * links hold no business state.
 */
export interface Link {
  readonly transport: TransportName;
  /** The client's address: the peer's, or on WebSocket the one a trusted proxy reported. */
  readonly remoteAddress: string;
  /** The socket's peer: the proxy's address behind one. */
  readonly peerAddress: string;
  readonly remotePort: number;
  /** Bytes written and not yet handed to the kernel (0 on UDP). */
  readonly buffered: number;
  /**
   * Send one message: on a stream link framed as the listener says (Pylon's 4-byte header, or
   * raw bytes that a custom protocol already framed), on WebSocket one message (`text`: a text
   * frame), on UDP one datagram. Returns false once the link is over its high-water mark (the
   * write is still queued: stop writing until the sink's `onDrain`). Over the hard cap the link
   * fails with `slow_consumer` instead.
   */
  send(payload: Uint8Array, text: boolean): boolean;
  /** Send a prepared frame (shared by many links: framed once per transport). Same return as send. */
  sendFrame(frame: OutFrame): boolean;
  /** Send one text message given as a string (its UTF-8 written straight into the frame). Same return as send. */
  sendText?(text: string): boolean;
  /** Flush what is queued, then close: `code` is the WebSocket close code (TCP: none is sent). */
  close(code: number, reason: string): void;
  /** Close now, dropping what is queued. */
  destroy(): void;
  /** Stop reading (inbound backpressure): packets already received wait too. */
  pause(): void;
  /** Read again, the packets that waited first. */
  resume(): void;
  /** Messages sent in one tick go out in one write (corked until the end of the tick). */
  batching: boolean;
  /** The sink's object for this link (its connection). */
  owner: unknown;
  /** HTTP streams: the SSE event id the next message carries (a one-way stream's position). */
  eventId?: string;
  /** HTTP streams: write a sign of life that is no message (a one-way stream cannot answer pings). */
  heartbeat?(): void;
}

/** What the accept or upgrade step learned about the peer. */
export interface LinkInfo {
  transport: TransportName;
  remoteAddress: string;
  remotePort: number;
  /** The WebSocket upgrade's headers (empty on TCP and UDP). */
  headers: IncomingHttpHeaders;
  /** The upgrade request's URL, path and query ('' on TCP and UDP). */
  url: string;
  /** Query parameters of the WebSocket URL (empty otherwise). */
  query: URLSearchParams;
  /** The subprotocol the WebSocket client chose, if any; "stream" for a one-way HTTP stream. */
  protocol: string;
}

/** Whether a new connection may come in: true, or an HTTP status and reason to refuse it with. */
export type Admission = true | { status: number; reason: string };

/** What is known of a connection before it is accepted (before the WebSocket upgrade). */
export interface AdmitInfo {
  transport: TransportName;
  /** The client's address (through trusted proxies on WebSocket). */
  remoteAddress: string;
  /** The upgrade request's headers (empty for TCP and UDP). */
  headers: IncomingHttpHeaders;
}

/**
 * The receiving side of every transport. Calls carry the link, so transports attach
 * module-level listeners instead of per-connection closures.
 */
export interface LinkSink {
  /**
   * Asked before a connection costs anything: TCP right after accept (a promise counts as a
   * refusal: there is nothing to wait on), WebSocket before the upgrade (refused with the HTTP
   * status), UDP at a new peer's first datagram.
   */
  admit(info: AdmitInfo): Admission | Promise<Admission>;
  onOpen(link: Link, info: LinkInfo): void;
  /** One whole packet (a view valid during the call). `text`: a WebSocket text message. */
  onPacket(link: Link, packet: Uint8Array, text: boolean): void;
  /** A sign of life that carries no packet (a WebSocket ping or pong): counts for keepalive. */
  onLife?(link: Link): void;
  /**
   * The link cannot go on: bytes that are not the protocol, a packet over the maximum, a limit
   * (LinkError: its `disconnect` names the code). The link stops reading; the sink closes it.
   */
  onPacketError(link: Link, err: Error): void;
  /** The outgoing buffer drained below the high-water mark. */
  onDrain(link: Link): void;
  /** Called once, whatever closed the link: our close code, the peer's, or 1006 when it dropped. */
  onClose(link: Link, code: number, reason: string): void;
}

/**
 * A link broke one of the limits of the net layer: too many bytes held in unfinished frames
 * (process-wide), a frame not finished in time, an outgoing buffer over the hard cap. The sink
 * closes the link with `disconnect`.
 */
export class LinkError extends PylonError {
  override name = 'LinkError';
  constructor(
    readonly disconnect: DisconnectName,
    message: string,
  ) {
    super(disconnect.toUpperCase(), message);
  }
}

/** The disconnect a failure of a link means: a LinkError's own, or protocol_error / frame_too_large. */
export function disconnectOf(err: Error): DisconnectName {
  if (err instanceof LinkError) return err.disconnect;
  return (err as { code?: string }).code === 'FRAME_TOO_LARGE' ? 'frame_too_large' : 'protocol_error';
}
