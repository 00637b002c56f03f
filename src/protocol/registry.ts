import type { Codec } from './codec.js';
import { jsonCodec } from './json-codec.js';

/**
 * The codecs a client build knows. JSON is always there; the binary codecs are registered by
 * the entry points that want them, so a browser bundle that speaks JSON does not carry
 * MessagePack and Protobuf.
 */
const known = new Map<string, Codec>([[jsonCodec.name, jsonCodec]]);

export function registerCodec(codec: Codec): void {
  known.set(codec.name, codec);
}

export function lookupCodec(name: string): Codec | undefined {
  return known.get(name);
}
