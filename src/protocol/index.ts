/**
 * Wire protocol v1: the envelope, its three codecs, TCP framing, error and disconnect codes.
 * Imports nothing from the rest of Pylon and no Node built-ins, so it bundles for browsers.
 */
import type { Codec, CodecName } from './codec.js';
import { jsonCodec } from './json-codec.js';
import { msgpackCodec } from './msgpack-codec.js';
import { protoCodec } from './proto-codec.js';

export type { Codec, CodecName } from './codec.js';
export { dataDepth, MAX_DATA_DEPTH } from './depth.js';
export {
  DISCONNECT,
  type DisconnectInfo,
  type DisconnectName,
  disconnectInfo,
  disconnectName,
  shouldReconnect,
} from './disconnect.js';
export { type Envelope, isKind, KINDS, type Kind, MAX_ID, type WireError } from './envelope.js';
export { ERROR_CODES, type ErrorCode, ProtocolError, PylonError, TimeoutError } from './errors.js';
export {
  checkMaxFrame,
  DEFAULT_CLIENT_MAX_FRAME,
  DEFAULT_MAX_FRAME,
  FRAME_HEADER_SIZE,
  frame,
  frameLength,
  MAX_FRAME_LENGTH,
  writeFrameHeader,
} from './framing.js';
export { decodeJsonText, encodeJsonText, jsonCodec, stringifyJson } from './json-codec.js';
export { msgpackCodec } from './msgpack-codec.js';
export { ENVELOPE_PROTO_DESCRIPTOR, protoCodec } from './proto-codec.js';
export { type OnPacket, type PacketLength, Reassembler } from './reassembly.js';
export { MAX_TYPE_LENGTH, type ToEnvelopeOptions, toEnvelope } from './validate.js';

export const codecs: Record<CodecName, Codec> = {
  json: jsonCodec,
  msgpack: msgpackCodec,
  proto: protoCodec,
};

/** The codec of this name, or undefined (never a prototype property such as "toString"). */
export function getCodec(name: string): Codec | undefined {
  return Object.hasOwn(codecs, name) ? codecs[name as CodecName] : undefined;
}

/** WebSocket subprotocol -> codec name. */
export const SUBPROTOCOLS = {
  'pylon.v1.json': 'json',
  'pylon.v1.msgpack': 'msgpack',
  'pylon.v1.proto': 'proto',
} as const;
