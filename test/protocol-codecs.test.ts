import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { Packr, unpack } from 'msgpackr';
import protobuf from 'protobufjs';
import { describe, expect, it } from 'vitest';
import {
  type Codec,
  codecs,
  decodeJsonText,
  ENVELOPE_PROTO_DESCRIPTOR,
  type Envelope,
  getCodec,
  jsonCodec,
  KINDS,
  type Kind,
  MAX_ID,
  MAX_TYPE_LENGTH,
  msgpackCodec,
  ProtocolError,
  PylonError,
  protoCodec,
  SUBPROTOCOLS,
  toEnvelope,
} from '../src/protocol/index.js';

const PROTO_FILE = fileURLToPath(new URL('../proto/pylon/v1/envelope.proto', import.meta.url));
const RUNS = 1_000;
const enc = new TextEncoder();
const dec = new TextDecoder();

// ---------------------------------------------------------------------------------------------
// Arbitraries

const FIELDS = ['id', 'seq', 'type', 'qos', 'data', 'error'] as const;
const REQUIRED: Partial<Record<Kind, readonly (typeof FIELDS)[number][]>> = {
  req: ['id', 'type'],
  res: ['id'],
  msg: ['type'],
  push: ['type'],
  ack: ['seq'],
};

const textArb = fc.string({ unit: 'binary', maxLength: 40 });
const typeArb = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 200 }).filter((s) => s.length <= MAX_TYPE_LENGTH),
  fc.constant('x'.repeat(MAX_TYPE_LENGTH)),
);
const jsonDataArb = fc.jsonValue({ stringUnit: 'binary', maxDepth: 4 });
const binaryDataArb = fc.oneof(jsonDataArb, fc.uint8Array({ maxLength: 300 }));

/** Valid envelopes: each optional field present or not, and always the fields its kind requires. */
function envelopeArb(dataArb: fc.Arbitrary<unknown>): fc.Arbitrary<Envelope> {
  return fc
    .record({
      kind: fc.constantFrom(...KINDS),
      id: fc.integer({ min: 0, max: MAX_ID }),
      seq: fc.oneof(fc.maxSafeNat(), fc.constant(Number.MAX_SAFE_INTEGER), fc.nat(1000)),
      type: typeArb,
      qos: fc.constantFrom(0 as const, 1 as const),
      data: dataArb,
      error: fc.record({ code: textArb, message: textArb }),
      present: fc.array(fc.boolean(), { minLength: FIELDS.length, maxLength: FIELDS.length }),
    })
    .map((all) => {
      const env: Envelope = { kind: all.kind };
      const required = REQUIRED[all.kind] ?? [];
      FIELDS.forEach((field, i) => {
        if (all.present[i] || required.includes(field)) {
          (env as unknown as Record<string, unknown>)[field] = all[field];
        }
      });
      return env;
    });
}

/** What decoding the encoded envelope must give back (JSON cannot carry -0: it becomes 0). */
function expected(env: Envelope, renameProto = false): Envelope {
  if (env.data === undefined || env.data instanceof Uint8Array) return env;
  let data = JSON.parse(JSON.stringify(env.data));
  // msgpackr renames a "__proto__" map key to "__proto_" on decode (prototype pollution guard).
  if (renameProto) data = JSON.parse(JSON.stringify(data).replaceAll('"__proto__":', '"__proto_":'));
  return { ...env, data };
}

function roundTrip(codec: Codec, env: Envelope): Envelope {
  const bytes = codec.encode(env);
  expect(bytes).toBeInstanceOf(Uint8Array);
  return codec.decode(bytes);
}

// ---------------------------------------------------------------------------------------------

