import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  DEFAULT_MAX_FRAME,
  FRAME_HEADER_SIZE,
  frame,
  frameLength,
  jsonCodec,
  MAX_FRAME_LENGTH,
  msgpackCodec,
  ProtocolError,
  Reassembler,
} from '../src/protocol/index.js';

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Splits `bytes` at the given (sorted, deduplicated) offsets. */
function splitAt(bytes: Uint8Array, cuts: number[]): Uint8Array[] {
  const chunks: Uint8Array[] = [];
  let prev = 0;
  for (const cut of cuts) {
    chunks.push(bytes.subarray(prev, cut));
    prev = cut;
  }
  chunks.push(bytes.subarray(prev));
  return chunks;
}

/** Pylon's 4-byte framing read by the one reassembly loop; `frames` gets copies of the bodies. */
class FrameReader {
  readonly reader: Reassembler;
  readonly frames: Uint8Array[] = [];
  /** Refuse packets while set (reading paused). */
  paused = false;
  constructor(readonly maxFrame = DEFAULT_MAX_FRAME) {
    this.reader = new Reassembler(FRAME_HEADER_SIZE + maxFrame);
  }
  push(chunk: Uint8Array): void {
    this.reader.push(chunk, lengthOf, take, this);
  }
  drain(): void {
    this.reader.drain(lengthOf, take, this);
  }
}

function lengthOf(buffer: Uint8Array, r: FrameReader): number {
  return frameLength(buffer, r.maxFrame);
}

function take(packet: Uint8Array, r: FrameReader): boolean {
  if (r.paused) return false;
  // Copy: a zero-copy view is only valid during the call.
  r.frames.push(packet.slice(FRAME_HEADER_SIZE));
  return true;
}

function decodeChunks(chunks: Uint8Array[], maxFrame?: number): Uint8Array[] {
  const r = new FrameReader(maxFrame);
  for (const chunk of chunks) r.push(chunk);
  expect(r.reader.held).toBe(0);
  return r.frames;
}

const bodies = [
  new Uint8Array([1, 2, 3]),
  new Uint8Array(0),
  new Uint8Array(300).map((_, i) => i & 0xff),
  new Uint8Array([0xff]),
  new Uint8Array(0),
  new Uint8Array([9, 8, 7, 6, 5]),
];
const stream = concat(bodies.map(frame));

describe('frame()', () => {
  it('prefixes a 4-byte big-endian length and copies the body', () => {
    const body = new Uint8Array([0xaa, 0xbb]);
    const out = frame(body);
    expect([...out]).toEqual([0, 0, 0, 2, 0xaa, 0xbb]);
    body[0] = 0;
    expect(out[4]).toBe(0xaa);
    expect(out.byteOffset).toBe(0);
    expect(out.buffer.byteLength).toBe(6);
    expect([...frame(new Uint8Array(0))]).toEqual([0, 0, 0, 0]);
    expect([...frame(new Uint8Array(0x01_02_03)).subarray(0, 4)]).toEqual([0, 0x01, 0x02, 0x03]);
  });

  it('exports the limits', () => {
    expect(DEFAULT_MAX_FRAME).toBe(64 * 1024);
    expect(MAX_FRAME_LENGTH).toBe(0xffff_ffff);
  });
});

