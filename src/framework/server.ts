import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createLogger, type Logger } from '../gateway/logger.js';
import type { Envelope } from '../protocol/envelope.js';
import { ProtocolError, PylonError } from '../protocol/errors.js';
import { type Clock, systemClock } from '../timer/clock.js';
import { TimingWheel } from '../timer/wheel.js';
import { CLOSE, type CloseInfo, type Connection } from './connection.js';
import { groupOf, leaveGroup } from './group.js';
import { type HttpProtocolOptions, type HttpReply, type HttpRequest, httpProtocol } from './http.js';
import {
  type FrameProtocolOptions,
  frameProtocol,
  type LengthProtocolOptions,
  type LineProtocolOptions,
  lengthProtocol,
  lineProtocol,
  type Protocol,
} from './protocol.js';
import { trustSet } from './proxy.js';
import { listenStream, readBuffered, StreamConnection } from './stream.js';
import type { Listener, ServerCore } from './transport.js';
import { listenUdp } from './udp.js';
import { listenWs } from './ws.js';

export type Scheme = 'tcp' | 'line' | 'length' | 'http' | 'udp' | 'ws';

export interface ServerOptions<In, Out> {
  /**
   * `scheme://host:port`: tcp (Pylon's frame protocol), line, length, http, udp (datagrams)
   * or ws (WebSocket messages; the URL's path, if any, is the upgrade path). Port 0 picks one.
   */
  listen: string;
  /** Replaces the scheme's protocol (a device's own protocol: `tcp://` + this). */
  protocol?: Protocol<In, Out>;
  /** Options of the scheme's built-in protocol. */
  frame?: FrameProtocolOptions;
  line?: LineProtocolOptions;
  length?: LengthProtocolOptions;
  http?: Omit<HttpProtocolOptions, 'trustedProxies'>;
  ws?: {
    /** Largest message, bytes. Default 1 MiB. */
    maxPayload?: number;
    /** Serves plain HTTP requests on the ws:// port. Default 404. */
    httpHandler?: (req: IncomingMessage, res: ServerResponse) => void;
    /** Time allowed for the upgrade request, ms. Default 10 s. */
    handshakeTimeout?: number;
  };
  onConnect?(connection: Connection<In, Out>): void;
  /** A decoded packet (raw mode: no envelope, no handshake). May be async; a rejection goes to onError. */
  onMessage?(connection: Connection<In, Out>, message: In): unknown;
  /** Once per connection, after onConnect, whoever closed it. */
  onClose?(connection: Connection<In, Out>, info: CloseInfo): void;
  /**
   * What went wrong, by `err.code`: PROTOCOL / FRAME_TOO_LARGE (bad bytes; the connection is
   * closing), HANDLER (a callback threw), ENCODE (send could not encode), SOCKET (reset, EPIPE…).
   * Without it, errors are logged.
   */
  onError?(connection: Connection<In, Out>, err: PylonError): void;
  /** The outgoing buffer went over highWaterMark (once, until it drains). */
  onBufferFull?(connection: Connection<In, Out>): void;
  /** The outgoing buffer drained after onBufferFull. */
  onBufferDrain?(connection: Connection<In, Out>): void;
  /** Connections at once; more are refused (TCP closed, http 503, ws 503, UDP dropped). Default 100,000. */
  maxConnections?: number;
  /** Outgoing bytes per connection above which send returns false and onBufferFull fires. Default 1 MiB. */
  highWaterMark?: number;
  /** Close a connection that sent nothing for this long (ms; UDP: forget the peer). 0: never. Default 0; http and udp 60 s. */
  idleTimeout?: number;
  /** Time a soft close has to finish before the socket is destroyed, ms. Default 5 s. */
  closeTimeout?: number;
  /** Proxies whose X-Forwarded-For / X-Real-IP give `remoteAddress` (ws:// and http://). */
  trustedProxies?: string[];
  /** Largest packet buffered for a protocol, bytes. Default 16 MiB. */
  maxPacket?: number;
  /** Logger (pino's surface). Default: JSON lines on stderr, level info. */
  logger?: Logger;
  /** Timing wheel for idle and close deadlines. Default: the server's own. */
  clock?: Clock;
  tickMs?: number;
}

