import protobuf from 'protobufjs/light.js';
import type { Codec } from './codec.js';
import { type Envelope, KINDS, type Kind } from './envelope.js';
import { ProtocolError, PylonError } from './errors.js';
import { stringifyJson } from './json-codec.js';
import { toEnvelope } from './validate.js';

/**
 * The protobuf codec (WebSocket binary frames, subprotocol "pylon.v1.proto"), schema
 * proto/pylon/v1/envelope.proto. `data` travels as UTF-8 JSON text in the `data` bytes field (any
 * language can parse it), except binary data (a Uint8Array), which travels in `raw` and decodes back
 * to a Uint8Array.
 */

/**
 * The schema of proto/pylon/v1/envelope.proto as protobufjs JSON (what `root.toJSON()` gives for the
 * parsed file), so nothing reads the file system at runtime. test/protocol-codecs.test.ts parses the
 * .proto with the full protobufjs build and checks it equals this descriptor.
 */
export const ENVELOPE_PROTO_DESCRIPTOR = {
  nested: {
    pylon: {
      nested: {
        v1: {
          nested: {
            Kind: {
              values: {
                KIND_UNSPECIFIED: 0,
                HELLO: 1,
                WELCOME: 2,
                REQ: 3,
                RES: 4,
                MSG: 5,
                PUSH: 6,
                ACK: 7,
                PING: 8,
                PONG: 9,
                SUB: 10,
                UNSUB: 11,
                KICK: 12,
                BYE: 13,
              },
            },
            Envelope: {
              oneofs: {
                _id: { oneof: ['id'] },
                _seq: { oneof: ['seq'] },
                _type: { oneof: ['type'] },
                _qos: { oneof: ['qos'] },
                _data: { oneof: ['data'] },
                _raw: { oneof: ['raw'] },
                _error: { oneof: ['error'] },
              },
              fields: {
                kind: { type: 'Kind', id: 1 },
                id: { type: 'uint32', id: 2, options: { proto3_optional: true } },
                seq: { type: 'uint64', id: 3, options: { proto3_optional: true } },
                type: { type: 'string', id: 4, options: { proto3_optional: true } },
                qos: { type: 'uint32', id: 5, options: { proto3_optional: true } },
                data: { type: 'bytes', id: 6, options: { proto3_optional: true } },
                raw: { type: 'bytes', id: 7, options: { proto3_optional: true } },
                error: { type: 'Error', id: 8, options: { proto3_optional: true } },
              },
            },
            Error: {
              fields: {
                code: { type: 'string', id: 1 },
                message: { type: 'string', id: 2 },
              },
            },
          },
        },
      },
    },
  },
};

const EnvelopeType = protobuf.Root.fromJSON(ENVELOPE_PROTO_DESCRIPTOR).lookupType('pylon.v1.Envelope');

/**
 * protobufjs's default writer returns views into a shared 8 KiB pool (Buffer.allocUnsafe's pool in
 * Node, its own Uint8Array pool in browsers). Never overwritten, but `.buffer` is shared and a kept
 * frame pins the pool slab. `finish()` allocates with `this.constructor.alloc`, so this writer gives
 * an exact-size plain Uint8Array with no extra copy.
 */
