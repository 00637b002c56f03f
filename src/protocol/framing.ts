import { ProtocolError } from './errors.js';

/**
 * TCP framing: each frame is a 4-byte big-endian unsigned body length, then the body (one encoded
 * envelope). A zero-length frame is a valid frame (the codec then rejects the empty body). The
 * header is written by `writeFrameHeader` and read by `frameLength`, nowhere else.
 */

/**
 * Default largest frame body a server accepts, in bytes: 64 KiB. What a client sends a push or
 * IM gateway is small (a chat message of 2,000 characters is at most 8 KB of UTF-8); Centrifugo
 * limits client messages to 64 KiB too, and every byte a client may announce is a byte an
 * attacker may make the server hold. Raise it (maxFrame) for uploads; pushes from the server
 * are not limited by it.
 */
export const DEFAULT_MAX_FRAME = 64 * 1024;

/** Default largest frame a client accepts from the server, in bytes: 16 MiB. */
export const DEFAULT_CLIENT_MAX_FRAME = 16 * 1024 * 1024;

/** Largest length the 4-byte header can declare. */
export const MAX_FRAME_LENGTH = 0xffff_ffff;

/** Bytes of the length header. */
export const FRAME_HEADER_SIZE = 4;

/** Writes the 4-byte big-endian header for a body of `length` bytes at `out[at]`. */
export function writeFrameHeader(out: Uint8Array, at: number, length: number): void {
  out[at] = length >>> 24;
  out[at + 1] = (length >>> 16) & 0xff;
  out[at + 2] = (length >>> 8) & 0xff;
  out[at + 3] = length & 0xff;
}

/** Header + body in one new buffer (one allocation, one copy of the body). */
export function frame(body: Uint8Array): Uint8Array {
  const length = body.length;
  if (length > MAX_FRAME_LENGTH) {
    throw new RangeError(`frame body of ${length} bytes is longer than a 4-byte length allows`);
  }
  const out = new Uint8Array(FRAME_HEADER_SIZE + length);
  writeFrameHeader(out, 0, length);
  out.set(body, FRAME_HEADER_SIZE);
  return out;
}

/**
 * The length of the frame at the start of `buffer`, header included (it may be more than
 * `buffer.length`: the body has not all come), or 0 while the header is incomplete. A declared
 * body over `maxFrame` throws ProtocolError FRAME_TOO_LARGE at once, before any of it is held.
 */
export function frameLength(buffer: Uint8Array, maxFrame: number): number {
  if (buffer.length < FRAME_HEADER_SIZE) return 0;
  const n = ((buffer[0]! << 24) | (buffer[1]! << 16) | (buffer[2]! << 8) | buffer[3]!) >>> 0;
  if (n > maxFrame) {
    throw new ProtocolError(
      `frame of ${n} bytes is larger than the maximum of ${maxFrame}`,
      'FRAME_TOO_LARGE',
    );
  }
  return FRAME_HEADER_SIZE + n;
}

/** Checks a maxFrame option. */
export function checkMaxFrame(maxFrame: number): number {
  if (!Number.isInteger(maxFrame) || maxFrame < 0 || maxFrame > MAX_FRAME_LENGTH) {
    throw new RangeError(`maxFrame must be an integer from 0 to ${MAX_FRAME_LENGTH}, got ${maxFrame}`);
  }
  return maxFrame;
}
