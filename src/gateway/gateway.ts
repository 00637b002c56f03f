import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { AddressInfo } from 'node:net';
import type { Codec } from '../protocol/codec.js';
import {
  type DisconnectInfo,
  type DisconnectName,
  disconnectInfo,
  disconnectName,
  shouldReconnect,
} from '../protocol/disconnect.js';
import type { Envelope, WireError } from '../protocol/envelope.js';
import { PylonError } from '../protocol/errors.js';
import { getCodec, jsonCodec, SUBPROTOCOLS } from '../protocol/index.js';
import type { Clock } from '../timer/clock.js';
import { systemClock } from '../timer/clock.js';
import { TimingWheel, type WheelTimer } from '../timer/wheel.js';
import type { Link, LinkInfo, LinkSink } from '../transport/link.js';
import { TcpTransport } from '../transport/tcp.js';
import { WsTransport } from '../transport/ws.js';
import { Connection, type ConnectionOwner } from './connection.js';
import { onConnectionTimer } from './keepalive.js';
import type { Logger } from './logger.js';
import {
  type GatewayOptions,
  type KeepaliveOptions,
  type ResolvedOptions,
  resolveOptions,
} from './options.js';
import { type Context, type Handler, type Middleware, NO_HANDLER, Router } from './router.js';
import { VERSION } from './version.js';

export interface GatewayEvents {
  /** A connection completed its handshake and can send and receive. */
  connect: [connection: Connection];
  /** A connection that had connected is gone; `info` says why (code from the disconnect table). */
  disconnect: [connection: Connection, info: DisconnectInfo];
  /** A handler threw something that is not a PylonError (the client got INTERNAL). */
  error: [error: Error, connection: Connection | undefined];
}

export interface GatewayAddresses {
  tcp?: AddressInfo;
  ws?: AddressInfo;
}

export interface GatewayStats {
  connections: number;
  messagesIn: number;
  messagesOut: number;
}

const CODEC_BY_SUBPROTOCOL: Record<string, string> = SUBPROTOCOLS;

/**
 * The server core: accepts links from its transports, runs the handshake, routes frames to
 * handlers, keeps connections alive, and closes them with documented codes.
 */
export class Gateway extends EventEmitter<GatewayEvents> implements LinkSink, ConnectionOwner {
  readonly connections = new Map<string, Connection>();
  readonly keepalive: KeepaliveOptions | undefined;
  readonly logger: Logger;
  readonly addresses: GatewayAddresses = {};
  private readonly options: ResolvedOptions;
  private readonly clock: Clock;
  private readonly wheel: TimingWheel;
  private readonly router = new Router();
  private readonly nodeId = randomBytes(4).toString('hex');
  private nextId = 0;
  private tcp: TcpTransport | undefined;
  private ws: WsTransport | undefined;
  private messagesIn = 0;
  private messagesOut = 0;
  private closing: Promise<void> | undefined;
  private onEmpty: (() => void) | undefined;
  /** Connections told to close whose sockets have not closed yet (at most closeTimeout). */
  private readonly lingering = new Set<Connection>();

  constructor(options: GatewayOptions = {}) {
    super();
    this.options = resolveOptions(options);
    this.keepalive = this.options.keepalive;
    this.logger = this.options.logger;
    this.clock = this.options.clock ?? systemClock;
    this.wheel = new TimingWheel({
      clock: this.clock,
      tickMs: this.options.tickMs,
      onError: (err) => this.logger.error({ err }, 'timer callback failed'),
    });
  }

  /** Register the handler of requests and one-way messages of `type`. */
  handle<TReq = unknown, TRes = unknown>(type: string, handler: Handler<TReq, TRes>): this {
    this.router.handle(type, handler as Handler);
    return this;
  }

  /** Add a middleware that runs around every handler, in the order added. */
  use(middleware: Middleware): this {
    this.router.use(middleware);
    return this;
  }

  /** Run `fn` once after `ms`, on the gateway's timing wheel. */
  after(ms: number, fn: () => void): WheelTimer {
    return this.wheel.after(ms, fn);
  }

  /** Run `fn` every `ms` until the returned timer is cancelled. */
  every(ms: number, fn: () => void): WheelTimer {
    return this.wheel.every(ms, callNoArg, fn);
  }

