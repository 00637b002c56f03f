import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  DEFAULT_MAX_FRAME,
  FrameDecoder,
  frame,
  jsonCodec,
  MAX_FRAME_LENGTH,
  msgpackCodec,
  ProtocolError,
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

interface Sink {
  frames: Uint8Array[];
}

function collect(frameBytes: Uint8Array, sink: Sink): void {
  // Copy: a zero-copy view is only valid while the caller keeps the chunk intact.
  sink.frames.push(frameBytes.slice());
}

function decodeChunks(chunks: Uint8Array[], maxFrame?: number): Uint8Array[] {
  const decoder = new FrameDecoder(maxFrame);
  const sink: Sink = { frames: [] };
  for (const chunk of chunks) decoder.push(chunk, collect, sink);
  expect(decoder.buffered).toBe(0);
  return sink.frames;
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
    expect(DEFAULT_MAX_FRAME).toBe(1024 * 1024);
    expect(MAX_FRAME_LENGTH).toBe(0xffff_ffff);
  });
});

describe('FrameDecoder', () => {
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

  it('hands out zero-copy views for whole frames and fresh buffers for reassembled ones', () => {
    const decoder = new FrameDecoder();
    const seen: Uint8Array[] = [];
    const chunk1 = concat([frame(Uint8Array.of(1, 1)), frame(Uint8Array.of(2, 2, 2)).subarray(0, 5)]);
    const chunk2 = concat([frame(Uint8Array.of(2, 2, 2)).subarray(5), frame(Uint8Array.of(3))]);
    decoder.push(chunk1, (f, list) => list.push(f), seen);
    expect(decoder.buffered).toBe(5);
    decoder.push(chunk2, (f, list) => list.push(f), seen);
    expect(seen.map((f) => [...f])).toEqual([[1, 1], [2, 2, 2], [3]]);
    const [first, second, third] = seen as [Uint8Array, Uint8Array, Uint8Array];
    expect(first.buffer).toBe(chunk1.buffer); // view
    expect(first.byteOffset).toBe(4);
    expect(third.buffer).toBe(chunk2.buffer); // view
    expect(second.buffer).not.toBe(chunk1.buffer); // reassembled
    expect(second.buffer).not.toBe(chunk2.buffer);
    expect(second.byteOffset).toBe(0);
    expect(second.buffer.byteLength).toBe(3);
    chunk1.fill(0);
    chunk2.fill(0);
    expect([...second]).toEqual([2, 2, 2]); // owns its bytes
  });

  it('never reuses a reassembly buffer', () => {
    const decoder = new FrameDecoder();
    const seen: Uint8Array[] = [];
    const bytes = concat([frame(Uint8Array.of(1, 2, 3, 4)), frame(Uint8Array.of(5, 6, 7, 8))]);
    for (let i = 0; i < bytes.length; i++)
      decoder.push(bytes.subarray(i, i + 1), (f, list) => list.push(f), seen);
    expect(seen.map((f) => [...f])).toEqual([
      [1, 2, 3, 4],
      [5, 6, 7, 8],
    ]);
    expect(seen[0]!.buffer).not.toBe(seen[1]!.buffer);
  });

  it('passes ctx through to onFrame', () => {
    const decoder = new FrameDecoder();
    const ctx = { id: 'conn-1', count: 0 };
    decoder.push(concat([frame(Uint8Array.of(1)), frame(Uint8Array.of(2))]), (_f, c) => c.count++, ctx);
    expect(ctx.count).toBe(2);
  });

  it('reports buffered bytes of the incomplete frame (header included)', () => {
    const decoder = new FrameDecoder();
    const noop = () => {};
    const bytes = frame(new Uint8Array(10));
    expect(decoder.buffered).toBe(0);
    decoder.push(bytes.subarray(0, 2), noop, null);
    expect(decoder.buffered).toBe(2);
    decoder.push(bytes.subarray(2, 4), noop, null);
    expect(decoder.buffered).toBe(4);
    decoder.push(bytes.subarray(4, 9), noop, null);
    expect(decoder.buffered).toBe(9);
    decoder.push(bytes.subarray(9), noop, null);
    expect(decoder.buffered).toBe(0);
  });

  it('carries codec frames end to end', () => {
    const envs = [
      { kind: 'req', id: 1, type: 'echo', data: { x: 1 } },
      { kind: 'push', seq: 9, type: 'n', qos: 1, data: 'hello' },
    ] as const;
    for (const codec of [jsonCodec, msgpackCodec]) {
      const bytes = concat(envs.map((e) => frame(codec.encode(e))));
      const out: unknown[] = [];
      const decoder = new FrameDecoder();
      for (let i = 0; i < bytes.length; i += 3) {
        decoder.push(bytes.subarray(i, i + 3), (f, list) => list.push(codec.decode(f)), out);
      }
      expect(out).toEqual(envs);
    }
  });
});

