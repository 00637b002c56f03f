// The rpc client's dialer: TCP links that write every frame sent in one tick as one socket write.
import type { Dialer } from '../client/link.js';
import { nodeDialer, TcpClientLink } from '../client/transport-node.js';
import { FRAME_HEADER_SIZE, frame, writeFrameHeader } from '../protocol/framing.js';

/** A batch this large is written at once rather than at the end of the tick. */
const FLUSH_BYTES = 64 * 1024;

/**
 * Pylon TCP framing with pipelining: frames sent in the same tick (e.g. the calls of many callers
 * woken by one batch of answers) are framed into one buffer and written with one `write` at the
 * end of the tick (a microtask), so N calls cost one syscall instead of N. The batch is flushed
 * early when it reaches 64 KiB.
 */
export class BatchingTcpLink extends TcpClientLink {
  private batch: Uint8Array[] = [];
  private batchBytes = 0;
  private scheduled = false;
  /** Socket writes done (each carrying one or more frames). */
  writes = 0;
  /** Frames sent. */
  frames = 0;

  override get buffered(): number {
    return this.socket.writableLength + this.batchBytes;
  }

  override send(payload: Uint8Array): void {
    if (!this.socket.writable) return;
    this.batch.push(payload);
    this.batchBytes += FRAME_HEADER_SIZE + payload.length;
    this.frames++;
    if (this.batchBytes >= FLUSH_BYTES) this.flush();
    else if (!this.scheduled) {
      this.scheduled = true;
      queueMicrotask(this.flush);
    }
  }

  /** Write the batch: one frame as is, several framed into one buffer. */
  readonly flush = (): void => {
    this.scheduled = false;
    const batch = this.batch;
    const n = batch.length;
    if (n === 0) return;
    let out: Uint8Array;
    if (n === 1) out = frame(batch[0]!);
    else {
      out = Buffer.allocUnsafe(this.batchBytes);
      let at = 0;
      for (let i = 0; i < n; i++) {
        const body = batch[i]!;
        writeFrameHeader(out, at, body.length);
        out.set(body, at + FRAME_HEADER_SIZE);
        at += FRAME_HEADER_SIZE + body.length;
      }
    }
    this.batch = [];
    this.batchBytes = 0;
    this.writes++;
    if (this.socket.writable) this.socket.write(out);
  };

  override close(code: number, reason: string): void {
    this.flush();
    super.close(code, reason);
  }
}

/**
 * A Dialer for tcp:// and tls:// with pipelined writes (BatchingTcpLink); other schemes (ws://,
 * wss://) go to `fallback` (the SDK's node dialer).
 */
export function batchingDialer(fallback: Dialer = nodeDialer): Dialer {
  return (url, options, events) =>
    url.protocol === 'tcp:' || url.protocol === 'tls:'
      ? new BatchingTcpLink(url, options, events)
      : fallback(url, options, events);
}
