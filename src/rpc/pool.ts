import { backoffDelay } from '../client/backoff.js';
import type { TimingWheel, WheelTimer } from '../timer/wheel.js';
import {
  type AcquireOptions,
  checkBounds,
  type Entry,
  type Lease,
  PoolClosedError,
  PoolFullError,
  type PoolOptions,
  type PoolStats,
} from './pool-types.js';
import { type Waiter, WaitLine } from './waiters.js';
import { wheelFor } from './wheel.js';

export * from './pool-types.js';

/**
 * A bounded pool of connections of any type, in two modes that may be mixed:
 * - exclusive: `acquire()` checks a connection out (idle first, else a new dial while under max,
 *   else a fair FIFO wait bounded by `maxWaiters` and `acquireTimeout`); `release()` returns it.
 * - multiplexed: `pick()` returns the least-loaded healthy connection without checking it out.
 *
 * Every slot is accounted for: a failed dial, a timed-out or aborted waiter, a double release
 * and a close each return what they held, and whatever frees a slot or a connection wakes the
 * next waiter (no lost wake-ups). Timeouts sit on a timing wheel, not a setTimeout per waiter.
 */
export class ConnectionPool<C> {
  readonly min: number;
  readonly max: number;
  private readonly entries = new Map<C, Entry<C>>();
  /** All entries in insertion order, for pick's rotating scan. */
  private list: Array<Entry<C>> = [];
  /** Entries not checked out, most recently used last. */
  private readonly idle: Array<Entry<C>> = [];
  private readonly line: WaitLine<C>;
  private waking = false;
  private wakeAgain = false;
  private dialing = 0;
  private closed = false;
  private closing: Promise<void> | undefined;
  private failures = 0;
  private lastError: unknown;
  private redialTimer: WheelTimer | undefined;
  private rotate = 0;
  private readonly wheel: TimingWheel;
  private readonly counters = { dials: 0, dialFailures: 0, refused: 0, replaced: 0 };

  constructor(private readonly options: PoolOptions<C>) {
    [this.min, this.max] = checkBounds(options.min ?? 0, options.max);
    this.wheel = wheelFor(options.wheel, options.clock);
    this.line = new WaitLine(this.wheel);
  }

  /** Open connections plus dials in flight. */
  get size(): number {
    return this.entries.size + this.dialing;
  }

  stats(): PoolStats {
    const [open, idle, { live, timeouts }] = [this.entries.size, this.idle.length, this.line];
    const { size, dialing } = this;
    return { size, open, idle, leased: open - idle, dialing, waiting: live, timeouts, ...this.counters };
  }

  /** Dial up to `min` connections now; rejects with the first dial error (the others stay). */
  async warm(): Promise<void> {
    const dials: Array<Promise<void>> = [];
    while (!this.closed && this.size < this.min) dials.push(this.grow());
    const results = await Promise.allSettled(dials);
    for (const r of results) if (r.status === 'rejected') throw r.reason;
  }

  /** Check a connection out; give it back with `release` (or `destroy` if it broke). */
  acquire(options: AcquireOptions = {}): Promise<C> {
    return new Promise<C>((resolve, reject) => {
      const w = this.waiter(resolve, reject, true, options.signal);
      if (w.done) return;
      if (this.line.live === 0) {
        const e = this.takeIdle();
        if (e) return this.line.settle(w, e.conn);
        if (this.size < this.max) {
          this.line.arm(w, this.timeout(options));
          return this.dialFor(w);
        }
      }
      this.enqueue(w, options);
    });
  }

  /**
   * Check a connection out as a Lease. Unlike `release(conn)`, which cannot tell its caller from a
   * later holder of the same connection, a lease's release is a no-op once it was released.
   */
  async lease(options: AcquireOptions = {}): Promise<Lease<C>> {
    const conn = await this.acquire(options);
    const e = this.entries.get(conn);
    const gen = e?.gen;
    const mine = (): boolean => e !== undefined && this.entries.get(conn) === e && e.leased && e.gen === gen;
    return { conn, release: () => mine() && this.release(conn), destroy: () => mine() && this.destroy(conn) };
  }

  /** Run `fn` with a checked-out connection; it goes back whatever `fn` does (returns or throws). */
  async use<T>(fn: (conn: C) => T | Promise<T>, options: AcquireOptions = {}): Promise<T> {
    const lease = await this.lease(options);
    try {
      return await fn(lease.conn);
    } finally {
      lease.release();
    }
  }

  /**
   * Give a checked-out connection back. Returns false, changing nothing, when `conn` is not checked
   * out (a double release, or a connection the pool already closed).
   */
  release(conn: C): boolean {
    const e = this.entries.get(conn);
    if (e === undefined || !e.leased) return false;
    e.leased = false;
    e.lastUsed = this.wheel.now();
    if (!this.healthy(conn)) {
      this.drop(e);
      return true;
    }
    this.idle.push(e);
    this.wake();
    return true;
  }