describe('codec registry', () => {
  it('maps names and subprotocols to the codecs', () => {
    expect(codecs).toEqual({ json: jsonCodec, msgpack: msgpackCodec, proto: protoCodec });
    expect(getCodec('json')).toBe(jsonCodec);
    expect(getCodec('msgpack')).toBe(msgpackCodec);
    expect(getCodec('proto')).toBe(protoCodec);
    expect(getCodec('xml')).toBeUndefined();
    expect(getCodec('toString')).toBeUndefined();
    expect(getCodec('__proto__')).toBeUndefined();
    for (const [sub, name] of Object.entries(SUBPROTOCOLS)) {
      expect(getCodec(name)?.name).toBe(name);
      expect(sub).toBe(`pylon.v1.${name}`);
    }
    expect(jsonCodec.binary).toBe(false);
    expect(msgpackCodec.binary).toBe(true);
    expect(protoCodec.binary).toBe(true);
  });
});

describe('round-trips (property)', () => {
  it('json: arbitrary envelopes with JSON data', () => {
    fc.assert(
      fc.property(envelopeArb(jsonDataArb), (env) => {
        expect(roundTrip(jsonCodec, env)).toEqual(expected(env));
        expect(decodeJsonText(dec.decode(jsonCodec.encode(env)))).toEqual(expected(env));
      }),
      { numRuns: RUNS },
    );
  });

  it('msgpack: arbitrary envelopes with JSON or binary data', () => {
    fc.assert(
      fc.property(envelopeArb(binaryDataArb), (env) => {
        expect(roundTrip(msgpackCodec, env)).toEqual(expected(env, true));
      }),
      { numRuns: RUNS },
    );
  });

  it('proto: arbitrary envelopes with JSON or binary data', () => {
    fc.assert(
      fc.property(envelopeArb(binaryDataArb), (env) => {
        expect(roundTrip(protoCodec, env)).toEqual(expected(env));
      }),
      { numRuns: RUNS },
    );
  });

  it('binary data decodes to a plain Uint8Array copy, for msgpack and proto', () => {
    for (const codec of [msgpackCodec, protoCodec]) {
      fc.assert(
        fc.property(fc.uint8Array({ minLength: 1, maxLength: 100 }), (data) => {
          const bytes = codec.encode({ kind: 'push', type: 't', data });
          const out = codec.decode(bytes);
          expect(out.data).toBeInstanceOf(Uint8Array);
          expect((out.data as Uint8Array).constructor).toBe(Uint8Array);
          expect(out.data).toEqual(data);
          bytes.fill(0xee); // scribbling on the frame must not change the decoded data
          expect(out.data).toEqual(data);
          const fromBuffer = codec.decode(Buffer.from(codec.encode({ kind: 'push', type: 't', data })));
          expect((fromBuffer.data as Uint8Array).constructor).toBe(Uint8Array);
          expect(fromBuffer.data).toEqual(data);
        }),
        { numRuns: 200 },
      );
    }
  });
});

describe('encode output is safe to keep', () => {
  it.each([jsonCodec, msgpackCodec, protoCodec])(
    '$name: exact-size plain Uint8Array, not overwritten',
    (codec) => {
      const frames: [Envelope, Uint8Array, Uint8Array][] = [];
      for (let i = 0; i < 2_000; i++) {
        const env: Envelope = { kind: 'push', seq: i, type: `t${i}`, data: { i, pad: 'p'.repeat(i % 50) } };
        const bytes = codec.encode(env);
        expect(bytes.constructor).toBe(Uint8Array);
        expect(bytes.byteOffset).toBe(0);
        expect(bytes.buffer.byteLength).toBe(bytes.length);
        frames.push([env, bytes, bytes.slice()]);
      }
      for (const [env, bytes, copy] of frames) {
        expect(bytes).toEqual(copy);
        expect(codec.decode(bytes)).toEqual(env);
      }
    },
  );

  it('msgpackr itself returns views into a shared slab (why msgpackCodec copies)', () => {
    const packr = new Packr({ useRecords: false });
    const a = packr.pack({ a: 1 });
    const b = packr.pack({ b: 2 });
    expect(a.buffer).toBe(b.buffer);
    expect(a.buffer.byteLength).toBeGreaterThan(a.length);
    expect(unpack(a)).toEqual({ a: 1 }); // not overwritten by the second pack
  });

  it('decode accepts a view at an offset and a Node Buffer', () => {
    for (const codec of [jsonCodec, msgpackCodec, protoCodec]) {
      const env: Envelope = { kind: 'req', id: 9, type: 'echo', data: { x: [1, 2] } };
      const bytes = codec.encode(env);
      const big = new Uint8Array(bytes.length + 20).fill(0xc1);
      big.set(bytes, 10);
      expect(codec.decode(big.subarray(10, 10 + bytes.length))).toEqual(env);
      expect(codec.decode(Buffer.from(bytes))).toEqual(env);
    }
    const bin = msgpackCodec.decode(
      Buffer.from(msgpackCodec.encode({ kind: 'msg', type: 'b', data: enc.encode('hi') })),
    );
    expect((bin.data as Uint8Array).constructor).toBe(Uint8Array);
  });
});