class ExactWriter extends protobuf.Writer {
  static override alloc(size: number): Uint8Array {
    return new Uint8Array(size);
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

/** Kind name -> enum number (KINDS order is the enum order, from 1). */
const KIND_NUMBER: Record<Kind, number> = Object.fromEntries(KINDS.map((k, i) => [k, i + 1])) as Record<
  Kind,
  number
>;

/**
 * What protobufjs's decode gives. A field read from the frame is an own property of the message;
 * an absent one reads the prototype default, which is null for most optional fields but a Long zero
 * for the uint64 `seq`, so presence is checked with Object.hasOwn, never by value.
 */
interface DecodedEnvelope {
  kind: number;
  id?: number;
  seq?: number | { low: number; high: number };
  type?: string;
  qos?: number;
  data?: Uint8Array;
  raw?: Uint8Array;
  error?: { code: string; message: string };
}

/** uint64 from protobufjs: a number, or a Long when the `long` package is present. */
function seqToNumber(seq: number | { low: number; high: number }): number {
  if (typeof seq === 'number') return seq;
  // Unsigned; any value >= 2^53 computes to >= 2^53, which toEnvelope rejects as not a safe integer.
  return (seq.high >>> 0) * 0x1_0000_0000 + (seq.low >>> 0);
}

function fail(message: string, cause?: unknown): never {
  throw new ProtocolError(message, 'PROTOCOL', cause === undefined ? undefined : { cause });
}

export const protoCodec: Codec = {
  name: 'proto',
  binary: true,
  encode(envelope: Envelope): Uint8Array {
    const kind = KIND_NUMBER[envelope.kind];
    if (kind === undefined) throw new PylonError('BAD_REQUEST', `unknown kind ${String(envelope.kind)}`);
    const msg: Record<string, unknown> = { kind };
    if (envelope.id !== undefined) msg.id = envelope.id;
    if (envelope.seq !== undefined) msg.seq = envelope.seq;
    if (envelope.type !== undefined) msg.type = envelope.type;
    if (envelope.qos !== undefined) msg.qos = envelope.qos;
    const data = envelope.data;
    if (data instanceof Uint8Array) {
      msg.raw = data;
    } else if (data !== undefined) {
      const text = stringifyJson(data);
      if (text !== undefined) msg.data = encoder.encode(text);
    }
    if (envelope.error !== undefined) {
      msg.error = { code: envelope.error.code, message: envelope.error.message };
    }
    try {
      return EnvelopeType.encode(msg, new ExactWriter()).finish();
    } catch (err) {
      throw new PylonError(
        'BAD_REQUEST',
        `envelope cannot be encoded as protobuf: ${(err as Error).message}`,
        {
          cause: err,
        },
      );
    }
  },
  decode(bytes: Uint8Array): Envelope {
    if (bytes.length === 0) fail('empty proto frame');
    let m: DecodedEnvelope;
    try {
      // Always the plain Reader: protobufjs's BufferReader (chosen for Node Buffers) cuts a string
      // whose length runs past the end instead of failing, so a truncated frame would decode.
      m = EnvelopeType.decode(new protobuf.Reader(bytes)) as unknown as DecodedEnvelope;
    } catch (err) {
      fail(`invalid proto frame: ${(err as Error)?.message ?? String(err)}`, err);
    }
    const kind = KINDS[m.kind - 1];
    if (kind === undefined) {
      fail(m.kind === 0 ? 'kind is missing (KIND_UNSPECIFIED)' : `kind ${m.kind} is not a protocol kind`);
    }
    const hasData = Object.hasOwn(m, 'data');
    const hasRaw = Object.hasOwn(m, 'raw');
    let data: unknown;
    if (hasData) {
      if (hasRaw) fail('data and raw are both set');
      let text: string;
      try {
        text = decoder.decode(m.data);
      } catch (err) {
        fail('data is not valid UTF-8', err);
      }
      try {
        data = JSON.parse(text);
      } catch (err) {
        fail(`data is not valid JSON: ${(err as Error).message}`, err);
      }
    } else if (hasRaw) {
      // protobufjs returns a view into the input; copy into a plain Uint8Array of its own.
      data = new Uint8Array(m.raw!);
    }
    const error = Object.hasOwn(m, 'error') ? m.error! : undefined;
    return toEnvelope({
      kind,
      id: Object.hasOwn(m, 'id') ? m.id : undefined,
      seq: Object.hasOwn(m, 'seq') ? seqToNumber(m.seq!) : undefined,
      type: Object.hasOwn(m, 'type') ? m.type : undefined,
      qos: Object.hasOwn(m, 'qos') ? m.qos : undefined,
      data,
      error: error === undefined ? undefined : { code: error.code, message: error.message },
    });
  },
};
