import { type Envelope, isKind, MAX_ID } from './envelope.js';
import { ProtocolError } from './errors.js';

/** Longest route name (`type`), in UTF-16 code units (string length). */
export const MAX_TYPE_LENGTH = 256;

export interface ToEnvelopeOptions {
  /**
   * Hotpot compatibility (JSON codec): an object with no `kind` but a string `type` is a one-way
   * `msg`, so `{"type":"Echo","data":{"Message":"hi"}}` is accepted.
   */
  hotpot?: boolean;
}

/** The fields a decoder may find; anything else on the object is ignored (never read). */
interface RawEnvelope {
  kind?: unknown;
  id?: unknown;
  seq?: unknown;
  type?: unknown;
  qos?: unknown;
  data?: unknown;
  error?: unknown;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

function bad(message: string): never {
  throw new ProtocolError(message);
}

/**
 * Checks a decoded value (from JSON.parse, msgpack, or the proto codec) and returns a clean Envelope
 * holding only the known fields, or throws a ProtocolError whose message names the bad field.
 *
 * Runs on every inbound frame, so it reads the seven known properties and nothing else: unknown keys
 * are ignored without being enumerated, and the only allocation is the result object.
 *
 * A field that is `undefined` or `null` counts as absent (other languages' JSON and msgpack encoders
 * often write null for an unset optional field), except `data`, where null is a value.
 */
export function toEnvelope(raw: unknown, opts?: ToEnvelopeOptions): Envelope {
  if (!isPlainObject(raw)) {
    bad(`envelope must be an object, got ${describe(raw)}`);
  }
  const r = raw as RawEnvelope;

  let kind = r.kind;
  if (kind == null && opts?.hotpot === true && typeof r.type === 'string') {
    kind = 'msg';
  } else if (!isKind(kind)) {
    bad(kind == null ? 'kind is missing' : `kind must be one of the protocol kinds, got ${describe(kind)}`);
  }
  const env: Envelope = { kind: kind as Envelope['kind'] };

  const id = r.id;
  if (id != null) {
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id > MAX_ID) {
      bad(`id must be an integer from 0 to ${MAX_ID}, got ${describe(id)}`);
    }
    env.id = id;
  }

  const seq = r.seq;
  if (seq != null) {
    if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 0) {
      bad(`seq must be a non-negative safe integer, got ${describe(seq)}`);
    }
    env.seq = seq;
  }

  const type = r.type;
  if (type != null) {
    if (typeof type !== 'string') bad(`type must be a string, got ${describe(type)}`);
    if (type.length > MAX_TYPE_LENGTH) {
      bad(`type must be at most ${MAX_TYPE_LENGTH} characters, got ${type.length}`);
    }
    env.type = type;
  }

  const qos = r.qos;
  if (qos != null) {
    if (qos !== 0 && qos !== 1) bad(`qos must be 0 or 1, got ${describe(qos)}`);
    env.qos = qos;
  }

  const data = r.data;
  if (data !== undefined) env.data = data;

  const error = r.error;
  if (error != null) {
    if (!isPlainObject(error)) bad(`error must be an object {code, message}, got ${describe(error)}`);
    const code = error.code;
    const message = error.message;
    if (typeof code !== 'string') bad(`error.code must be a string, got ${describe(code)}`);
    if (typeof message !== 'string') bad(`error.message must be a string, got ${describe(message)}`);
    env.error = { code, message };
  }

  switch (env.kind) {
    case 'req':
      // A req without a type is answered BAD_REQUEST (it has an id to answer to).
      if (env.id === undefined) bad('req needs an id');
      break;
    case 'res':
      if (env.id === undefined) bad('res needs an id');
      break;
    case 'msg':
      if (env.type === undefined) bad('msg needs a type');
      break;
    case 'push':
      if (env.type === undefined) bad('push needs a type');
      break;
    case 'ack':
      if (env.seq === undefined) bad('ack needs a seq');
      break;
    default:
      break;
  }
  return env;
}

/** A short description of a bad value for an error message (only built when throwing). */
function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  switch (typeof value) {
    case 'string':
      return value.length > 40 ? `a string "${value.slice(0, 40)}…"` : JSON.stringify(value);
    case 'number':
    case 'boolean':
    case 'bigint':
      return `${typeof value} ${String(value)}`;
    case 'object':
      if (value instanceof Uint8Array) return 'binary data';
      return 'an object';
    default:
      return typeof value;
  }
}
