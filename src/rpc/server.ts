import type { Context, Handler } from '../gateway/router.js';
import { PylonError } from '../protocol/errors.js';

/**
 * Checks and converts untrusted input: returns the typed value or throws. Any such function fits,
 * e.g. a zod schema's `parse` (`method(schema.parse)`), without a dependency on a library.
 */
export type Validator<T> = (input: unknown) => T;

/** Where handlers are registered: a Gateway (or anything with its `handle`). */
export interface HandlerHost {
  handle(type: string, handler: Handler): unknown;
  /** With these (a Gateway has them), RpcServer batches the answers of one tick into one write. */
  on?(event: 'connect', listener: (conn: { link: { batching: boolean } }) => void): unknown;
  readonly connections?: ReadonlyMap<string, { link: { batching: boolean } }>;
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
    for (const conn of gateway.connections?.values() ?? []) conn.link.batching = true;
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

/** The link writes the answers of one tick in one socket write (Link.batching). */
function onConnect(conn: { link: { batching: boolean } }): void {
  conn.link.batching = true;
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