describe('FrameDecoder limits and errors', () => {
  it('throws FRAME_TOO_LARGE from the header alone, before any body arrives', () => {
    const decoder = new FrameDecoder(1000);
    const header = frame(new Uint8Array(1001)).subarray(0, 4);
    let caught: unknown;
    try {
      decoder.push(header, () => {}, null);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(ProtocolError);
    expect((caught as ProtocolError).code).toBe('FRAME_TOO_LARGE');
    expect((caught as ProtocolError).message).toMatch(/1001.*1000/);
  });

  it('throws FRAME_TOO_LARGE when the header is split too', () => {
    const decoder = new FrameDecoder(16);
    decoder.push(Uint8Array.of(0xff, 0xff), () => {}, null);
    expect(() => decoder.push(Uint8Array.of(0xff), () => {}, null)).not.toThrow();
    expect(() => decoder.push(Uint8Array.of(0xff), () => {}, null)).toThrow(
      expect.objectContaining({ code: 'FRAME_TOO_LARGE' }),
    );
  });

  it('uses DEFAULT_MAX_FRAME by default and accepts exactly maxFrame', () => {
    const header = (n: number) => Uint8Array.of(n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff);
    expect(() => new FrameDecoder().push(header(DEFAULT_MAX_FRAME), () => {}, null)).not.toThrow();
    expect(() => new FrameDecoder().push(header(DEFAULT_MAX_FRAME + 1), () => {}, null)).toThrow(
      expect.objectContaining({ code: 'FRAME_TOO_LARGE' }),
    );
    expect(decodeChunks([frame(new Uint8Array(8))], 8)).toEqual([new Uint8Array(8)]);
    expect(decodeChunks([frame(new Uint8Array(0))], 0)).toEqual([new Uint8Array(0)]);
  });

  it('stops frames before the oversize one and refuses all input after the error', () => {
    const decoder = new FrameDecoder(4);
    const sink: Sink = { frames: [] };
    const bytes = concat([frame(Uint8Array.of(1)), frame(new Uint8Array(5)), frame(Uint8Array.of(2))]);
    expect(() => decoder.push(bytes, collect, sink)).toThrow(ProtocolError);
    expect(sink.frames).toEqual([Uint8Array.of(1)]);
    expect(decoder.failed).toBe(true);
    expect(() => decoder.push(frame(Uint8Array.of(3)), collect, sink)).toThrow(
      expect.objectContaining({ code: 'FRAME_TOO_LARGE' }),
    );
    expect(() => decoder.push(new Uint8Array(0), collect, sink)).toThrow(ProtocolError);
    expect(sink.frames).toHaveLength(1);
  });

  it('fails (and stays failed) when onFrame throws', () => {
    const decoder = new FrameDecoder();
    const boom = new Error('handler bug');
    expect(() =>
      decoder.push(
        frame(Uint8Array.of(1)),
        () => {
          throw boom;
        },
        null,
      ),
    ).toThrow(boom);
    expect(decoder.failed).toBe(true);
    expect(() => decoder.push(frame(Uint8Array.of(2)), () => {}, null)).toThrow(ProtocolError);
  });

  it('refuses re-entrant push from onFrame', () => {
    const decoder = new FrameDecoder();
    expect(() =>
      decoder.push(
        frame(Uint8Array.of(1)),
        (_f, d) => d.push(frame(Uint8Array.of(2)), () => {}, null),
        decoder,
      ),
    ).toThrow(/inside onFrame/);
  });

  it('validates maxFrame', () => {
    expect(() => new FrameDecoder(-1)).toThrow(RangeError);
    expect(() => new FrameDecoder(1.5)).toThrow(RangeError);
    expect(() => new FrameDecoder(MAX_FRAME_LENGTH + 1)).toThrow(RangeError);
    expect(new FrameDecoder(MAX_FRAME_LENGTH).maxFrame).toBe(MAX_FRAME_LENGTH);
  });

  it('property: random bytes in random chunks only ever give frames or FRAME_TOO_LARGE', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 40 }), { maxLength: 10 }), (chunks) => {
        const decoder = new FrameDecoder(64);
        let total = 0;
        try {
          for (const chunk of chunks) {
            decoder.push(
              chunk,
              (f) => {
                total += 4 + f.length;
              },
              null,
            );
          }
        } catch (err) {
          expect(err).toBeInstanceOf(ProtocolError);
          expect((err as ProtocolError).code).toBe('FRAME_TOO_LARGE');
          return;
        }
        expect(total + decoder.buffered).toBe(chunks.reduce((n, c) => n + c.length, 0));
      }),
      { numRuns: 2_000 },
    );
  });
});
