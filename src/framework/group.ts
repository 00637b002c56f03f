import { createLogger, type Logger } from '../log/logger.js';
import { PylonError } from '../protocol/errors.js';
import { wheelFor } from '../timer/shared.js';
import type { TimingWheel, WheelTimer } from '../timer/wheel.js';
import { sharedPool, type Work, type WorkerPool } from './worker-pool.js';

/**
 * A Group (hotpot's model, an actor): some connections and a serial mailbox. Everything that
 * runs "inside" the group — handlers called by `emit`/`call`, its connections' messages, timer
 * callbacks, slowCall results — runs as one turn of the mailbox at a time, in order, even when
 * a handler is async (the next turn starts after its promise settles). So a group's state needs
 * no locks.
 *
 * A turn must not wait for another turn of the same group: `await group.call(…)` inside one of
 * its own handlers never resolves (the call is queued behind the running turn). Inside, call
 * the function directly. `await group.slowCall(work, arg)` inside a handler is fine: the handler
 * holds the mailbox while the worker runs, so the result arrives inside the group.
 */

export interface GroupOptions {
  /** For logs. Default "group-N". */
  name?: string;
  /** A handler that throws (or rejects): log and go on (default), or stop the group. */
  onError?: 'continue' | 'stop';
  /** Default: JSON lines on stderr, level info. */
  logger?: Logger;
  /** Timing wheel of after/tick. Default: one shared by the groups of the process. */
  wheel?: TimingWheel;
  /** Worker pool of slowCall. Default: one shared by the process (created on first use). */
  pool?: WorkerPool;
  /** The route of a member's message. Default: its string `type` field, else "*". */
  typeOf?(message: unknown): string;
}

type Fn = (...args: never[]) => unknown;

const CALL = 0;
const EMIT = 1;
const MESSAGE = 2;
const RUN = 3;
const TIMER = 4;
const SLOW = 5;

interface Turn {
  kind: number;
  name: string | undefined;
  fn: Fn | undefined;
  member: object | undefined;
  arg: unknown;
  error: unknown;
  resolve: ((value: unknown) => void) | undefined;
  reject: ((err: unknown) => void) | undefined;
}

/** member -> its group (a member is in at most one group). */
const memberships = new WeakMap<object, Group<object>>();

/** The group `member` belongs to, if any. */
export function groupOf<M extends object>(member: M): Group<M> | undefined {
  return memberships.get(member) as Group<M> | undefined;
}

/** Takes `member` out of its group (queues the group's `$leave`). */
export function leaveGroup(member: object): void {
  memberships.get(member)?.remove(member);
}

let groups = 0;
let defaultLogger: Logger | undefined;

export class Group<Member extends object = object> {
  readonly name: string;
  /** The connections (or any objects) in the group. */
  readonly members = new Set<Member>();
  /** Why the group stopped (policy 'stop' or `stop()`), once stopped. */
  stopReason: unknown = undefined;
  private readonly handlers = new Map<string, Fn>();
  private readonly routes = new Map<string, Fn>();
  private readonly timers = new Set<WheelTimer>();
  private queue: Array<Turn | undefined> = [];
  private head = 0;
  private draining = false;
  private running = false;
  private isStopped = false;
  private readonly logger: Logger;
  private readonly wheel: TimingWheel;
  private readonly typeOf: (message: unknown) => string;

  constructor(private readonly options: GroupOptions = {}) {
    this.name = options.name ?? `group-${++groups}`;
    this.logger = options.logger ?? sharedLogger();
    this.wheel = options.wheel ?? sharedWheel();
    this.typeOf = options.typeOf ?? defaultTypeOf;
  }

  /** Turns waiting in the mailbox (the running one not counted). */
  get pending(): number {
    return this.queue.length - this.head;
  }

  /** Whether a turn is running now. */
  get busy(): boolean {
    return this.running;
  }

  get stopped(): boolean {
    return this.isStopped;
  }

  /** Register the handler `emit(name)` and `call(name)` run. */
  handle<A = unknown, R = unknown>(name: string, fn: (arg: A, group: this) => R | Promise<R>): this {
    if (this.handlers.has(name)) throw new Error(`group ${this.name}: "${name}" already has a handler`);
    this.handlers.set(name, fn as Fn);
    return this;
  }

  /**
   * Route members' messages of `type` ("*": any type without a route of its own) to `fn`,
   * inside the group. `$join` and `$leave` run when a member is added or removed.
   */
  on<M = unknown>(type: string, fn: (member: Member, message: M, group: this) => unknown): this {
    if (this.routes.has(type)) throw new Error(`group ${this.name}: "${type}" already has a route`);
    this.routes.set(type, fn as Fn);
    return this;
  }

  /** Add a member: its messages (framework connections) now come here. Leaves its previous group. */
  add(member: Member): this {
    const previous = memberships.get(member);
    if (previous === (this as Group<object>) || this.isStopped) return this;
    // A connection that already closed would never be removed (framework and gateway ones both say so).
    if ((member as { state?: unknown }).state === 'closed') return this;
    previous?.remove(member);
    memberships.set(member, this as Group<object>);
    this.members.add(member);
    if (this.routes.has('$join')) this.push(MESSAGE, '$join', undefined, member, undefined);
    return this;
  }

