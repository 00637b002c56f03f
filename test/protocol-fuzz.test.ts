import fc from 'fast-check';
import { Packr } from 'msgpackr';
import protobuf from 'protobufjs';
import { describe, expect, it } from 'vitest';
import {
  type Codec,
  ENVELOPE_PROTO_DESCRIPTOR,
  type Envelope,
  isKind,
  jsonCodec,
  KINDS,
  MAX_ID,
  msgpackCodec,
  ProtocolError,
  protoCodec,
  toEnvelope,
} from '../src/protocol/index.js';

/**
 * Every decoder, fed garbage, must return a valid Envelope or throw ProtocolError: never a
 * TypeError/RangeError from a library, never a hang. At least 100,000 inputs per decoder: random
 * bytes, mutated valid frames, and well-formed containers (JSON text, msgpack maps, protobuf
 * messages) holding random values in the envelope's fields.
 */
const RUNS = 100_000;

const enc = new TextEncoder();
const EnvelopeType = protobuf.Root.fromJSON(ENVELOPE_PROTO_DESCRIPTOR).lookupType('pylon.v1.Envelope');
const foreignPackr = new Packr({ useRecords: false, variableMapSize: true, useBigIntExtension: false });

const FIELD_NAMES = ['kind', 'id', 'seq', 'type', 'qos', 'data', 'error', 'extra', '__proto__'];

/** Values that are valid in some field and invalid in the others. */
const fieldValueArb: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom(
    ...KINDS,
    'REQ',
    '',
    'x'.repeat(257),
    0,
    1,
    2,
    -1,
    0.5,
    MAX_ID,
    MAX_ID + 1,
    2 ** 53,
    null,
    true,
  ),
  fc.integer(),
  fc.double(),
  fc.string({ maxLength: 20 }),
  fc.record({ code: fc.oneof(fc.string(), fc.integer()), message: fc.oneof(fc.string(), fc.constant(null)) }),
  fc.jsonValue({ maxDepth: 2 }),
);

const rawObjectArb = fc.dictionary(fc.constantFrom(...FIELD_NAMES), fieldValueArb, { maxKeys: 8 });

/** A valid envelope (so mutations start from something the decoder accepts). */
const validEnvelopeArb: fc.Arbitrary<Envelope> = fc
  .record({
    kind: fc.constantFrom(...KINDS),
    id: fc.integer({ min: 0, max: MAX_ID }),
    seq: fc.maxSafeNat(),
    type: fc.string({ maxLength: 12 }),
    // Long strings too: msgpackr decodes strings of frames over ~140 bytes natively (msgpackr-extract).
    data: fc.oneof(
      fc.jsonValue({ maxDepth: 2 }),
      fc.uint8Array({ maxLength: 16 }),
      fc.array(fc.oneof(fc.string({ maxLength: 200 }), fc.string({ unit: 'binary', maxLength: 20 })), {
        maxLength: 4,
      }),
    ),
  })
  .map((e) => ({ kind: e.kind, id: e.id, seq: e.seq, type: e.type, data: e.data }) as Envelope);

type Mutation =
  | { op: 'set'; at: number; byte: number }
  | { op: 'cut'; at: number }
  | { op: 'insert'; at: number; bytes: Uint8Array }
  | { op: 'delete'; at: number; n: number };

const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ op: fc.constant('set' as const), at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ op: fc.constant('cut' as const), at: fc.nat() }),
  fc.record({
    op: fc.constant('insert' as const),
    at: fc.nat(),
    bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }),
  }),
  fc.record({ op: fc.constant('delete' as const), at: fc.nat(), n: fc.integer({ min: 1, max: 8 }) }),
);

function mutate(bytes: Uint8Array, mutations: Mutation[]): Uint8Array {
  let out = bytes;
  for (const m of mutations) {
    const at = out.length === 0 ? 0 : m.at % (out.length + 1);
    switch (m.op) {
      case 'set':
        if (out.length > 0) {
          out = out.slice();
          out[at % out.length] = m.byte;
        }
        break;
      case 'cut':
        out = out.slice(0, at);
        break;
      case 'insert': {
        const next = new Uint8Array(out.length + m.bytes.length);
        next.set(out.subarray(0, at), 0);
        next.set(m.bytes, at);
        next.set(out.subarray(at), at + m.bytes.length);
        out = next;
        break;
      }
      case 'delete': {
        const end = Math.min(out.length, at + m.n);
        const next = new Uint8Array(out.length - (end - at));
        next.set(out.subarray(0, at), 0);
        next.set(out.subarray(end), at);
        out = next;
        break;
      }
    }
  }
  return out;
}

