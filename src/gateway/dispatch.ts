import type { Span } from '@opentelemetry/api';
import type { Logger } from '../log/logger.js';
import type { Envelope, WireError } from '../protocol/envelope.js';
import { PylonError } from '../protocol/errors.js';
import { endRequestSpan } from '../trace/tracing.js';
import type { Connection } from './connection.js';
import { type Context, NO_HANDLER, type Router } from './router.js';

/** What request dispatch needs from the gateway. */
export interface DispatchHost {
  readonly router: Router;
  readonly logger: Logger;
  readonly maxPendingRequests: number;
  /** A handler threw something that is not a PylonError. */
  handlerFailed(conn: Connection, type: string | undefined, err: Error): void;
}

/**
 * Runs a request's handler and answers it. Requests of one connection run concurrently; the
 * answer carries the request id, so they may finish in any order (woodpecker's case).
 * A synchronous handler without middleware is answered without a promise.
 */
export function dispatchRequest(host: DispatchHost, conn: Connection, env: Envelope, span?: Span): void {
  const id = env.id as number;
  if (env.type === undefined) {
    answer(host, conn, id, undefined, new PylonError('BAD_REQUEST', 'req needs a type'), span);
    return;
  }
  if (conn.pending >= host.maxPendingRequests) {
    answer(
      host,
      conn,
      id,
      undefined,
      new PylonError('TOO_MANY_REQUESTS', 'too many requests in flight'),
      span,
    );
    return;
  }
  const ctx: Context = { connection: conn, kind: 'req', type: env.type as string, id, data: env.data };
  let result: unknown;
  try {
    result = host.router.run(ctx);
  } catch (err) {
    answer(host, conn, id, undefined, err ?? new Error('thrown'), span);
    return;
  }
  if (result === NO_HANDLER) {
    answer(host, conn, id, undefined, new PylonError('NOT_FOUND', `no handler for "${ctx.type}"`), span);
  } else if (isThenable(result)) {
    conn.pending++;
    result.then(
      (value) => {
        conn.pending--;
        answer(host, conn, id, value, undefined, span);
      },
      (err: unknown) => {
        conn.pending--;
        answer(host, conn, id, undefined, err ?? new Error('rejected'), span);
      },
    );
  } else {
    answer(host, conn, id, result, undefined, span);
  }
}

/** Answers the request, and ends its span (tracing on) with how it went. */
function answer(
  host: DispatchHost,
  conn: Connection,
  id: number,
  data: unknown,
  err: unknown,
  span: Span | undefined,
): void {
  reply(host, conn, id, data, err);
  if (span !== undefined) endRequestSpan(span, err, conn.state === 'open');
}

/** Runs a one-way message's handler; failures are logged, nothing is answered. */
export function dispatchMessage(host: DispatchHost, conn: Connection, env: Envelope): void {
  const ctx: Context = {
    connection: conn,
    kind: 'msg',
    type: env.type as string,
    id: undefined,
    data: env.data,
  };
  try {
    const result = host.router.run(ctx);
    if (result === NO_HANDLER) {
      host.logger.debug({ conn: conn.id, type: ctx.type }, 'no handler for message');
    } else if (isThenable(result)) {
      result.then(undefined, (err: unknown) => failed(host, conn, ctx.type, err));
    }
  } catch (err) {
    failed(host, conn, ctx.type, err);
  }
}

/** Answer request `id` with data, or with the error in its wire form. Dropped if the connection closed. */
export function reply(host: DispatchHost, conn: Connection, id: number, data: unknown, err: unknown): void {
  if (conn.state !== 'open') return;
  if (err === undefined) {
    try {
      conn.write(data === undefined ? { kind: 'res', id } : { kind: 'res', id, data });
      return;
    } catch (encodeErr) {
      err = encodeErr;
    }
  }
  conn.write({ kind: 'res', id, error: wireError(host, conn, err) });
}

function wireError(host: DispatchHost, conn: Connection, err: unknown): WireError {
  if (err instanceof PylonError) return { code: err.code, message: err.message };
  failed(host, conn, undefined, err);
  return { code: 'INTERNAL', message: 'internal error' };
}

function failed(host: DispatchHost, conn: Connection, type: string | undefined, err: unknown): void {
  if (err instanceof PylonError) {
    host.logger.debug({ conn: conn.id, type, code: err.code }, err.message);
    return;
  }
  host.handlerFailed(conn, type, err instanceof Error ? err : new Error(String(err)));
}

export function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (
    value !== null &&
    (typeof value === 'object' || typeof value === 'function') &&
    typeof (value as { then?: unknown }).then === 'function'
  );
}
