import { isUtf8 } from 'node:buffer';
import { createRequire } from 'node:module';
import { ProtocolError } from '../protocol/errors.js';
import type { OutFrame } from './out-frame.js';
import { CLOSED, OPEN, SocketLink, type SocketLinkOptions } from './socket-link.js';
import { type Deflate, type DeflateOptions, deflateMessage, inflateMessage } from './ws-deflate.js';
import {
  closeFrame,
  OP_BINARY,
  OP_CLOSE,
  OP_CONTINUATION,
  OP_PING,
  OP_PONG,
  OP_TEXT,
  wsFrame,
  wsFrameDeflated,
  wsFrameOf,
  wsTextFrame,
} from './ws-frame.js';

export interface WsLinkOptions extends SocketLinkOptions {
  /** Largest message, in bytes (fragments together; a compressed one also once inflated). */
  maxMessage: number;
  /** permessage-deflate with clients that offer it (ws-deflate.ts). Default: never negotiated. */
  compression?: DeflateOptions;
  /** Check that text messages are UTF-8 (off where the codec checks them anyway). */
  validateUtf8: boolean;
}

/**
 * A WebSocket connection, server side (RFC 6455), read by the one reassembly loop: each packet is
 * one frame. Client frames must be masked; the one extension is permessage-deflate, when the
 * listener has compression on and the client offers it (ws-deflate.ts); control frames are at most 125 bytes and not fragmented; a fragmented message is
 * kept as copies of its fragments, counted in the inbound budget and bound by `maxMessage`.
 * Pings are answered through the same write path as everything else (the hard cap and the
 * outbound budget count them). A close is answered and the socket ended; a close of ours waits
 * `closeTimeout` for the peer's answer, reading on.
 */
export class WsLink extends SocketLink {
  readonly transport = 'ws' as const;
  declare readonly options: WsLinkOptions;
  /** Opcode of the fragmented message under way (0: none). */
  private fragOp = 0;
  private frags: Uint8Array[] | undefined = undefined;
  /** @internal Bytes of the fragmented message under way. */
  fragBytes = 0;
  /** The fragmented message under way is compressed (RSV1 on its first frame). */
  private fragDeflated = false;
  /** permessage-deflate, when the client offered it and the listener has compression on. */
  deflate: Deflate | undefined = undefined;

  send(payload: Uint8Array, text: boolean): boolean {
    if (this.state !== OPEN) return false;
    const d = this.deflate;
    const c = this.options.compression;
    if (d !== undefined && c !== undefined && payload.length >= c.threshold)
      return this.write(wsFrameDeflated(deflateMessage(payload, c.level, d.serverBits), text));
    return this.write(wsFrame(payload, text));
  }

  sendText(text: string): boolean {
    if (this.state !== OPEN) return false;
    if (this.deflate !== undefined) return this.send(Buffer.from(text), true);
    return this.write(wsTextFrame(text));
  }

  sendFrame(f: OutFrame): boolean {
    if (this.state !== OPEN) return false;
    const d = this.deflate;
    const c = this.options.compression;
    if (d !== undefined && c !== undefined && f.payload.length >= c.threshold)
      return this.write(f.wsDeflated(c.level, d.serverBits));
    return this.write(f.ws());
  }

  close(code: number, reason: string): void {
    if (this.state !== OPEN) return;
    this.write(closeFrame(code, reason));
    this.dropMessage();
    this.closing(code, reason);
    // A peer that broke the protocol is failed (RFC 6455 §7.1.7): no waiting for its close.
    if (this.failed) {
      this.socket.end();
      return;
    }
    // Read on (data is ignored from now on) so the peer's close is seen.
    this.paused = false;
    this.socket.resume();
  }

  protected override held(): number {
    return this.reader.held + this.fragBytes;
  }

  /** @internal One whole frame (header, mask, payload). */
  packet(frame: Uint8Array): boolean {
    // Refused untouched while paused (it is offered again, and unmasking is done once).
    if (this.paused) return false;
    const b0 = frame[0] as number;
    const op = b0 & 0x0f;
    const len7 = (frame[1] as number) & 0x7f;
    const at = len7 < 126 ? 2 : len7 === 126 ? 4 : 10;
    const payload = frame.subarray(at + 4);
    unmask(payload, frame.subarray(at, at + 4));
    if (op >= OP_CLOSE) return this.control(op, payload);
    if (this.state !== OPEN) return true;
    const fin = (b0 & 0x80) !== 0;
    if (op !== OP_CONTINUATION) {
      if (this.fragOp !== 0) throw new ProtocolError('a new message began before the last one ended');
      const deflated = (b0 & 0x40) !== 0;
      if (fin) return this.deliver(payload, op === OP_TEXT, deflated);
      this.fragOp = op;
      this.fragDeflated = deflated;
      this.frags = [payload.slice()];
      this.fragBytes = payload.length;
      return true;
    }
    if (this.fragOp === 0) throw new ProtocolError('a continuation frame without a message');
    (this.frags as Uint8Array[]).push(payload.slice());
    this.fragBytes += payload.length;
    if (!fin) return true;
    const message = Buffer.concat(this.frags as Uint8Array[], this.fragBytes);
    const text = this.fragOp === OP_TEXT;
    const deflated = this.fragDeflated;
    this.dropMessage();
    return this.deliver(message, text, deflated);
  }

