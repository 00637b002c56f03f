import { type Clock, systemClock } from './clock.js';

export interface WheelOptions {
  /** Time source. Default: systemClock (performance.now and unref'd setTimeout). */
  clock?: Clock;
  /** Resolution in milliseconds. Default 10. */
  tickMs?: number;
  /** Receives what a task callback throws. Default console.error. */
  onError?: (err: unknown) => void;
}

export interface WheelTimer {
  /** True while scheduled (a repeating task stays active until cancelled). */
  readonly active: boolean;
  /** Stops the task; no-op if it already ran or was cancelled. O(1). */
  cancel(): void;
  /**
   * Move to now+delayMs; reuses the object, re-activates a fired/cancelled one-shot. A repeating task
   * runs at now+delayMs, then every interval after that. O(1). Throws if the wheel is closed.
   */
  reschedule(delayMs: number): void;
}

/** Ticks per slot of each level, then the span of the whole wheel. */
const SPAN = [1, 2 ** 8, 2 ** 14, 2 ** 20, 2 ** 26, 2 ** 32];
/** Index of each level's first slot in `heads` (256 slots in level 0, 64 in the others). */
const FIRST = [0, 256, 320, 384, 448];
const MAX_TIMER_MS = 2 ** 31 - 1;

const callNoArg = (fn: () => void): void => fn();
const defaultOnError = (err: unknown): void => console.error('TimingWheel: task failed', err);

/** A list node; a slot's list head is a bare node (circular list, the head as sentinel). */
class ListNode {
  /** @internal */
  wheelNext: ListNode = this;
  /** @internal */
  wheelPrev: ListNode = this;
}

/**
 * What a wheel runs: a task it allocated (`schedule`, `every`), or an object that is its own
 * entry. An object with one long-lived deadline (a connection's keepalive) extends this class
 * and is scheduled with `start`/`stop`: it carries the list links, level and deadline itself,
 * so no task is allocated for it (a task is ~90 bytes).
 */
export abstract class WheelEntry extends ListNode {
  /** @internal The level whose list holds the entry, -1 when not scheduled. */
  wheelLevel = -1;
  /** @internal Absolute tick (since the wheel's origin) at which the entry runs. */
  wheelTick = 0;
  /** @internal Called when its deadline comes (once: start it again for another). */
  abstract onWheelTimer(): void;
}

class Task extends WheelEntry implements WheelTimer {
  constructor(
    private readonly core: Core,
    readonly fn: (arg: unknown) => void,
    readonly arg: unknown,
  ) {
    super();
  }
  get active(): boolean {
    return this.wheelLevel >= 0;
  }
  cancel(): void {
    this.core.cancel(this);
  }
  reschedule(delayMs: number): void {
    this.core.start(this, delayMs);
  }
  onWheelTimer(): void {
    this.fn(this.arg);
  }
}

class RepeatingTask extends Task {
  /** Deadline of the next run in ms since the origin, unrounded so the period does not drift. */
  due = 0;
  constructor(
    core: Core,
    fn: (arg: unknown) => void,
    arg: unknown,
    /** Milliseconds between runs. */
    readonly interval: number,
  ) {
    super(core, fn, arg);
  }
}

class Core {
  private readonly heads: ListNode[] = Array.from({ length: 512 }, () => new ListNode());
  /** Tasks linked per level, to find the lowest non-empty level. */
  private readonly counts = [0, 0, 0, 0, 0];
  /** Next tick to process; the cascades due at that tick are already done. */
  private cur = 0;
  private readonly origin: number;
  private handle: unknown;
  private armedTick = -1;
  private running = false;
  private closed = false;
  size = 0;

  constructor(
    readonly clock: Clock,
    private readonly tickMs: number,
    private readonly onError: (err: unknown) => void,
  ) {
    this.origin = clock.now();
  }

  /** (Re)schedules `t` to run `delayMs` (negative = 0) from now. */
  start(t: WheelEntry, delayMs: number): void {
    if (!Number.isFinite(delayMs)) throw new RangeError(`bad delay: ${delayMs}`);
    if (this.closed) throw new Error('wheel closed');
    const nowMs = this.clock.now() - this.origin;
    if (t.wheelLevel >= 0) this.unlink(t);
    else this.size++;
    if (this.size === 1 && !this.running) {
      // Empty wheel: nothing to cascade, so skip straight to the present.
      this.cur = Math.max(this.cur, Math.floor(nowMs / this.tickMs));
    }
    this.arm(this.place(t, nowMs + Math.max(delayMs, 0)), nowMs);
  }

  cancel(t: WheelEntry): void {
    if (t.wheelLevel < 0) return;
    this.unlink(t);
    if (--this.size === 0) this.disarm();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.disarm();
    for (const head of this.heads) while (head.wheelNext !== head) this.unlink(head.wheelNext as WheelEntry);
    this.size = 0;
  }

