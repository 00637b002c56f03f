import type { Envelope } from './envelope.js';

export type CodecName = 'json' | 'msgpack' | 'proto';

/**
 * Envelope <-> bytes. Pure: no I/O, no Node built-ins (works on Uint8Array in browsers).
 * `decode` throws only ProtocolError, for any input; `encode` throws only on data the codec
 * cannot represent (a PylonError with code BAD_REQUEST).
 */
export interface Codec {
  /** A codec of the registry, or the MQTT face's per-connection codec (src/mqtt, by version). */
  readonly name: CodecName | 'mqtt' | 'mqtt5';
  /** Binary frames (WebSocket binary messages) or text (JSON). */
  readonly binary: boolean;
  encode(envelope: Envelope): Uint8Array;
  decode(bytes: Uint8Array): Envelope;
  /**
   * Text codecs: the envelope as a string, so that a link can write its UTF-8 straight into the
   * frame it sends (one buffer per message instead of the codec's bytes and then the frame).
   */
  encodeText?(envelope: Envelope): string;
  /**
   * A protocol whose clients keep the connection alive themselves (MQTT): how long the server
   * waits for any packet before it closes the connection (keepalive_timeout), instead of pinging.
   */
  readonly keepaliveMs?: number | undefined;
  /**
   * A protocol whose messages travel on topics (MQTT): a push addressed to labels, as sent on
   * `topic`, the label of the push that this connection holds. Otherwise pushes are `encode`d.
   */
  encodePushOn?(topic: string, envelope: Envelope): Uint8Array;
}