describe('Reassembler with the 4-byte framing', () => {
  it('decodes a coalesced stream (all frames in one chunk)', () => {
    expect(decodeChunks([stream])).toEqual(bodies);
  });

  it('decodes the stream split at every single point', () => {
    for (let cut = 0; cut <= stream.length; cut++) {
      expect(decodeChunks(splitAt(stream, [cut]))).toEqual(bodies);
    }
  });

  it('decodes the stream split at every pair of points in its first 40 bytes', () => {
    for (let a = 0; a <= 40; a++) {
      for (let b = a; b <= 40; b++) {
        expect(decodeChunks(splitAt(stream, [a, b]))).toEqual(bodies);
      }
    }
  });

  it('decodes the stream fed one byte at a time', () => {
    const chunks = Array.from({ length: stream.length }, (_, i) => stream.subarray(i, i + 1));
    expect(decodeChunks(chunks)).toEqual(bodies);
  });

  it('tolerates empty chunks', () => {
    expect(
      decodeChunks([new Uint8Array(0), stream.subarray(0, 2), new Uint8Array(0), stream.subarray(2)]),
    ).toEqual(bodies);
  });

  it('property: random frame lists under random chunkings', () => {
    fc.assert(
      fc.property(
        fc.array(fc.uint8Array({ maxLength: 600 }), { maxLength: 12 }),
        fc.array(fc.nat(), { maxLength: 20 }),
        (frames, rawCuts) => {
          const bytes = concat(frames.map(frame));
          const cuts = [
            ...new Set(rawCuts.map((c) => (bytes.length === 0 ? 0 : c % (bytes.length + 1)))),
          ].sort((x, y) => x - y);
          expect(decodeChunks(splitAt(bytes, cuts))).toEqual(frames);
        },
      ),
      { numRuns: 2_000 },
    );
  });

  it('hands out zero-copy views for whole packets and one new buffer for a reassembled one', () => {
    const seen: Uint8Array[] = [];
    const r = new Reassembler(1 << 20);
    const keep = (p: Uint8Array, list: Uint8Array[]) => {
      list.push(p);
    };
    const len = (b: Uint8Array) => frameLength(b, 1 << 20);
    const chunk1 = concat([frame(Uint8Array.of(1, 1)), frame(Uint8Array.of(2, 2, 2)).subarray(0, 5)]);
    const chunk2 = concat([frame(Uint8Array.of(2, 2, 2)).subarray(5), frame(Uint8Array.of(3))]);
    r.push(chunk1, len, keep, seen);
    expect(r.held).toBe(5);
    r.push(chunk2, len, keep, seen);
    expect(seen.map((f) => [...f.subarray(4)])).toEqual([[1, 1], [2, 2, 2], [3]]);
    const [first, second, third] = seen as [Uint8Array, Uint8Array, Uint8Array];
    expect(first.buffer).toBe(chunk1.buffer); // view
    expect(third.buffer).toBe(chunk2.buffer); // view
    expect(second.buffer).not.toBe(chunk1.buffer); // reassembled
    expect(second.buffer).not.toBe(chunk2.buffer);
    expect(second.buffer.byteLength).toBe(7);
    chunk1.fill(0);
    chunk2.fill(0);
    expect([...second.subarray(4)]).toEqual([2, 2, 2]); // owns its bytes
  });

  it('counts held bytes as they arrive, and never more than came (a header announcing 60 KiB holds 4 bytes)', () => {
    const r = new FrameReader();
    const bytes = frame(new Uint8Array(60_000));
    expect(r.reader.held).toBe(0);
    r.push(bytes.subarray(0, 2));
    expect(r.reader.held).toBe(2);
    r.push(bytes.subarray(2, 4));
    expect(r.reader.held).toBe(4);
    r.push(bytes.subarray(4, 9));
    expect(r.reader.held).toBe(9);
    r.push(bytes.subarray(9));
    expect(r.reader.held).toBe(0);
    expect(r.frames).toHaveLength(1);
  });

  it('copies a small rest of a big chunk, so the chunk is not pinned by what is held', () => {
    const r = new FrameReader();
    const big = concat([frame(new Uint8Array(50_000)), frame(new Uint8Array(10)).subarray(0, 3)]);
    r.push(big);
    expect(r.reader.held).toBe(3);
    const parts = (r.reader as unknown as { parts: Uint8Array[] }).parts;
    expect(parts[0]!.buffer).not.toBe(big.buffer);
    expect(parts[0]!.buffer.byteLength).toBe(3);
  });

  it('a refused packet stops the reading; drain offers it again, then the rest, in order', () => {
    const r = new FrameReader();
    r.push(frame(Uint8Array.of(1)));
    r.paused = true;
    r.push(
      concat([frame(Uint8Array.of(2)), frame(Uint8Array.of(3)), frame(Uint8Array.of(4)).subarray(0, 2)]),
    );
    expect(r.frames.map((f) => [...f])).toEqual([[1]]);
    expect(r.reader.held).toBe(5 + 5 + 2);
    r.paused = false;
    r.drain();
    expect(r.frames.map((f) => [...f])).toEqual([[1], [2], [3]]);
    r.push(frame(Uint8Array.of(4)).subarray(2));
    expect(r.frames.map((f) => [...f])).toEqual([[1], [2], [3], [4]]);
    expect(r.reader.held).toBe(0);
  });

  it('carries codec frames end to end', () => {
    const envs = [
      { kind: 'req', id: 1, type: 'echo', data: { x: 1 } },
      { kind: 'push', seq: 9, type: 'n', qos: 1, data: 'hello' },
    ] as const;
    for (const codec of [jsonCodec, msgpackCodec]) {
      const bytes = concat(envs.map((e) => frame(codec.encode(e))));
      const r = new FrameReader();
      for (let i = 0; i < bytes.length; i += 3) r.push(bytes.subarray(i, i + 3));
      expect(r.frames.map((f) => codec.decode(f))).toEqual(envs);
    }
  });
});

