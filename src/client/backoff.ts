export interface BackoffOptions {
  /** First retry's ceiling (ms). Default 500. */
  base: number;
  /** Largest delay (ms). Default 30 s. */
  max: number;
}

export const DEFAULT_BACKOFF: BackoffOptions = { base: 500, max: 30_000 };

/**
 * Exponential backoff with full jitter: a uniform delay in [0, min(max, base * 2^attempt)).
 * Full jitter spreads a crowd of clients that lost the same server, so they do not come
 * back in one storm. `attempt` counts from 0.
 */
export function backoffDelay(
  attempt: number,
  options: BackoffOptions = DEFAULT_BACKOFF,
  random = Math.random,
): number {
  const ceiling = Math.min(options.max, options.base * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * ceiling);
}