describe('json codec', () => {
  it('encodes the documented text exactly', () => {
    const text = '{"kind":"req","id":7,"type":"echo","data":{"x":1}}';
    expect(dec.decode(jsonCodec.encode({ kind: 'req', id: 7, type: 'echo', data: { x: 1 } }))).toBe(text);
    expect(jsonCodec.decode(enc.encode(text))).toEqual({ kind: 'req', id: 7, type: 'echo', data: { x: 1 } });
  });

  it('writes fields in the order kind,id,seq,type,qos,data,error and omits undefined ones', () => {
    const env = {
      error: { code: 'NOT_FOUND', message: 'no handler' },
      data: null,
      qos: 1,
      type: 't',
      seq: 3,
      id: 2,
      kind: 'res',
    } as Envelope;
    expect(dec.decode(jsonCodec.encode(env))).toBe(
      '{"kind":"res","id":2,"seq":3,"type":"t","qos":1,"data":null,"error":{"code":"NOT_FOUND","message":"no handler"}}',
    );
    expect(dec.decode(jsonCodec.encode({ kind: 'ping', id: undefined, data: undefined }))).toBe(
      '{"kind":"ping"}',
    );
  });

  it('an answer (res with an id and data) reads exactly as any envelope would', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 2 ** 32 - 1 }),
        fc.option(fc.jsonValue(), { nil: undefined }),
        (id, data) => {
          const env = { kind: 'res', id, data } as Envelope;
          const general = JSON.stringify({ kind: 'res', id, data });
          expect(dec.decode(jsonCodec.encode(env))).toBe(general);
          expect(jsonCodec.encodeText?.(env)).toBe(general);
          expect(jsonCodec.decode(jsonCodec.encode(env))).toEqual(
            data === undefined ? { kind: 'res', id } : env,
          );
        },
      ),
    );
    // Binary data is still refused, and an error answer still carries its error.
    expect(() => jsonCodec.encode({ kind: 'res', id: 1, data: { b: new Uint8Array(2) } })).toThrow(
      /binary data/,
    );
    expect(dec.decode(jsonCodec.encode({ kind: 'res', id: 1, error: { code: 'X', message: 'm' } }))).toBe(
      '{"kind":"res","id":1,"error":{"code":"X","message":"m"}}',
    );
  });

  it('reads hotpot one-way messages as kind msg', () => {
    const out = jsonCodec.decode(enc.encode('{"type":"Echo","data":{"Message":"hi"}}'));
    expect(out).toEqual({ kind: 'msg', type: 'Echo', data: { Message: 'hi' } });
    expect(decodeJsonText('{"type":"Echo"}')).toEqual({ kind: 'msg', type: 'Echo' });
  });

  it('refuses binary data at any depth with BAD_REQUEST', () => {
    const cases: unknown[] = [
      new Uint8Array([1, 2]),
      new Uint8Array(0),
      { nested: { deeper: [new Uint8Array([1])] } },
      { empty: new Uint8Array(0) },
      [new ArrayBuffer(4)],
      { view: new DataView(new ArrayBuffer(2)) },
      { f: new Float32Array([1.5]) },
      { buf: Buffer.from('hi') },
    ];
    for (const data of cases) {
      let caught: unknown;
      try {
        jsonCodec.encode({ kind: 'msg', type: 't', data });
      } catch (err) {
        caught = err;
      }
      expect(caught).toBeInstanceOf(PylonError);
      expect(caught).not.toBeInstanceOf(ProtocolError);
      expect((caught as PylonError).code).toBe('BAD_REQUEST');
      expect((caught as PylonError).message).toBe('binary data needs the msgpack or proto codec');
    }
  });

  it('still encodes ordinary objects that look like serialized arrays', () => {
    const data = { 0: 'a', 1: 'b', empty: {}, list: [{}], type: 'Buffer' };
    expect(roundTrip(jsonCodec, { kind: 'msg', type: 't', data })).toEqual({ kind: 'msg', type: 't', data });
  });

  it('turns other unencodable data (BigInt, cycles) into BAD_REQUEST', () => {
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    for (const data of [10n, { n: 1n }, cyclic]) {
      expect(() => jsonCodec.encode({ kind: 'msg', type: 't', data })).toThrow(
        expect.objectContaining({ code: 'BAD_REQUEST' }),
      );
    }
  });

  it('rejects invalid UTF-8, bad JSON and empty frames with ProtocolError', () => {
    const bad = [
      new Uint8Array([0x7b, 0xff, 0x7d]),
      new Uint8Array([0xc3]),
      new Uint8Array(0),
      enc.encode('{"kind":"ping"'),
      enc.encode('{"kind":"ping"} x'),
      enc.encode('[]'),
      enc.encode('null'),
      enc.encode('"ping"'),
    ];
    for (const bytes of bad) expect(() => jsonCodec.decode(bytes)).toThrow(ProtocolError);
    expect(() => jsonCodec.decode(new Uint8Array([0x7b, 0xff, 0x7d]))).toThrow(/UTF-8/);
    expect(() => decodeJsonText('{')).toThrow(ProtocolError);
  });
});

