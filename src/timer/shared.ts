import { type Clock, systemClock } from './clock.js';
import { TimingWheel } from './wheel.js';

let shared: TimingWheel | undefined;

/**
 * The timing wheel of the process: one on the system clock, shared by every gateway, client,
 * rpc link, framework server and group (its driver timer is unref'd: it never keeps the process
 * alive, and one driver serves every deadline). Pass a clock (a test's FakeClock) or a tick of
 * other than 10 ms for a wheel of its own. Never close the shared wheel: cancel your timers.
 */
export function wheelFor(clock?: Clock, tickMs?: number): TimingWheel {
  if ((clock !== undefined && clock !== systemClock) || (tickMs !== undefined && tickMs !== 10)) {
    return new TimingWheel({ clock: clock ?? systemClock, tickMs: tickMs ?? 10 });
  }
  shared ??= new TimingWheel({ clock: systemClock });
  return shared;
}

/** Whether `wheel` is the process's shared one (its owner must not close it). */
export function isShared(wheel: TimingWheel): boolean {
  return wheel === shared;
}