  /** Close `conn` and free its slot (a broken checked-out connection, or a dead shared one). */
  destroy(conn: C): boolean {
    const e = this.entries.get(conn);
    if (e === undefined) return false;
    this.counters.replaced++;
    this.drop(e);
    return true;
  }

  /**
   * Multiplexed mode: the least-loaded healthy connection that is not checked out, or undefined if
   * there is none right now. Unhealthy connections met on the way are closed and replaced; when
   * even the least loaded is at `growAbove`, one more is dialed in the background (up to max).
   */
  tryPick(): C | undefined {
    if (this.closed) return undefined;
    const list = this.list;
    const n = list.length;
    const load = this.options.load;
    let best: Entry<C> | undefined;
    let bestLoad = Number.POSITIVE_INFINITY;
    let dead: Array<Entry<C>> | undefined;
    const start = n > 1 ? this.rotate++ % n : 0; // ties go round
    for (let i = 0; i < n; i++) {
      const e = list[(start + i) % n]!;
      if (e.leased) continue;
      if (!this.healthy(e.conn)) {
        dead ??= [];
        dead.push(e);
        continue;
      }
      const l = load ? load(e.conn) : 0;
      if (l < bestLoad) {
        best = e;
        bestLoad = l;
        if (l === 0) break;
      }
    }
    if (dead) for (const e of dead) this.destroy(e.conn);
    if (best === undefined) return undefined;
    best.lastUsed = this.wheel.now();
    const growAbove = this.options.growAbove;
    if (growAbove !== undefined && bestLoad >= growAbove && this.size < this.max && this.dialing === 0)
      this.grow().catch(this.report);
    return best.conn;
  }

  /** Like tryPick, but waits for a dial when there is none (and fails fast while redials back off). */
  pick(options: AcquireOptions = {}): Promise<C> {
    const conn = this.tryPick();
    if (conn !== undefined) return Promise.resolve(conn);
    return new Promise<C>((resolve, reject) => {
      const w = this.waiter(resolve, reject, false, options.signal);
      if (w.done) return;
      if (this.dialing === 0 && this.redialTimer?.active)
        return this.line.settle(w, undefined, this.unavailable());
      this.enqueue(w, options);
      if (this.dialing === 0 && this.size < this.max) this.grow().catch(this.report);
    });
  }

  /** Close every connection, reject every waiter, refuse what comes next. */
  close(): Promise<void> {
    if (this.closing) return this.closing;
    this.closed = true;
    this.redialTimer?.cancel();
    this.line.fail(() => new PoolClosedError());
    const all = this.list;
    this.entries.clear();
    this.list = [];
    this.idle.length = 0;
    this.closing = Promise.all(all.map((e) => this.closeConn(e.conn))).then(() => undefined);
    return this.closing;
  }

  // ---- inside ----

  private readonly report = (err: unknown): void => {
    this.options.onError?.(err);
  };

  private healthy(conn: C): boolean {
    return this.options.isHealthy?.(conn) ?? true;
  }

  private timeout(options: AcquireOptions): number {
    return options.timeout ?? this.options.acquireTimeout ?? 10_000;
  }

  private unavailable(): PoolClosedError {
    const why = this.lastError instanceof Error ? `: ${this.lastError.message}` : '';
    return new PoolClosedError(`no connection (${this.failures} failed dials${why})`, {
      cause: this.lastError,
    });
  }

  private waiter(
    resolve: (c: C) => void,
    reject: (e: Error) => void,
    exclusive: boolean,
    signal?: AbortSignal,
  ): Waiter<C> {
    const w = this.line.create(resolve, reject, exclusive, signal);
    if (this.closed) this.line.settle(w, undefined, new PoolClosedError());
    return w;
  }

  private enqueue(w: Waiter<C>, options: AcquireOptions): void {
    if (this.line.live >= (this.options.maxWaiters ?? 1000)) {
      this.counters.refused++;
      this.line.settle(w, undefined, new PoolFullError());
      return;
    }
    this.line.arm(w, this.timeout(options));
    this.line.push(w);
  }

  /** The next idle connection that is healthy and not expired; the others met on the way are closed. */
  private takeIdle(): Entry<C> | undefined {
    const idleTimeout = this.options.idleTimeout ?? 0;
    for (let e = this.idle.pop(); e !== undefined; e = this.idle.pop()) {
      if ((idleTimeout > 0 && this.wheel.now() - e.lastUsed >= idleTimeout) || !this.healthy(e.conn)) {
        this.counters.replaced++;
        this.drop(e, false);
        continue;
      }
      e.leased = true;
      e.gen++;
      return e;
    }
    return undefined;
  }

