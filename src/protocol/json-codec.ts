import type { Codec } from './codec.js';
import type { Envelope } from './envelope.js';
import { ProtocolError, PylonError } from './errors.js';
import { type ToEnvelopeOptions, toEnvelope } from './validate.js';

/**
 * The JSON codec (WebSocket text frames, subprotocol "pylon.v1.json"). A frame reads plainly:
 * {"kind":"req","id":7,"type":"echo","data":{"x":1}}. Decoding also accepts hotpot's one-way
 * messages, {"type":"Echo","data":{...}}, as kind "msg".
 */

const encoder = new TextEncoder();
// fatal: invalid UTF-8 is an error (a ProtocolError), never silently replaced by U+FFFD.
const decoder = new TextDecoder('utf-8', { fatal: true });

const HOTPOT: ToEnvelopeOptions = { hotpot: true };

const BINARY_MESSAGE = 'binary data needs the msgpack or proto codec';

function isBinary(value: unknown): boolean {
  return (
    typeof value === 'object' &&
    value !== null &&
    (ArrayBuffer.isView(value) ||
      value instanceof ArrayBuffer ||
      (typeof SharedArrayBuffer !== 'undefined' && value instanceof SharedArrayBuffer))
  );
}

/** JSON.stringify replacer that refuses binary values (looks at the value before toJSON, too). */
function refuseBinary(this: unknown, key: string, value: unknown): unknown {
  if (isBinary(value) || isBinary((this as Record<string, unknown>)[key])) {
    throw new PylonError('BAD_REQUEST', BINARY_MESSAGE);
  }
  return value;
}

/**
 * JSON text of a value (the envelope, or a data value for the proto codec). Throws
 * PylonError('BAD_REQUEST') for what JSON cannot carry: binary data (at any depth), BigInt, cycles.
 *
 * JSON.stringify silently turns a Uint8Array into {"0":1,"1":2} (an empty one, an ArrayBuffer or a
 * DataView into {}, a Node Buffer into {"type":"Buffer","data":[...]}). Checking with a replacer
 * on every call would roughly double the cost of encoding, so the fast path stringifies without one
 * and re-runs with the checking replacer only when the text contains one of those shapes (an
 * ordinary object with a "0" key or an empty object just takes the slower, exact path).
 */
export function stringifyJson(value: unknown): string | undefined {
  if (isBinary(value)) throw new PylonError('BAD_REQUEST', BINARY_MESSAGE);
  let text: string | undefined;
  try {
    text = JSON.stringify(value);
    if (
      text !== undefined &&
      (text.includes('{}') || text.includes('{"0":') || text.includes('"type":"Buffer"'))
    ) {
      text = JSON.stringify(value, refuseBinary);
    }
  } catch (err) {
    if (err instanceof PylonError) throw err;
    throw new PylonError('BAD_REQUEST', `data cannot be encoded as JSON: ${(err as Error).message}`, {
      cause: err,
    });
  }
  return text;
}

/** The envelope's JSON text, fields in the order kind,id,seq,type,qos,data,error; undefined ones omitted. */
export function encodeJsonText(envelope: Envelope): string {
  const error = envelope.error;
  // The answer to a request, the commonest frame: its text without building a second object.
  if (
    envelope.kind === 'res' &&
    error === undefined &&
    envelope.seq === undefined &&
    envelope.type === undefined &&
    envelope.qos === undefined &&
    Number.isSafeInteger(envelope.id)
  ) {
    const data = envelope.data === undefined ? undefined : stringifyJson(envelope.data);
    return data === undefined
      ? `{"kind":"res","id":${envelope.id}}`
      : `{"kind":"res","id":${envelope.id},"data":${data}}`;
  }
  // JSON.stringify omits undefined properties, and keeps insertion order.
  const text = stringifyJson({
    kind: envelope.kind,
    id: envelope.id,
    seq: envelope.seq,
    type: envelope.type,
    qos: envelope.qos,
    data: envelope.data,
    error: error === undefined ? undefined : { code: error.code, message: error.message },
  });
  // Only undefined for an envelope whose own fields are not JSON (never for an Envelope).
  if (text === undefined) throw new PylonError('BAD_REQUEST', 'envelope cannot be encoded as JSON');
  return text;
}

/** Decodes the JSON text of one envelope, for transports that already have a string. */
export function decodeJsonText(text: string): Envelope {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new ProtocolError(`invalid JSON: ${(err as Error).message}`, 'PROTOCOL', { cause: err });
  }
  return toEnvelope(raw, HOTPOT);
}

export const jsonCodec: Codec = {
  name: 'json',
  binary: false,
  encode(envelope: Envelope): Uint8Array {
    return encoder.encode(encodeJsonText(envelope));
  },
  encodeText: encodeJsonText,
  decode(bytes: Uint8Array): Envelope {
    let text: string;
    try {
      text = decoder.decode(bytes);
    } catch (err) {
      throw new ProtocolError('invalid UTF-8 in a JSON frame', 'PROTOCOL', { cause: err });
    }
    return decodeJsonText(text);
  },
};