describe('msgpack codec', () => {
  it('writes a plain msgpack map with the JSON field names', () => {
    // {"kind":"ping"}: fixmap(1), fixstr "kind", fixstr "ping"
    expect([...msgpackCodec.encode({ kind: 'ping' })]).toEqual([
      0x81, 0xa4, 0x6b, 0x69, 0x6e, 0x64, 0xa4, 0x70, 0x69, 0x6e, 0x67,
    ]);
    const env: Envelope = { kind: 'req', id: 7, type: 'echo', data: { x: 1, b: new Uint8Array([1, 2]) } };
    // Any msgpack reader sees the same object (msgpackr's plain default unpack here).
    expect(unpack(msgpackCodec.encode(env))).toEqual(env);
  });

  it('reads what other encoders write: map16, uint64/int64 numbers, nil fields', () => {
    const foreign = new Packr({ useRecords: false, variableMapSize: false, useBigIntExtension: false });
    const bytes = foreign.pack({ kind: 'ack', seq: 5n, id: null, type: null, extra: 'ignored' });
    expect(bytes[0]).toBe(0xde); // map16
    expect(msgpackCodec.decode(bytes)).toEqual({ kind: 'ack', seq: 5 });
    // {"kind":"res","id": uint64 7}
    const u64 = new Uint8Array([
      0x82, 0xa4, 0x6b, 0x69, 0x6e, 0x64, 0xa3, 0x72, 0x65, 0x73, 0xa2, 0x69, 0x64, 0xcf, 0, 0, 0, 0, 0, 0, 0,
      7,
    ]);
    expect(msgpackCodec.decode(u64)).toEqual({ kind: 'res', id: 7 });
    u64[14] = 0xff; // id = 2^56 + 7: beyond MAX_ID
    expect(() => msgpackCodec.decode(u64)).toThrow(/id/);
  });

  it('writes a seq of 2^32 and above as a msgpack int64, not a float64', () => {
    for (const seq of [2 ** 32, 1_700_000_000_000, Number.MAX_SAFE_INTEGER]) {
      const bytes = msgpackCodec.encode({ kind: 'ack', seq });
      expect(bytes).not.toContain(0xcb);
      expect(unpack(bytes)).toEqual({ kind: 'ack', seq: BigInt(seq) }); // a plain reader sees an int64
      expect(msgpackCodec.decode(bytes)).toEqual({ kind: 'ack', seq });
    }
    expect([...msgpackCodec.encode({ kind: 'ack', seq: 2 ** 32 - 1 }).subarray(-5)]).toEqual([
      0xce, 0xff, 0xff, 0xff, 0xff,
    ]);
  });

  it('does not apply hotpot compatibility', () => {
    expect(() => msgpackCodec.decode(msgpackCodec.encode({ type: 'Echo' } as unknown as Envelope))).toThrow(
      /kind/,
    );
  });

  it('rejects trailing bytes, non-maps, truncation and empty frames with ProtocolError', () => {
    const good = msgpackCodec.encode({ kind: 'req', id: 1, type: 'x', data: 'hello' });
    const cases = [
      Uint8Array.of(...good, 0x00),
      good.subarray(0, good.length - 1),
      new Uint8Array(0),
      Uint8Array.of(0x93, 1, 2, 3), // array
      Uint8Array.of(0x2a), // 42
      Uint8Array.of(0xc4, 0x01, 0x00), // bin
      Uint8Array.of(0xc1), // never-used byte
      Uint8Array.of(0xd6, 0xff, 0, 0, 0, 0), // timestamp ext: a Date
      Uint8Array.of(0xdf, 0xff, 0xff, 0xff, 0xff), // map32 claiming 4G entries
    ];
    for (const bytes of cases) expect(() => msgpackCodec.decode(bytes)).toThrow(ProtocolError);
    expect(() => msgpackCodec.decode(Uint8Array.of(...good, 0x00))).toThrow(/end of buffer not reached/);
  });

  it('refuses msgpackr reference extensions (no cyclic data from peers)', () => {
    const cloner = new Packr({ useRecords: false, structuredClone: true });
    const data: Record<string, unknown> = { a: 1 };
    data.self = data;
    const bytes = cloner.pack({ kind: 'msg', type: 't', data });
    expect(() => msgpackCodec.decode(bytes)).toThrow(ProtocolError);
  });

  it('turns unencodable data into BAD_REQUEST', () => {
    expect(() =>
      msgpackCodec.encode({ kind: 'msg', type: 't', data: { f: () => 1, big: 2n ** 70n } }),
    ).toThrow(expect.objectContaining({ code: 'BAD_REQUEST' }));
  });
});

