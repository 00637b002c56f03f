import type { CodecName } from '../protocol/codec.js';

/** What a client transport reports. Called by the transport, implemented by the client. */
export interface ClientLinkEvents {
  open(): void;
  /** One whole frame (TCP: one length-prefixed body; WS: one message). */
  frame(payload: Uint8Array): void;
  /** Called once. `code` is the WS close code, or 1006 when the link just dropped. */
  close(code: number, reason: string): void;
}

/** A client-side byte pipe. Implementations keep every platform import in their own file. */
export interface ClientLink {
  send(payload: Uint8Array, text: boolean): void;
  close(code: number, reason: string): void;
  /** Bytes queued and not yet written. */
  readonly buffered: number;
  /** The transport in use: "tcp", "websocket" or "http". */
  readonly transport?: string;
}

export interface DialOptions {
  codec: CodecName;
  token: string | undefined;
  /** Extra HTTP headers for the WebSocket upgrade (Node only). */
  headers: Record<string, string> | undefined;
  maxFrame: number;
  /** TLS options for tls:// and wss:// (Node only), e.g. `{ ca }` for a private CA. */
  tls: { ca?: string | Uint8Array; rejectUnauthorized?: boolean } | undefined;
  /** Offer permessage-deflate (Node's WebSocket only). */
  compression?: boolean;
}

/** Opens a link to `url` (tcp://, ws://, wss://) and reports on it through `events`. */
export type Dialer = (url: URL, options: DialOptions, events: ClientLinkEvents) => ClientLink;
