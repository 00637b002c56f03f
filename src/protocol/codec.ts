import type { Envelope } from './envelope.js';

export type CodecName = 'json' | 'msgpack' | 'proto';

/**
 * Envelope <-> bytes. Pure: no I/O, no Node built-ins (works on Uint8Array in browsers).
 * `decode` throws only ProtocolError, for any input; `encode` throws only on data the codec
 * cannot represent (a PylonError with code BAD_REQUEST).
 */
export interface Codec {
  readonly name: CodecName;
  /** Binary frames (WebSocket binary messages) or text (JSON). */
  readonly binary: boolean;
  encode(envelope: Envelope): Uint8Array;
  decode(bytes: Uint8Array): Envelope;
}
