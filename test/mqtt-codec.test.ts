import fc from 'fast-check';
import mqttPacket from 'mqtt-packet';
import { describe, expect, it } from 'vitest';
import { MqttCodec } from '../src/mqtt/codec.js';
import { mqttPacketLength } from '../src/mqtt/length.js';
import { isKind, ProtocolError, toEnvelope } from '../src/protocol/index.js';

/** The MQTT codec fed garbage and damaged packets: a valid envelope or a ProtocolError, nothing else. */

const RUNS = 3000;

const topic = fc.stringMatching(/^[a-z0-9/]{1,20}$/);
const packetArb = (version: 4 | 5): fc.Arbitrary<Buffer> =>
  fc
    .oneof(
      fc.record({ cmd: fc.constant('pingreq' as const) }),
      fc.record({ cmd: fc.constant('disconnect' as const) }),
      fc.record({
        cmd: fc.constant('publish' as const),
        topic,
        payload: fc.uint8Array({ maxLength: 40 }).map((u) => Buffer.from(u)),
        qos: fc.constantFrom(0, 1) as fc.Arbitrary<0 | 1>,
        messageId: fc.integer({ min: 1, max: 65535 }),
        retain: fc.boolean(),
        dup: fc.constant(false),
      }),
      fc.record({
        cmd: fc.constant('subscribe' as const),
        messageId: fc.integer({ min: 1, max: 65535 }),
        subscriptions: fc.array(
          fc.record({ topic, qos: fc.constantFrom(0, 1, 2) as fc.Arbitrary<0 | 1 | 2> }),
          {
            minLength: 1,
            maxLength: 3,
          },
        ),
      }),
      fc.record({
        cmd: fc.constant('unsubscribe' as const),
        messageId: fc.integer({ min: 1, max: 65535 }),
        unsubscriptions: fc.array(topic, { minLength: 1, maxLength: 3 }),
      }),
    )
    .map((p) => mqttPacket.generate(p as mqttPacket.Packet, { protocolVersion: version }));

/** A packet with some bytes changed, cut or extended, framed again so that the length matches. */
const damaged = (version: 4 | 5) =>
  fc
    .tuple(
      packetArb(version),
      fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 4 }),
      fc.nat(8),
    )
    .map(([bytes, edits, cut]) => {
      const b = Buffer.from(bytes);
      for (const [at, value] of edits) if (b.length > 2) b[2 + (at % (b.length - 2))] = value;
      return cut > 0 && cut < b.length - 2 ? b.subarray(0, b.length - cut) : b;
    });

function connected(version: 4 | 5): MqttCodec {
  const codec = new MqttCodec();
  codec.decode(
    mqttPacket.generate(
      {
        cmd: 'connect',
        protocolVersion: version,
        clientId: 'fuzz',
        keepalive: 30,
        clean: true,
        username: 'u',
      },
      { protocolVersion: version },
    ),
  );
  return codec;
}

describe.each([4, 5] as const)('MQTT %s codec fuzz', (version) => {
  it(`decodes or refuses with ProtocolError, for ${RUNS} damaged packets`, () => {
    let ok = 0;
    let refused = 0;
    fc.assert(
      fc.property(
        fc.oneof(
          damaged(version),
          fc.uint8Array({ maxLength: 64 }).map((u) => Buffer.from(u)),
        ),
        (bytes) => {
          const codec = connected(version);
          // What the socket layer hands on: a whole packet by its length, or nothing.
          let n: number;
          try {
            n = mqttPacketLength(bytes, 1 << 16);
          } catch (err) {
            expect(err).toBeInstanceOf(ProtocolError);
            refused++;
            return;
          }
          if (n === 0 || n > bytes.length) return;
          try {
            const env = codec.decode(bytes.subarray(0, n));
            expect(isKind(env.kind)).toBe(true);
            toEnvelope(env);
            ok++;
          } catch (err) {
            expect(err).toBeInstanceOf(ProtocolError);
            refused++;
          }
        },
      ),
      { numRuns: RUNS },
    );
    expect(ok).toBeGreaterThan(RUNS / 10);
    expect(refused).toBeGreaterThan(RUNS / 50);
  });

  it('a packet other than CONNECT first is refused at its first byte; a length past 4 bytes or the maximum too', () => {
    expect(() => mqttPacketLength(Buffer.from([0xc0, 0x00]), 1024, true)).toThrow(/must be CONNECT/);
    expect(mqttPacketLength(Buffer.from([0x10]), 1024, true)).toBe(0);
    expect(() => mqttPacketLength(Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x01]), 1 << 30)).toThrow(
      /longer than 4 bytes/,
    );
    expect(() => mqttPacketLength(Buffer.from([0x30, 0x80, 0x08]), 1024)).toThrow(
      /larger than the maximum of 1024/,
    );
    expect(mqttPacketLength(Buffer.from([0x30, 0x7f]), 1024)).toBe(129);
  });

  it('the parser shared by all connections keeps nothing of a malformed packet', () => {
    const a = connected(version);
    // A SUBSCRIBE whose topic claims 62 bytes of the 2 there are: refused, and the parser stopped mid-way.
    expect(() => a.decode(Buffer.from([0x82, 6, 0, 3, 0, 62, 0x78, 0]))).toThrow(ProtocolError);
    const b = connected(version); // another connection's CONNECT reads whole
    expect(b.decode(mqttPacket.generate({ cmd: 'pingreq' }))).toEqual({ kind: 'ping' });
  });

  it('a PUBLISH topic longer than a route name may be is refused', () => {
    const codec = connected(version);
    const publish = (topic: string) =>
      mqttPacket.generate(
        { cmd: 'publish', topic, payload: Buffer.from('1'), qos: 0, retain: false, dup: false },
        { protocolVersion: version },
      );
    expect(codec.decode(publish('t'.repeat(256)))).toMatchObject({ kind: 'msg', data: 1 });
    expect(() => codec.decode(publish('t'.repeat(257)))).toThrow(/topic must be at most 256 characters/);
  });
});

describe('MQTT codec: qos-1 packet ids', () => {
  it('a redelivery keeps its packet id with DUP set; a PUBACK acks its seq and those before; a second one does nothing', () => {
    const codec = connected(5);
    const parse = (bytes: Uint8Array) => {
      const out: mqttPacket.Packet[] = [];
      const parser = mqttPacket.parser({ protocolVersion: 5 });
      parser.on('packet', (p: mqttPacket.Packet) => out.push(p));
      parser.parse(Buffer.from(bytes));
      return out[0] as mqttPacket.IPublishPacket;
    };
    const first = parse(codec.encode({ kind: 'push', type: 'order', data: { n: 1 }, seq: 7, qos: 1 }));
    const second = parse(codec.encode({ kind: 'push', type: 'order', data: { n: 2 }, seq: 8, qos: 1 }));
    const again = parse(codec.encode({ kind: 'push', type: 'order', data: { n: 1 }, seq: 7, qos: 1 }));
    expect(first).toMatchObject({ cmd: 'publish', topic: 'order', qos: 1, dup: false });
    expect(again.messageId).toBe(first.messageId);
    expect(again.dup).toBe(true);
    expect(second.messageId).not.toBe(first.messageId);
    const puback = (id: number | undefined) =>
      codec.decode(mqttPacket.generate({ cmd: 'puback', messageId: id ?? 0 }, { protocolVersion: 5 }));
    expect(puback(second.messageId)).toEqual({ kind: 'ack', seq: 8 });
    expect(puback(first.messageId)).toEqual({ kind: 'pong' }); // acked with seq 8 already
    expect(puback(second.messageId)).toEqual({ kind: 'pong' });
  });
});