function mutatedFrameArb(codec: Codec): fc.Arbitrary<Uint8Array> {
  return fc
    .tuple(validEnvelopeArb, fc.array(mutationArb, { minLength: 1, maxLength: 4 }))
    .map(([env, mutations]) => {
      // JSON cannot carry binary data: use its JSON stand-in.
      const e = codec === jsonCodec && env.data instanceof Uint8Array ? { ...env, data: [...env.data] } : env;
      return mutate(codec.encode(e), mutations);
    });
}

/** Well-formed container, random field values: exercises validation rather than parsing. */
const containerArb: Record<'json' | 'msgpack' | 'proto', fc.Arbitrary<Uint8Array>> = {
  json: fc.oneof(
    rawObjectArb.map((o) => enc.encode(JSON.stringify(o))),
    fc.jsonValue({ maxDepth: 2 }).map((v) => enc.encode(JSON.stringify(v))),
  ),
  msgpack: fc.oneof(
    rawObjectArb.map((o) => new Uint8Array(foreignPackr.pack(o))),
    fc
      .dictionary(
        fc.constantFrom(...FIELD_NAMES),
        fc.oneof(
          fieldValueArb,
          fc.bigInt({ min: -(2n ** 63n), max: 2n ** 64n - 1n }),
          fc.uint8Array({ maxLength: 8 }),
          fc.date({ noInvalidDate: true }),
        ),
        { maxKeys: 8 },
      )
      .map((o) => new Uint8Array(foreignPackr.pack(o))),
  ),
  proto: fc
    .record(
      {
        kind: fc.integer({ min: -2, max: 16 }),
        id: fc.nat(),
        seq: fc.oneof(fc.maxSafeNat(), fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }).map(String)),
        type: fc.oneof(fc.string({ maxLength: 10 }), fc.constant('x'.repeat(300))),
        qos: fc.integer({ min: 0, max: 3 }),
        data: fc.oneof(
          fc.jsonValue({ maxDepth: 2 }).map((v) => enc.encode(JSON.stringify(v))),
          fc.uint8Array({ maxLength: 8 }),
        ),
        raw: fc.uint8Array({ maxLength: 8 }),
        error: fc.record({ code: fc.string({ maxLength: 4 }), message: fc.string({ maxLength: 4 }) }),
      },
      { requiredKeys: [] },
    )
    .map((m) => EnvelopeType.encode(m).finish()),
};

function inputArb(codec: Codec): fc.Arbitrary<Uint8Array> {
  return fc.oneof(
    { weight: 3, arbitrary: fc.uint8Array({ maxLength: 64 }) },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 1024 }) },
    { weight: 4, arbitrary: mutatedFrameArb(codec) },
    { weight: 2, arbitrary: containerArb[codec.name as keyof typeof containerArb] },
  );
}

interface Tally {
  ok: number;
  rejected: number;
}

function decodeOrReject(codec: Codec, bytes: Uint8Array, tally: Tally): void {
  let env: Envelope;
  try {
    env = codec.decode(bytes);
  } catch (err) {
    if (err instanceof ProtocolError) {
      tally.rejected++;
      return;
    }
    throw err;
  }
  if (!isKind(env.kind)) throw new Error(`decoded an envelope with kind ${String(env.kind)}`);
  toEnvelope(env); // a decoded envelope passes validation as it is
  tally.ok++;
}

describe.each([jsonCodec, msgpackCodec, protoCodec])('$name decoder fuzz', (codec) => {
  it(`returns a valid Envelope or throws ProtocolError for ${RUNS} inputs`, () => {
    const tally: Tally = { ok: 0, rejected: 0 };
    const started = performance.now();
    fc.assert(
      fc.property(inputArb(codec), (bytes) => decodeOrReject(codec, bytes, tally)),
      { numRuns: RUNS },
    );
    const ms = performance.now() - started;
    expect(tally.ok + tally.rejected).toBeGreaterThanOrEqual(RUNS);
    // Both outcomes must actually be exercised.
    expect(tally.ok).toBeGreaterThan(RUNS / 200);
    expect(tally.rejected).toBeGreaterThan(RUNS / 10);
    console.log(
      `${codec.name}: ${RUNS} inputs, ${tally.ok} decoded, ${tally.rejected} rejected, ${ms.toFixed(0)} ms`,
    );
  });
});
