import type { TimingWheel, WheelTimer } from './wheel.js';

/**
 * The long-lived timers of one owner (a gateway, a server, a group) on a wheel it may share
 * with others (the process's): `close()` cancels every one still pending, so closing the owner
 * leaves nothing behind on the shared wheel. Per-connection deadlines are not kept here (each
 * connection cancels its own, and a Set of them would cost memory): only what the owner, its
 * application or its cluster schedule.
 */
export class TimerScope {
  private readonly live = new Set<ScopedTimer>();
  private closed = false;

  constructor(readonly wheel: TimingWheel) {}

  /** One-shot: `fn` once after `ms`. */
  after(ms: number, fn: () => void): WheelTimer {
    const t = new ScopedTimer(this);
    t.inner = this.wheel.schedule(ms, fireOnce, t);
    t.fn = fn;
    this.add(t);
    return t;
  }

  /** `fn` every `ms` until cancelled. */
  every(ms: number, fn: () => void): WheelTimer {
    const t = new ScopedTimer(this);
    t.inner = this.wheel.every(ms, fireRepeat, t);
    t.fn = fn;
    this.add(t);
    return t;
  }

  /** Timers still pending. */
  get size(): number {
    return this.live.size;
  }

  /** Cancels every pending timer; later ones are cancelled at once. */
  close(): void {
    this.closed = true;
    for (const t of [...this.live]) t.cancel();
  }

  /** @internal */
  forget(t: ScopedTimer): void {
    this.live.delete(t);
  }

  /** @internal A fired one-shot rescheduled: pending again. */
  keep(t: ScopedTimer): void {
    this.add(t);
  }

  private add(t: ScopedTimer): void {
    if (this.closed) t.cancel();
    else this.live.add(t);
  }
}

class ScopedTimer implements WheelTimer {
  inner: WheelTimer | undefined = undefined;
  fn: (() => void) | undefined = undefined;

  constructor(readonly scope: TimerScope) {}

  get active(): boolean {
    return this.inner?.active ?? false;
  }

  cancel(): void {
    this.inner?.cancel();
    this.scope.forget(this);
  }

  reschedule(delayMs: number): void {
    this.inner?.reschedule(delayMs);
    this.scope.keep(this);
  }
}

function fireOnce(t: ScopedTimer): void {
  t.scope.forget(t);
  t.fn?.();
}

function fireRepeat(t: ScopedTimer): void {
  t.fn?.();
}
