import { ProtocolError } from './errors.js';

/**
 * Where a packet ends (the workerman/goes model): the length of the packet at the start of
 * `buffer` — it may be more than `buffer.length` when a header already says, and the reader then
 * waits for that many bytes without asking again — or 0 while more bytes are needed. Throws a
 * ProtocolError for bytes that can never be a packet.
 */
export type PacketLength<C> = (buffer: Uint8Array, ctx: C) => number;

/**
 * Called for each whole packet, in order: a view valid during the call only (copy what must
 * outlive it). Return false (exactly) to refuse it (reading is paused): it and the rest stay held, and
 * `drain` offers it again.
 */
export type OnPacket<C> = (packet: Uint8Array, ctx: C) => unknown;

/**
 * The one reassembly loop: turns chunks of a byte stream, split at any byte, into packets, for
 * every framing (Pylon's 4-byte frames, lines, length headers, HTTP, WebSocket frames, a custom
 * protocol's `input`). A byte state machine in the style of ws's Receiver.
 *
 * - A packet wholly inside one chunk is handed out as a zero-copy view of it.
 * - Bytes of a packet not yet whole are kept as the chunks they came in (one copy when the
 *   packet completes); `held` counts them, so a caller can bound them per link and per process.
 *   A small rest of a large chunk is copied, so what is held is what is counted.
 * - A packet `onPacket` refuses (inbound backpressure) stops the reading; `drain` goes on.
 * - A packet over `maxPacket`, or more than `maxPacket` bytes without a whole packet, throws
 *   ProtocolError FRAME_TOO_LARGE; `length` throwing throws. The caller closes the link.
 *
 * Works on Uint8Array (Node Buffers too): no Node built-ins, so the client SDK uses it as well.
 */
export class Reassembler {
  /** Bytes held for a packet not yet whole (or, while paused, packets not yet read). */
  held = 0;
  /** The kept chunks, `held` bytes in all (made at the first: most readers never keep one). */
  private parts: Uint8Array[] | undefined = undefined;
  /** Length of the packet being received, once `length` told it (0: not known yet). */
  private want = 0;
  private busy = false;

  constructor(
    readonly maxPacket: number,
    /** Allocates a packet that is put together from several chunks (Node: Buffer.allocUnsafe). */
    private readonly alloc: (size: number) => Uint8Array = newBytes,
  ) {}

  /** Feeds one chunk. */
  push<C>(chunk: Uint8Array, length: PacketLength<C>, onPacket: OnPacket<C>, ctx: C): void {
    if (this.want > 0 && this.held + chunk.length < this.want) {
      this.keep(chunk);
      return;
    }
    if (this.held === 0) {
      this.read(chunk, length, onPacket, ctx);
      return;
    }
    if (this.want > 0) {
      // The packet's length is known: complete it with just the bytes it needs, then read the
      // rest of the chunk as it is (zero-copy).
      const need = this.want - this.held;
      const parts = this.parts as Uint8Array[];
      parts.push(need === chunk.length ? chunk : chunk.subarray(0, need));
      const packet = concat(parts, this.want, this.alloc);
      this.parts = undefined;
      this.held = 0;
      this.read(packet, length, onPacket, ctx);
      if (need === chunk.length) return;
      if (this.held > 0) this.keep(chunk.subarray(need));
      else this.read(chunk.subarray(need), length, onPacket, ctx);
      return;
    }
    const parts = this.parts as Uint8Array[];
    parts.push(chunk);
    const buf = concat(parts, this.held + chunk.length, this.alloc);
    this.parts = undefined;
    this.held = 0;
    this.read(buf, length, onPacket, ctx);
  }

  /** Reads what is held (after `onPacket` stopped the reading). */
  drain<C>(length: PacketLength<C>, onPacket: OnPacket<C>, ctx: C): void {
    if (this.busy || this.held === 0) return;
    const parts = this.parts as Uint8Array[];
    const buf = parts.length === 1 ? (parts[0] as Uint8Array) : concat(parts, this.held, this.alloc);
    this.parts = undefined;
    this.held = 0;
    this.read(buf, length, onPacket, ctx);
  }

  /** Drops what is held (the link is closing). */
  clear(): void {
    this.parts = undefined;
    this.held = 0;
    this.want = 0;
  }

  private read<C>(buf: Uint8Array, length: PacketLength<C>, onPacket: OnPacket<C>, ctx: C): void {
    let off = 0;
    let stopped = false;
    this.busy = true;
    try {
      while (off < buf.length) {
        const view = off === 0 ? buf : buf.subarray(off);
        let n = this.want;
        if (n === 0) {
          n = length(view, ctx);
          if (n === 0) break;
          if (!Number.isSafeInteger(n) || n < 0)
            throw new ProtocolError(`packet length ${String(n)} is not valid`);
          if (n > this.maxPacket) {
            throw new ProtocolError(
              `packet of ${n} bytes is larger than the maximum of ${this.maxPacket}`,
              'FRAME_TOO_LARGE',
            );
          }
          if (n > view.length) {
            this.want = n;
            break;
          }
        }
        this.want = 0;
        if (onPacket(n === view.length ? view : view.subarray(0, n), ctx) === false) {
          stopped = true;
          break;
        }
        off += n;
      }
      const rest = buf.length - off;
      if (rest > 0) {
        // (Stopped, the rest may hold whole packets: it is bounded by the chunk it came in.)
        if (!stopped && this.want === 0 && rest > this.maxPacket) {
          throw new ProtocolError(
            `more than ${this.maxPacket} bytes without a whole packet`,
            'FRAME_TOO_LARGE',
          );
        }
        this.keep(off === 0 ? buf : buf.subarray(off));
      }
    } catch (err) {
      this.clear();
      throw err;
    } finally {
      this.busy = false;
    }
  }

  /** Keeps `bytes`; a small view of a big buffer is copied, so the big one is not pinned. */
  private keep(bytes: Uint8Array): void {
    this.parts ??= [];
    this.parts.push(bytes.buffer.byteLength > 2 * bytes.length + 1024 ? bytes.slice() : bytes);
    this.held += bytes.length;
  }
}

function newBytes(size: number): Uint8Array {
  return new Uint8Array(size);
}

function concat(parts: Uint8Array[], total: number, alloc: (size: number) => Uint8Array): Uint8Array {
  const out = alloc(total);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
