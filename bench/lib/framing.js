// 4-byte big-endian length framing (Pylon's TCP framing), the minimum the raw `net` server and the
// TCP clients need: no validation beyond the length, no copies for frames inside one chunk.

/** Header + ASCII/UTF-8 text in one buffer. */
export function frameText(text) {
  const n = Buffer.byteLength(text);
  const out = Buffer.allocUnsafe(4 + n);
  out.writeUInt32BE(n, 0);
  out.write(text, 4);
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
  while (end - pos >= 4) {
    const len = buf.readUInt32BE(pos);
    if (end - pos - 4 < len) break;
    onFrame(holder, buf.subarray(pos + 4, pos + 4 + len), buf.subarray(pos, pos + 4 + len));
    pos += 4 + len;
  }
  if (pos === end) holder.rest = null;
  else {
    // Keep only the unread tail (copied, so the chunk it came from can be released).
    buf = Buffer.from(buf.subarray(pos));
    holder.rest = buf;
  }
}