  /** Start the configured listeners. Resolves with their addresses (useful with port 0). */
  async listen(): Promise<GatewayAddresses> {
    const o = this.options;
    if (!o.tcp && !o.ws) throw new Error('no listener configured: set options.tcp and/or options.ws');
    if (o.tcp) {
      this.tcp = new TcpTransport({
        sink: this,
        maxFrame: o.maxFrame,
        highWaterMark: o.highWaterMark,
        closeTimeout: o.closeTimeout,
        after: (ms, fn, link) => {
          this.wheel.schedule(ms, fn, link);
        },
      });
      this.addresses.tcp = await this.tcp.listen(o.tcp.port, o.tcp.host);
    }
    if (o.ws) {
      this.ws = new WsTransport({
        sink: this,
        path: o.ws.path,
        maxFrame: o.maxFrame,
        highWaterMark: o.highWaterMark,
        handshakeTimeout: o.handshakeTimeout,
        protocols: Object.keys(SUBPROTOCOLS),
        httpHandler: o.ws.httpHandler,
      });
      this.addresses.ws = await this.ws.listen(o.ws.port, o.ws.host);
    }
    return this.addresses;
  }

  stats(): GatewayStats {
    return { connections: this.connections.size, messagesIn: this.messagesIn, messagesOut: this.messagesOut };
  }

  /** Monotonic ms of the gateway's clock. */
  now(): number {
    return this.clock.now();
  }