describe('proto codec', () => {
  const EnvelopeType = protobuf.Root.fromJSON(ENVELOPE_PROTO_DESCRIPTOR).lookupType('pylon.v1.Envelope');

  it('the inline descriptor equals proto/pylon/v1/envelope.proto', () => {
    const source = readFileSync(PROTO_FILE, 'utf8');
    expect(source).toMatch(/^syntax = "proto3";$/m);
    const parsed = protobuf.parse(source, { keepCase: true });
    expect(parsed.package).toBe('pylon.v1');
    expect(parsed.root.toJSON()).toEqual(ENVELOPE_PROTO_DESCRIPTOR);
    expect(protobuf.loadSync(PROTO_FILE).toJSON()).toEqual(ENVELOPE_PROTO_DESCRIPTOR);
  });

  it('writes the documented fields', () => {
    expect([...protoCodec.encode({ kind: 'ping' })]).toEqual([0x08, 8]);
    const bytes = protoCodec.encode({ kind: 'req', id: 7, type: 'echo', data: { x: 1 } });
    const m = EnvelopeType.toObject(EnvelopeType.decode(bytes), { longs: Number }) as Record<string, unknown>;
    expect(m.kind).toBe(3);
    expect(m.id).toBe(7);
    expect(m.type).toBe('echo');
    expect(dec.decode(m.data as Uint8Array)).toBe('{"x":1}');
    expect(m.raw).toBeUndefined();
    const bin = EnvelopeType.decode(protoCodec.encode({ kind: 'msg', type: 'b', data: Uint8Array.of(9) }));
    expect((bin as unknown as { raw: Uint8Array }).raw).toEqual(Uint8Array.of(9));
    expect((bin as unknown as { data: unknown }).data).toBeNull();
  });

  it('carries uint64 seq as a JS number, up to MAX_SAFE_INTEGER', () => {
    const out = protoCodec.decode(protoCodec.encode({ kind: 'ack', seq: Number.MAX_SAFE_INTEGER }));
    expect(out).toEqual({ kind: 'ack', seq: Number.MAX_SAFE_INTEGER });
    expect(typeof out.seq).toBe('number');
    const tooBig = EnvelopeType.encode({ kind: 7, seq: '9007199254740993' }).finish();
    expect(() => protoCodec.decode(tooBig)).toThrow(/seq/);
    const max = EnvelopeType.encode({ kind: 7, seq: '18446744073709551615' }).finish();
    expect(() => protoCodec.decode(max)).toThrow(/seq/);
  });

  it('data null, false, 0 and "" survive (presence, not truthiness)', () => {
    for (const data of [null, false, 0, '', [], {}]) {
      expect(roundTrip(protoCodec, { kind: 'msg', type: 't', data })).toEqual({
        kind: 'msg',
        type: 't',
        data,
      });
    }
    expect(roundTrip(protoCodec, { kind: 'msg', type: 't', data: new Uint8Array(0) })).toEqual({
      kind: 'msg',
      type: 't',
      data: new Uint8Array(0),
    });
  });

  it('rejects data and raw together, unknown or unspecified kinds, bad data JSON', () => {
    const both = EnvelopeType.encode({
      kind: 5,
      type: 't',
      data: enc.encode('1'),
      raw: Uint8Array.of(1),
    }).finish();
    expect(() => protoCodec.decode(both)).toThrow(/data and raw/);
    expect(() => protoCodec.decode(EnvelopeType.encode({ type: 't' }).finish())).toThrow(/kind/);
    expect(() => protoCodec.decode(EnvelopeType.encode({ kind: 0, type: 't' }).finish())).toThrow(/kind/);
    expect(() => protoCodec.decode(EnvelopeType.encode({ kind: 14, type: 't' }).finish())).toThrow(/kind/);
    expect(() => protoCodec.decode(EnvelopeType.encode({ kind: -1, type: 't' }).finish())).toThrow(/kind/);
    const badJson = EnvelopeType.encode({ kind: 5, type: 't', data: enc.encode('{') }).finish();
    expect(() => protoCodec.decode(badJson)).toThrow(/data is not valid JSON/);
    const badUtf8 = EnvelopeType.encode({
      kind: 5,
      type: 't',
      data: Uint8Array.of(0x22, 0xff, 0x22),
    }).finish();
    expect(() => protoCodec.decode(badUtf8)).toThrow(/UTF-8/);
    expect(() => protoCodec.decode(new Uint8Array(0))).toThrow(ProtocolError);
    expect(() => protoCodec.decode(Uint8Array.of(0x08))).toThrow(ProtocolError); // truncated varint
    expect(() => protoCodec.decode(Uint8Array.of(0x08, 0x03, 0x0f))).toThrow(ProtocolError); // bad wire type
  });

  it('decodes a Node Buffer exactly as the same bytes in a Uint8Array: a length past the end is refused', () => {
    // type "A" declared 4294967295 bytes long: the frame ends after one byte of it.
    const truncated = Uint8Array.of(0x08, 0x03, 0x10, 0x01, 0x22, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x41);
    expect(() => protoCodec.decode(truncated)).toThrow(ProtocolError);
    expect(() => protoCodec.decode(Buffer.from(truncated))).toThrow(ProtocolError);
    // The same for every cut of a valid frame: a prefix never decodes into something else.
    const whole = protoCodec.encode({ kind: 'req', id: 1, type: 'chat.send', data: { text: 'hello' } });
    for (let n = 1; n < whole.length; n++) {
      const cut = whole.subarray(0, n);
      let plain: unknown;
      let buffered: unknown;
      try {
        plain = protoCodec.decode(cut);
      } catch (err) {
        plain = (err as Error).constructor;
      }
      try {
        buffered = protoCodec.decode(Buffer.from(cut));
      } catch (err) {
        buffered = (err as Error).constructor;
      }
      expect(buffered).toEqual(plain);
    }
  });

  it('applies the envelope rules (qos range, type length, required fields)', () => {
    expect(() => protoCodec.decode(EnvelopeType.encode({ kind: 6, type: 't', qos: 2 }).finish())).toThrow(
      /qos/,
    );
    expect(() => protoCodec.decode(EnvelopeType.encode({ kind: 6, type: 'x'.repeat(257) }).finish())).toThrow(
      /type/,
    );
    expect(() => protoCodec.decode(EnvelopeType.encode({ kind: 3, type: 'echo' }).finish())).toThrow(/id/);
    const withError = EnvelopeType.encode({ kind: 4, id: 1, error: {} }).finish();
    expect(protoCodec.decode(withError)).toEqual({ kind: 'res', id: 1, error: { code: '', message: '' } });
  });

  it('refuses nested binary data (cannot be JSON) with BAD_REQUEST', () => {
    expect(() => protoCodec.encode({ kind: 'msg', type: 't', data: { b: Uint8Array.of(1) } })).toThrow(
      expect.objectContaining({ code: 'BAD_REQUEST' }),
    );
  });
});