  /** Remove a member (done for framework connections when they close). */
  remove(member: Member): boolean {
    if (memberships.get(member) !== (this as Group<object>)) return false;
    memberships.delete(member);
    this.members.delete(member);
    if (this.routes.has('$leave')) this.push(MESSAGE, '$leave', undefined, member, undefined);
    return true;
  }

  /** Run handler `name` with `arg` inside the group, later; nothing comes back (errors are logged). */
  emit(name: string, arg?: unknown): void {
    this.push(EMIT, name, undefined, undefined, arg);
  }

  /** Run handler `name` with `arg` inside the group; resolves with what it returns. */
  call<R = unknown>(name: string, arg?: unknown): Promise<R> {
    return this.ask(CALL, name, undefined, undefined, arg) as Promise<R>;
  }

  /** Run `fn` inside the group; resolves with what it returns. */
  run<R>(fn: (group: this) => R | Promise<R>): Promise<R> {
    return this.ask(RUN, undefined, fn as Fn, undefined, undefined) as Promise<R>;
  }

  /** A member's message, to the route of its type (framework servers call this). */
  deliver(member: Member, message: unknown): void {
    this.push(MESSAGE, this.typeOf(message), undefined, member, message);
  }

  /** A member's message of `type` through the router; resolves with the route's result (the gateway bridge). */
  dispatch<R = unknown>(member: Member, type: string, message: unknown): Promise<R> {
    return this.ask(MESSAGE, type, undefined, member, message) as Promise<R>;
  }

  /**
   * Run `work(arg)` on the worker pool (CPU-heavy code off the event loop).
   * - With `then`: returns at once; `then(result, error)` runs later inside the group, as a
   *   turn of its own (the group goes on meanwhile — hotpot's SlowCall).
   * - Without: resolves with the result. Awaited inside a handler, the handler keeps the
   *   mailbox, so the code after `await` runs inside the group.
   */
  slowCall<R = unknown>(work: Work, arg: unknown): Promise<R>;
  slowCall<R = unknown>(
    work: Work,
    arg: unknown,
    then: (result: R | undefined, error: Error | undefined, group: this) => unknown,
  ): void;
  slowCall<R>(
    work: Work,
    arg: unknown,
    then?: (result: R | undefined, error: Error | undefined, group: this) => unknown,
  ): Promise<R> | undefined {
    if (this.isStopped) {
      const gone = Promise.reject(new PylonError('UNAVAILABLE', `group ${this.name} is stopped`));
      if (then === undefined) return gone;
      gone.catch(noop);
      return undefined;
    }
    const pool = this.options.pool ?? sharedPool();
    const job = pool.run<R>(work, arg);
    if (then === undefined) return job;
    job.then(
      (result) => this.push(SLOW, undefined, then as Fn, undefined, result),
      (err: unknown) =>
        this.push(SLOW, undefined, then as Fn, undefined, undefined, err ?? new Error('failed')),
    );
    return undefined;
  }

  /** Run `fn` once after `ms`, inside the group (on the timing wheel). */
  after(ms: number, fn: (group: this) => unknown): WheelTimer {
    return this.timer(ms, fn, true);
  }

  /**
   * Run `fn` every `ms`, inside the group, until the timer is cancelled or the group stops. A
   * tick that comes while the previous one still waits in the mailbox is skipped, not queued.
   */
  tick(ms: number, fn: (group: this) => unknown): WheelTimer {
    return this.timer(ms, fn, false);
  }

  /** Stop: timers cancelled, members released, waiting turns refused (UNAVAILABLE); later turns are dropped. */
  stop(reason: unknown = 'stopped'): void {
    if (this.isStopped) return;
    this.isStopped = true;
    this.stopReason = reason;
    for (const t of [...this.timers]) t.cancel();
    for (const m of this.members) memberships.delete(m);
    this.members.clear();
    const gone = new PylonError('UNAVAILABLE', `group ${this.name} is stopped`);
    for (let i = this.head; i < this.queue.length; i++) this.queue[i]?.reject?.(gone);
    this.queue = [];
    this.head = 0;
  }

  // ---- the mailbox ----

  /** @internal */
  forget(timer: WheelTimer): void {
    this.timers.delete(timer);
  }

  /** @internal Queue a timer's turn unless the previous one still waits. */
  pushTimer(entry: TimerEntry): void {
    if (entry.once) this.timers.delete(entry.timer!);
    if (entry.queued) return;
    entry.queued = true;
    this.push(TIMER, undefined, undefined, undefined, entry);
  }

  private timer(ms: number, fn: (group: this) => unknown, once: boolean): WheelTimer {
    const entry: TimerEntry = {
      group: this as Group<object>,
      fn: fn as TimerEntry['fn'],
      queued: false,
      once,
      timer: undefined,
    };
    const inner = once ? this.wheel.schedule(ms, fireTimer, entry) : this.wheel.every(ms, fireTimer, entry);
    entry.timer = new GroupTimer(inner, this as Group<object>);
    this.timers.add(entry.timer);
    return entry.timer;
  }