  /**
   * Stop accepting, close every connection with `shutdown` (4000: clients reconnect) and
   * wait for them to go, at most `closeTimeout`, then drop the rest.
   */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    await Promise.all([this.tcp?.stop(), this.ws?.stop()]);
    const drained = new Promise<void>((resolve) => {
      this.onEmpty = resolve;
    });
    for (const conn of [...this.connections.values()]) this.disconnect(conn, 'shutdown');
    this.checkDrained();
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, this.options.closeTimeout);
    });
    await Promise.race([drained, deadline]);
    clearTimeout(timer);
    for (const conn of this.lingering) conn.link.destroy();
    this.wheel.close();
  }

  // ---- LinkSink: what transports call ----

  onOpen(link: Link, info: LinkInfo): void {
    let codec: Codec | undefined = jsonCodec;
    if (info.transport === 'ws') {
      const name = info.protocol ? CODEC_BY_SUBPROTOCOL[info.protocol] : (info.query.get('codec') ?? 'json');
      codec = name ? getCodec(name) : undefined;
    }
    const id = `${this.nodeId}-${(++this.nextId).toString(36)}`;
    const conn = new Connection(id, link, codec ?? jsonCodec, this, this.clock.now());
    link.owner = conn;
    this.connections.set(id, conn);
    if (this.closing) {
      this.disconnect(conn, 'shutdown');
      return;
    }
    if (codec === undefined) {
      this.disconnect(conn, 'bad_hello', `unknown codec "${info.query.get('codec')}"`);
      return;
    }
    if (info.transport === 'tcp') {
      conn.timer = this.wheel.schedule(this.options.handshakeTimeout, onConnectionTimer, conn);
    } else {
      this.openConnection(conn);
    }
  }

  onFrame(link: Link, payload: Uint8Array): void {
    const conn = link.owner as Connection;
    if (conn.state === 'closing' || conn.state === 'closed') return;
    conn.lastRecv = this.clock.now();
    this.messagesIn++;
    let env: Envelope;
    try {
      env = conn.codec.decode(payload);
    } catch (err) {
      this.protocolError(conn, err);
      return;
    }
    if (conn.state === 'handshake') {
      if (env.kind === 'hello') this.hello(conn, env);
      else this.disconnect(conn, 'bad_hello', `the first frame must be hello, got ${env.kind}`);
      return;
    }
    switch (env.kind) {
      case 'req':
        this.request(conn, env);
        return;
      case 'msg':
        this.message(conn, env);
        return;
      case 'ping':
        conn.write(env.data === undefined ? PONG : { kind: 'pong', data: env.data });
        return;
      case 'pong':
      case 'ack':
        return;
      case 'hello':
        if (conn.helloSeen) this.disconnect(conn, 'protocol_error', 'hello sent twice');
        else this.hello(conn, env);
        return;
      case 'sub':
      case 'unsub':
        if (env.id !== undefined) {
          this.reply(conn, env.id, undefined, new PylonError('FORBIDDEN', 'subscriptions are not enabled'));
        }
        return;
      case 'bye':
        this.release(conn, disconnectInfo('normal', 'bye'), false);
        return;
      default:
        this.disconnect(conn, 'protocol_error', `kind "${env.kind}" is not sent by clients`);
    }
  }

  onFrameError(link: Link, err: Error): void {
    const conn = link.owner as Connection;
    this.protocolError(conn, err);
  }

  onDrain(_link: Link): void {
    // Outgoing backpressure is handled by the hub (pushes) once it lands.
  }

  onClose(link: Link, code: number, reason: string): void {
    const conn = link.owner as Connection | undefined;
    if (conn === undefined) return;
    this.lingering.delete(conn);
    if (conn.state !== 'closed') {
      this.finish(conn, {
        code,
        name: code === 1006 ? 'connection_lost' : disconnectName(code),
        reason,
        reconnect: shouldReconnect(code),
      });
    }
    this.checkDrained();
  }

  // ---- ConnectionOwner: what connections and their timer call ----

  /**
   * Close `conn` with a code from the disconnect table. The connection is gone for the
   * application at once (disconnect event, maps, stats); its socket gets a kick frame and
   * up to closeTimeout to finish closing.
   */
  disconnect(conn: Connection, name: DisconnectName, reason?: string): void {
    this.release(conn, disconnectInfo(name, reason), true);
  }

  countOut(): void {
    this.messagesOut++;
  }

  handshakeExpired(conn: Connection): void {
    this.logger.info({ conn: conn.id, remote: conn.remoteAddress }, 'handshake timeout');
    this.disconnect(conn, 'handshake_timeout');
  }

  keepaliveExpired(conn: Connection, idleMs: number): void {
    this.logger.info(
      {
        conn: conn.id,
        user: conn.user,
        remote: conn.remoteAddress,
        lastFrameAt: new Date(Date.now() - idleMs).toISOString(),
        idleMs: Math.round(idleMs),
      },
      'keepalive timeout',
    );
    this.disconnect(conn, 'keepalive_timeout', `no frame for ${Math.round(idleMs / 1000)} s`);
  }

  // ---- inside ----

  private release(conn: Connection, info: DisconnectInfo, kick: boolean): void {
    if (conn.state === 'closing' || conn.state === 'closed') return;
    conn.state = 'closing';
    if (kick) {
      try {
        conn.write({
          kind: 'kick',
          data: { code: info.code, name: info.name, reason: info.reason, reconnect: info.reconnect },
        });
      } catch (err) {
        this.logger.warn({ err, conn: conn.id }, 'could not encode kick');
      }
    }
    this.lingering.add(conn);
    conn.link.close(info.code, info.reason);
    this.finish(conn, info);
  }

  /** The connection is gone for the application: once, whoever closed it. */
  private finish(conn: Connection, info: DisconnectInfo): void {
    conn.state = 'closed';
    conn.closeInfo = info;
    conn.timer?.cancel();
    conn.timer = undefined;
    this.connections.delete(conn.id);
    this.logger.debug({ conn: conn.id, code: info.code, name: info.name, reason: info.reason }, 'disconnect');
    if (conn.opened) this.emit('disconnect', conn, info);
  }

  private checkDrained(): void {
    if (this.onEmpty && this.connections.size === 0 && this.lingering.size === 0) this.onEmpty();
  }

  private openConnection(conn: Connection): void {
    conn.state = 'open';
    conn.opened = true;
    const ka = this.keepalive;
    if (ka) {
      if (conn.timer) conn.timer.reschedule(ka.interval);
      else conn.timer = this.wheel.schedule(ka.interval, onConnectionTimer, conn);
    } else {
      conn.timer?.cancel();
    }
    this.emit('connect', conn);
  }

  private hello(conn: Connection, env: Envelope): void {
    const data = env.data;
    if (data !== undefined && (typeof data !== 'object' || data === null || Array.isArray(data))) {
      this.disconnect(conn, 'bad_hello', 'hello data must be an object');
      return;
    }
    const fields = (data ?? {}) as Record<string, unknown>;
    const wanted = fields.codec ?? conn.codec.name;
    const codec = typeof wanted === 'string' ? getCodec(wanted) : undefined;
    if (codec === undefined) {
      this.disconnect(conn, 'bad_hello', `unknown codec "${String(wanted)}"`);
      return;
    }
    if (conn.transport === 'ws' && codec !== conn.codec) {
      this.disconnect(conn, 'bad_hello', 'on WebSocket the codec is set by the subprotocol or ?codec=');
      return;
    }
    conn.helloSeen = true;
    conn.codec = codec;
    const ka = this.keepalive;
    conn.write({
      kind: 'welcome',
      data: {
        connection: conn.id,
        server: `pylon/${VERSION}`,
        codec: codec.name,
        maxFrame: this.options.maxFrame,
        heartbeat: ka ? { interval: ka.interval, timeout: ka.timeout } : null,
      },
    });
    if (conn.state === 'handshake') this.openConnection(conn);
  }

  private request(conn: Connection, env: Envelope): void {
    const id = env.id as number;
    if (conn.pending >= this.options.maxPendingRequests) {
      this.reply(conn, id, undefined, new PylonError('TOO_MANY_REQUESTS', 'too many requests in flight'));
      return;
    }
    const ctx: Context = { connection: conn, kind: 'req', type: env.type as string, id, data: env.data };
    let result: unknown;
    try {
      result = this.router.run(ctx);
    } catch (err) {
      this.reply(conn, id, undefined, err);
      return;
    }
    if (result === NO_HANDLER) {
      this.reply(conn, id, undefined, new PylonError('NOT_FOUND', `no handler for "${ctx.type}"`));
    } else if (isThenable(result)) {
      conn.pending++;
      result.then(
        (value) => {
          conn.pending--;
          this.reply(conn, id, value, undefined);
        },
        (err: unknown) => {
          conn.pending--;
          this.reply(conn, id, undefined, err ?? new Error('rejected'));
        },
      );
    } else {
      this.reply(conn, id, result, undefined);
    }
  }

  private message(conn: Connection, env: Envelope): void {
    const ctx: Context = {
      connection: conn,
      kind: 'msg',
      type: env.type as string,
      id: undefined,
      data: env.data,
    };
    try {
      const result = this.router.run(ctx);
      if (result === NO_HANDLER) {
        this.logger.debug({ conn: conn.id, type: ctx.type }, 'no handler for message');
      } else if (isThenable(result)) {
        result.then(undefined, (err: unknown) => this.handlerFailed(conn, ctx.type, err));
      }
    } catch (err) {
      this.handlerFailed(conn, ctx.type, err);
    }
  }

  /** Answer request `id`: data, or the error turned into its wire form. Dropped if closed. */
  private reply(conn: Connection, id: number, data: unknown, err: unknown): void {
    if (conn.state !== 'open') return;
    if (err === undefined) {
      try {
        conn.write(data === undefined ? { kind: 'res', id } : { kind: 'res', id, data });
        return;
      } catch (encodeErr) {
        err = encodeErr;
      }
    }
    conn.write({ kind: 'res', id, error: this.wireError(conn, err) });
  }

  private wireError(conn: Connection, err: unknown): WireError {
    if (err instanceof PylonError) return { code: err.code, message: err.message };
    this.handlerFailed(conn, undefined, err);
    return { code: 'INTERNAL', message: 'internal error' };
  }

  private handlerFailed(conn: Connection, type: string | undefined, err: unknown): void {
    const error = err instanceof Error ? err : new Error(String(err));
    if (err instanceof PylonError) {
      this.logger.debug({ conn: conn.id, type, code: err.code }, err.message);
      return;
    }
    this.logger.error({ err: error, conn: conn.id, type }, 'handler failed');
    if (this.listenerCount('error') > 0) this.emit('error', error, conn);
  }

  private protocolError(conn: Connection, err: unknown): void {
    const tooLarge =
      (err instanceof PylonError && err.code === 'FRAME_TOO_LARGE') ||
      (err as { code?: string }).code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH';
    const message = err instanceof Error ? err.message : String(err);
    this.logger.info({ conn: conn.id, remote: conn.remoteAddress, err: message }, 'protocol error');
    this.disconnect(conn, tooLarge ? 'frame_too_large' : 'protocol_error', message);
  }
}

const PONG: Envelope = { kind: 'pong' };

function callNoArg(fn: () => void): void {
  fn();
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (
    value !== null &&
    (typeof value === 'object' || typeof value === 'function') &&
    typeof (value as { then?: unknown }).then === 'function'
  );
}

/** Create a gateway; call `listen()` to start its listeners. */
export function createGateway(options?: GatewayOptions): Gateway {
  return new Gateway(options);
}
