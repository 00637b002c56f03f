import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import type { HttpTransport } from './http-transport.js';
import type { Admission, LinkInfo } from './link.js';
import { listenOn } from './listen.js';
import { clientAddress, type TrustedProxies } from './proxy.js';
import { wire } from './socket-link.js';
import { readTls, reloadTls, type TlsFiles } from './tls.js';
import { negotiate } from './ws-deflate.js';
import { acceptKey } from './ws-frame.js';
import { WsLink, type WsLinkOptions, wsFrameLength } from './ws-link.js';

export interface WsListenOptions extends WsLinkOptions {
  host: string;
  port: number;
  /** URL path that accepts upgrades; "" or "/" accepts any. */
  path: string;
  /** Subprotocols this server speaks, in order of preference. */
  protocols: readonly string[];
  /** Time allowed for the HTTP upgrade request (slowloris guard), ms. */
  handshakeTimeout: number;
  /** wss:// instead of ws://. */
  tls?: TlsFiles;
  /** Proxies whose X-Forwarded-For / X-Real-IP give the client's address (normalized). */
  trustedProxies: TrustedProxies;
  /** Serves plain HTTP requests on the same port (pages, health). Default: 404. */
  httpHandler?: (req: IncomingMessage, res: ServerResponse) => void;
  /** Pylon over HTTP on the same port (its paths are taken before `httpHandler`). */
  httpTransport?: HttpTransport;
}

const KEY = /^[+/0-9A-Za-z]{22}==$/;

/**
 * Serves WebSocket upgrades on `path` of an HTTP server of its own: checks the handshake
 * (RFC 6455 §4.2), finds the client's address (trusted proxies), asks the sink to admit the
 * connection before it costs anything, answers 101 with the chosen subprotocol, and hands the
 * socket to a WsLink. The one WebSocket server of Pylon: both faces use it.
 */
export class WsListener {
  private server: Server | HttpsServer | undefined;
  private stopped = false;

  constructor(private readonly options: WsListenOptions) {}

  listen(): Promise<AddressInfo> {
    const o = this.options;
    const t = o.handshakeTimeout;
    const httpOptions = {
      headersTimeout: t,
      requestTimeout: t,
      connectionsCheckingInterval: Math.min(1000, t),
    };
    const fallback = o.httpHandler ?? notFound;
    const transport = o.httpTransport;
    const handler =
      transport === undefined
        ? fallback
        : (req: IncomingMessage, res: ServerResponse) => {
            if (!transport.handle(req, res)) fallback(req, res);
          };
    const server = o.tls
      ? createHttpsServer({ ...httpOptions, ...readTls(o.tls) }, handler)
      : createServer(httpOptions, handler);
    server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) =>
      this.upgrade(req, socket, head),
    );
    if (o.tls) server.on('tlsClientError', () => {});
    this.server = server;
    return listenOn(server, o.port, o.host);
  }

  /** Re-read the certificate files; new connections use them, open ones keep theirs. */
  reloadTls(): void {
    reloadTls(this.server, this.options.tls);
  }

  /** Stop accepting upgrades and HTTP requests; open links stay. */
  stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    this.stopped = true;
    this.options.httpTransport?.stop();
    if (server) {
      server.close();
      server.closeIdleConnections();
    }
    return Promise.resolve();
  }

  private upgrade(req: IncomingMessage, socket: Socket, head: Buffer): void {
    socket.on('error', ignore);
    const o = this.options;
    if (this.stopped) {
      refuse(socket, { status: 503, reason: 'server shutting down' });
      return;
    }
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q < 0 ? url : url.slice(0, q);
    if (o.path !== '' && o.path !== '/' && path !== o.path) {
      refuse(socket, { status: 404, reason: 'not found' });
      return;
    }
    const version = req.headers['sec-websocket-version'];
    if (version !== '13' && version !== '8') {
      refuse(
        socket,
        { status: 426, reason: 'Sec-WebSocket-Version 13 only' },
        'Sec-WebSocket-Version: 13\r\n',
      );
      return;
    }
    const key = req.headers['sec-websocket-key'];
    if (
      req.method !== 'GET' ||
      req.headers.upgrade?.toLowerCase() !== 'websocket' ||
      key === undefined ||
      !KEY.test(key)
    ) {
      refuse(socket, { status: 400, reason: 'not a WebSocket handshake' });
      return;
    }
    const peer = socket.remoteAddress ?? '';
    const remoteAddress = clientAddress(peer, req.headers, o.trustedProxies);
    const admitted = o.sink.admit({ transport: 'ws', remoteAddress, headers: req.headers });
    if (admitted === true) this.accept(req, socket, head, key, remoteAddress, q < 0 ? '' : url.slice(q + 1));
    else if (!(admitted instanceof Promise)) refuse(socket, admitted);
    else {
      admitted.then(
        (answer) => {
          if (socket.destroyed) return;
          if (answer === true)
            this.accept(req, socket, head, key, remoteAddress, q < 0 ? '' : url.slice(q + 1));
          else refuse(socket, answer);
        },
        () => refuse(socket, { status: 500, reason: 'Internal Server Error' }),
      );
    }
  }

  private accept(
    req: IncomingMessage,
    socket: Socket,
    head: Buffer,
    key: string,
    remoteAddress: string,
    query: string,
  ): void {
    const o = this.options;
    const protocol = choose(req.headers['sec-websocket-protocol'], o.protocols);
    const ext = req.headers['sec-websocket-extensions'];
    const deflate = o.compression
      ? negotiate(Array.isArray(ext) ? ext.join(',') : ext, o.compression)
      : undefined;
    socket.setTimeout(0);
    socket.setNoDelay(true);
    socket.write(
      'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
        `Sec-WebSocket-Accept: ${acceptKey(key)}\r\n${protocol ? `Sec-WebSocket-Protocol: ${protocol}\r\n` : ''}` +
        `${deflate ? `Sec-WebSocket-Extensions: ${deflate.response}\r\n` : ''}\r\n`,
    );
    socket.off('error', ignore);
    const link = new WsLink(socket, o, remoteAddress, wsFrameLength);
    link.deflate = deflate;
    wire(link);
    const info: LinkInfo = {
      transport: 'ws',
      remoteAddress,
      remotePort: link.remotePort,
      headers: req.headers,
      url: req.url ?? '/',
      query: new URLSearchParams(query),
      protocol,
    };
    o.sink.onOpen(link, info);
    if (head.length > 0) link.read(head);
  }
}

/** The first subprotocol the client offers that the server speaks ('' for none). */
function choose(offered: string | undefined, spoken: readonly string[]): string {
  if (offered === undefined || spoken.length === 0) return '';
  for (const p of offered.split(',')) {
    const name = p.trim();
    if (spoken.includes(name)) return name;
  }
  return '';
}

const STATUS_TEXT: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  421: 'Misdirected Request',
  426: 'Upgrade Required',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};

/** Refuse an upgrade before any WebSocket state exists. */
function refuse(socket: Socket, answer: Exclude<Admission, true>, extra = ''): void {
  const body = `${answer.reason}\n`;
  socket.end(
    `HTTP/1.1 ${answer.status} ${STATUS_TEXT[answer.status] ?? 'Refused'}\r\nConnection: close\r\n${extra}` +
      `Content-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
}

function notFound(_req: IncomingMessage, res: ServerResponse): void {
  res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
}

function ignore(): void {}
