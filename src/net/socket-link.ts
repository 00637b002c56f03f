import type { Socket } from 'node:net';
import { type PacketLength, Reassembler } from '../protocol/reassembly.js';
import { wheelFor } from '../timer/shared.js';
import type { WheelTimer } from '../timer/wheel.js';
import { budgets, type Holder } from './budget.js';
import { type Link, LinkError, type LinkSink, type TransportName } from './link.js';
import type { OutFrame } from './out-frame.js';

/** What every link over a socket is given by its listener. */
export interface SocketLinkOptions {
  sink: LinkSink;
  /** `send` returns false once this many bytes are queued (the sink's backpressure signal). */
  highWaterMark: number;
  /**
   * Hard cap: a write to a link that already has more than this queued fails the link at once
   * with slow_consumer (so a link holds at most the cap plus one message).
   */
  maxBuffered: number;
  /** A closing link whose peer has not finished the close by then is destroyed, ms. */
  closeTimeout: number;
  /** Largest packet the reader may be asked to hold (its framing's maximum). */
  maxPacket: number;
}

export const OPEN = 0;
export const CLOSING = 1;
export const CLOSED = 2;

let accepted = 0;
const wheel = wheelFor();

/**
 * What TCP, TLS and WebSocket links share: a socket, the one reassembly loop reading it, writes
 * that count against the per-link hard cap and the process-wide outbound budget, held bytes that
 * count against the inbound budget and the frame deadline, pausing, the close deadline, and the
 * single onClose. Subclasses say what a packet is (`packet`) and how a message is framed.
 */
export abstract class SocketLink implements Link, Holder {
  abstract readonly transport: TransportName;
  owner: unknown = undefined;
  batching = false;
  readonly seq = ++accepted;
  inHeld = 0;
  frameSince = 0;
  outHeld = 0;
  paused = false;
  state = OPEN;
  /** Reported to the sink once the socket has closed. */
  closeCode = 1006;
  closeReason = 'connection lost';
  /** The error the socket ended with, if any. */
  failure: Error | undefined = undefined;
  readonly remotePort: number;
  readonly peerAddress: string;
  protected readonly reader: Reassembler;
  /** Whole packets (WebSocket: messages) handed to the sink: progress, for the frame deadline. */
  protected delivered = 0;
  /** @internal */
  closeTimer: WheelTimer | undefined = undefined;
  /** onPacketError was called (once): the peer broke the protocol or a limit. */
  protected failed = false;

  constructor(
    readonly socket: Socket,
    readonly options: SocketLinkOptions,
    /** The client's address (a trusted proxy's word on WebSocket). */
    readonly remoteAddress: string,
    protected readonly length: PacketLength<SocketLink>,
  ) {
    this.peerAddress = socket.remoteAddress ?? '';
    this.remotePort = socket.remotePort ?? 0;
    // Node caches the peer as an object on the socket ({address, family, port}: ~80 bytes per
    // connection); the link keeps its own copy, so the cache is let go.
    (socket as Socket & { _peername?: unknown })._peername = undefined;
    this.reader = new Reassembler(options.maxPacket, allocBuffer);
  }

  get buffered(): number {
    return this.socket.writableLength;
  }

  abstract send(payload: Uint8Array, text: boolean): boolean;
  abstract sendFrame(frame: OutFrame): boolean;
  abstract close(code: number, reason: string): void;

  /** @internal A packet the reader found. Returns whether to read on. */
  abstract packet(bytes: Uint8Array): boolean;

  destroy(): void {
    if (this.state === OPEN) this.state = CLOSING;
    this.socket.destroy();
  }

  pause(): void {
    if (this.paused) return;
    this.paused = true;
    this.socket.pause();
  }

  resume(): void {
    if (!this.paused || this.state !== OPEN) return;
    this.paused = false;
    this.socket.resume();
    this.read(undefined);
  }

  /**
   * @internal Feeds a chunk (undefined: read what waited while paused). A packet the framing
   * refuses, or a limit, fails the link.
   */
  read(chunk: Buffer | undefined): void {
    const before = this.delivered;
    try {
      if (chunk === undefined) this.reader.drain(this.length, emit, this);
      else this.reader.push(chunk, this.length, emit, this);
    } catch (err) {
      this.fail(err as Error);
      return;
    }
    if (this.state === OPEN) budgets.setInbound(this, this.held(), this.delivered !== before);
    else {
      // Closing: nothing more is for the sink (a WebSocket link still looks for the peer's close).
      if (this.transport !== 'ws') this.reader.clear();
      budgets.setInbound(this, 0, false);
    }
  }

