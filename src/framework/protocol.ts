import type { Codec } from '../protocol/codec.js';
import type { Envelope } from '../protocol/envelope.js';
import { ProtocolError } from '../protocol/errors.js';
import { FRAME_HEADER_SIZE, frame, frameLength } from '../protocol/framing.js';
import { jsonCodec } from '../protocol/json-codec.js';
import { bufferOf } from './bytes.js';
import type { Connection } from './connection.js';

export { bufferOf, toBytes } from './bytes.js';
export { ProtocolError };

/** Default largest packet of the frame and length protocols: 1 MiB. */
export const FRAMEWORK_MAX_PACKET = 1024 * 1024;

/**
 * How bytes become messages on a connection (the workerman/goes model). The server keeps the
 * connection's unread bytes and asks:
 * - `input(buffer)`: is there a whole packet at the start of `buffer`? Return its length (it
 *   may be larger than `buffer.length` when the header already tells: the server then waits for
 *   that many bytes without asking again), 0 when more bytes are needed, or throw a
 *   ProtocolError for bytes that can never be a packet (the connection is closed with
 *   `protocol_error` 4500, or `frame_too_large` 4501 for the code FRAME_TOO_LARGE).
 * - `decode(packet)`: the packet's bytes (exactly the length `input` returned) to a message.
 *   The bytes may be a view of the socket's chunk: copy what must outlive the call.
 * - `encode(message)`: a message given to `connection.send` to the bytes to write.
 *
 * On `ws://` each WebSocket message is one packet (`input` is not asked); on `udp://` each
 * datagram is. A protocol may keep per-connection state in `connection.protocolState`.
 */
export interface Protocol<In = unknown, Out = In> {
  /** For logs and errors. */
  readonly name: string;
  input(buffer: Uint8Array, connection: Connection<In, Out>): number;
  decode(packet: Uint8Array, connection: Connection<In, Out>): In;
  encode(message: Out, connection: Connection<In, Out>): Uint8Array;
  /** ws:// only: send encoded messages as text frames (true) or binary frames (false, the default). */
  readonly text?: boolean;
  /** Bytes written before a connection is closed for `error` (the http protocol's error response). */
  errorReply?(error: ProtocolError, connection: Connection<In, Out>): Uint8Array | undefined;
}

/** The message type a protocol decodes. */
export type InOf<P> = P extends Protocol<infer In, unknown> ? In : never;

// ---- frame: Pylon's own TCP framing with JSON envelopes ----

export interface FrameProtocolOptions {
  /** Largest body accepted, in bytes. Default 1 MiB (the gateway's default is 64 KiB). */
  maxFrame?: number;
  /** Codec of the bodies. Default JSON (src/protocol's jsonCodec, which also reads hotpot's `{type,data}`). */
  codec?: Codec;
}

/**
 * Pylon's TCP framing (PROTOCOL.md section 1): a 4-byte big-endian body length, then one
 * envelope. Messages are Envelopes (`{"type":"Echo","data":…}` reads as kind "msg"); `send`
 * takes an Envelope (or hotpot's `{type, data}`) and frames it. No handshake: raw mode.
 */
export function frameProtocol(options: FrameProtocolOptions = {}): Protocol<Envelope, Envelope> {
  const maxFrame = options.maxFrame ?? FRAMEWORK_MAX_PACKET;
  const codec = options.codec ?? jsonCodec;
  return {
    name: 'frame',
    input(buffer) {
      return frameLength(buffer, maxFrame);
    },
    decode(packet) {
      return codec.decode(packet.subarray(FRAME_HEADER_SIZE));
    },
    encode(message) {
      return frame(codec.encode(message));
    },
  };
}

// ---- line: newline-delimited text ----

export interface LineProtocolOptions {
  /** Longest line accepted, in bytes, without its line ending. Default 64 KiB. */
  maxLength?: number;
}

const LF = 0x0a;
const CR = 0x0d;

/**
 * Newline-delimited text (telnet, nc, many devices): a packet ends with `\n` or `\r\n`, which
 * the message (a string, UTF-8) does not include; `send(text)` appends `\n`. A line longer
 * than `maxLength` is a protocol error (FRAME_TOO_LARGE).
 */