type Cb<In, Out> = ServerOptions<In, Out>;
type Opts<In, Out, L extends string> = Omit<ServerOptions<In, Out>, 'listen' | 'protocol'> & { listen: L };

export interface ServerAddress extends AddressInfo {
  /** `scheme://host:port` as bound (the real port when 0 was asked). */
  url: string;
}

/** A framework server: one listener speaking one protocol, raw messages in and out. */
export class Server<In = unknown, Out = In> implements ServerCore<In, Out> {
  readonly scheme: Scheme;
  readonly protocol: Protocol<In, Out> | undefined;
  readonly highWaterMark: number;
  readonly maxConnections: number;
  readonly maxPacket: number;
  readonly trusted: ReadonlySet<string>;
  readonly clock: Clock;
  readonly logger: Logger;
  /** Open connections by id. */
  readonly connections = new Map<number, Connection<In, Out>>();
  stopping = false;
  /** Connections refused since the start (maxConnections, shutting down). */
  refusedCount = 0;
  private readonly host: string;
  private readonly port: number;
  private readonly path: string;
  private readonly idleTimeout: number;
  private readonly closeTimeout: number;
  private readonly wheel: TimingWheel;
  private lastId = 0;
  private listener: Listener | undefined;
  private onEmpty: (() => void) | undefined;
  private closingPromise: Promise<void> | undefined;

  constructor(private readonly options: ServerOptions<In, Out>) {
    const url = new URL(options.listen);
    const scheme = url.protocol.slice(0, -1);
    if (!isScheme(scheme)) throw new TypeError(`unknown scheme "${scheme}:" in ${options.listen}`);
    if (url.port === '') throw new TypeError(`${options.listen}: a port is required (0 picks a free one)`);
    this.scheme = scheme;
    this.host = url.hostname.replace(/^\[|\]$/g, '') || '127.0.0.1';
    this.port = Number(url.port);
    this.path = url.pathname;
    this.trusted = trustSet(options.trustedProxies);
    this.protocol =
      options.protocol ?? (defaultProtocol(scheme, options, this.trusted) as Protocol<In, Out> | undefined);
    this.highWaterMark = options.highWaterMark ?? 1024 * 1024;
    this.maxConnections = options.maxConnections ?? 100_000;
    this.maxPacket = options.maxPacket ?? 16 * 1024 * 1024;
    this.idleTimeout = options.idleTimeout ?? (scheme === 'udp' || scheme === 'http' ? 60_000 : 0);
    this.closeTimeout = options.closeTimeout ?? 5000;
    this.clock = options.clock ?? systemClock;
    this.logger = options.logger ?? createLogger('info');
    this.wheel = new TimingWheel({
      clock: this.clock,
      tickMs: options.tickMs ?? 10,
      onError: (err) => this.logger.error({ err }, 'timer callback failed'),
    });
  }

  get connectionCount(): number {
    return this.connections.size;
  }

  /** Start listening. Resolves with the bound address. */
  async listen(): Promise<ServerAddress> {
    if (this.listener) throw new Error('already listening');
    const at = { host: this.host, port: this.port };
    if (this.scheme === 'udp') this.listener = await listenUdp(this, at);
    else if (this.scheme === 'ws') {
      const ws = this.options.ws ?? {};
      this.listener = await listenWs(this, {
        ...at,
        path: this.path,
        maxPayload: ws.maxPayload ?? 1024 * 1024,
        handshakeTimeout: ws.handshakeTimeout ?? 10_000,
        ...(ws.httpHandler ? { httpHandler: ws.httpHandler } : {}),
      });
    } else {
      const refusal = this.scheme === 'http' ? Buffer.from(HTTP_503) : undefined;
      this.listener = await listenStream(this, { ...at, ...(refusal ? { refusal } : {}) });
    }
    const a = this.listener.address;
    const host = a.family === 'IPv6' ? `[${a.address}]` : a.address;
    return { ...a, url: `${this.scheme}://${host}:${a.port}${this.scheme === 'ws' ? this.path : ''}` };
  }

  /** Stop accepting, close every connection softly with `shutdown` (4000), then drop stragglers. */
  close(): Promise<void> {
    this.closingPromise ??= this.shutdown();
    return this.closingPromise;
  }