  private deliver(data: Uint8Array, text: boolean, deflated: boolean): boolean {
    const message =
      deflated && this.deflate !== undefined
        ? inflateMessage(this.deflate, data, this.options.maxMessage)
        : data;
    if (text && this.options.validateUtf8 && !isUtf8(message)) {
      throw new ProtocolError('a text message that is not UTF-8');
    }
    this.delivered++;
    this.options.sink.onPacket(this, message, text);
    return true;
  }

  private control(op: number, payload: Uint8Array): boolean {
    if (op === OP_PING) {
      if (this.state === OPEN) {
        this.write(wsFrameOf(OP_PONG, payload));
        this.options.sink.onLife?.(this);
      }
      return true;
    }
    if (op === OP_PONG) {
      if (this.state === OPEN) this.options.sink.onLife?.(this);
      return true;
    }
    if (this.state === CLOSED) return true;
    // Close.
    let code = 1005;
    let reason = '';
    if (payload.length === 1) throw new ProtocolError('a close frame of one byte');
    if (payload.length >= 2) {
      code = ((payload[0] as number) << 8) | (payload[1] as number);
      if (!sendableCode(code)) throw new ProtocolError(`close code ${code} is not valid`);
      const text = payload.subarray(2);
      if (!isUtf8(text)) throw new ProtocolError('a close reason that is not UTF-8');
      reason = Buffer.from(text.buffer, text.byteOffset, text.length).toString();
    }
    if (this.state === OPEN) {
      // The peer closes: answer with its code, then end (the server closes the TCP connection).
      this.write(closeFrame(code === 1005 ? 1000 : code, ''));
      this.dropMessage();
      this.closing(code, reason || `closed by the peer (${code})`);
    }
    // Ours answered, or theirs answered: done.
    this.socket.end();
    return true;
  }

  private dropMessage(): void {
    this.fragOp = 0;
    this.fragDeflated = false;
    this.frags = undefined;
    this.fragBytes = 0;
  }
}

/** Codes a close frame may carry (RFC 6455 §7.4). */
function sendableCode(code: number): boolean {
  return (
    (code >= 1000 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006) ||
    (code >= 3000 && code <= 4999)
  );
}

/**
 * Where a WebSocket frame ends: its header, mask and payload. Checked before any payload is held:
 * masking, reserved bits, opcodes, control-frame rules, and the message size.
 */
export function wsFrameLength(buf: Uint8Array, link: SocketLink): number {
  if (buf.length < 2) return 0;
  const b0 = buf[0] as number;
  const b1 = buf[1] as number;
  if ((b1 & 0x80) === 0) throw new ProtocolError('a client frame must be masked');
  const op = b0 & 0x0f;
  // RSV1 marks a compressed message: only with permessage-deflate, only on a message's first frame.
  const reserved = b0 & 0x70;
  if (
    reserved !== 0 &&
    !(reserved === 0x40 && (link as WsLink).deflate !== undefined && (op === OP_TEXT || op === OP_BINARY))
  )
    throw new ProtocolError(
      (link as WsLink).deflate === undefined
        ? 'reserved bits set (no extension was negotiated)'
        : 'reserved bits set on a frame that may not be compressed',
    );
  let len = b1 & 0x7f;
  if (op >= OP_CLOSE) {
    if (op > OP_PONG) throw new ProtocolError(`opcode ${op} is not defined`);
    if ((b0 & 0x80) === 0) throw new ProtocolError('a fragmented control frame');
    if (len > 125) throw new ProtocolError('a control frame over 125 bytes');
  } else if (op > OP_BINARY) throw new ProtocolError(`opcode ${op} is not defined`);
  let header = 2;
  if (len === 126) {
    if (buf.length < 4) return 0;
    len = ((buf[2] as number) << 8) | (buf[3] as number);
    header = 4;
  } else if (len === 127) {
    if (buf.length < 10) return 0;
    const high =
      (((buf[2] as number) << 24) |
        ((buf[3] as number) << 16) |
        ((buf[4] as number) << 8) |
        (buf[5] as number)) >>>
      0;
    const low =
      (((buf[6] as number) << 24) |
        ((buf[7] as number) << 16) |
        ((buf[8] as number) << 8) |
        (buf[9] as number)) >>>
      0;
    len = high * 2 ** 32 + low;
    header = 10;
  }
  if (op < OP_CLOSE) {
    const l = link as WsLink;
    const max = l.options.maxMessage;
    if (l.fragBytes + len > max) {
      throw new ProtocolError(
        `message of ${l.fragBytes + len} bytes is larger than the maximum of ${max}`,
        'FRAME_TOO_LARGE',
      );
    }
  }
  return header + 4 + len;
}

type Unmask = (buffer: Buffer, mask: Buffer) => void;
const nativeUnmask: Unmask | undefined = (() => {
  try {
    return (createRequire(import.meta.url)('bufferutil') as { unmask: Unmask }).unmask;
  } catch {
    return undefined;
  }
})();

/** XORs `payload` with the 4-byte mask, in place (native for 32 bytes and more, as ws does). */
function unmask(payload: Uint8Array, mask: Uint8Array): void {
  const n = payload.length;
  if (n >= 32 && nativeUnmask !== undefined) {
    nativeUnmask(asBuffer(payload), asBuffer(mask));
    return;
  }
  for (let i = 0; i < n; i++) payload[i] = (payload[i] as number) ^ (mask[i & 3] as number);
}

function asBuffer(b: Uint8Array): Buffer {
  return Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}
