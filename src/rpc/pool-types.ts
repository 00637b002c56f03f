import type { BackoffOptions } from '../client/backoff.js';
import { PylonError } from '../protocol/errors.js';
import type { Clock } from '../timer/clock.js';
import type { TimingWheel } from '../timer/wheel.js';

/** No connection came free (or could be dialed) within the acquire timeout. */
export class PoolTimeoutError extends PylonError {
  override name = 'PoolTimeoutError';
  constructor(message = 'no connection within the acquire timeout') {
    super('TIMEOUT', message);
  }
}

/** The waiting line is full (`maxWaiters`): refused at once rather than queued without bound. */
export class PoolFullError extends PylonError {
  override name = 'PoolFullError';
  constructor(message = 'too many callers waiting for a connection') {
    super('TOO_MANY_REQUESTS', message);
  }
}

/** The pool is closed, or has no connection and cannot dial one now. */
export class PoolClosedError extends PylonError {
  override name = 'PoolClosedError';
  constructor(message = 'pool is closed', options?: { cause?: unknown }) {
    super('UNAVAILABLE', message, options);
  }
}

export interface PoolOptions<C> {
  /** Connections kept open (dialed by `warm()` and redialed with backoff when lost). Default 0. */
  min?: number;
  /** Most connections, open and being dialed together. */
  max: number;
  dial: () => Promise<C>;
  close: (conn: C) => Promise<void> | void;
  /** Checked on checkout, on release and by `pick`; an unhealthy connection is closed and replaced. */
  isHealthy?: (conn: C) => boolean;
  /** ms an idle connection may wait in the pool; older ones are closed on checkout. 0 (default): no limit. */
  idleTimeout?: number;
  /** Most callers waiting in `acquire`/`pick`; more get PoolFullError. Default 1000. */
  maxWaiters?: number;
  /** ms `acquire` and `pick` may wait. Default 10 000. */
  acquireTimeout?: number;
  /** Multiplexed mode: how busy a connection is (e.g. its calls in flight). Default: 0 for all. */
  load?: (conn: C) => number;
  /** `pick` dials one more connection (up to max) when the least loaded is at or above this. Default: never. */
  growAbove?: number;
  /** Backoff between redials of lost `min` connections after failed dials. Default { base: 100, max: 5000 }. */
  redial?: BackoffOptions;
  /** Background failures (redials, close): default ignored. */
  onError?: (err: unknown) => void;
  wheel?: TimingWheel;
  clock?: Clock;
}

export interface AcquireOptions {
  timeout?: number;
  signal?: AbortSignal;
}

export interface PoolStats {
  /** Open connections plus dials in flight: never above max. */
  size: number;
  open: number;
  idle: number;
  leased: number;
  dialing: number;
  waiting: number;
  dials: number;
  dialFailures: number;
  timeouts: number;
  refused: number;
  replaced: number;
}

/** One checkout: `release` and `destroy` act once, and never on a later checkout of the same connection. */
export interface Lease<C> {
  readonly conn: C;
  release(): boolean;
  destroy(): boolean;
}

/** @internal A connection of the pool. */
export interface Entry<C> {
  conn: C;
  leased: boolean;
  /** Checkouts so far: a Lease is valid only for the checkout it came from. */
  gen: number;
  lastUsed: number;
}

/** @internal Validated [min, max]. */
export function checkBounds(min: number, max: number): [number, number] {
  if (!(Number.isInteger(max) && max >= 1))
    throw new RangeError(`max must be a positive integer, got ${max}`);
  if (!(Number.isInteger(min) && min >= 0 && min <= max))
    throw new RangeError(`min must be 0..max, got ${min}`);
  return [min, max];
}
