import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createLogger, type Logger } from '../log/logger.js';
import { AdmissionControl } from '../net/admission.js';
import { setBudgetLimits } from '../net/budget.js';
import {
  type Admission,
  type AdmitInfo,
  disconnectOf,
  type Link,
  type LinkInfo,
  type LinkSink,
} from '../net/link.js';
import { type TrustedProxies, trustSet } from '../net/proxy.js';
import type { SocketLink } from '../net/socket-link.js';
import { StreamListener } from '../net/stream.js';
import type { TlsFiles } from '../net/tls.js';
import { UdpListener } from '../net/udp.js';
import { WsListener } from '../net/ws.js';
import type { Envelope } from '../protocol/envelope.js';
import { ProtocolError, PylonError } from '../protocol/errors.js';
import { type Clock, systemClock } from '../timer/clock.js';
import { isShared, wheelFor } from '../timer/shared.js';
import type { TimingWheel } from '../timer/wheel.js';
import { CLOSE, type CloseInfo, Connection, type ConnectionHost, closeInfo } from './connection.js';
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
    /** Subprotocols the server speaks, in order of preference (the first one the client offers is chosen). */
    protocols?: string[];
    /** Allowed `Origin` headers (exact); others get 403 before the upgrade. Default: any. */
    origins?: string[];
    /** Called before the upgrade: true to accept, false for 403, or a status and reason. */
    verify?: (request: {
      remoteAddress: string;
      headers: IncomingHttpHeaders;
    }) =>
      | boolean
      | { status: number; reason: string }
      | Promise<boolean | { status: number; reason: string }>;
  };
  /** Certificate and key files: the stream and ws:// listeners speak TLS (ws:// becomes wss://). */
  tls?: TlsFiles;
  onConnect?(connection: Connection<In, Out>): void;
  /** A decoded packet (raw mode: no envelope, no handshake). May be async; a rejection goes to onError. */
  onMessage?(connection: Connection<In, Out>, message: In): unknown;
  /** Once per connection, after onConnect, whoever closed it. */
  onClose?(connection: Connection<In, Out>, info: CloseInfo): void;
  /**
   * What went wrong, by `err.code`: PROTOCOL / FRAME_TOO_LARGE (bad bytes; the connection is
   * closing), BUFFERS_FULL / FRAME_TIMEOUT / SLOW_CONSUMER (a limit of the socket layer),
   * HANDLER (a callback threw), ENCODE (send could not encode), SOCKET (reset, EPIPE…).
   * Without it, errors are logged.
   */
  onError?(connection: Connection<In, Out>, err: PylonError): void;
  /** The outgoing buffer went over highWaterMark (once, until it drains). */
  onBufferFull?(connection: Connection<In, Out>): void;
  /** The outgoing buffer drained after onBufferFull. */
  onBufferDrain?(connection: Connection<In, Out>): void;
  /** Connections at once; more are refused (TCP closed, http 503, ws 503, UDP dropped). Default 100,000. */
  maxConnections?: number;
  /** Connections one remote address may hold; more are refused (ws 429, TCP closed, UDP dropped). Default 10,000. */
  maxConnectionsPerIp?: number;
  /** Outgoing bytes per connection above which send returns false and onBufferFull fires. Default 1 MiB. */
  highWaterMark?: number;
  /** Hard cap on one connection's outgoing bytes: a send while over it closes the connection (slow_consumer). Default 16 × highWaterMark. */
  maxBuffered?: number;
  /** Close a connection that sent nothing for this long (ms; UDP: forget the peer). 0: never. Default 0; http and udp 60 s. */
  idleTimeout?: number;
  /** Time a soft close has to finish before the socket is destroyed, ms. Default 5 s. */
  closeTimeout?: number;
  /** Proxies whose X-Forwarded-For / X-Real-IP give `remoteAddress` (ws:// and http://). */
  trustedProxies?: string[];
  /** Largest packet buffered for a protocol, bytes. Default 16 MiB. */
  maxPacket?: number;
  /** Process-wide bytes of unfinished packets (shared with every server and gateway of the process). Default 64 MiB. */
  maxPartialBytes?: number;
  /** A packet that has begun must be whole within this long, ms. Default 15 s. */
  frameTimeout?: number;
  /** Logger (pino's surface). Default: JSON lines on stderr, level info. */
  logger?: Logger;
  /** Timing wheel for idle deadlines. Default: the process's. */
  clock?: Clock;
  tickMs?: number;
}

