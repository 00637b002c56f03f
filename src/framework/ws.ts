import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { WebSocket, WebSocketServer } from 'ws';
import { listenOn } from '../transport/listen.js';
import { wsFrame } from '../transport/out-frame.js';
import { Connection } from './connection.js';
import { clientAddress } from './proxy.js';
import type { Listener, ServerCore } from './transport.js';

/**
 * ws:// connections: each WebSocket message is one packet. Without a protocol a text message
 * is a string and a binary one a Uint8Array; `send(string)` writes a text message and
 * `send(bytes)` a binary one. With a protocol, `decode` gets each message's bytes and `send`
 * writes what `encode` returns as one message (text when `protocol.text`).
 */

const kConn = Symbol('pylon.framework.ws');
type ConnWs = WebSocket & { [kConn]: WsConnection<unknown, unknown> };
type ConnSocket = Socket & { [kConn]: WsConnection<unknown, unknown> };

export class WsConnection<In, Out> extends Connection<In, Out> {
  readonly transport = 'ws' as const;
  /** The upgrade request's headers. */
  readonly headers: IncomingMessage['headers'];
  /** The upgrade request's URL (path and query). */
  readonly url: string;

  constructor(
    id: number,
    readonly ws: WebSocket,
    readonly socket: Socket,
    req: IncomingMessage,
    readonly core: ServerCore<In, Out>,
  ) {
    super(id, socket.remoteAddress ?? '', socket.remotePort ?? 0, core);
    this.headers = req.headers;
    this.url = req.url ?? '/';
    this.remoteAddress = clientAddress(this.peerAddress, req.headers, core.trusted);
  }

  get buffered(): number {
    return this.socket.writableLength;
  }

  // Framed by hand and written to the socket (no permessage-deflate, so ws never queues):
  // one buffer and one write per message.
  write(bytes: Uint8Array, text: boolean): void {
    if (this.ws.readyState === WebSocket.OPEN) this.socket.write(wsFrame(bytes, text));
  }

  protected endWire(code: number, reason: string): void {
    this.ws.resume(); // read on, so the closing handshake completes
    this.ws.close(sendable(code), truncate(reason));
  }

  protected destroyWire(): void {
    this.ws.terminate();
  }

  protected pauseWire(): void {
    this.ws.pause();
  }

  protected resumeWire(): void {
    this.ws.resume();
  }
}

/** 1006 and 1005 may not be sent in a close frame. */
function sendable(code: number): number {
  return code === 1000 || (code >= 3000 && code <= 4999) ? code : 1000;
}

/** A close reason is at most 123 bytes. */
function truncate(reason: string): string {
  if (Buffer.byteLength(reason) <= 123) return reason;
  let cut = reason.slice(0, 120);
  while (Buffer.byteLength(cut) > 120) cut = cut.slice(0, -1);
  return cut;
}

function onMessage(this: WebSocket, data: Buffer, isBinary: boolean): void {
  const c = (this as ConnWs)[kConn];
  // After pause() ws may still emit what it had parsed: delivered, not dropped.
  if (c.state !== 'open') return;
  const core = c.core;
  core.touch(c);
  const protocol = core.protocol;
  if (protocol === undefined) {
    core.deliver(c, (isBinary ? data : data.toString()) as unknown);
    return;
  }
  let message: unknown;
  try {
    message = protocol.decode(data, c);
  } catch (err) {
    core.protocolError(c, err);
    return;
  }
  core.deliver(c, message);
}

function onWsError(this: WebSocket, err: Error): void {
  // ws reports framing faults (bad opcode, over-size, bad UTF-8) here and closes the socket.
  const c = (this as ConnWs)[kConn];
  if (c.state !== 'open') return;
  const tooLarge = (err as { code?: string }).code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH';
  c.state = 'closing';
  c.closeInfo = tooLarge
    ? { code: 4501, name: 'frame_too_large', reason: err.message }
    : { code: 4500, name: 'protocol_error', reason: err.message };
  c.core.report(c, tooLarge ? 'FRAME_TOO_LARGE' : 'PROTOCOL', err);
}

function onWsClose(this: WebSocket, code: number, reason: Buffer): void {
  const c = (this as ConnWs)[kConn];
  const err = code === 1006 ? new Error('connection lost') : undefined;
  if (c.closeInfo === undefined && code !== 1006) {
    c.closeInfo = { code: 1000, name: 'normal', reason: reason.toString() || `closed by the peer (${code})` };
  }
  c.core.closedWire(c, err);
}

function onSocketDrain(this: ConnSocket): void {
  const c = this[kConn];
  if (c.overWater && c.socket.writableLength < c.core.highWaterMark) c.core.drained(c);
}

export interface WsListenOptions {
  host: string;
  port: number;
  /** Path that accepts upgrades; "" or "/" accepts any. */
  path: string;
  /** Largest message accepted (ws closes with 1009 above it). */
  maxPayload: number;
  /** Serves plain HTTP requests on the same port (default 404). */
  httpHandler?: (req: IncomingMessage, res: ServerResponse) => void;
  /** Time allowed for the upgrade request, ms. */
  handshakeTimeout: number;
}

/** Serves WebSocket upgrades; each becomes a WsConnection of `core`. */
export async function listenWs<In, Out>(
  core: ServerCore<In, Out>,
  options: WsListenOptions,
): Promise<Listener> {
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: options.maxPayload,
    perMessageDeflate: false,
    clientTracking: false,
  });
  const t = options.handshakeTimeout;
  const server = createServer(
    {
      highWaterMark: core.highWaterMark,
      headersTimeout: t,
      requestTimeout: t,
      connectionsCheckingInterval: Math.min(1000, t),
    },
    options.httpHandler ?? notFound,
  );
  const anyPath = options.path === '' || options.path === '/';
  server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    socket.on('error', ignore);
    if (!anyPath && (req.url ?? '/').split('?')[0] !== options.path) {
      socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    if (core.stopping || core.connectionCount >= core.maxConnections) {
      core.refused();
      socket.end('HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    socket.setNoDelay(true);
    wss.handleUpgrade(req, socket, head, (ws) => {
      const c = new WsConnection(core.nextId(), ws, socket, req, core);
      (ws as ConnWs)[kConn] = c as WsConnection<unknown, unknown>;
      (socket as ConnSocket)[kConn] = c as WsConnection<unknown, unknown>;
      ws.on('message', onMessage);
      ws.on('error', onWsError);
      ws.on('close', onWsClose);
      socket.on('drain', onSocketDrain);
      core.opened(c);
    });
  });
  const address = await listenOn(server, options.port, options.host);
  return {
    address,
    stop: () => {
      server.close();
      server.closeIdleConnections();
      return Promise.resolve();
    },
  };
}

function notFound(_req: IncomingMessage, res: ServerResponse): void {
  res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
}

function ignore(): void {}
