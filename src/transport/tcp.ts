import { type AddressInfo, createServer, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer, type Server as TlsServer } from 'node:tls';
import { FrameDecoder } from '../protocol/framing.js';
import type { Link, LinkInfo, LinkSink } from './link.js';
import { listenOn } from './listen.js';
import { type OutFrame, tcpFrame } from './out-frame.js';
import { readTls, reloadTls, type TlsFiles } from './tls.js';

export interface TcpTransportOptions {
  sink: LinkSink;
  /** Largest frame body accepted, in bytes. */
  maxFrame: number;
  /** `send` returns false once this many bytes are queued. */
  highWaterMark: number;
  /** A closing socket whose peer has not closed its side by then is destroyed. */
  closeTimeout: number;
  /** tls:// instead of plain TCP. */
  tls?: TlsFiles;
  /** Schedules the close timeout (the gateway's timing wheel: no per-socket setTimeout). */
  after(ms: number, fn: (link: TcpLink) => void, link: TcpLink): void;
}

const kLink = Symbol('pylon.link');
type LinkedSocket = Socket & { [kLink]: TcpLink };

const EMPTY_QUERY = new URLSearchParams();

/** A TCP connection speaking Pylon's framing: 4-byte big-endian length, then the body. */
export class TcpLink implements Link {
  readonly transport = 'tcp' as const;
  readonly remoteAddress: string;
  readonly remotePort: number;
  owner: unknown = undefined;
  closed = false;
  private closeCode = 1006;
  private closeReason = 'connection lost';
  readonly decoder: FrameDecoder;

  constructor(
    readonly socket: Socket,
    readonly options: TcpTransportOptions,
  ) {
    this.remoteAddress = socket.remoteAddress ?? '';
    this.remotePort = socket.remotePort ?? 0;
    this.decoder = new FrameDecoder(options.maxFrame);
  }

  get buffered(): number {
    return this.socket.writableLength;
  }

  send(payload: Uint8Array): boolean {
    if (this.socket.writable) this.socket.write(tcpFrame(payload));
    return this.socket.writableLength < this.options.highWaterMark;
  }

  sendFrame(f: OutFrame): boolean {
    if (this.socket.writable) this.socket.write(f.tcp());
    return this.socket.writableLength < this.options.highWaterMark;
  }

  close(code: number, reason: string): void {
    if (this.closed || this.socket.destroyed) return;
    this.closed = true;
    this.closeCode = code;
    this.closeReason = reason;
    // Keep reading (and discarding, see onData) so the peer's FIN is seen and 'close' comes.
    this.socket.resume();
    this.socket.end();
    this.options.after(this.options.closeTimeout, destroyLink, this);
  }

  destroy(): void {
    this.closed = true;
    this.socket.destroy();
  }

  pause(): void {
    this.socket.pause();
  }

  resume(): void {
    if (!this.closed) this.socket.resume();
  }

  /** @internal */
  finish(): void {
    this.options.sink.onClose(this, this.closeCode, this.closeReason);
  }
}

function destroyLink(link: TcpLink): void {
  if (!link.socket.destroyed) link.socket.destroy();
}

// Module-level listeners: they find their link through a symbol-keyed field, so a connection
// costs no closures (the habit of websockets/ws).
function onData(this: LinkedSocket, chunk: Buffer): void {
  const link = this[kLink];
  if (link.closed) return;
  try {
    link.decoder.push(chunk, deliver, link);
  } catch (err) {
    link.options.sink.onFrameError(link, err as Error);
  }
}

function deliver(payload: Uint8Array, link: TcpLink): void {
  if (!link.closed) link.options.sink.onFrame(link, payload);
}

function onDrain(this: LinkedSocket): void {
  this[kLink].options.sink.onDrain(this[kLink]);
}

function onEnd(this: LinkedSocket): void {
  // The peer closed its side: finish ours (allowHalfOpen is off, so Node ends it for us).
}

function onError(this: LinkedSocket): void {
  // 'close' follows; the error itself is not the application's concern (ECONNRESET etc.).
}

function onClose(this: LinkedSocket): void {
  this[kLink].finish();
}

/** Accepts TCP connections and turns each into a TcpLink. */
export class TcpTransport {
  private server: Server | TlsServer | undefined;

  constructor(private readonly options: TcpTransportOptions) {}

  listen(port: number, host: string): Promise<AddressInfo> {
    const tls = this.options.tls;
    const server = tls
      ? createTlsServer({ ...readTls(tls) }).on('secureConnection', (socket) => this.accept(socket))
      : createServer({ noDelay: true, pauseOnConnect: false }, (socket) => this.accept(socket));
    // A failed TLS handshake is the client's problem, not the server's.
    if (tls) server.on('tlsClientError', () => {});
    this.server = server;
    return listenOn(server, port, host);
  }

  /** Re-read the certificate files; new connections use them, open ones keep theirs. */
  reloadTls(): void {
    reloadTls(this.server, this.options.tls);
  }

  private accept(socket: Socket): void {
    const admitted = this.options.sink.admit({
      transport: 'tcp',
      remoteAddress: socket.remoteAddress ?? '',
      headers: {},
    });
    if (admitted !== true) {
      // TCP has no way to say why before hello; the client sees a dropped link and backs off.
      socket.destroy();
      return;
    }
    socket.setNoDelay(true);
    const link = new TcpLink(socket, this.options);
    (socket as LinkedSocket)[kLink] = link;
    socket.on('data', onData);
    socket.on('drain', onDrain);
    socket.on('end', onEnd);
    socket.on('error', onError);
    socket.on('close', onClose);
    const info: LinkInfo = {
      transport: 'tcp',
      remoteAddress: link.remoteAddress,
      remotePort: link.remotePort,
      headers: {},
      query: EMPTY_QUERY,
      protocol: '',
    };
    this.options.sink.onOpen(link, info);
  }

  /** Stop accepting; existing links stay open. */
  stop(): Promise<void> {
    const server = this.server;
    if (!server) return Promise.resolve();
    this.server = undefined;
    // close() stops the listener at once; its callback would wait for every connection.
    server.close();
    return Promise.resolve();
  }
}
