import type { IncomingHttpHeaders } from 'node:http';
import type { OutFrame } from './out-frame.js';

export type TransportName = 'tcp' | 'ws';

/**
 * One client's byte pipe, as the gateway sees it: whole frames in (through a LinkSink), whole
 * frames out. Transports adapt sockets to this and hold no business state (centrifuge's
 * transport.go is the model).
 */
export interface Link {
  readonly transport: TransportName;
  readonly remoteAddress: string;
  readonly remotePort: number;
  /** Bytes written but not yet handed to the kernel. */
  readonly buffered: number;
  /**
   * Send one frame's payload (the transport adds its framing). `text` picks a WebSocket text
   * frame; TCP ignores it. Returns false once the link is over its high-water mark: the write
   * is still queued, the caller should stop writing until `onDrain`.
   */
  send(payload: Uint8Array, text: boolean): boolean;
  /** Send a prepared frame (shared by many links: it is framed once per transport). Same return as send. */
  sendFrame(frame: OutFrame): boolean;
  /** Flush what is queued, then close. `code` is the disconnect code (the WS close code). */
  close(code: number, reason: string): void;
  /** Close now, dropping anything queued. */
  destroy(): void;
  /** Stop/restart reading from the socket (inbound backpressure). */
  pause(): void;
  resume(): void;
  /** The object the sink attached to this link (the gateway's connection). */
  owner: unknown;
}

/** What the upgrade or accept step learned about the peer. */
export interface LinkInfo {
  transport: TransportName;
  remoteAddress: string;
  remotePort: number;
  headers: IncomingHttpHeaders;
  /** Query parameters of the WebSocket URL (empty for TCP). */
  query: URLSearchParams;
  /** The subprotocol the WebSocket client chose, if any. */
  protocol: string;
}

/** Whether a new connection may in: true, or an HTTP status and reason to refuse it with. */
export type Admission = true | { status: number; reason: string };

/** What is known of a connection before it is accepted (before the WebSocket upgrade). */
export interface AdmitInfo {
  transport: TransportName;
  remoteAddress: string;
  /** The upgrade request's headers (empty for TCP). */
  headers: IncomingHttpHeaders;
}

/**
 * The receiving side of every transport: the gateway implements it once. Calls carry the link
 * so that transports can use module-level listeners instead of per-connection closures.
 */
export interface LinkSink {
  /**
   * Asked before a connection costs anything: TCP right after accept (sync answers only: a
   * refused socket is destroyed), WebSocket before the upgrade (refused with the HTTP status).
   */
  admit(info: AdmitInfo): Admission | Promise<Admission>;
  onOpen(link: Link, info: LinkInfo): void;
  onFrame(link: Link, payload: Uint8Array): void;
  /** A frame could not be read (bad framing, over-size). The link is already being closed. */
  onFrameError(link: Link, err: Error): void;
  onDrain(link: Link): void;
  /** Called once, whatever closed the link. */
  onClose(link: Link, code: number, reason: string): void;
}
