import type { RateLimitOptions } from './settings.js';

/**
 * Per-connection token bucket state: two small integers on the connection (milli-tokens and a
 * whole-ms time), so V8 keeps them unboxed instead of allocating a heap number for each.
 */
export interface Bucket {
  /** Milli-tokens; -1 until the first frame (a full bucket). */
  tokens: number;
  /** Whole ms of the last refill. */
  refilled: number;
}

/** Takes one token for a frame received at `now` (whole ms); false when the connection is over its rate. */
export function takeToken(b: Bucket, limit: RateLimitOptions, now: number): boolean {
  const burst = limit.burst * 1000;
  const tokens =
    b.tokens < 0 ? burst : Math.min(burst, b.tokens + Math.floor((now - b.refilled) * limit.rate));
  b.refilled = now;
  if (tokens < 1000) {
    b.tokens = tokens;
    return false;
  }
  b.tokens = tokens - 1000;
  return true;
}