type Cb<In, Out> = ServerOptions<In, Out>;
type Opts<In, Out, L extends string> = Omit<ServerOptions<In, Out>, 'listen' | 'protocol'> & { listen: L };

export interface ServerAddress extends AddressInfo {
  /** `scheme://host:port` as bound (the real port when 0 was asked). */
  url: string;
}

type Listener = StreamListener | WsListener | UdpListener;

/**
 * A framework server: one listener of the socket layer (src/net) speaking one protocol, raw
 * messages in and out; a LinkSink, like the envelope gateway. Every listener feature is here:
 * TLS, admission (limits per process and per address, origins, verify), trusted proxies,
 * subprotocols, the process-wide byte budgets.
 */
export class Server<In = unknown, Out = In> implements LinkSink, ConnectionHost<In, Out> {
  readonly scheme: Scheme;
  readonly protocol: Protocol<In, Out> | undefined;
  readonly highWaterMark: number;
  readonly maxConnections: number;
  readonly maxPacket: number;
  readonly clock: Clock;
  readonly logger: Logger;
  /** Open connections by id. */
  readonly connections = new Map<number, Connection<In, Out>>();
  stopping = false;
  private readonly host: string;
  private readonly port: number;
  private readonly path: string;
  private readonly idleTimeout: number;
  private readonly closeTimeout: number;
  private readonly wheel: TimingWheel;
  private readonly admission: AdmissionControl;
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
    const trusted = trustSet(options.trustedProxies);
    this.protocol =
      options.protocol ?? (defaultProtocol(scheme, options, trusted) as Protocol<In, Out> | undefined);
    this.highWaterMark = options.highWaterMark ?? 1024 * 1024;
    this.maxConnections = options.maxConnections ?? 100_000;
    this.maxPacket = options.maxPacket ?? 16 * 1024 * 1024;
    this.idleTimeout = options.idleTimeout ?? (scheme === 'udp' || scheme === 'http' ? 60_000 : 0);
    this.closeTimeout = options.closeTimeout ?? 5000;
    this.clock = options.clock ?? systemClock;
    this.logger = options.logger ?? createLogger('info');
    this.wheel = wheelFor(options.clock, options.tickMs);
    this.admission = new AdmissionControl({
      maxConnections: this.maxConnections,
      maxConnectionsPerIp: options.maxConnectionsPerIp ?? 10_000,
      ...(options.ws?.origins ? { origins: options.ws.origins } : {}),
      ...(options.ws?.verify ? { verify: options.ws.verify } : {}),
    });
  }

  get connectionCount(): number {
    return this.connections.size;
  }

  /** Connections refused since the start (limits, origin, verify, shutting down). */
  get refusedCount(): number {
    return this.admission.refused;
  }

  /** Start listening. Resolves with the bound address. */
  async listen(): Promise<ServerAddress> {
    if (this.listener) throw new Error('already listening');
    const o = this.options;
    setBudgetLimits({ maxPartialBytes: o.maxPartialBytes, frameTimeout: o.frameTimeout });
    const at = { host: this.host, port: this.port };
    const protocol = this.protocol;
    const length =
      protocol === undefined
        ? rawLength
        : (buffer: Uint8Array, link: Link | SocketLink) =>
            protocol.input(buffer, link.owner as Connection<In, Out>);
    const common = {
      sink: this,
      highWaterMark: this.highWaterMark,
      maxBuffered: o.maxBuffered ?? 16 * this.highWaterMark,
      closeTimeout: this.closeTimeout,
      ...(o.tls ? { tls: o.tls } : {}),
    };
    let address: AddressInfo;
    if (this.scheme === 'udp') {
      const l = new UdpListener({
        sink: this,
        ...at,
        length: protocol === undefined ? undefined : length,
        maxPacket: this.maxPacket,
      });
      this.listener = l;
      address = await l.listen();
    } else if (this.scheme === 'ws') {
      const ws = o.ws ?? {};
      const maxMessage = ws.maxPayload ?? 1024 * 1024;
      const l = new WsListener({
        ...common,
        ...at,
        path: this.path,
        maxMessage,
        maxPacket: 14 + maxMessage,
        // Raw mode hands text messages over as strings: they must be UTF-8.
        validateUtf8: protocol === undefined,
        protocols: ws.protocols ?? [],
        handshakeTimeout: ws.handshakeTimeout ?? 10_000,
        trustedProxies: trustSet(o.trustedProxies),
        ...(ws.httpHandler ? { httpHandler: ws.httpHandler } : {}),
      });
      this.listener = l;
      address = await l.listen();
    } else {
      const l = new StreamListener({
        ...common,
        ...at,
        length,
        lengthPrefix: false,
        maxPacket: this.maxPacket,
        ...(this.scheme === 'http' ? { refusal: httpRefusal } : {}),
      });
      this.listener = l;
      address = await l.listen();
    }
    const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
    const secure = o.tls !== undefined && this.scheme === 'ws' ? 'wss' : this.scheme;
    return {
      ...address,
      url: `${secure}://${host}:${address.port}${this.scheme === 'ws' ? this.path : ''}`,
    };
  }

  /** Stop accepting, close every connection softly with `shutdown` (4000), then drop stragglers. */
  close(): Promise<void> {
    this.closingPromise ??= this.shutdown();
    return this.closingPromise;
  }

  private async shutdown(): Promise<void> {
    this.stopping = true;
    const listener = this.listener;
    if (!(listener instanceof UdpListener)) await listener?.stop();
    const drained = new Promise<void>((resolve) => {
      this.onEmpty = resolve;
    });
    for (const c of [...this.connections.values()])
      c.closeWith(closeInfo('shutdown', 'server shutting down'));
    this.checkEmpty();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([drained, new Promise<void>((r) => (timer = setTimeout(r, this.closeTimeout)))]);
    clearTimeout(timer);
    for (const c of [...this.connections.values()]) c.destroy();
    // Destroyed sockets report 'close' on the next tick: let onClose run before resolving.
    if (this.connections.size > 0) await new Promise<void>((r) => setImmediate(r));
    if (listener instanceof UdpListener) await listener.stop();
    if (!isShared(this.wheel)) this.wheel.close();
  }

  // ---- LinkSink ----

  admit(info: AdmitInfo): Admission | Promise<Admission> {
    return this.admission.admit(info, this.stopping);
  }

  onOpen(link: Link, info: LinkInfo): void {
    const c = new Connection<In, Out>(++this.lastId, link, info, this);
    link.owner = c;
    if (!this.admission.opened(link.remoteAddress)) {
      // Over a limit since admit (concurrent upgrades): closed before the application sees it.
      c.closeWith(closeInfo('overloaded', 'too many connections'));
      return;
    }
    this.connections.set(c.id, c);
    if (this.idleTimeout > 0) {
      c.lastRecv = this.clock.now();
      c.timer = this.wheel.schedule(this.idleTimeout, onIdle, c as Connection<unknown, unknown>);
    }
    const fn = this.options.onConnect;
    if (fn) this.call(c, fn, undefined);
  }

  /** A WebSocket ping or pong counts as life for the idle timeout. */
  onLife(link: Link): void {
    const c = link.owner as Connection<In, Out>;
    if (c.state === 'open' && this.idleTimeout > 0) c.lastRecv = this.clock.now();
  }

  onPacket(link: Link, packet: Uint8Array, text: boolean): void {
    const c = link.owner as Connection<In, Out>;
    if (c.state !== 'open') return;
    if (this.idleTimeout > 0) c.lastRecv = this.clock.now();
    const protocol = this.protocol;
    let message: In;
    if (protocol === undefined) {
      // Raw mode: the application may keep what it gets, so it gets its own copy.
      message = (
        text ? Buffer.from(packet.buffer, packet.byteOffset, packet.length).toString() : Buffer.from(packet)
      ) as In;
    } else {
      try {
        message = protocol.decode(packet, c);
      } catch (err) {
        this.protocolError(c, err);
        return;
      }
    }
    const group = groupOf(c);
    if (group !== undefined) {
      group.deliver(c, message);
      return;
    }
    const fn = this.options.onMessage;
    if (fn) this.call(c, fn, message);
  }

  onPacketError(link: Link, err: Error): void {
    this.protocolError(link.owner as Connection<In, Out>, err);
  }

  onDrain(link: Link): void {
    const c = link.owner as Connection<In, Out>;
    if (!c.overWater || link.buffered >= this.highWaterMark) return;
    c.overWater = false;
    const fn = this.options.onBufferDrain;
    if (fn && c.state === 'open') this.call(c, fn, undefined);
  }

  onClose(link: Link, code: number, reason: string): void {
    const c = link.owner as Connection<In, Out> | undefined;
    if (c === undefined || c.state === 'closed') return;
    this.admission.closed(link.remoteAddress);
    const was = c.state;
    c.state = 'closed';
    if (c.closeInfo === undefined) {
      c.closeInfo =
        code === 1006
          ? { code: CLOSE.connection_lost, name: 'connection_lost', reason }
          : { code: CLOSE.normal, name: 'normal', reason: reason || `closed by the peer (${code})` };
      if (code === 1006 && was === 'open') this.report(c, 'SOCKET', new Error(reason));
    }
    c.timer?.cancel();
    c.timer = undefined;
    if (this.connections.get(c.id) === c) {
      this.connections.delete(c.id);
      leaveGroup(c);
      const fn = this.options.onClose;
      if (fn) this.call(c, fn, c.closeInfo);
    }
    this.checkEmpty();
  }

  // ---- ConnectionHost ----

  bufferFull(c: Connection<In, Out>): void {
    const fn = this.options.onBufferFull;
    if (fn) this.call(c, fn, undefined);
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

  /** Bad bytes or a limit: report, answer (the protocol's errorReply), close with the table's code. */
  private protocolError(c: Connection<In, Out>, err: unknown): void {
    if (c.state !== 'open') return;
    const perr =
      err instanceof PylonError
        ? err
        : new ProtocolError(err instanceof Error ? err.message : String(err), 'PROTOCOL', { cause: err });
    this.report(c, perr.code, perr);
    const reply = perr instanceof ProtocolError ? this.protocol?.errorReply?.(perr, c) : undefined;
    if (reply !== undefined && c.state === 'open') c.write(reply, false);
    const name = disconnectOf(perr);
    if (name === 'slow_consumer') {
      c.closeInfo = closeInfo('slow_consumer', perr.message);
      c.destroy();
      return;
    }
    c.closeWith(closeInfo(name as 'protocol_error', perr.message));
  }

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
      c.closeWith(closeInfo('keepalive_timeout', `nothing received for ${Math.round(idle)} ms`));
    else c.timer?.reschedule(this.idleTimeout - idle);
  }
}

const HTTP_503 = Buffer.from(
  'HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n',
);

function httpRefusal(): Uint8Array {
  return HTTP_503;
}

/** Raw mode: whatever came is one packet. */
function rawLength(buffer: Uint8Array): number {
  return buffer.length;
}

function onIdle(c: Connection<unknown, unknown>): void {
  (c.host as Server<unknown, unknown>).idleCheck(c);
}

function isScheme(s: string): s is Scheme {
  return s === 'tcp' || s === 'line' || s === 'length' || s === 'http' || s === 'udp' || s === 'ws';
}

function defaultProtocol(
  scheme: Scheme,
  o: ServerOptions<unknown, unknown>,
  trusted: TrustedProxies,
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
