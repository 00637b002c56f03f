import { createServer, type IncomingMessage, type Server } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { WebSocket, WebSocketServer } from 'ws';
import type { Link, LinkInfo, LinkSink } from './link.js';
import { listenOn } from './listen.js';
import { type OutFrame, wsFrame } from './out-frame.js';
import { readTls, reloadTls, type TlsFiles } from './tls.js';

export interface WsTransportOptions {
  sink: LinkSink;
  /** URL path that accepts upgrades. */
  path: string;
  /** Largest message accepted, in bytes (ws closes the link with 1009 above it). */
  maxFrame: number;
  /** `send` returns false once this many bytes are queued. */
  highWaterMark: number;
  /** Time allowed for the HTTP upgrade request (slowloris guard), in ms. */
  handshakeTimeout: number;
  /** Subprotocols this server speaks, in order of preference. */
  protocols: readonly string[];
  /** wss:// instead of ws://. */
  tls?: TlsFiles;
  /** Serves plain HTTP requests on the same port (pages, health). Default: 404. */
  httpHandler?: (req: IncomingMessage, res: import('node:http').ServerResponse) => void;
}

const kLink = Symbol('pylon.link');
type LinkedWebSocket = WebSocket & { [kLink]: WsLink };
type LinkedSocket = Socket & { [kLink]: WsLink };

/** A WebSocket connection: one WS message per frame. */
export class WsLink implements Link {
  readonly transport = 'ws' as const;
  owner: unknown = undefined;
  closed = false;
  closeCode = 0;
  closeReason = '';

  constructor(
    readonly ws: WebSocket,
    readonly socket: Socket,
    readonly remoteAddress: string,
    readonly remotePort: number,
    readonly options: WsTransportOptions,
  ) {}

  get buffered(): number {
    return this.socket.writableLength;
  }

  // Data frames are written straight to the socket, framed by us: one buffer and one write per
  // message, and a broadcast's frame is built once for all links (ws's Sender would frame it
  // again for each). Without permessage-deflate ws's Sender never queues, so order is kept.
  send(payload: Uint8Array, text: boolean): boolean {
    if (this.ws.readyState === WebSocket.OPEN) this.socket.write(wsFrame(payload, text));
    return this.socket.writableLength < this.options.highWaterMark;
  }

  sendFrame(f: OutFrame): boolean {
    if (this.ws.readyState === WebSocket.OPEN) this.socket.write(f.ws());
    return this.socket.writableLength < this.options.highWaterMark;
  }

  close(code: number, reason: string): void {
    if (this.closed) return;
    this.closed = true;
    this.closeCode = code;
    this.closeReason = reason;
    // Read on (messages are ignored once closed) so the closing handshake can complete.
    this.ws.resume();
    // A close reason is at most 123 bytes in a WS close frame.
    this.ws.close(code, truncateReason(reason));
  }

  destroy(): void {
    this.closed = true;
    this.ws.terminate();
  }

  pause(): void {
    this.ws.pause();
  }

  resume(): void {
    if (!this.closed) this.ws.resume();
  }
}

function truncateReason(reason: string): string {
  if (Buffer.byteLength(reason) <= 123) return reason;
  let cut = reason.slice(0, 120);
  while (Buffer.byteLength(cut) > 120) cut = cut.slice(0, -1);
  return cut;
}

function onMessage(this: WebSocket, data: Buffer): void {
  const link = (this as LinkedWebSocket)[kLink];
  if (!link.closed) link.options.sink.onFrame(link, data);
}

function onWsError(this: WebSocket, err: Error): void {
  // ws reports framing faults (bad opcode, over-size, invalid UTF-8) here and closes the link.
  const link = (this as LinkedWebSocket)[kLink];
  link.options.sink.onFrameError(link, err);
}

function onWsClose(this: WebSocket, code: number, reason: Buffer): void {
  const link = (this as LinkedWebSocket)[kLink];
  // Our own close code wins over what the peer echoed back.
  const c = link.closeCode || code;
  const r = link.closeReason || reason.toString() || 'connection lost';
  link.options.sink.onClose(link, c, r);
}