  /** Bytes of unfinished packets held (a WebSocket link adds its unfinished message). */
  protected held(): number {
    return this.reader.held;
  }

  /**
   * The link cannot go on (bad bytes, a budget, the hard cap): it stops reading, drops what it
   * held, and tells the sink once, which closes it.
   */
  fail(err: Error): void {
    this.reader.clear();
    budgets.setInbound(this, 0, false);
    if (this.failed || this.state === CLOSED) return;
    this.failed = true;
    this.options.sink.onPacketError(this, err);
    // A sink that did not close it: nothing more can be read, so it is closed here.
    if (this.state === OPEN) this.close(1011, err.message);
  }

  /** Writes framed bytes; counts them; fails the link over the hard cap. */
  protected write(bytes: Uint8Array): boolean {
    const socket = this.socket;
    if (!socket.writable) return false;
    // Writing more into a buffer already over the hard cap: the peer does not read.
    const before = socket.writableLength;
    if (this.batching) corkForTick(socket);
    socket.write(bytes);
    const queued = socket.writableLength;
    if (queued !== this.outHeld) budgets.setOutbound(this, queued);
    if (before > this.options.maxBuffered) {
      this.fail(
        new LinkError(
          'slow_consumer',
          `outgoing buffer over its hard cap of ${this.options.maxBuffered} bytes`,
        ),
      );
      return false;
    }
    return queued < this.options.highWaterMark;
  }

  /** Starts the close deadline: a peer that does not finish the close in time is cut off. */
  protected closing(code: number, reason: string): void {
    this.state = CLOSING;
    this.closeCode = code;
    this.closeReason = reason;
    this.reader.clear();
    budgets.setInbound(this, 0, false);
    this.closeTimer = wheel.schedule(this.options.closeTimeout, destroyLink, this);
  }

  /** @internal The socket drained. */
  drained(): void {
    budgets.setOutbound(this, this.socket.writableLength);
    if (this.state === OPEN) this.options.sink.onDrain(this);
  }

  /** @internal The socket closed: report once. */
  finish(): void {
    if (this.state === CLOSED) return;
    this.state = CLOSED;
    this.closeTimer?.cancel();
    this.closeTimer = undefined;
    this.reader.clear();
    budgets.release(this);
    this.options.sink.onClose(this, this.closeCode, this.closeReason);
  }
}

/** Packets put together from chunks are Buffers, like the chunks (every byte is written over). */
function allocBuffer(size: number): Uint8Array {
  return Buffer.allocUnsafe(size);
}

function emit(packet: Uint8Array, link: SocketLink): boolean {
  return link.packet(packet);
}

function destroyLink(link: SocketLink): void {
  link.closeTimer = undefined;
  if (!link.socket.destroyed) link.socket.destroy();
}

// Messages of one tick in one write: sockets corked at their first write of the tick,
// uncorked together in a microtask.
let corked: Socket[] = [];

function corkForTick(socket: Socket): void {
  if (socket.writableCorked !== 0) return;
  socket.cork();
  if (corked.length === 0) queueMicrotask(uncorkAll);
  corked.push(socket);
}

function uncorkAll(): void {
  const list = corked;
  corked = [];
  for (const socket of list) socket.uncork();
}

// ---- module-level socket listeners: they find their link through a symbol-keyed field ----

export const kLink = Symbol('pylon.link');
export type LinkedSocket = Socket & { [kLink]: SocketLink };

function onData(this: LinkedSocket, chunk: Buffer): void {
  const link = this[kLink];
  if (link.state === OPEN || link.transport === 'ws') link.read(chunk);
}

function onDrain(this: LinkedSocket): void {
  this[kLink].drained();
}

function onError(this: LinkedSocket, err: Error): void {
  // 'close' follows; the error is the reason when nothing closed the link before.
  const link = this[kLink];
  link.failure ??= err;
}

function onClose(this: LinkedSocket): void {
  this[kLink].finish();
}

/** Attaches the listeners of `link` to its socket. */
export function wire(link: SocketLink): void {
  const socket = link.socket as LinkedSocket;
  socket[kLink] = link;
  socket.on('data', onData);
  socket.on('drain', onDrain);
  socket.on('error', onError);
  socket.on('close', onClose);
  // The peer ending its side ends ours: a socket of an HTTP server (an upgrade) allows half-open
  // ones, and Node then ends it itself (no 'end' listener of our own: ~60 bytes per connection).
  socket.allowHalfOpen = false;
}
