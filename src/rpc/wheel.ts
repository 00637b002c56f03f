import type { Clock } from '../timer/clock.js';
import { wheelFor as processWheel } from '../timer/shared.js';
import type { TimingWheel } from '../timer/wheel.js';

/** The timing wheel of an rpc object: the one given, the process's, or one of its own for a test's FakeClock. */
export function wheelFor(wheel: TimingWheel | undefined, clock: Clock | undefined): TimingWheel {
  return wheel ?? processWheel(clock);
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