function onSocketDrain(this: LinkedSocket): void {
  const link = this[kLink];
  link.options.sink.onDrain(link);
}

/** Serves WebSocket upgrades on `path` of an HTTP server (its own, or one given). */
export class WsTransport {
  private server: Server | HttpsServer | undefined;
  private stopped = false;
  private readonly wss: WebSocketServer;

  constructor(private readonly options: WsTransportOptions) {
    const protocols = new Set(options.protocols);
    this.wss = new WebSocketServer({
      noServer: true,
      maxPayload: options.maxFrame,
      perMessageDeflate: false,
      // The JSON codec decodes text with a fatal TextDecoder: invalid UTF-8 is still a protocol
      // error, without ws checking every text message a second time.
      skipUTF8Validation: true,
      clientTracking: false,
      handleProtocols: (offered) => {
        for (const p of offered) if (protocols.has(p)) return p;
        return false;
      },
    });
  }

  listen(port: number, host: string): Promise<AddressInfo> {
    const t = this.options.handshakeTimeout;
    const httpOptions = {
      headersTimeout: t,
      requestTimeout: t,
      connectionsCheckingInterval: Math.min(1000, t),
    };
    const handler = this.options.httpHandler ?? notFound;
    const tls = this.options.tls;
    const server = tls
      ? createHttpsServer({ ...httpOptions, ...readTls(tls) }, handler)
      : createServer(httpOptions, handler);
    this.attach(server);
    this.server = server;
    return listenOn(server, port, host);
  }

  /** Re-read the certificate files; new connections use them, open ones keep theirs. */
  reloadTls(): void {
    reloadTls(this.server, this.options.tls);
  }

  /** Serve upgrades on an existing HTTP server (the application owns its lifecycle). */
  attach(server: Server | HttpsServer): void {
    server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) =>
      this.upgrade(req, socket, head),
    );
  }

  private upgrade(req: IncomingMessage, socket: Socket, head: Buffer): void {
    const url = new URL(req.url ?? '/', 'http://x');
    if (this.stopped) {
      socket.end('HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    if (url.pathname !== this.options.path) {
      socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    const admitted = this.options.sink.admit({
      transport: 'ws',
      remoteAddress: socket.remoteAddress ?? '',
      headers: req.headers,
    });
    if (admitted === true) this.accept(req, socket, head, url);
    else if (!(admitted instanceof Promise)) refuse(socket, admitted);
    else {
      admitted.then(
        (answer) => {
          if (socket.destroyed) return;
          if (answer === true) this.accept(req, socket, head, url);
          else refuse(socket, answer);
        },
        () => refuse(socket, { status: 500, reason: 'Internal Server Error' }),
      );
    }
  }

  private accept(req: IncomingMessage, socket: Socket, head: Buffer, url: URL): void {
    socket.setNoDelay(true);
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      const link = new WsLink(ws, socket, socket.remoteAddress ?? '', socket.remotePort ?? 0, this.options);
      (ws as LinkedWebSocket)[kLink] = link;
      (socket as LinkedSocket)[kLink] = link;
      ws.on('message', onMessage);
      ws.on('error', onWsError);
      ws.on('close', onWsClose);
      socket.on('drain', onSocketDrain);
      const info: LinkInfo = {
        transport: 'ws',
        remoteAddress: link.remoteAddress,
        remotePort: link.remotePort,
        headers: req.headers,
        query: url.searchParams,
        protocol: ws.protocol,
      };
      this.options.sink.onOpen(link, info);
    });
  }

  /** Stop accepting new upgrades and HTTP requests; open links stay. */
  stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    this.stopped = true;
    if (server) {
      server.close();
      server.closeIdleConnections();
    }
    return Promise.resolve();
  }
}

/** Refuse an upgrade before any WebSocket state exists. */
function refuse(socket: Socket, answer: { status: number; reason: string }): void {
  const body = `${answer.reason}\n`;
  socket.end(
    `HTTP/1.1 ${answer.status} ${STATUS_TEXT[answer.status] ?? 'Refused'}\r\nConnection: close\r\n` +
      `Content-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
}

const STATUS_TEXT: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};

function notFound(_req: IncomingMessage, res: import('node:http').ServerResponse): void {
  res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
}
