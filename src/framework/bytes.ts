/** A Buffer over the same memory (no copy). */
export function bufferOf(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Raw mode's bytes: a string as UTF-8, bytes as they are. */
export function toBytes(message: unknown): Uint8Array {
  if (typeof message === 'string') return Buffer.from(message);
  if (message instanceof Uint8Array) return message;
  if (ArrayBuffer.isView(message))
    return new Uint8Array(message.buffer, message.byteOffset, message.byteLength);
  if (message instanceof ArrayBuffer) return new Uint8Array(message);
  throw new TypeError('without a protocol, send takes a string or bytes');
}