describe('toEnvelope validation', () => {
  const ok: Envelope = { kind: 'req', id: 1, type: 'echo' };
  const cases: [string, unknown, RegExp][] = [
    ['null', null, /envelope must be an object/],
    ['an array', [ok], /envelope must be an object/],
    ['a string', 'req', /envelope must be an object/],
    ['a Date', new Date(), /envelope must be an object/],
    ['a Uint8Array', new Uint8Array(2), /envelope must be an object/],
    ['no kind', { id: 1, type: 'echo' }, /kind is missing/],
    ['unknown kind', { kind: 'request', id: 1, type: 'echo' }, /kind must be one of/],
    ['kind not a string', { kind: 3, id: 1, type: 'echo' }, /kind must be one of/],
    ['id a float', { ...ok, id: 1.5 }, /^id must be an integer/],
    ['id negative', { ...ok, id: -1 }, /^id must be an integer/],
    ['id above MAX_ID', { ...ok, id: MAX_ID + 1 }, /^id must be an integer/],
    ['id a string', { ...ok, id: '1' }, /^id must be an integer/],
    ['id NaN', { ...ok, id: Number.NaN }, /^id must be an integer/],
    ['seq negative', { kind: 'ack', seq: -1 }, /^seq must be a non-negative safe integer/],
    ['seq unsafe', { kind: 'ack', seq: 2 ** 53 }, /^seq must be a non-negative safe integer/],
    ['seq a float', { kind: 'ack', seq: 0.5 }, /^seq must be a non-negative safe integer/],
    ['seq a bigint', { kind: 'ack', seq: 5n }, /^seq must be a non-negative safe integer/],
    ['type a number', { ...ok, type: 5 }, /^type must be a string/],
    ['type too long', { ...ok, type: 'x'.repeat(257) }, /^type must be at most 256 characters/],
    ['error a string', { kind: 'res', id: 1, error: 'boom' }, /^error must be an object/],
    ['error.code missing', { kind: 'res', id: 1, error: { message: 'm' } }, /^error\.code must be a string/],
    ['error.message a number', { kind: 'res', id: 1, error: { code: 'X', message: 1 } }, /^error\.message/],
    ['qos 2', { kind: 'push', type: 't', qos: 2 }, /^qos must be 0 or 1/],
    ['qos "1"', { kind: 'push', type: 't', qos: '1' }, /^qos must be 0 or 1/],
    ['req without id', { kind: 'req', type: 'echo' }, /^req needs an id/],
    ['res without id', { kind: 'res', data: 1 }, /^res needs an id/],
    ['msg without type', { kind: 'msg', data: 1 }, /^msg needs a type/],
    ['push without type', { kind: 'push', seq: 1 }, /^push needs a type/],
    ['ack without seq', { kind: 'ack', id: 1 }, /^ack needs a seq/],
    ['req with null id', { kind: 'req', id: null, type: 'echo' }, /^req needs an id/],
  ];

  it.each(cases)('rejects %s', (_name, raw, message) => {
    expect(() => toEnvelope(raw)).toThrow(ProtocolError);
    expect(() => toEnvelope(raw)).toThrow(message);
  });

  it('rejects the same through every codec', () => {
    const raw = { kind: 'push', type: 't', qos: 2 };
    expect(() => jsonCodec.decode(enc.encode(JSON.stringify(raw)))).toThrow(/qos/);
    expect(() => msgpackCodec.decode(new Packr({ useRecords: false }).pack(raw))).toThrow(/qos/);
  });

  it('lets a req without a type through (the gateway answers it BAD_REQUEST: it has an id)', () => {
    expect(toEnvelope({ kind: 'req', id: 1 })).toEqual({ kind: 'req', id: 1 });
  });

  it('accepts the limits and returns only the known fields', () => {
    const raw = {
      kind: 'res',
      id: MAX_ID,
      seq: Number.MAX_SAFE_INTEGER,
      type: 'x'.repeat(256),
      qos: 0,
      data: { any: ['thing'] },
      error: { code: 'E', message: 'm', stack: 'dropped' },
      extra: 1,
      __proto__: null,
    };
    const env = toEnvelope(raw);
    expect(Object.keys(env)).toEqual(['kind', 'id', 'seq', 'type', 'qos', 'data', 'error']);
    expect(env.error).toEqual({ code: 'E', message: 'm' });
    expect(toEnvelope({ kind: 'req', id: 0, type: '' })).toEqual({ kind: 'req', id: 0, type: '' });
  });

  it('treats null optional fields as absent, but keeps data: null', () => {
    expect(
      toEnvelope({ kind: 'ping', id: null, seq: null, type: null, qos: null, error: null, data: null }),
    ).toEqual({
      kind: 'ping',
      data: null,
    });
    const env = toEnvelope({ kind: 'ping', data: undefined });
    expect('data' in env).toBe(false);
  });

  it('accepts any data value', () => {
    for (const data of [0, '', false, null, [1, 'a'], { deep: { x: [] } }, new Uint8Array(3)]) {
      expect(toEnvelope({ kind: 'msg', type: 't', data }).data).toBe(data);
    }
  });

  it('hotpot: only with the option, only without a kind, only with a string type', () => {
    expect(toEnvelope({ type: 'Echo', data: 1 }, { hotpot: true })).toEqual({
      kind: 'msg',
      type: 'Echo',
      data: 1,
    });
    expect(() => toEnvelope({ type: 'Echo' })).toThrow(/kind is missing/);
    expect(() => toEnvelope({ type: 5 }, { hotpot: true })).toThrow(/kind/);
    expect(() => toEnvelope({ data: 1 }, { hotpot: true })).toThrow(/kind/);
    expect(() => toEnvelope({ kind: 'bogus', type: 'Echo' }, { hotpot: true })).toThrow(
      /kind must be one of/,
    );
    expect(toEnvelope({ kind: 'push', type: 'Echo' }, { hotpot: true }).kind).toBe('push');
  });
});
