// The rpc client's dialer: TCP links that write every frame sent in one tick as one socket write.
import { isIP, connect as netConnect, type Socket } from 'node:net';
import { type ConnectionOptions, connect as tlsConnect } from 'node:tls';
import type { ClientLink, ClientLinkEvents, Dialer, DialOptions } from '../client/link.js';
import { nodeDialer } from '../client/transport-node.js';
import { FRAME_HEADER_SIZE, FrameDecoder, frame } from '../protocol/framing.js';

/** A batch this large is written at once rather than at the end of the tick. */
const FLUSH_BYTES = 64 * 1024;
/** A closing socket whose peer does not finish the close is destroyed after this. */
const CLOSE_GRACE_MS = 1000;

/**
 * Pylon TCP framing with pipelining: frames sent in the same tick (e.g. the calls of many callers
 * woken by one batch of answers) are framed into one buffer and written with one `write` at the
 * end of the tick (a microtask), so N calls cost one syscall instead of N. The batch is flushed
 * early when it reaches 64 KiB.
 */
export class BatchingTcpLink implements ClientLink {
  private readonly decoder: FrameDecoder;
  private readonly socket: Socket;
  private reason = 'connection lost';
  private closeCode = 1006;
  private batch: Uint8Array[] = [];
  private batchBytes = 0;
  private scheduled = false;
  /** Socket writes done (each carrying one or more frames). */
  writes = 0;
  /** Frames sent. */
  frames = 0;

  constructor(url: URL, options: DialOptions, events: ClientLinkEvents) {
    this.decoder = new FrameDecoder(options.maxFrame);
    const port = Number(url.port);
    const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
    const secure = url.protocol === 'tls:';
    this.socket = secure
      ? tlsConnect({
          host,
          port,
          servername: isIP(host) ? undefined : host,
          ...(options.tls as ConnectionOptions | undefined),
        })
      : netConnect({ host, port, noDelay: true });
    this.socket.on(secure ? 'secureConnect' : 'connect', () => events.open());
    this.socket.on('data', (chunk: Buffer) => {
      try {
        this.decoder.push(chunk, events.frame, undefined);
      } catch (err) {
        this.reason = (err as Error).message;
        this.socket.destroy();
      }
    });
    this.socket.on('error', (err) => {
      this.reason = err.message;
    });
    this.socket.on('close', () => events.close(this.closeCode, this.reason));
  }

  get buffered(): number {
    return this.socket.writableLength + this.batchBytes;
  }

  send(payload: Uint8Array): void {
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
        const len = body.length;
        out[at] = len >>> 24;
        out[at + 1] = (len >>> 16) & 0xff;
        out[at + 2] = (len >>> 8) & 0xff;
        out[at + 3] = len & 0xff;
        out.set(body, at + FRAME_HEADER_SIZE);
        at += FRAME_HEADER_SIZE + len;
      }
    }
    this.batch = [];
    this.batchBytes = 0;
    this.writes++;
    if (this.socket.writable) this.socket.write(out);
  };

  close(code: number, reason: string): void {
    this.flush();
    this.closeCode = code;
    this.reason = reason;
    this.socket.end();
    if (code !== 1000) this.socket.destroy();
    else setTimeout(destroySocket, CLOSE_GRACE_MS, this.socket).unref();
  }
}

function destroySocket(socket: Socket): void {
  if (!socket.destroyed) socket.destroy();
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