  /** Sets the deadline (ms since the origin) and links the task; returns the tick of its next event. */
  private place(t: WheelEntry, dueMs: number): number {
    if (t instanceof RepeatingTask) t.due = dueMs;
    t.wheelTick = Math.max(Math.ceil(dueMs / this.tickMs), this.cur);
    return this.link(t);
  }

  /** Appends `t` to the slot for `t.wheelTick` (>= cur); returns the tick its slot is due (runs or cascades). */
  private link(t: WheelEntry): number {
    const e = t.wheelTick;
    const c = this.cur;
    let level = 0;
    while (level < 4 && Math.floor(e / SPAN[level + 1]!) !== Math.floor(c / SPAN[level + 1]!)) level++;
    const q =
      Math.floor(e / SPAN[5]!) === Math.floor(c / SPAN[5]!)
        ? Math.floor(e / SPAN[level]!)
        : Math.floor(c / SPAN[4]!) + 1; // beyond the last level: its next slot, re-placed on cascade
    const head = this.heads[FIRST[level]! + (q & (level === 0 ? 255 : 63))]!;
    t.wheelPrev = head.wheelPrev;
    t.wheelNext = head;
    head.wheelPrev.wheelNext = t;
    head.wheelPrev = t;
    t.wheelLevel = level;
    this.counts[level]!++;
    return q * SPAN[level]!;
  }

  private unlink(t: WheelEntry): void {
    t.wheelPrev.wheelNext = t.wheelNext;
    t.wheelNext.wheelPrev = t.wheelPrev;
    t.wheelNext = t;
    t.wheelPrev = t;
    this.counts[t.wheelLevel]!--;
    t.wheelLevel = -1;
  }

  /**
   * Moves `cur` to `tick`, which must not pass a non-empty slot. At a multiple of 256 ticks, moves down
   * the tasks of the upper-level slots that start there.
   */
  private moveTo(tick: number): void {
    this.cur = tick;
    if ((tick & 255) !== 0) return;
    for (let level = 4; level >= 1; level--) {
      if (tick % SPAN[level]! !== 0) continue;
      const head = this.heads[FIRST[level]! + (Math.floor(tick / SPAN[level]!) & 63)]!;
      while (head.wheelNext !== head) {
        const t = head.wheelNext as WheelEntry;
        this.unlink(t);
        this.link(t);
      }
    }
  }

  /**
   * The next tick at which something happens: the first non-empty level-0 slot, or else the cascade of
   * the first non-empty slot of the lowest non-empty level. Scans at most 256 slots. -1 if empty.
   */
  private nextEvent(): number {
    const c = this.cur;
    const heads = this.heads;
    if (this.counts[0]! > 0) {
      for (let i = c & 255; i < 256; i++) if (heads[i]!.wheelNext !== heads[i]) return c - (c & 255) + i;
    }
    for (let level = 1; level < 5; level++) {
      if (this.counts[level] === 0) continue;
      const q = Math.floor(c / SPAN[level]!);
      for (let j = 1; j < 64; j++) {
        const head = heads[FIRST[level]! + ((q + j) & 63)]!;
        if (head.wheelNext !== head) return (q + j) * SPAN[level]!;
      }
    }
    return -1;
  }

  /** Arms the driver for `event` unless it is already armed for that tick or earlier. */
  private arm(event: number, nowMs: number): void {
    if (this.running || (this.armedTick >= 0 && this.armedTick <= event)) return;
    if (this.handle !== undefined) this.clock.clearTimer(this.handle);
    this.armedTick = event;
    const ms = Math.min(Math.max(Math.ceil(event * this.tickMs - nowMs), 0), MAX_TIMER_MS);
    this.handle = this.clock.setTimer(this.drive, ms);
  }

  private disarm(): void {
    if (this.handle !== undefined) this.clock.clearTimer(this.handle);
    this.handle = undefined;
    this.armedTick = -1;
  }

  /** The wheel's one Clock timer: processes the ticks due by now, jumping over idle ones, then re-arms. */
  private readonly drive = (): void => {
    this.handle = undefined;
    this.armedTick = -1;
    const nowMs = this.clock.now() - this.origin;
    const target = Math.floor(nowMs / this.tickMs);
    this.running = true;
    try {
      for (let e = this.nextEvent(); e >= 0 && e <= target && !this.closed; e = this.nextEvent()) {
        if (this.counts[0]! > 0) this.fire(e, nowMs);
        else this.moveTo(e);
      }
      // Nothing else is due up to target, so no non-empty slot is passed.
      if (!this.closed && this.cur <= target) this.moveTo(target + 1);
    } finally {
      this.running = false;
      const e = this.closed ? -1 : this.nextEvent();
      if (e >= 0) this.arm(e, this.clock.now() - this.origin);
    }
  };

