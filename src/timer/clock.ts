/**
 * Time source for everything scheduled in Pylon. Production uses the system clock; tests use
 * FakeClock and advance time by hand, without sleeping.
 */
export interface Clock {
  /** Milliseconds, monotonic (never goes back). */
  now(): number;
  /** One-shot callback after `ms`. The process's only real timer per wheel goes through here. */
  setTimer(fn: () => void, ms: number): unknown;
  clearTimer(handle: unknown): void;
}
