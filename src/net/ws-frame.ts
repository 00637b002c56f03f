import { createHash } from 'node:crypto';

/**
 * What a WebSocket server writes (RFC 6455): unmasked frames, framed once into one buffer. The
 * receiving side is ws-link.ts.
 */

export const OP_CONTINUATION = 0x0;
export const OP_TEXT = 0x1;
export const OP_BINARY = 0x2;
export const OP_CLOSE = 0x8;
export const OP_PING = 0x9;
export const OP_PONG = 0xa;

/**
 * A buffer for one final frame of `opcode` with a payload of `n` bytes, its header written (`rsv1`:
 * compressed). Returns it and where the payload goes; the caller writes every payload byte, so the
 * pool's unzeroed memory is fine.
 */
function frameFor(opcode: number, n: number, rsv1: boolean): { out: Buffer; at: number } {
  const at = n < 126 ? 2 : n < 65536 ? 4 : 10;
  const out = Buffer.allocUnsafe(at + n);
  out[0] = rsv1 ? 0xc0 | opcode : 0x80 | opcode;
  if (n < 126) {
    out[1] = n;
  } else if (n < 65536) {
    out[1] = 126;
    out[2] = n >>> 8;
    out[3] = n & 0xff;
  } else {
    out[1] = 127;
    out.writeUInt32BE(Math.floor(n / 2 ** 32), 2);
    out.writeUInt32BE(n >>> 0, 6);
  }
  return { out, at };
}

/** One final frame of `opcode` with `payload`, header and payload in one buffer (`rsv1`: compressed). */
export function wsFrameOf(opcode: number, payload: Uint8Array, rsv1 = false): Buffer {
  const { out, at } = frameFor(opcode, payload.length, rsv1);
  out.set(payload, at);
  return out;
}

/** A text message given as a string, as one frame: the UTF-8 is written into the frame's buffer. */
export function wsTextFrame(text: string): Buffer {
  const n = Buffer.byteLength(text);
  const { out, at } = frameFor(OP_TEXT, n, false);
  out.write(text, at, n, 'utf8');
  return out;
}

/** A data message as one frame: text for the JSON codec, binary otherwise. */
export function wsFrame(payload: Uint8Array, text: boolean): Buffer {
  return wsFrameOf(text ? OP_TEXT : OP_BINARY, payload);
}

/** A data message compressed with permessage-deflate (RSV1 set), as one frame. */
export function wsFrameDeflated(compressed: Uint8Array, text: boolean): Buffer {
  return wsFrameOf(text ? OP_TEXT : OP_BINARY, compressed, true);
}

/** A close frame: the code (1005 and 1006 cannot be sent: 1000) and the reason, cut to 123 bytes. */
export function closeFrame(code: number, reason: string): Buffer {
  const c =
    code === 1000 ||
    (code >= 3000 && code <= 4999) ||
    (code >= 1001 && code <= 1014 && code !== 1005 && code !== 1006)
      ? code
      : 1000;
  const text = truncateReason(reason);
  const body = Buffer.allocUnsafe(2 + Buffer.byteLength(text));
  body.writeUInt16BE(c, 0);
  body.write(text, 2);
  return wsFrameOf(OP_CLOSE, body);
}

/** A close reason fits a control frame: at most 123 bytes of UTF-8, cut at a character. */
export function truncateReason(reason: string): string {
  if (Buffer.byteLength(reason) <= 123) return reason;
  let cut = reason.slice(0, 120);
  while (Buffer.byteLength(cut) > 120) cut = cut.slice(0, -1);
  return cut;
}

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

/** Sec-WebSocket-Accept for a Sec-WebSocket-Key. */
export function acceptKey(key: string): string {
  return createHash('sha1')
    .update(key + GUID)
    .digest('base64');
}
