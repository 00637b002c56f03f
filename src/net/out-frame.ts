import { FRAME_HEADER_SIZE, writeFrameHeader } from '../protocol/framing.js';
import { deflateMessage } from './ws-deflate.js';
import { wsFrame, wsFrameDeflated } from './ws-frame.js';

/**
 * One encoded message on its way out, framed lazily once per transport and then written as the
 * same bytes to every link of that transport: a broadcast to N connections costs one encode and
 * at most one framing per transport, not N (centrifuge's preparedData, socket.io's pre-framed
 * broadcast).
 */
export class OutFrame {
  private tcpBytes: Uint8Array | undefined = undefined;
  private wsBytes: Uint8Array | undefined = undefined;
  /** The compressed WebSocket frame, and the (level, window) it was compressed with. */
  private deflated: Uint8Array | undefined = undefined;
  private deflatedWith = -1;
  private sseBytes: Uint8Array | undefined = undefined;
  private lineBytes: Uint8Array | undefined = undefined;

  constructor(
    /** The codec's bytes for one envelope. */
    readonly payload: Uint8Array,
    /** Text (JSON) or binary: the WebSocket opcode. */
    readonly text: boolean,
  ) {}

  /** Messages in this frame: 1, or the parts of a batch. */
  get messages(): number {
    return 1;
  }

  /** 4-byte big-endian length + payload. */
  tcp(): Uint8Array {
    this.tcpBytes ??= tcpFrame(this.payload);
    return this.tcpBytes;
  }

  /** One unmasked, final WebSocket data frame (RFC 6455 §5.2), header and payload in one buffer. */
  ws(): Uint8Array {
    this.wsBytes ??= wsFrame(this.payload, this.text);
    return this.wsBytes;
  }

  /** One Server-Sent Event (`data: <payload>`) for HTTP streams. */
  sse(): Uint8Array {
    this.sseBytes ??= streamLine(this.payload, 'sse');
    return this.sseBytes;
  }

  /** The payload and a newline, for HTTP streams of JSON lines. */
  ndjson(): Uint8Array {
    this.lineBytes ??= streamLine(this.payload, 'ndjson');
    return this.lineBytes;
  }

  /**
   * The same message compressed (permessage-deflate, no context kept): once for every link that
   * negotiated it with the same window, whatever their number.
   */
  wsDeflated(level: number, windowBits: number): Uint8Array {
    const key = level * 16 + windowBits;
    if (this.deflated === undefined || this.deflatedWith !== key) {
      this.deflated = wsFrameDeflated(deflateMessage(this.payload, level, windowBits), this.text);
      this.deflatedWith = key;
    }
    return this.deflated;
  }
}

/**
 * Several messages of one codec written as one: each transport's bytes are the parts' bytes one
 * after the other (one socket write carries them all; a receiver sees the separate messages).
 * What a broadcast sweep writes to a connection when several broadcasts wait for it. Datagram
 * links send the parts one by one (`parts`).
 */
export class OutFrameBatch extends OutFrame {
  private batchTcp: Uint8Array | undefined = undefined;
  private batchWs: Uint8Array | undefined = undefined;
  private batchSse: Uint8Array | undefined = undefined;
  private batchLines: Uint8Array | undefined = undefined;
  private batchDeflated: Uint8Array | undefined = undefined;
  private batchDeflatedWith = -1;

  constructor(readonly parts: readonly OutFrame[]) {
    super(Buffer.concat(parts.map((p) => p.payload)), (parts[0] as OutFrame).text);
  }

  override get messages(): number {
    return this.parts.length;
  }

  override tcp(): Uint8Array {
    this.batchTcp ??= Buffer.concat(this.parts.map((p) => p.tcp()));
    return this.batchTcp;
  }

  override ws(): Uint8Array {
    this.batchWs ??= Buffer.concat(this.parts.map((p) => p.ws()));
    return this.batchWs;
  }

  override sse(): Uint8Array {
    this.batchSse ??= Buffer.concat(this.parts.map((p) => p.sse()));
    return this.batchSse;
  }

  override ndjson(): Uint8Array {
    this.batchLines ??= Buffer.concat(this.parts.map((p) => p.ndjson()));
    return this.batchLines;
  }

  /** Each part compressed as its own message (no context is kept between messages). */
  override wsDeflated(level: number, windowBits: number): Uint8Array {
    const key = level * 16 + windowBits;
    if (this.batchDeflated === undefined || this.batchDeflatedWith !== key) {
      this.batchDeflated = Buffer.concat(this.parts.map((p) => p.wsDeflated(level, windowBits)));
      this.batchDeflatedWith = key;
    }
    return this.batchDeflated;
  }
}

/** A TCP frame of a text payload given as a string: its UTF-8 written into the frame. */
export function tcpTextFrame(text: string): Buffer {
  const n = Buffer.byteLength(text);
  const out = Buffer.allocUnsafe(FRAME_HEADER_SIZE + n);
  writeFrameHeader(out, 0, n);
  out.write(text, FRAME_HEADER_SIZE, n, 'utf8');
  return out;
}

/**
 * A TCP frame: 4-byte big-endian length, then the payload. A Buffer (from Node's pool for small
 * frames), so socket.write takes it as it is instead of wrapping a Uint8Array on every write.
 */
export function tcpFrame(payload: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(FRAME_HEADER_SIZE + payload.length);
  writeFrameHeader(out, 0, payload.length);
  out.set(payload, FRAME_HEADER_SIZE);
  return out;
}

const SSE_HEAD = Buffer.from('data: ');
const SSE_TAIL = Buffer.from('\n\n');
const NEWLINE = Buffer.from('\n');

/**
 * One message of an HTTP stream: `data: <payload>` and a blank line (Server-Sent Events), or the
 * payload and a newline (JSON lines). The payload is JSON text, which holds no raw newline.
 */
/** streamLine of a JSON text given as a string. */
export function streamTextLine(text: string, format: 'sse' | 'ndjson'): Buffer {
  const n = Buffer.byteLength(text);
  const head = format === 'sse' ? SSE_HEAD.length : 0;
  const tail = format === 'sse' ? SSE_TAIL : NEWLINE;
  const out = Buffer.allocUnsafe(head + n + tail.length);
  if (head > 0) out.set(SSE_HEAD, 0);
  out.write(text, head, n, 'utf8');
  out.set(tail, head + n);
  return out;
}

export function streamLine(payload: Uint8Array, format: 'sse' | 'ndjson'): Buffer {
  if (format === 'ndjson') {
    const out = Buffer.allocUnsafe(payload.length + 1);
    out.set(payload, 0);
    out.set(NEWLINE, payload.length);
    return out;
  }
  const out = Buffer.allocUnsafe(SSE_HEAD.length + payload.length + SSE_TAIL.length);
  out.set(SSE_HEAD, 0);
  out.set(payload, SSE_HEAD.length);
  out.set(SSE_TAIL, SSE_HEAD.length + payload.length);
  return out;
}