  private async shutdown(): Promise<void> {
    this.stopping = true;
    const listener = this.listener;
    if (this.scheme !== 'udp') await listener?.stop();
    const drained = new Promise<void>((resolve) => {
      this.onEmpty = resolve;
    });
    for (const c of [...this.connections.values()]) c.closeWith(info('shutdown', 'server shutting down'));
    this.checkEmpty();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([drained, new Promise<void>((r) => (timer = setTimeout(r, this.closeTimeout)))]);
    clearTimeout(timer);
    for (const c of [...this.connections.values()]) c.destroy();
    // Destroyed sockets report 'close' on the next tick: let onClose run before resolving.
    if (this.connections.size > 0) await new Promise<void>((r) => setImmediate(r));
    if (this.scheme === 'udp') await listener?.stop();
    this.wheel.close();
  }

  // ---- ServerCore ----

  nextId(): number {
    return ++this.lastId;
  }

  opened(c: Connection<In, Out>): void {
    this.connections.set(c.id, c);
    if (this.idleTimeout > 0) {
      c.lastRecv = this.clock.now();
      c.timer = this.wheel.schedule(this.idleTimeout, onIdle, c as Connection<unknown, unknown>);
    }
    const fn = this.options.onConnect;
    if (fn) this.call(c, fn, undefined);
  }

  touch(c: Connection<In, Out>): void {
    if (this.idleTimeout > 0) c.lastRecv = this.clock.now();
  }

  deliver(c: Connection<In, Out>, message: In): void {
    const group = groupOf(c);
    if (group !== undefined) {
      group.deliver(c, message);
      return;
    }
    const fn = this.options.onMessage;
    if (fn) this.call(c, fn, message);
  }

  protocolError(c: Connection<In, Out>, err: unknown): void {
    if (c.state !== 'open') return;
    const perr =
      err instanceof ProtocolError
        ? err
        : new ProtocolError(err instanceof Error ? err.message : String(err), 'PROTOCOL', { cause: err });
    this.report(c, perr.code, perr);
    const reply = this.protocol?.errorReply?.(perr, c);
    if (reply !== undefined && c.state === 'open') c.write(reply, false);
    const name = perr.code === 'FRAME_TOO_LARGE' ? 'frame_too_large' : 'protocol_error';
    c.closeWith(info(name, perr.message));
  }

  bufferFull(c: Connection<In, Out>): void {
    const fn = this.options.onBufferFull;
    if (fn) this.call(c, fn, undefined);
  }

  drained(c: Connection<In, Out>): void {
    c.overWater = false;
    const fn = this.options.onBufferDrain;
    if (fn && c.state === 'open') this.call(c, fn, undefined);
  }

  closing(c: Connection<In, Out>): void {
    if (c.state === 'closed') return;
    c.timer?.cancel();
    c.timer = this.wheel.schedule(this.closeTimeout, onCloseDeadline, c as Connection<unknown, unknown>);
  }

  resumed(c: Connection<In, Out>): void {
    if (c instanceof StreamConnection) readBuffered(c);
  }

  closedWire(c: Connection<In, Out>, err?: Error): void {
    if (c.state === 'closed') return;
    const was = c.state;
    c.state = 'closed';
    c.closeInfo ??= err
      ? { code: CLOSE.connection_lost, name: 'connection_lost', reason: err.message }
      : { code: CLOSE.normal, name: 'normal', reason: 'closed by the peer' };
    c.timer?.cancel();
    c.timer = undefined;
    if (err && was === 'open') this.report(c, 'SOCKET', err);
    if (this.connections.get(c.id) === c) {
      this.connections.delete(c.id);
      leaveGroup(c);
      const fn = this.options.onClose;
      if (fn) this.call(c, fn, c.closeInfo);
    }
    this.checkEmpty();
  }

  refused(): void {
    this.refusedCount++;
  }

  warn(err: unknown, message: string): void {
    this.logger.warn({ err }, message);
  }

  report(c: Connection<In, Out>, code: string, err: unknown): void {
    const e =
      err instanceof PylonError && err.code === code
        ? err
        : new PylonError(code, err instanceof Error ? err.message : String(err), { cause: err });
    const fn = this.options.onError;
    if (fn === undefined) {
      const level = code === 'HANDLER' || code === 'ENCODE' ? 'error' : 'info';
      this.logger[level]({ err: e, conn: c.id, remote: c.remoteAddress }, `connection error ${code}`);
      return;
    }
    try {
      fn(c, e);
    } catch (again) {
      this.logger.error({ err: again, conn: c.id }, 'onError threw');
    }
  }

