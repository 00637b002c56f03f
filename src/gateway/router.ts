import type { Connection } from './connection.js';

/** What a handler and a middleware learn about one inbound request or message. */
export interface Context<T = unknown> {
  readonly connection: Connection;
  /** "req" expects an answer; "msg" is one-way. */
  readonly kind: 'req' | 'msg';
  readonly type: string;
  /** The request id (req only). */
  readonly id: number | undefined;
  /** The payload; a middleware may replace it before the handler runs. */
  data: T;
}

/**
 * Handles a request or a one-way message. For a request, the return value (or what the
 * promise resolves to) is the response's data; a thrown PylonError becomes its error.
 */
export type Handler<TReq = unknown, TRes = unknown> = (
  data: TReq,
  ctx: Context<TReq>,
) => TRes | Promise<TRes>;

/**
 * Runs around every handler, in the order added; `next()` runs the rest of the chain and
 * resolves to the handler's result. Throwing stops the chain: the error becomes the response.
 */
export type Middleware = (ctx: Context, next: () => Promise<unknown>) => unknown;

/** type -> handler, plus the middleware chain. Lookup is one Map get. */
export class Router {
  private readonly handlers = new Map<string, Handler>();
  private readonly middleware: Middleware[] = [];

  handle(type: string, handler: Handler): void {
    if (typeof type !== 'string' || type.length === 0)
      throw new TypeError('handler type must be a non-empty string');
    if (typeof handler !== 'function') throw new TypeError(`handler for "${type}" must be a function`);
    if (this.handlers.has(type)) throw new Error(`a handler for "${type}" is already registered`);
    this.handlers.set(type, handler);
  }

  use(fn: Middleware): void {
    if (typeof fn !== 'function') throw new TypeError('middleware must be a function');
    this.middleware.push(fn);
  }

  has(type: string): boolean {
    return this.handlers.has(type);
  }

  /**
   * Runs the chain for ctx. Without middleware the handler is called directly, so a
   * synchronous handler's result comes back synchronously (no promise per request).
   * Returns undefined-typed NOT_FOUND marker when no handler exists.
   */
  run(ctx: Context): unknown {
    const handler = this.handlers.get(ctx.type);
    if (handler === undefined) return NO_HANDLER;
    if (this.middleware.length === 0) return handler(ctx.data, ctx);
    return compose(this.middleware, handler, ctx, 0);
  }
}

export const NO_HANDLER: unique symbol = Symbol('pylon.noHandler');

async function compose(chain: Middleware[], handler: Handler, ctx: Context, i: number): Promise<unknown> {
  const mw = chain[i];
  if (mw === undefined) return handler(ctx.data, ctx);
  let called = false;
  return mw(ctx, () => {
    if (called) return Promise.reject(new Error('next() called twice by a middleware'));
    called = true;
    return compose(chain, handler, ctx, i + 1);
  });
}
