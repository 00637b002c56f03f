// The only file of the client SDK that imports Node built-ins: a browser build swaps it out.
import { isIP, connect as netConnect, type Socket } from 'node:net';
import { type ConnectionOptions, connect as tlsConnect } from 'node:tls';
import { WebSocket } from 'ws';
import { FRAME_HEADER_SIZE, frame, frameLength } from '../protocol/framing.js';
import { Reassembler } from '../protocol/reassembly.js';
import type { ClientLink, ClientLinkEvents, Dialer, DialOptions } from './link.js';

/** Pylon framing over TCP or TLS. Exported so that links with other write policies (rpc's batching) extend it. */
export class TcpClientLink implements ClientLink {
  readonly transport = 'tcp';
  private readonly reader: Reassembler;
  private readonly maxFrame: number;
  private readonly ctx: ReadContext;
  protected readonly socket: Socket;
  private reason = 'connection lost';
  private closeCode = 1006;

  constructor(url: URL, options: DialOptions, events: ClientLinkEvents) {
    this.maxFrame = options.maxFrame;
    this.reader = new Reassembler(FRAME_HEADER_SIZE + options.maxFrame);
    this.ctx = { link: this, events };
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
        this.reader.push(chunk, lengthOf, deliver, this.ctx);
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
    return this.socket.writableLength;
  }

  /** @internal Largest frame body accepted. */
  get frameLimit(): number {
    return this.maxFrame;
  }

  send(payload: Uint8Array): void {
    if (this.socket.writable) this.socket.write(frame(payload));
  }

  close(code: number, reason: string): void {
    this.closeCode = code;
    this.reason = reason;
    this.socket.end();
    // A live server finishes the close at once; a dead one never would, so the socket is
    // destroyed after a second (or at once for an abnormal close).
    if (code !== 1000) this.socket.destroy();
    else setTimeout(() => this.socket.destroy(), 1000).unref();
  }
}

interface ReadContext {
  link: TcpClientLink;
  events: ClientLinkEvents;
}

function lengthOf(buffer: Uint8Array, ctx: ReadContext): number {
  return frameLength(buffer, ctx.link.frameLimit);
}

function deliver(packet: Uint8Array, ctx: ReadContext): void {
  ctx.events.frame(packet.subarray(FRAME_HEADER_SIZE));
}

const BINARY = { binary: true } as const;
const TEXT = { binary: false } as const;

class WsClientLink implements ClientLink {
  readonly transport = 'websocket';
  private readonly ws: WebSocket;
  private failure = '';

  constructor(url: URL, options: DialOptions, events: ClientLinkEvents) {
    const target = new URL(url);
    if (options.token !== undefined && !target.searchParams.has('token'))
      target.searchParams.set('token', options.token);
    this.ws = new WebSocket(target, [`pylon.v1.${options.codec}`], {
      ...options.tls,
      headers: options.headers,
      maxPayload: options.maxFrame,
      // Offered with client_max_window_bits, so a Pylon server accepts it (threshold: messages of 1 KiB and more).
      perMessageDeflate: options.compression === true ? { threshold: 1024 } : false,
    });
    this.ws.on('open', () => events.open());
    this.ws.on('message', (data: Buffer) => events.frame(data));
    this.ws.on('error', (err) => {
      this.failure = err.message;
    });
    this.ws.on('close', (code: number, reason: Buffer) =>
      events.close(code, reason.toString() || this.failure),
    );
  }

  get buffered(): number {
    return this.ws.bufferedAmount;
  }

  send(payload: Uint8Array, text: boolean): void {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(payload, text ? TEXT : BINARY);
  }

  close(code: number, reason: string): void {
    if (this.ws.readyState === WebSocket.CONNECTING) this.ws.terminate();
    else if (code === 1000) this.ws.close(1000, reason);
    else this.ws.terminate();
  }
}

/** Dials tcp://, tls://, ws:// and wss:// URLs from Node. */
export const nodeDialer: Dialer = (url, options, events) => {
  switch (url.protocol) {
    case 'tcp:':
    case 'tls:':
      return new TcpClientLink(url, options, events);
    case 'ws:':
    case 'wss:':
      return new WsClientLink(url, options, events);
    default:
      throw new TypeError(
        `unsupported URL scheme "${url.protocol}" (use tcp://, tls://, ws://, wss://, http:// or https://)`,
      );
  }
};