  // ---- inside ----

  /** Calls an application callback: a throw or a rejection is reported as HANDLER, never thrown. */
  private call<A>(c: Connection<In, Out>, fn: (c: Connection<In, Out>, arg: A) => unknown, arg: A): void {
    try {
      const r = fn.call(this.options, c, arg);
      if (r !== undefined && typeof (r as Promise<unknown>).then === 'function') {
        (r as Promise<unknown>).then(undefined, (err: unknown) => this.report(c, 'HANDLER', err));
      }
    } catch (err) {
      this.report(c, 'HANDLER', err);
    }
  }

  private checkEmpty(): void {
    if (this.onEmpty && this.connections.size === 0) this.onEmpty();
  }

  /** @internal Idle deadline of `c` passed: close it, or wait for the rest of its time. */
  idleCheck(c: Connection<In, Out>): void {
    if (c.state !== 'open') return;
    const idle = this.clock.now() - c.lastRecv;
    if (idle >= this.idleTimeout)
      c.closeWith(info('idle_timeout', `nothing received for ${Math.round(idle)} ms`));
    else c.timer?.reschedule(this.idleTimeout - idle);
  }
}

const HTTP_503 = 'HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n';

function info(
  name: 'shutdown' | 'idle_timeout' | 'protocol_error' | 'frame_too_large',
  reason: string,
): CloseInfo {
  return { code: CLOSE[name], name, reason };
}

function onIdle(c: Connection<unknown, unknown>): void {
  (c.host as Server<unknown, unknown>).idleCheck(c);
}

function onCloseDeadline(c: Connection<unknown, unknown>): void {
  if (c.state !== 'closed') c.destroy();
}

function isScheme(s: string): s is Scheme {
  return s === 'tcp' || s === 'line' || s === 'length' || s === 'http' || s === 'udp' || s === 'ws';
}

function defaultProtocol(
  scheme: Scheme,
  o: ServerOptions<unknown, unknown>,
  trusted: ReadonlySet<string>,
): Protocol<never, never> | undefined {
  switch (scheme) {
    case 'tcp':
      return frameProtocol(o.frame) as Protocol<never, never>;
    case 'line':
      return lineProtocol(o.line) as Protocol<never, never>;
    case 'length':
      return lengthProtocol(o.length) as Protocol<never, never>;
    case 'http':
      return httpProtocol({ ...o.http, trustedProxies: trusted }) as Protocol<never, never>;
    default:
      return undefined; // udp: datagram bytes; ws: message strings/bytes
  }
}

/**
 * A server for one listen URL. The scheme picks the transport and the default protocol, and so
 * the message types: line → string, tcp → Envelope, length → Uint8Array, http → HttpRequest
 * (answered with HttpReply), udp → Uint8Array, ws → string | Uint8Array; a `protocol` option
 * replaces it. Call `listen()`.
 */
export function createServer<In, Out>(
  options: ServerOptions<In, Out> & { protocol: Protocol<In, Out> },
): Server<In, Out>;
export function createServer(options: Opts<string, string, `line://${string}`>): Server<string, string>;
export function createServer(
  options: Opts<Envelope, Envelope, `tcp://${string}`>,
): Server<Envelope, Envelope>;
export function createServer(
  options: Opts<Uint8Array, Uint8Array | string, `length://${string}`>,
): Server<Uint8Array, Uint8Array | string>;
export function createServer(
  options: Opts<HttpRequest, HttpReply, `http://${string}`>,
): Server<HttpRequest, HttpReply>;
export function createServer(
  options: Opts<Uint8Array, Uint8Array | string, `udp://${string}`>,
): Server<Uint8Array, Uint8Array | string>;
export function createServer(
  options: Opts<string | Uint8Array, string | Uint8Array, `ws://${string}`>,
): Server<string | Uint8Array, string | Uint8Array>;
export function createServer(options: Cb<unknown, unknown>): Server<unknown, unknown>;
export function createServer(options: Cb<unknown, unknown>): Server<unknown, unknown> {
  return new Server(options);
}