  /** Runs the level-0 slot of tick `e`. Callbacks may cancel or reschedule any task meanwhile. */
  private fire(e: number, nowMs: number): void {
    // Detach the slot's list; tasks scheduled from here on land at e+1 or later.
    const list = this.heads[e & 255]!;
    this.heads[e & 255] = new ListNode();
    this.moveTo(e + 1);
    while (list.wheelNext !== list) {
      const t = list.wheelNext as WheelEntry;
      this.unlink(t);
      if (this.closed) continue;
      if (t instanceof RepeatingTask) {
        // Fixed rate without drift; runs missed because the loop was late are skipped, not bunched.
        const due = t.due + t.interval;
        this.place(t, due > nowMs ? due : nowMs + t.interval);
      } else this.size--;
      try {
        t.onWheelTimer();
      } catch (err) {
        try {
          this.onError(err);
        } catch (again) {
          queueMicrotask(() => {
            throw again; // surface it, but outside the firing loop so the wheel stays consistent
          });
        }
      }
    }
  }
}

/**
 * A hierarchical timing wheel (Linux-kernel style) for the process's many long timers: heartbeats,
 * idle and request timeouts. Typically one per process, shared by all connections: pass a module-level
 * function and the connection as `arg`, so no closure is allocated per connection.
 *
 * Guarantees:
 * - `schedule`, `cancel` and `reschedule` are O(1): each slot is an intrusive doubly-linked list.
 * - Resolution is `tickMs`: a task runs no earlier than its deadline, and normally within one tick
 *   after it (later only if the event loop is late).
 * - Tasks run in non-decreasing deadline-tick order; tasks due in the same tick run in schedule order.
 * - One Clock timer drives the wheel, armed only while tasks exist, never keeping a process alive.
 *
 * Layout: level 0 has 256 slots of one tick; levels 1 to 4 have 64 slots each, spanning 2^8, 2^14,
 * 2^20 and 2^26 ticks. A task sits in the lowest level whose current block holds its deadline, and
 * moves down (cascades) when time reaches its slot. Deadlines beyond the last level (2^32 ticks, 497
 * days at 10 ms) are clamped into its next slot and re-cascaded until in range.
 */
export class TimingWheel {
  private readonly core: Core;

  constructor(options: WheelOptions = {}) {
    const tickMs = options.tickMs ?? 10;
    if (!(tickMs > 0 && Number.isFinite(tickMs))) throw new RangeError(`bad tickMs: ${tickMs}`);
    this.core = new Core(options.clock ?? systemClock, tickMs, options.onError ?? defaultOnError);
  }

  /** One-shot: fn(arg) runs no earlier than delayMs from now, and normally within one tick after. O(1). */
  schedule<A>(delayMs: number, fn: (arg: A) => void, arg: A): WheelTimer {
    const task = new Task(this.core, fn as (arg: unknown) => void, arg);
    this.core.start(task, delayMs);
    return task;
  }

  /** One-shot without an argument. O(1). */
  after(delayMs: number, fn: () => void): WheelTimer {
    return this.schedule(delayMs, callNoArg, fn);
  }

  /**
   * Repeating every intervalMs (first run after intervalMs) until cancelled. Runs keep their phase (no
   * drift); runs missed while the event loop was blocked are skipped, not bunched. O(1).
   */
  every<A>(intervalMs: number, fn: (arg: A) => void, arg: A): WheelTimer {
    if (!(intervalMs > 0 && Number.isFinite(intervalMs))) throw new RangeError(`bad interval: ${intervalMs}`);
    const task = new RepeatingTask(this.core, fn as (arg: unknown) => void, arg, intervalMs);
    this.core.start(task, intervalMs);
    return task;
  }

  /**
   * (Re)schedules an object that is its own entry: its `onWheelTimer` runs no earlier than
   * delayMs from now (once). O(1). Throws if the wheel is closed.
   */
  start(entry: WheelEntry, delayMs: number): void {
    this.core.start(entry, delayMs);
  }

  /** Unschedules an entry given to `start`; no-op when it is not scheduled. O(1). */
  stop(entry: WheelEntry): void {
    this.core.cancel(entry);
  }

  /** Scheduled (active) tasks and entries. */
  get size(): number {
    return this.core.size;
  }

  /** The clock's now. */
  now(): number {
    return this.core.clock.now();
  }

  /** Cancels every task and disarms the driver. Later schedule/every/reschedule calls throw 'wheel closed'. */
  close(): void {
    this.core.close();
  }
}