  /** @internal Queue a turn (`reject` set: someone waits for its result). */
  push(
    kind: number,
    name: string | undefined,
    fn: Fn | undefined,
    member: object | undefined,
    arg: unknown,
    error?: unknown,
    resolve?: (value: unknown) => void,
    reject?: (err: unknown) => void,
  ): void {
    if (this.isStopped) {
      if (reject) reject(new PylonError('UNAVAILABLE', `group ${this.name} is stopped`));
      else this.logger.debug({ group: this.name, turn: name }, 'group stopped: turn dropped');
      return;
    }
    this.queue.push({ kind, name, fn, member, arg, error, resolve, reject });
    if (!this.draining) void this.drain();
  }

  private ask(
    kind: number,
    name: string | undefined,
    fn: Fn | undefined,
    member: object | undefined,
    arg: unknown,
  ) {
    return new Promise<unknown>((resolve, reject) =>
      this.push(kind, name, fn, member, arg, undefined, resolve, reject),
    );
  }

  private async drain(): Promise<void> {
    this.draining = true;
    let sync = 0;
    try {
      while (this.head < this.queue.length && !this.isStopped) {
        const turn = this.queue[this.head]!;
        this.queue[this.head++] = undefined;
        if (this.head >= 1024 && this.head * 2 >= this.queue.length) {
          this.queue = this.queue.slice(this.head);
          this.head = 0;
        }
        this.running = true;
        try {
          let result = this.exec(turn);
          if (
            result !== null &&
            typeof result === 'object' &&
            typeof (result as Promise<unknown>).then === 'function'
          ) {
            sync = 0;
            result = await result;
          }
          turn.resolve?.(result);
        } catch (err) {
          this.failed(turn, err);
        } finally {
          this.running = false;
        }
        // Many synchronous turns in a row: let I/O in now and then.
        if (++sync >= 64) {
          sync = 0;
          await new Promise<void>((r) => setImmediate(r));
        }
      }
    } finally {
      this.draining = false;
    }
  }

  private exec(turn: Turn): unknown {
    switch (turn.kind) {
      case CALL:
      case EMIT: {
        const fn = this.handlers.get(turn.name!);
        if (fn === undefined)
          throw new PylonError('NOT_FOUND', `group ${this.name} has no handler "${turn.name}"`);
        return (fn as (arg: unknown, g: this) => unknown)(turn.arg, this);
      }
      case MESSAGE: {
        const fn =
          this.routes.get(turn.name!) ?? (turn.name!.startsWith('$') ? undefined : this.routes.get('*'));
        if (fn === undefined) {
          if (turn.reject)
            throw new PylonError('NOT_FOUND', `group ${this.name} has no route "${turn.name}"`);
          this.logger.debug({ group: this.name, type: turn.name }, 'no route: message dropped');
          return undefined;
        }
        return (fn as (m: object | undefined, msg: unknown, g: this) => unknown)(turn.member, turn.arg, this);
      }
      case RUN:
        return (turn.fn as (g: this) => unknown)(this);
      case TIMER: {
        const entry = turn.arg as TimerEntry;
        entry.queued = false;
        return entry.fn(this as Group<object>);
      }
      default: // SLOW
        return (turn.fn as (r: unknown, e: unknown, g: this) => unknown)(turn.arg, turn.error, this);
    }
  }

  private failed(turn: Turn, err: unknown): void {
    const answered = turn.reject !== undefined;
    turn.reject?.(err);
    // A PylonError thrown to a caller is its answer (e.g. BAD_REQUEST), not a failure of the group.
    if (answered && err instanceof PylonError && err.code !== 'INTERNAL') return;
    this.logger.error(
      { err, group: this.name, turn: turn.name ?? KIND_NAMES[turn.kind] },
      'group handler failed',
    );
    if (this.options.onError === 'stop') this.stop(err);
  }
}

const KIND_NAMES = ['call', 'emit', 'message', 'run', 'timer', 'slowCall'];

function defaultTypeOf(message: unknown): string {
  if (typeof message === 'object' && message !== null) {
    const t = (message as { type?: unknown }).type;
    if (typeof t === 'string') return t;
  }
  return '*';
}

function noop(): void {}

function sharedLogger(): Logger {
  defaultLogger ??= createLogger('info');
  return defaultLogger;
}

function sharedWheel(): TimingWheel {
  return wheelFor();
}

/** A Group's `after` or `tick`: the wheel fires it, the group runs `fn` as a turn of its mailbox. */
interface TimerEntry {
  group: Group<object>;
  fn: (group: Group<object>) => unknown;
  /** Its turn waits in the mailbox (a tick due meanwhile is skipped). */
  queued: boolean;
  /** `after` (true) or `tick`. */
  once: boolean;
  timer: WheelTimer | undefined;
}

/** Called by the timing wheel: queue the timer's turn in its group. */
function fireTimer(entry: TimerEntry): void {
  entry.group.pushTimer(entry);
}

/** A wheel timer that the group forgets when it is cancelled. */
class GroupTimer implements WheelTimer {
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
