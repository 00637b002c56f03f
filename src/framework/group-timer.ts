import type { WheelTimer } from '../timer/wheel.js';
import type { Group } from './group.js';

/** A Group's `after` or `tick`: the wheel fires it, the group runs `fn` as a turn of its mailbox. */
export interface TimerEntry {
  group: Group<object>;
  fn: (group: Group<object>) => unknown;
  /** Its turn waits in the mailbox (a tick due meanwhile is skipped). */
  queued: boolean;
  /** `after` (true) or `tick`. */
  once: boolean;
  timer: WheelTimer | undefined;
}

/** Called by the timing wheel: queue the timer's turn in its group. */
export function fireTimer(entry: TimerEntry): void {
  entry.group.pushTimer(entry);
}

/** A wheel timer that the group forgets when it is cancelled. */
export class GroupTimer implements WheelTimer {
  constructor(
    private readonly inner: WheelTimer,
    private readonly group: Group<object>,
  ) {}
  get active(): boolean {
    return this.inner.active;
  }
  cancel(): void {
    this.inner.cancel();
    this.group.forget(this);
  }
  reschedule(delayMs: number): void {
    this.inner.reschedule(delayMs);
  }
}
