import { ProtocolError } from './errors.js';

/**
 * TCP framing: each frame is a 4-byte big-endian unsigned body length, then the body (one encoded
 * envelope). A zero-length frame is a valid frame (the codec then rejects the empty body).
 */

/** Default largest frame body, in bytes. */
export const DEFAULT_MAX_FRAME = 1024 * 1024;

/** Largest length the 4-byte header can declare. */
export const MAX_FRAME_LENGTH = 0xffff_ffff;

/** Bytes of the length header. */
export const FRAME_HEADER_SIZE = 4;

/** Header + body in one new buffer (one allocation, one copy of the body). */
export function frame(body: Uint8Array): Uint8Array {
  const length = body.length;
  if (length > MAX_FRAME_LENGTH) {
    throw new RangeError(`frame body of ${length} bytes is longer than a 4-byte length allows`);
  }
  const out = new Uint8Array(FRAME_HEADER_SIZE + length);
  out[0] = length >>> 24;
  out[1] = (length >>> 16) & 0xff;
  out[2] = (length >>> 8) & 0xff;
  out[3] = length & 0xff;
  out.set(body, FRAME_HEADER_SIZE);
  return out;
}

const HEADER = 0;
const BODY = 1;

/**
 * Splits a TCP byte stream into frames: a byte state machine in the style of ws's Receiver.
 * Chunks may be split at any byte (inside the header too) and may hold many frames.
 *
 * - A frame lying wholly inside one chunk is handed out as a zero-copy `subarray` of that chunk
 *   (valid as long as the caller does not reuse the chunk's memory).
 * - A frame spread over several chunks is reassembled into a freshly allocated buffer of exactly its
 *   length, allocated once when its header is complete and never reused afterwards.
 * - A declared length above `maxFrame` throws ProtocolError(code 'FRAME_TOO_LARGE') as soon as the
 *   header is complete, before any of the body is buffered.
 * - After any error (including one thrown by `onFrame`, which leaves the rest of that chunk unread)
 *   the decoder is failed: every later `push` throws a ProtocolError. Close the connection.
 *
 * `push` is not re-entrant: calling it from inside `onFrame` throws.
 */
export class FrameDecoder {
  readonly maxFrame: number;
  #state = HEADER;
  /** Header bytes received so far (0..3) while in HEADER state. */
  #headerBytes = 0;
  /** The length being read, accumulated byte by byte when the header is split. */
  #length = 0;
  /** The frame being reassembled (BODY state). */
  #body: Uint8Array | null = null;
  /** Bytes of #body filled so far. */
  #filled = 0;
  #error: ProtocolError | null = null;
  #pushing = false;

  constructor(maxFrame: number = DEFAULT_MAX_FRAME) {
    if (!Number.isInteger(maxFrame) || maxFrame < 0 || maxFrame > MAX_FRAME_LENGTH) {
      throw new RangeError(`maxFrame must be an integer from 0 to ${MAX_FRAME_LENGTH}, got ${maxFrame}`);
    }
    this.maxFrame = maxFrame;
  }

  /** Bytes received for the incomplete frame (header bytes included), 0 between frames. */
  get buffered(): number {
    return this.#state === HEADER ? this.#headerBytes : FRAME_HEADER_SIZE + this.#filled;
  }

  /** True once the decoder has failed; every later push throws. */
  get failed(): boolean {
    return this.#error !== null;
  }

  /**
   * Feeds bytes from the stream; calls `onFrame(frame, ctx)` for each complete frame, in order.
   * `ctx` is passed through so the caller needs no per-connection closure.
   */
  push<C>(chunk: Uint8Array, onFrame: (frame: Uint8Array, ctx: C) => void, ctx: C): void {
    if (this.#error !== null) throw this.#error;
    if (this.#pushing) throw new Error('FrameDecoder.push called from inside onFrame');
    this.#pushing = true;
    try {
      this.#run(chunk, onFrame, ctx);
    } finally {
      this.#pushing = false;
    }
  }

  #run<C>(chunk: Uint8Array, onFrame: (frame: Uint8Array, ctx: C) => void, ctx: C): void {
    const end = chunk.length;
    let pos = 0;
    while (pos < end) {
      if (this.#state === BODY) {
        const body = this.#body!;
        const take = Math.min(body.length - this.#filled, end - pos);
        body.set(pos === 0 && take === end ? chunk : chunk.subarray(pos, pos + take), this.#filled);
        pos += take;
        this.#filled += take;
        if (this.#filled < body.length) return;
        this.#body = null;
        this.#filled = 0;
        this.#state = HEADER;
        this.#emit(body, onFrame, ctx);
        continue;
      }

      // HEADER
      let length: number;
      if (this.#headerBytes === 0 && end - pos >= FRAME_HEADER_SIZE) {
        length =
          ((chunk[pos]! << 24) | (chunk[pos + 1]! << 16) | (chunk[pos + 2]! << 8) | chunk[pos + 3]!) >>> 0;
        pos += FRAME_HEADER_SIZE;
      } else {
        this.#length = this.#length * 256 + chunk[pos++]!;
        if (++this.#headerBytes < FRAME_HEADER_SIZE) continue;
        length = this.#length;
        this.#length = 0;
        this.#headerBytes = 0;
      }

      if (length > this.maxFrame) {
        this.#error = new ProtocolError(
          `frame of ${length} bytes is larger than the maximum of ${this.maxFrame}`,
          'FRAME_TOO_LARGE',
        );
        throw this.#error;
      }

      if (end - pos >= length) {
        // Wholly inside this chunk: a zero-copy view.
        const view = chunk.subarray(pos, pos + length);
        pos += length;
        this.#emit(view, onFrame, ctx);
        continue;
      }

      // Split: allocate exactly once, copy what we have, wait for the rest.
      const body = new Uint8Array(length);
      body.set(chunk.subarray(pos), 0);
      this.#body = body;
      this.#filled = end - pos;
      this.#state = BODY;
      return;
    }
  }

  #emit<C>(frameBytes: Uint8Array, onFrame: (frame: Uint8Array, ctx: C) => void, ctx: C): void {
    try {
      onFrame(frameBytes, ctx);
    } catch (err) {
      this.#error = new ProtocolError('frame decoder stopped: the frame handler threw', 'PROTOCOL', {
        cause: err,
      });
      throw err;
    }
  }
}
