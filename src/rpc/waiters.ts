import { PylonError } from '../protocol/errors.js';
import type { TimingWheel, WheelTimer } from '../timer/wheel.js';
import { PoolTimeoutError } from './pool-types.js';

/** A caller of acquire or pick that could not be served at once. */
export interface Waiter<C> {
  line: WaitLine<C>;
  resolve(conn: C): void;
  reject(err: Error): void;
  timer: WheelTimer | undefined;
  done: boolean;
  /** Waiting for an exclusive checkout (acquire) rather than a shared pick. */
  exclusive: boolean;
  /** In the line (else served by a dial in flight, or settled). */
  queued: boolean;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
}

/**
 * The pool's fair waiting line: FIFO, each waiter with a deadline on the timing wheel and an
 * optional AbortSignal, settled exactly once. Settled waiters are skipped lazily and compacted
 * away, so a timeout or an abort costs O(1).
 */
export class WaitLine<C> {
  /** Waiters in the line (queued and not yet settled). */
  live = 0;
  timeouts = 0;
  private list: Array<Waiter<C>> = [];
  private head = 0;
  /** Waiters that left the line to be served by a dial in flight. */
  private readonly dialing = new Set<Waiter<C>>();

  constructor(private readonly wheel: TimingWheel) {}

  /** A new waiter; already rejected (done) if `signal` is aborted. */
  create(
    resolve: (c: C) => void,
    reject: (e: Error) => void,
    exclusive: boolean,
    signal?: AbortSignal,
  ): Waiter<C> {
    const w: Waiter<C> = {
      line: this,
      resolve,
      reject,
      timer: undefined,
      done: false,
      exclusive,
      queued: false,
      signal,
      onAbort: undefined,
    };
    if (signal?.aborted) this.settle(w, undefined, aborted());
    else if (signal) {
      w.onAbort = () => this.settle(w, undefined, aborted());
      signal.addEventListener('abort', w.onAbort, { once: true });
    }
    return w;
  }

  /** Start the waiter's deadline. */
  arm(w: Waiter<C>, timeout: number): void {
    if (!w.done) w.timer = this.wheel.schedule(timeout, onWaiterTimeout, w);
  }

  /** Join the end of the line. */
  push(w: Waiter<C>): void {
    if (w.done) return;
    if (this.list.length - this.head > 32 && this.live * 2 < this.list.length - this.head) {
      this.list = this.list.slice(this.head).filter((x) => x.queued);
      this.head = 0;
    }
    this.list.push(w);
    w.queued = true;
    this.live++;
  }

  /** Leave the line to be served by a dial (the deadline keeps running). */
  toDial(w: Waiter<C>): void {
    if (w.queued) {
      w.queued = false;
      this.live--;
    }
    this.dialing.add(w);
  }

  /** Visit the waiters in order while `serve` returns true (it settles or dials for each). */
  each(serve: (w: Waiter<C>) => boolean): void {
    const list = this.list;
    while (this.head < list.length) {
      const w = list[this.head]!;
      if (w.queued && !serve(w)) break;
      this.head++;
    }
    if (this.head === list.length) {
      this.list = [];
      this.head = 0;
    }
  }

  /** Resolve or reject once, wherever the waiter is. */
  settle(w: Waiter<C>, conn: C | undefined, err?: Error): void {
    if (w.done) return;
    w.done = true;
    w.timer?.cancel();
    if (w.onAbort) w.signal?.removeEventListener('abort', w.onAbort);
    this.dialing.delete(w);
    if (w.queued) {
      w.queued = false;
      this.live--;
    }
    if (err) w.reject(err);
    else w.resolve(conn as C);
  }

  /** @internal The waiter's deadline passed. */
  expire(w: Waiter<C>): void {
    if (w.done) return;
    this.timeouts++;
    this.settle(w, undefined, new PoolTimeoutError());
  }

  /** Reject the waiters in the line that `match`, or every one (and those being dialed for). */
  fail(err: () => Error, match?: (w: Waiter<C>) => boolean): void {
    const all = match ? this.list.slice(this.head) : [...this.list.slice(this.head), ...this.dialing];
    for (const w of all) if (match === undefined || (w.queued && match(w))) this.settle(w, undefined, err());
  }
}

function aborted(): PylonError {
  return new PylonError('CANCELLED', 'acquire aborted');
}

function onWaiterTimeout<C>(w: Waiter<C>): void {
  w.line.expire(w);
}
