/**
 * One encoded message on its way out, framed lazily once per transport and then written as the
 * same bytes to every link of that transport: a broadcast to N connections costs one encode and
 * at most one framing per transport, not N (centrifuge's preparedData, socket.io's pre-framed
 * broadcast).
 */
export class OutFrame {
  private tcpBytes: Uint8Array | undefined = undefined;
  private wsBytes: Uint8Array | undefined = undefined;

  constructor(
    /** The codec's bytes for one envelope. */
    readonly payload: Uint8Array,
    /** Text (JSON) or binary: the WebSocket opcode. */
    readonly text: boolean,
  ) {}

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
}

/**
 * A TCP frame: 4-byte big-endian length, then the payload. A Buffer (from Node's pool for small
 * frames), so socket.write takes it as it is instead of wrapping a Uint8Array on every write.
 */
export function tcpFrame(payload: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(4 + payload.length);
  out.writeUInt32BE(payload.length, 0);
  out.set(payload, 4);
  return out;
}

/** Frames `payload` as a server-to-client WebSocket message (FIN set, no mask, no extensions). */
export function wsFrame(payload: Uint8Array, text: boolean): Buffer {
  const n = payload.length;
  const headerLength = n < 126 ? 2 : n < 65536 ? 4 : 10;
  // Every byte is written below, so the pool's unzeroed memory is fine.
  const out = Buffer.allocUnsafe(headerLength + n);
  out[0] = 0x80 | (text ? 0x1 : 0x2);
  if (n < 126) {
    out[1] = n;
  } else if (n < 65536) {
    out[1] = 126;
    out[2] = n >>> 8;
    out[3] = n & 0xff;
  } else {
    out[1] = 127;
    const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
    view.setUint32(2, Math.floor(n / 2 ** 32));
    view.setUint32(6, n >>> 0);
  }
  out.set(payload, headerLength);
  return out;
}
