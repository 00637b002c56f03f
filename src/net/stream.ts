import { type AddressInfo, createServer, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer, type Server as TlsServer } from 'node:tls';
import { FRAME_HEADER_SIZE } from '../protocol/framing.js';
import type { PacketLength } from '../protocol/reassembly.js';
import type { LinkInfo } from './link.js';
import { listenOn } from './listen.js';
import { type OutFrame, tcpFrame, tcpTextFrame } from './out-frame.js';
import { OPEN, SocketLink, type SocketLinkOptions, wire } from './socket-link.js';
import { readTls, reloadTls, type TlsFiles } from './tls.js';

export interface StreamListenOptions extends SocketLinkOptions {
  host: string;
  port: number;
  /** tls:// instead of plain TCP. */
  tls?: TlsFiles;
  /** Where a packet ends (Pylon's 4-byte frames, a line, a custom protocol's `input`). */
  length: PacketLength<SocketLink>;
  /**
   * Pylon's 4-byte framing (the envelope gateway): `send` adds the header and the sink gets the
   * body. Otherwise bytes go as they are (a protocol framed them) and packets come whole.
   */
  lengthPrefix: boolean;
  /** What the sink sees as the link's `protocol` (LinkInfo): '' for Pylon's own, 'mqtt' for MQTT. */
  protocol?: string;
  /** Written to a refused socket before it is closed (an HTTP server's 503); default: just closed. */
  refusal?: (status: number) => Uint8Array | undefined;
}

const NO_HEADERS = {};
const NO_QUERY = new URLSearchParams();

/** A TCP or TLS connection: packets by the listener's framing. */
export class StreamLink extends SocketLink {
  readonly transport = 'tcp' as const;
  declare readonly options: StreamListenOptions;

  send(payload: Uint8Array): boolean {
    if (this.state !== OPEN) return false;
    return this.write(this.options.lengthPrefix ? tcpFrame(payload) : payload);
  }

  sendFrame(f: OutFrame): boolean {
    if (this.state !== OPEN) return false;
    return this.write(this.options.lengthPrefix ? f.tcp() : f.payload);
  }

  sendText(text: string): boolean {
    if (this.state !== OPEN) return false;
    return this.write(this.options.lengthPrefix ? tcpTextFrame(text) : Buffer.from(text));
  }

  close(code: number, reason: string): void {
    if (this.state !== OPEN) return;
    this.closing(code, reason);
    // Keep reading (and discarding) so the peer's FIN is seen and 'close' comes.
    this.paused = false;
    this.socket.resume();
    this.socket.end();
  }

  /** @internal */
  packet(bytes: Uint8Array): boolean {
    if (this.paused || this.state !== OPEN) return false;
    this.delivered++;
    // Pylon's framing: the sink gets the body; a protocol's packet goes whole (its decode reads it).
    this.options.sink.onPacket(
      this,
      this.options.lengthPrefix ? bytes.subarray(FRAME_HEADER_SIZE) : bytes,
      false,
    );
    return true;
  }

  /** @internal The peer's FIN without a close of ours is a close by the peer; an error is a lost link. */
  override finish(): void {
    if (this.state === OPEN) {
      if (this.failure) {
        this.closeCode = 1006;
        this.closeReason = `connection lost: ${this.failure.message}`;
      } else {
        this.closeCode = 1000;
        this.closeReason = 'closed by the peer';
      }
    }
    super.finish();
  }
}

/** Accepts TCP (or TLS) connections; each becomes a StreamLink given to the sink. */
export class StreamListener {
  private server: Server | TlsServer | undefined;

  constructor(private readonly options: StreamListenOptions) {}

  listen(): Promise<AddressInfo> {
    const o = this.options;
    const server = o.tls
      ? createTlsServer({ ...readTls(o.tls) }).on('secureConnection', (s: Socket) => this.accept(s))
      : createServer({ noDelay: true }, (s) => this.accept(s));
    // A failed TLS handshake is the client's problem, not the server's.
    if (o.tls) server.on('tlsClientError', () => {});
    this.server = server;
    return listenOn(server, o.port, o.host);
  }

  /** Re-read the certificate files; new connections use them, open ones keep theirs. */
  reloadTls(): void {
    reloadTls(this.server, this.options.tls);
  }

  /** Stop accepting; open links stay. */
  stop(): Promise<void> {
    // close() stops the listener at once; its callback would wait for every connection.
    this.server?.close();
    this.server = undefined;
    return Promise.resolve();
  }

  private accept(socket: Socket): void {
    const o = this.options;
    const remoteAddress = socket.remoteAddress ?? '';
    const admitted = o.sink.admit({ transport: 'tcp', remoteAddress, headers: NO_HEADERS });
    if (admitted !== true) {
      // TCP has no way to say why before a hello: the client sees a dropped link and backs off.
      socket.on('error', ignore);
      const bytes = o.refusal?.(admitted instanceof Promise ? 503 : admitted.status);
      if (bytes) socket.end(bytes);
      else socket.destroy();
      return;
    }
    socket.setNoDelay(true);
    const link = new StreamLink(socket, o, remoteAddress, o.length);
    wire(link);
    const info: LinkInfo = {
      transport: 'tcp',
      remoteAddress,
      remotePort: link.remotePort,
      headers: NO_HEADERS,
      url: '',
      query: NO_QUERY,
      protocol: o.protocol ?? '',
    };
    o.sink.onOpen(link, info);
  }
}

function ignore(): void {}