describe('limits and errors', () => {
  it('throws FRAME_TOO_LARGE from the header alone, before any body arrives', () => {
    const r = new FrameReader(1000);
    let caught: unknown;
    try {
      r.push(frame(new Uint8Array(1001)).subarray(0, 4));
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(ProtocolError);
    expect((caught as ProtocolError).code).toBe('FRAME_TOO_LARGE');
    expect((caught as ProtocolError).message).toMatch(/1001.*1000/);
    expect(r.reader.held).toBe(0);
  });

  it('throws FRAME_TOO_LARGE when the header is split too', () => {
    const r = new FrameReader(16);
    r.push(Uint8Array.of(0xff, 0xff));
    expect(() => r.push(Uint8Array.of(0xff))).not.toThrow();
    expect(() => r.push(Uint8Array.of(0xff))).toThrow(expect.objectContaining({ code: 'FRAME_TOO_LARGE' }));
  });

  it('accepts exactly maxFrame', () => {
    const header = (n: number) => Uint8Array.of(n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff);
    expect(() => new FrameReader().push(header(DEFAULT_MAX_FRAME))).not.toThrow();
    expect(() => new FrameReader().push(header(DEFAULT_MAX_FRAME + 1))).toThrow(
      expect.objectContaining({ code: 'FRAME_TOO_LARGE' }),
    );
    expect(decodeChunks([frame(new Uint8Array(8))], 8)).toEqual([new Uint8Array(8)]);
    expect(decodeChunks([frame(new Uint8Array(0))], 0)).toEqual([new Uint8Array(0)]);
  });

  it('hands out the frames before the oversize one, and drops what it held', () => {
    const r = new FrameReader(4);
    const bytes = concat([frame(Uint8Array.of(1)), frame(new Uint8Array(5)), frame(Uint8Array.of(2))]);
    expect(() => r.push(bytes)).toThrow(ProtocolError);
    expect(r.frames).toEqual([Uint8Array.of(1)]);
    expect(r.reader.held).toBe(0);
  });

  it('refuses more than maxPacket bytes without a whole packet (a line that never ends)', () => {
    const r = new Reassembler(16);
    const line = (b: Uint8Array) => {
      const i = b.indexOf(0x0a);
      return i < 0 ? 0 : i + 1;
    };
    const none = () => true;
    r.push(new TextEncoder().encode('0123456789'), line, none, null);
    expect(r.held).toBe(10);
    expect(() => r.push(new TextEncoder().encode('0123456789'), line, none, null)).toThrow(
      expect.objectContaining({ code: 'FRAME_TOO_LARGE' }),
    );
  });

  it('refuses a length function that answers nonsense', () => {
    const r = new Reassembler(16);
    expect(() =>
      r.push(
        Uint8Array.of(1),
        () => -1,
        () => true,
        null,
      ),
    ).toThrow(ProtocolError);
    expect(() =>
      r.push(
        Uint8Array.of(1),
        () => 1.5,
        () => true,
        null,
      ),
    ).toThrow(ProtocolError);
  });

  it('validates maxFrame', async () => {
    const { checkMaxFrame } = await import('../src/protocol/framing.js');
    expect(() => checkMaxFrame(-1)).toThrow(RangeError);
    expect(() => checkMaxFrame(1.5)).toThrow(RangeError);
    expect(() => checkMaxFrame(MAX_FRAME_LENGTH + 1)).toThrow(RangeError);
    expect(checkMaxFrame(MAX_FRAME_LENGTH)).toBe(MAX_FRAME_LENGTH);
  });

  it('property: random bytes in random chunks only ever give frames or FRAME_TOO_LARGE', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 40 }), { maxLength: 10 }), (chunks) => {
        const r = new FrameReader(64);
        try {
          for (const chunk of chunks) r.push(chunk);
        } catch (err) {
          expect(err).toBeInstanceOf(ProtocolError);
          expect((err as ProtocolError).code).toBe('FRAME_TOO_LARGE');
          return;
        }
        const total = r.frames.reduce((n, f) => n + 4 + f.length, 0);
        expect(total + r.reader.held).toBe(chunks.reduce((n, c) => n + c.length, 0));
      }),
      { numRuns: 2_000 },
    );
  });
});