export function lineProtocol(options: LineProtocolOptions = {}): Protocol<string, string> {
  const maxLength = options.maxLength ?? 64 * 1024;
  return {
    name: 'line',
    text: true,
    input(buffer) {
      // A line of maxLength bytes may still need its "\r\n": look that far, no further.
      const limit = Math.min(buffer.length, maxLength + 2);
      const i = buffer.indexOf(LF);
      if (i >= 0 && i < limit) {
        if (i > maxLength && !(i === maxLength + 1 && buffer[i - 1] === CR)) throw tooLong(maxLength);
        return i + 1;
      }
      if (buffer.length > maxLength + 1) throw tooLong(maxLength);
      return 0;
    },
    decode(packet) {
      let end = packet.length - 1;
      if (end > 0 && packet[end - 1] === CR) end--;
      return bufferOf(packet).toString('utf8', 0, end);
    },
    encode(message) {
      return Buffer.from(`${message}\n`);
    },
  };
}

function tooLong(maxLength: number): ProtocolError {
  return new ProtocolError(`line longer than ${maxLength} bytes`, 'FRAME_TOO_LARGE');
}

// ---- length: a binary length header ----

export interface LengthProtocolOptions {
  /** Bytes of the length header. Default 4. */
  header?: 1 | 2 | 4;
  /** Byte order of the header. Default 'be'. */
  byteOrder?: 'be' | 'le';
  /** Whether the length counts the header too (goes) or only the payload (hotpot). Default false. */
  includesHeader?: boolean;
  /** Largest payload accepted, in bytes. Default 1 MiB (capped by what the header can say). */
  max?: number;
}

/**
 * A length header, then the payload: hotpot's u16/u32 big-endian payload length
 * (`{ header: 2 }`), goes' u32 that includes the header (`{ includesHeader: true }`),
 * woodpecker's u16 little-endian (`{ header: 2, byteOrder: 'le' }`). Messages are the payloads
 * (Uint8Array, without the header); `send` takes bytes or a string (UTF-8).
 */
export function lengthProtocol(
  options: LengthProtocolOptions = {},
): Protocol<Uint8Array, Uint8Array | string> {
  const header = options.header ?? 4;
  const le = options.byteOrder === 'le';
  const includes = options.includesHeader ?? false;
  if (header !== 1 && header !== 2 && header !== 4)
    throw new RangeError(`length header must be 1, 2 or 4 bytes`);
  if (options.byteOrder !== undefined && options.byteOrder !== 'be' && options.byteOrder !== 'le') {
    throw new RangeError(`byteOrder must be 'be' or 'le'`);
  }
  const largest = 2 ** (8 * header) - 1 - (includes ? header : 0);
  const max = Math.min(options.max ?? FRAMEWORK_MAX_PACKET, largest);
  return {
    name: 'length',
    input(buffer) {
      if (buffer.length < header) return 0;
      const n = readLength(buffer, header, le);
      if (includes && n < header)
        throw new ProtocolError(`length ${n} is shorter than its own ${header}-byte header`);
      const payload = includes ? n - header : n;
      if (payload > max) {
        throw new ProtocolError(
          `packet of ${payload} bytes is larger than the maximum of ${max}`,
          'FRAME_TOO_LARGE',
        );
      }
      return header + payload;
    },
    decode(packet) {
      return packet.subarray(header);
    },
    encode(message) {
      const payload = typeof message === 'string' ? Buffer.from(message) : message;
      if (payload.length > max) {
        throw new RangeError(`payload of ${payload.length} bytes is larger than the maximum of ${max}`);
      }
      const out = Buffer.allocUnsafe(header + payload.length);
      writeLength(out, header, le, includes ? payload.length + header : payload.length);
      out.set(payload, header);
      return out;
    },
  };
}

function readLength(b: Uint8Array, header: 1 | 2 | 4, le: boolean): number {
  if (header === 1) return b[0]!;
  if (header === 2) return le ? b[0]! | (b[1]! << 8) : (b[0]! << 8) | b[1]!;
  return (
    (le
      ? b[0]! | (b[1]! << 8) | (b[2]! << 16) | (b[3]! << 24)
      : (b[0]! << 24) | (b[1]! << 16) | (b[2]! << 8) | b[3]!) >>> 0
  );
}

function writeLength(out: Buffer, header: 1 | 2 | 4, le: boolean, n: number): void {
  if (header === 1) out[0] = n;
  else if (header === 2) le ? out.writeUInt16LE(n, 0) : out.writeUInt16BE(n, 0);
  else le ? out.writeUInt32LE(n, 0) : out.writeUInt32BE(n, 0);
}
