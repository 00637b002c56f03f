import type { ServerResponse } from 'node:http';
import { wheelFor } from '../timer/shared.js';
import type { WheelTimer } from '../timer/wheel.js';
import { budgets, type Holder } from './budget.js';
import { type Link, LinkError, type LinkSink } from './link.js';
import { type OutFrame, streamLine, streamTextLine } from './out-frame.js';

/** How a stream's messages are written: Server-Sent Events, or one JSON text per line. */
export type StreamFormat = 'sse' | 'ndjson';

export interface HttpLinkOptions {
  sink: LinkSink;
  /** `send` returns false once this many bytes are queued. */
  highWaterMark: number;
  /** A write to a stream already holding more than this fails it with slow_consumer. */
  maxBuffered: number;
  /** A closing stream not flushed by then is destroyed, ms. */
  closeTimeout: number;
  /** Messages posted while reading is paused wait, up to this many bytes; more is a protocol error. */
  maxWaiting: number;
}

const OPEN = 0;
const CLOSING = 1;
const CLOSED = 2;

let accepted = 0;
const wheel = wheelFor();
const SSE_KEEPALIVE = Buffer.from(':\n\n');
const NDJSON_KEEPALIVE = Buffer.from('\n');

/**
 * A connection over HTTP: what the server sends goes down one long response (a stream of
 * Server-Sent Events or of JSON lines), what the client sends comes in POSTs, each a few
 * messages, handed to `deliver` by the HTTP transport (from this process, or from another node
 * of a cluster that took the POST). The same Link as every transport: the sink sees messages.
 * Text messages only (the JSON codec): a line of JSON holds no raw newline.
 */
export class HttpLink implements Link, Holder {
  readonly transport = 'http' as const;
  owner: unknown = undefined;
  batching = false;
  readonly seq = ++accepted;
  inHeld = 0;
  frameSince = 0;
  outHeld = 0;
  paused = false;
  readonly remotePort: number;
  readonly peerAddress: string;
  /** Messages that came while reading was paused, in order. */
  private waiting: Uint8Array[] = [];
  private state = OPEN;
  private closeCode = 1006;
  private closeReason = 'connection lost';
  private closeTimer: WheelTimer | undefined;
  private failed = false;
  /** The SSE event id last written (a one-way stream's resume position). */
  private writtenId = '';
  /** The event id the next message carries, when it changed: set by the sink. */
  eventId = '';

  constructor(
    readonly res: ServerResponse,
    readonly options: HttpLinkOptions,
    readonly remoteAddress: string,
    /** The session id: the key of POSTs to this link (unguessable). */
    readonly session: string,
    readonly format: StreamFormat,
    /** The client only reads (GET /stream): nothing is ever posted to it. */
    readonly oneWay: boolean,
  ) {
    const socket = res.socket;
    this.peerAddress = socket?.remoteAddress ?? '';
    this.remotePort = socket?.remotePort ?? 0;
    res.on('drain', () => this.drained());
    res.on('close', () => this.finish());
  }

  get buffered(): number {
    return this.state === CLOSED ? 0 : this.res.writableLength;
  }

  send(payload: Uint8Array, _text: boolean): boolean {
    if (this.state !== OPEN) return false;
    return this.write(streamLine(payload, this.format));
  }

  sendText(text: string): boolean {
    if (this.state !== OPEN) return false;
    return this.write(streamTextLine(text, this.format));
  }

  sendFrame(frame: OutFrame): boolean {
    if (this.state !== OPEN) return false;
    return this.write(this.format === 'sse' ? frame.sse() : frame.ndjson());
  }

  /** A sign of life for proxies and for the peer's TCP stack: an SSE comment, or an empty line. */
  heartbeat(): void {
    if (this.state === OPEN) this.write(this.format === 'sse' ? SSE_KEEPALIVE : NDJSON_KEEPALIVE);
  }

  /** The end: what is queued is flushed, then the response ends (the kick frame went before it). */
  close(code: number, reason: string): void {
    if (this.state !== OPEN) return;
    this.state = CLOSING;
    this.closeCode = code;
    this.closeReason = reason;
    this.dropWaiting();
    this.res.end();
    this.closeTimer = wheel.schedule(this.options.closeTimeout, destroyLink, this);
  }

  destroy(): void {
    if (this.state === OPEN) this.state = CLOSING;
    this.dropWaiting();
    this.res.destroy();
  }

  pause(): void {
    this.paused = true;
  }

  resume(): void {
    if (!this.paused || this.state !== OPEN) return;
    this.paused = false;
    const list = this.waiting;
    this.waiting = [];
    budgets.setInbound(this, 0, false);
    this.deliver(list);
  }

  /** Messages the client posted (each one envelope's bytes), in order. */
  deliver(messages: readonly Uint8Array[]): void {
    if (this.state !== OPEN) return;
    for (let i = 0; i < messages.length; i++) {
      if (this.paused) {
        this.hold(messages.slice(i));
        return;
      }
      if (this.state !== OPEN) return;
      this.options.sink.onPacket(this, messages[i] as Uint8Array, true);
    }
  }

  /** The link broke a limit: the sink is told once and closes it. */
  fail(err: Error): void {
    this.dropWaiting();
    if (this.failed || this.state === CLOSED) return;
    this.failed = true;
    this.options.sink.onPacketError(this, err);
    if (this.state === OPEN) this.close(1011, err.message);
  }

  get open(): boolean {
    return this.state === OPEN;
  }

  private hold(messages: Uint8Array[]): void {
    // One at a time: a spread of tens of thousands of lines would overflow the stack.
    for (const m of messages) this.waiting.push(m);
    let bytes = 0;
    for (const m of this.waiting) bytes += m.length;
    if (bytes > this.options.maxWaiting) {
      this.fail(
        new LinkError(
          'protocol_error',
          `more than ${this.options.maxWaiting} bytes posted while the server was busy`,
        ),
      );
      return;
    }
    // Counted with the partial frames of every link: the process-wide bound of bytes held.
    budgets.setInbound(this, bytes, false);
  }

  private dropWaiting(): void {
    this.waiting = [];
    budgets.setInbound(this, 0, false);
  }

  private write(bytes: Uint8Array): boolean {
    const res = this.res;
    if (!res.writable) return false;
    const before = res.writableLength;
    if (this.eventId !== this.writtenId && this.format === 'sse') {
      this.writtenId = this.eventId;
      res.write(`id: ${this.eventId}\n`);
    }
    res.write(bytes);
    const queued = res.writableLength;
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

  private drained(): void {
    budgets.setOutbound(this, this.res.writableLength);
    if (this.state === OPEN) this.options.sink.onDrain(this);
  }

  private finish(): void {
    if (this.state === CLOSED) return;
    this.state = CLOSED;
    this.closeTimer?.cancel();
    this.closeTimer = undefined;
    this.waiting = [];
    budgets.release(this);
    this.options.sink.onClose(this, this.closeCode, this.closeReason);
  }

  /** @internal */
  expire(): void {
    this.closeTimer = undefined;
    this.res.destroy();
  }
}

function destroyLink(link: HttpLink): void {
  link.expire();
}
