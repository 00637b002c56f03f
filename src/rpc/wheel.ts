import { type Clock, systemClock } from '../timer/clock.js';
import { TimingWheel } from '../timer/wheel.js';

let shared: TimingWheel | undefined;

/**
 * The timing wheel of the rpc module: one per process on the system clock (its driver timer is
 * unref'd, so it never keeps the process alive), or a wheel of its own for a test's FakeClock.
 */
export function wheelFor(wheel: TimingWheel | undefined, clock: Clock | undefined): TimingWheel {
  if (wheel) return wheel;
  if (clock) return new TimingWheel({ clock });
  shared ??= new TimingWheel({ clock: systemClock });
  return shared;
}

/** Resolves after `ms` on `wheel`, or rejects with `reason()` when `signal` aborts first. */
export function sleep(
  wheel: TimingWheel,
  ms: number,
  signal?: AbortSignal,
  reason?: () => Error,
): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const cancelled = (): Error => reason?.() ?? new Error('aborted');
    if (signal?.aborted) {
      reject(cancelled());
      return;
    }
    const onAbort = (): void => {
      timer.cancel();
      reject(cancelled());
    };
    const timer = wheel.after(ms, () => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    });
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