  /** Hand idle connections, then free slots, to the waiters in order. Not re-entrant: re-runs instead. */
  private wake(): void {
    if (this.waking) {
      this.wakeAgain = true;
      return;
    }
    this.waking = true;
    try {
      do {
        this.wakeAgain = false;
        this.line.each(this.serve);
      } while (this.wakeAgain);
    } finally {
      this.waking = false;
    }
  }

  /** Serve one waiter if possible (true), else stop the line (false): no overtaking. */
  private readonly serve = (w: Waiter<C>): boolean => {
    if (this.closed) return false;
    if (!w.exclusive) {
      const conn = this.tryPick();
      if (conn !== undefined) this.line.settle(w, conn);
      else if (this.dialing === 0 && this.redialTimer?.active)
        this.line.settle(w, undefined, this.unavailable());
      else if (this.dialing === 0 && this.size < this.max) this.grow().catch(this.report);
      return w.done;
    }
    const e = this.takeIdle();
    if (e) this.line.settle(w, e.conn);
    else if (this.size < this.max) {
      this.line.toDial(w); // a free slot: the waiter dials for itself, its deadline still running
      this.dialFor(w);
    } else return false;
    return true;
  };

  private callDial(): Promise<C> {
    this.dialing++;
    this.counters.dials++;
    try {
      return Promise.resolve(this.options.dial());
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** Dial a connection checked out to `w`; if `w` gave up meanwhile, the connection goes idle. */
  private dialFor(w: Waiter<C>): void {
    this.callDial().then(
      (conn) => {
        if (!this.dialed(conn)) return this.line.settle(w, undefined, new PoolClosedError());
        this.add(conn, true);
        if (w.done) this.release(conn);
        else this.line.settle(w, conn);
        this.wake(); // shared waiters may have waited for this dial
      },
      (err: unknown) => {
        this.dialFailed(err);
        this.line.settle(w, undefined, err instanceof Error ? err : new Error(String(err)));
        this.wake();
        this.keepMin();
      },
    );
  }

  /** Dial a shared connection (multiplexed mode, or to keep min). */
  private grow(): Promise<void> {
    return this.callDial().then(
      (conn) => {
        if (!this.dialed(conn)) throw new PoolClosedError();
        this.idle.push(this.add(conn, false));
        this.wake();
      },
      (err: unknown) => {
        this.dialFailed(err);
        // Shared waiters wait for a dial: with none left in flight, tell them now.
        if (this.dialing === 0)
          this.line.fail(
            () => this.unavailable(),
            (w) => !w.exclusive,
          );
        this.wake();
        this.keepMin();
        throw err;
      },
    );
  }

  /** A dial succeeded; false (and the connection closed) if the pool closed meanwhile. */
  private dialed(conn: C): boolean {
    this.dialing--;
    this.failures = 0;
    if (this.closed) this.closeConn(conn);
    return !this.closed;
  }

  private dialFailed(err: unknown): void {
    this.dialing--;
    this.failures++;
    this.counters.dialFailures++;
    this.lastError = err;
  }

  private add(conn: C, leased: boolean): Entry<C> {
    const e: Entry<C> = { conn, leased, gen: leased ? 1 : 0, lastUsed: this.wheel.now() };
    this.entries.set(conn, e);
    this.list.push(e);
    return e;
  }

  /** Forget `e`, close its connection, and give the freed slot to a waiter or to keeping min. */
  private drop(e: Entry<C>, wake = true): void {
    if (this.entries.get(e.conn) !== e) return;
    this.entries.delete(e.conn);
    this.list = this.list.filter((x) => x !== e);
    const i = this.idle.indexOf(e);
    if (i >= 0) this.idle.splice(i, 1);
    this.closeConn(e.conn);
    if (wake) this.wake();
    this.keepMin();
  }

  private closeConn(conn: C): Promise<void> {
    try {
      return Promise.resolve(this.options.close(conn)).catch(this.report);
    } catch (err) {
      this.report(err);
      return Promise.resolve();
    }
  }

  /** Redial up to min: at once, or after a backoff while dials fail. */
  private keepMin(): void {
    if (this.closed || this.size >= this.min || this.redialTimer?.active) return;
    if (this.failures === 0) {
      this.redial();
      return;
    }
    const delay = backoffDelay(this.failures - 1, this.options.redial ?? { base: 100, max: 5000 });
    this.redialTimer = this.wheel.schedule(Math.max(delay, 1), onRedial, this);
  }

  /** @internal */
  redial(): void {
    while (!this.closed && this.size < this.min) this.grow().catch(this.report);
  }
}

function onRedial<C>(pool: ConnectionPool<C>): void {
  pool.redial();
}
