// Pylon's 4-byte framing for the benchmark's raw `net` server and TCP clients: the header is
// written and read by src/protocol/framing.ts (writeFrameHeader, frameLength), as everywhere.
import {
  FRAME_HEADER_SIZE,
  frameLength,
  MAX_FRAME_LENGTH,
  writeFrameHeader,
} from '../../dist/protocol/framing.js';

/** Header + ASCII/UTF-8 text in one buffer. */
export function frameText(text) {
  const n = Buffer.byteLength(text);
  const out = Buffer.allocUnsafe(FRAME_HEADER_SIZE + n);
  writeFrameHeader(out, 0, n);
  out.write(text, FRAME_HEADER_SIZE);
  return out;
}

/**
 * Splits chunks into frames. State lives in the object that owns it (`holder.rest`, a Buffer
 * or null), so a connection needs no decoder object of its own. Calls `onFrame(holder, body,
 * whole)` where `whole` is header + body (a view into the chunk when possible).
 */
export function readFrames(holder, chunk, onFrame) {
  let buf = holder.rest === null ? chunk : Buffer.concat([holder.rest, chunk]);
  let pos = 0;
  const end = buf.length;
  while (end - pos >= FRAME_HEADER_SIZE) {
    const whole = frameLength(pos === 0 ? buf : buf.subarray(pos), MAX_FRAME_LENGTH);
    if (end - pos < whole) break;
    onFrame(holder, buf.subarray(pos + FRAME_HEADER_SIZE, pos + whole), buf.subarray(pos, pos + whole));
    pos += whole;
  }
  if (pos === end) holder.rest = null;
  else {
    // Keep only the unread tail (copied, so the chunk it came from can be released).
    buf = Buffer.from(buf.subarray(pos));
    holder.rest = buf;
  }
}
