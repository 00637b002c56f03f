import type { Context, Handler } from '../gateway/router.js';
import { PylonError } from '../protocol/errors.js';

/**
 * Checks and converts untrusted input: returns the typed value or throws. Any such function fits,
 * e.g. a zod schema's `parse` (`method(schema.parse)`), without a dependency on a library.
 */
export type Validator<T> = (input: unknown) => T;

/** A server-side link as far as batching goes: its send, and the socket under it (TCP and WS links). */
interface BatchableLink {
  send(payload: Uint8Array, text: boolean): boolean;
  socket?: { cork(): void; uncork(): void; readonly writableCorked: number };
}

/** Where handlers are registered: a Gateway (or anything with its `handle`). */
export interface HandlerHost {
  handle(type: string, handler: Handler): unknown;
  /** With these (a Gateway has them), RpcServer batches the answers of one tick into one write. */
  on?(event: 'connect', listener: (conn: { link: unknown }) => void): unknown;
  readonly connections?: ReadonlyMap<string, { link: unknown }>;
}

export type MethodHandler<I, O> = (data: I, ctx: Context<I>) => O | Promise<O>;

export interface RpcServerOptions {
  /** Cork each connection's socket from its first answer of a tick to the end of the tick. Default true. */
  batch?: boolean;
}

/**
 * The server side of RPC: a method is a request handler of the gateway (`gateway.handle`), with
 * an optional validator whose failure answers BAD_REQUEST. A synchronous handler stays
 * synchronous (no promise per call).
 *
 * Pipelining: the answers a connection gets in one tick (e.g. to a batch of requests that came in
 * one read) leave in one socket write instead of one write each.
 *
 * Gateways that serve other services usually want `rateLimit: false` (the per-connection frame
 * limit is meant for end users: a few multiplexed connections carry many calls each) and a
 * `maxPendingRequests` at least the clients' `maxPending` (256 by default on both sides).
 */
export class RpcServer {
  constructor(
    readonly gateway: HandlerHost,
    options: RpcServerOptions = {},
  ) {
    if (options.batch === false || gateway.on === undefined) return;
    for (const conn of gateway.connections?.values() ?? []) batchAnswers(conn.link);
    gateway.on('connect', onConnect);
  }

  method<I = unknown, O = unknown>(
    name: string,
    handler: MethodHandler<I, O>,
    validate?: Validator<I>,
  ): this {
    this.gateway.handle(
      name,
      validate === undefined ? (handler as Handler) : validated(name, handler, validate),
    );
    return this;
  }
}

function onConnect(conn: { link: unknown }): void {
  batchAnswers(conn.link);
}

const kSend = Symbol('pylon.rpc.send');
type Batched = BatchableLink & { [kSend]?: BatchableLink['send'] };
let corked: Array<NonNullable<BatchableLink['socket']>> = [];

/**
 * Make `link.send` cork the socket at the first frame of a tick and uncork it in a microtask, so
 * the frames of the tick go out in one write. No closure per link: an own `send` property that
 * points to one shared function, which calls the link's own send.
 */
function batchAnswers(link: unknown): void {
  const l = link as Batched;
  const socket = l.socket;
  if (socket === undefined || typeof socket.cork !== 'function' || l[kSend] !== undefined) return;
  l[kSend] = l.send;
  l.send = batchedSend;
}

function batchedSend(this: Batched, payload: Uint8Array, text: boolean): boolean {
  const socket = this.socket!;
  if (socket.writableCorked === 0) {
    socket.cork();
    if (corked.length === 0) queueMicrotask(uncorkAll);
    corked.push(socket);
  }
  return this[kSend]!.call(this, payload, text);
}

function uncorkAll(): void {
  const list = corked;
  corked = [];
  for (const socket of list) socket.uncork();
}

function validated<I, O>(name: string, handler: MethodHandler<I, O>, validate: Validator<I>): Handler {
  return (data, ctx) => {
    let input: I;
    try {
      input = validate(data);
    } catch (err) {
      throw invalid(name, err);
    }
    ctx.data = input;
    return handler(input, ctx as Context<I>);
  };
}

/** A validator's failure as the caller sees it: BAD_REQUEST with the validator's message (bounded). */
export function invalid(name: string, err: unknown): PylonError {
  if (err instanceof PylonError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new PylonError('BAD_REQUEST', `${name}: ${message.slice(0, 500)}`, { cause: err });
}
