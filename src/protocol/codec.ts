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
  /**
   * Text codecs: the envelope as a string, so that a link can write its UTF-8 straight into the
   * frame it sends (one buffer per message instead of the codec's bytes and then the frame).
   */
  encodeText?(envelope: Envelope): string;
}
