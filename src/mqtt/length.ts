import { ProtocolError } from '../protocol/errors.js';

/**
 * Where an MQTT packet ends: one byte of packet type and flags, then the remaining length as a
 * variable byte integer (1 to 4 bytes, 7 bits each, low first), then that many bytes. 0 while
 * the length is not whole yet. A length over `maxPacket` (the whole packet) or a fifth length
 * byte is refused before any of the body is held; with `connectFirst`, so is a first packet that
 * is not a CONNECT.
 */
export function mqttPacketLength(buffer: Uint8Array, maxPacket: number, connectFirst = false): number {
  if (buffer.length === 0) return 0;
  // Before the CONNECT nothing else may come: other bytes are refused at their first byte,
  // not held until the handshake times out.
  if (connectFirst && buffer[0] !== 0x10)
    throw new ProtocolError('the first MQTT packet must be CONNECT', 'PROTOCOL');
  let remaining = 0;
  let shift = 0;
  for (let i = 1; i <= 4; i++) {
    if (i >= buffer.length) return 0;
    const b = buffer[i] as number;
    remaining += (b & 0x7f) * 2 ** shift;
    if ((b & 0x80) === 0) {
      const total = 1 + i + remaining;
      if (total > maxPacket)
        throw new ProtocolError(
          `MQTT packet of ${total} bytes is larger than the maximum of ${maxPacket}`,
          'FRAME_TOO_LARGE',
        );
      return total;
    }
    shift += 7;
  }
  throw new ProtocolError('MQTT remaining length longer than 4 bytes', 'PROTOCOL');
}
