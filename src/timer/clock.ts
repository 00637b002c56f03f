/**
 * Time source for everything scheduled in Pylon. Production uses the system clock; tests use
 * FakeClock and advance time by hand, without sleeping.
 *
 * This folder imports nothing from the rest of the repo and no Node built-ins: it also runs in browsers.
 */
export interface Clock {
  /** Milliseconds, monotonic (never goes back). */
  now(): number;
  /** One-shot callback after `ms`. The process's only real timer per wheel goes through here. */
  setTimer(fn: () => void, ms: number): unknown;
  clearTimer(handle: unknown): void;
}

/** setTimeout never takes more than this (about 24.8 days); longer delays would fire at once. */
const MAX_TIMEOUT_MS = 2 ** 31 - 1;

/**
 * The real clock: `performance.now()` and `setTimeout`. Its timers are unref'd where the runtime
 * supports it (Node), so a wheel never keeps a process alive by itself.
 */
export const systemClock: Clock = {
  now: () => performance.now(),
  setTimer(fn: () => void, ms: number): unknown {
    const handle = setTimeout(fn, Math.min(Math.max(ms, 0), MAX_TIMEOUT_MS)) as unknown as {
      unref?: () => void;
    };
    handle.unref?.();
    return handle;
  },
  clearTimer(handle: unknown): void {
    clearTimeout(handle as Parameters<typeof clearTimeout>[0]);
  },
};

interface FakeTimer {
  due: number;
  seq: number;
  fn: () => void;
}

/**
 * A clock for tests: time only moves when `advance()` is called. Timers run in deadline order (ties in
 * the order they were set), each with `now()` equal to its deadline.
 */
export class FakeClock implements Clock {
  private time: number;
  private seq = 0;
  private readonly timers = new Set<FakeTimer>();

  constructor(start = 0) {
    this.time = start;
  }

  now(): number {
    return this.time;
  }

  setTimer(fn: () => void, ms: number): unknown {
    const timer: FakeTimer = { due: this.time + (Math.max(ms, 0) || 0), seq: this.seq++, fn };
    this.timers.add(timer);
    return timer;
  }

  clearTimer(handle: unknown): void {
    this.timers.delete(handle as FakeTimer);
  }

  /** Timers set and not yet run or cleared. */
  get pending(): number {
    return this.timers.size;
  }

  /**
   * Moves time forward by `ms`, running every timer due up to the new time in deadline order, including
   * timers that the callbacks set while advancing. A throwing timer callback propagates (time stays at
   * its deadline).
   */
  advance(ms: number): void {
    if (!(ms >= 0)) throw new RangeError(`FakeClock.advance: ms must be >= 0, got ${ms}`);
    const end = this.time + ms;
    for (;;) {
      let next: FakeTimer | undefined;
      for (const t of this.timers) {
        if (
          t.due <= end &&
          (next === undefined || t.due < next.due || (t.due === next.due && t.seq < next.seq))
        ) {
          next = t;
        }
      }
      if (next === undefined) break;
      this.timers.delete(next);
      if (next.due > this.time) this.time = next.due;
      next.fn();
    }
    this.time = end;
  }
}
