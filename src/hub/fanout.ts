import { PylonError } from '../protocol/errors.js';
import type { Member } from './member.js';
import { type Broadcast, FrameCache } from './push-frames.js';
import { Sweep } from './sweep.js';

export type { Broadcast } from './push-frames.js';

export interface FanoutResult {
  /** Members selected. */
  targeted: number;
  /** Resolves when every member has been written to (or skipped), with the counts. */
  done: Promise<{ delivered: number; dropped: number }>;
}

export interface FanoutOptions {
  /** Members written per turn of the event loop. */
  chunk: number;
  /** Process-wide ceiling on connections written per second, over every fan-out (undefined: none). */
  ceiling?: number;
  /** Paced fan-outs that may be going out at once; more are refused with TOO_MANY_REQUESTS. */
  maxPaced: number;
  /** Deliveries the unpaced FIFO may hold waiting; more are refused with TOO_MANY_REQUESTS. Default MAX_QUEUED_MEMBERS. */
  maxQueued?: number;
  /** Schedules paced steps (the gateway's timing wheel). */
  after(ms: number, fn: () => void): void;
  /** A push that could not be encoded part-way through a fan-out (logged by the gateway). */
  onError?(err: unknown): void;
  /**
   * Backpressure: a new push is refused (TOO_MANY_REQUESTS, see `admit`) while the fan-outs
   * already waiting would take longer than this to write at the rate they are being written, ms.
   * Undefined: only MAX_QUEUED_MEMBERS bounds them.
   */
  maxBacklogMs?: number;
}

interface Run {
  members: Member[];
  frames: FrameCache;
  index: number;
  delivered: number;
  dropped: number;
  /** Why some members were skipped (the push could not be encoded for their codec). */
  error: unknown;
  /** The push's position in the resume journal, if it has one. */
  tag: number | undefined;
  /** Each member's index, built when first asked (unwrittenFrom). */
  where?: Map<Member, number>;
}

/** An unpaced fan-out waiting in the FIFO: one push's run, or a sweep carrying broadcasts to everyone. */
type Entry = { run: Run; finish: () => void; sweep?: undefined } | { sweep: Sweep; run?: undefined };

/** How often a paced fan-out writes its next slice at most (ms). */
const PACE_STEP = 10;

/**
 * Deliveries the unpaced FIFO may hold waiting, all fan-outs together (a member reference each,
 * ~8 bytes): past it a push is refused with TOO_MANY_REQUESTS.
 */
export const MAX_QUEUED_MEMBERS = 5_000_000;

/** A paced fan-out must be able to finish within this long at its rate (ms): 1 hour. */
export const MAX_PACED_DURATION = 3_600_000;

/**
 * Writes one push to many members. Each (codec, variant) pair is encoded once and framed once
 * per transport, and the same bytes go to every member that needs them. Sets larger than one
 * chunk are written a chunk per event-loop turn (setImmediate), so a broadcast to every
 * connection of a busy process never stalls its heartbeats and requests for long.
 *
 * Unpaced fan-outs run one after the other, in call order (a FIFO; each turn writes at most a
 * chunk of members in all): a push never overtakes an earlier one on a connection, and with k
 * broadcasts in flight each finishes as soon as it can instead of k times later (interleaved
 * chunks). A small push made while a large fan-out is under way waits for it.
 *
 * Broadcasts to everyone (`{all: true}`, no variants) ride a Sweep instead: one made while
 * another is being written joins its pass at once rather than queueing behind it, and each
 * connection gets every broadcast riding the pass in one write (see Sweep).
 *
 * Flow control (the 360 system's paced send queue, goim's speed): a push may carry a rate in
 * connections per second, and a process-wide ceiling bounds all fan-outs together; a paced
 * fan-out writes a slice every 10 ms and the caller does not wait for it.
 */
export class Fanout {
  private tokens: number;
  private refilled = performance.now();
  /** Paced fan-outs still going out. */
  private waiting = 0;
  private closed = false;
  /** Unpaced fan-outs not finished yet, in call order; the head is being written. */
  private readonly fifo: Entry[] = [];
  private pumping = false;
  /** Members of the runs in the FIFO not written yet (with sweepsHeld, bounded by MAX_QUEUED_MEMBERS). */
  private queued = 0;
  /** The sweeps in the FIFO, and the members they hold. */
  private readonly sweeps: Sweep[] = [];
  private sweepsHeld = 0;
  /** Members written per ms while the FIFO is being pumped (moving average over turns). */
  private writeRate = 0;
  /** When the last pump turn began, and how many members it wrote. */
  private lastTurnAt = 0;
  private lastTurnWrote = 0;
  /** Pushes refused for the backlog since the start. */
  refused = 0;

  constructor(private readonly options: FanoutOptions) {
    this.tokens = options.ceiling ?? 0;
  }

  /**
   * The journal position (`tag` of deliver) of the first push `m` has not been written yet
   * because it waits in the FIFO, or undefined when none does: a session saved now must replay
   * from there. O(members) once per fan-out, then O(1).
   */
  unwrittenFrom(m: Member): number | undefined {
    const head = this.fifo[0];
    if (head === undefined) return undefined;
    if (head.sweep !== undefined) return head.sweep.unwrittenFrom(m) ?? tagOf(this.fifo[1]);
    const run = head.run;
    if (run.where === undefined) {
      run.where = new Map();
      for (let i = run.index; i < run.members.length; i++) run.where.set(run.members[i] as Member, i);
    }
    const i = run.where.get(m);
    if (i !== undefined && i >= run.index) return run.tag;
    return tagOf(this.fifo[1]);
  }

  /** Members waiting in the FIFO, and how long they would take to write at the current rate (ms). */
  backlog(): { queued: number; ms: number } {
    let queued = this.queued;
    for (const s of this.sweeps) queued += s.remaining();
    if (queued === 0) return { queued: 0, ms: 0 };
    // Before any turn was timed: a chunk per 10 ms, a conservative guess.
    const rate = this.writeRate > 0 ? this.writeRate : this.options.chunk / 10;
    return { queued, ms: Math.round(queued / rate) };
  }

  /** The sweep a broadcast to everyone made now would join, if one is open at the FIFO's tail. */
  private openSweep(): Sweep | undefined {
    const tail = this.fifo[this.fifo.length - 1];
    return tail?.sweep?.open ? tail.sweep : undefined;
  }

  /**
   * Backpressure for a push about to be accepted: throws TOO_MANY_REQUESTS while the backlog is
   * over `maxBacklogMs`, so a caller that pushes faster than the sockets drain learns it at once
   * instead of its pushes arriving later and later (each waits behind all the earlier ones).
   * A broadcast to everyone (`everyone`) that would join the sweep being written waits for
   * nothing, so it is admitted (up to SWEEP_MAX_ACTIVE riders).
   */
  admit(targets: number, everyone = false): void {
    const max = this.options.maxBacklogMs;
    if (max === undefined || targets <= this.options.chunk || this.fifo.length === 0) return;
    if (everyone && this.openSweep() !== undefined) return;
    const b = this.backlog();
    if (b.ms <= max) return;
    this.refused++;
    throw new PylonError(
      'TOO_MANY_REQUESTS',
      `the broadcasts waiting here would take ${b.ms} ms to write (${b.queued} deliveries), more than ${max} ms; try later`,
    );
  }

  /**
   * `adds`: given when `members` is everyone the hub holds now (a push to `{all: true}`), with
   * the hub's count of members ever added; such a push may ride a sweep.
   */
  deliver(members: Member[], push: Broadcast, rate?: number, tag?: number, adds?: number): FanoutResult {
    const targeted = members.length;
    const ceiling = this.options.ceiling;
    const paced = rate !== undefined || ceiling !== undefined;
    if (rate !== undefined && (targeted / rate) * 1000 > MAX_PACED_DURATION) {
      // Each waiting fan-out holds its targets and a slot: one that cannot end is refused.
      throw new PylonError(
        'BAD_REQUEST',
        `rate: at ${rate} connections/s the ${targeted} targets would take ${Math.round(targeted / rate)} s, more than the ${MAX_PACED_DURATION / 1000} s a paced push may take`,
      );
    }
    if (paced && this.waiting >= this.options.maxPaced) {
      // Each waiting fan-out holds its list of targets: under sustained overload, refuse.
      throw new PylonError(
        'TOO_MANY_REQUESTS',
        `${this.waiting} paced pushes are still going out; try later`,
      );
    }
    const run: Run = {
      members,
      frames: new FrameCache(push),
      index: 0,
      delivered: 0,
      dropped: 0,
      error: undefined,
      tag,
    };
    if (!paced && targeted <= this.options.chunk && this.fifo.length === 0) {
      this.write(run, targeted);
      // Nobody could take it (its first member's codec cannot carry it, say): the caller is told.
      if (run.error !== undefined && run.delivered === 0) throw run.error;
      if (run.error !== undefined) this.options.onError?.(run.error);
      return { targeted, done: Promise.resolve({ delivered: run.delivered, dropped: run.dropped }) };
    }
    if (!paced && adds !== undefined && push.variants === undefined && targeted > 0)
      return this.sweep(members, push, tag, adds);
    if (!paced) {
      if (this.queued + this.sweepsHeld + targeted > (this.options.maxQueued ?? MAX_QUEUED_MEMBERS)) {
        // Each waiting fan-out holds its list of targets: pushes faster than they can be written are refused.
        throw new PylonError(
          'TOO_MANY_REQUESTS',
          `${this.queued} deliveries of earlier pushes are still waiting to be written; try later`,
        );
      }
      // Refused now, to its caller, if it cannot be encoded for its first member.
      if (targeted > 0) run.frames.for(members[0] as Member);
      this.queued += targeted;
      const done = new Promise<{ delivered: number; dropped: number }>((resolve) => {
        this.fifo.push({
          run,
          finish: () => {
            if (run.error !== undefined) this.options.onError?.(run.error);
            resolve({ delivered: run.delivered, dropped: run.dropped });
          },
        });
      });
      if (!this.pumping) this.pump();
      return { targeted, done };
    }
    // Members whose codec cannot carry the push are skipped and counted as dropped; the first
    // such error goes to onError when the run ends (the caller has its answer).
    const done = new Promise<{ delivered: number; dropped: number }>((resolve) => {
      const finish = () => {
        if (run.error !== undefined) this.options.onError?.(run.error);
        resolve({ delivered: run.delivered, dropped: run.dropped });
      };
      const started = performance.now();
      this.waiting++;
      const step = () => {
        // Due so far at this push's own rate, at most a chunk per step, and within the ceiling.
        let budget = this.options.chunk;
        const elapsed = performance.now() - started;
        if (rate !== undefined)
          budget = Math.min(budget, Math.floor((rate * elapsed) / 1000) + 1 - run.index);
        if (ceiling !== undefined) budget = this.take(Math.max(0, budget), ceiling);
        if (budget > 0) this.write(run, budget);
        if (run.index < targeted && !this.closed) {
          // Sleep until the next member is due (a slow rate does not wake every 10 ms).
          const due = rate === undefined ? 0 : (run.index * 1000) / rate - elapsed;
          this.options.after(Math.max(PACE_STEP, Math.ceil(due)), step);
        } else {
          this.waiting--;
          finish();
        }
      };
      step();
    });
    return { targeted, done };
  }

  /** A broadcast to everyone: joins the open sweep at the FIFO's tail, or starts one there. */
  private sweep(members: Member[], push: Broadcast, tag: number | undefined, adds: number): FanoutResult {
    // Refused now, to its caller, if it cannot be encoded for its first member.
    new FrameCache(push).for(members[0] as Member);
    let sweep = this.openSweep();
    if (sweep === undefined) {
      if (this.queued + this.sweepsHeld + members.length > (this.options.maxQueued ?? MAX_QUEUED_MEMBERS)) {
        throw new PylonError(
          'TOO_MANY_REQUESTS',
          `${this.queued + this.sweepsHeld} deliveries of earlier pushes are still waiting to be written; try later`,
        );
      }
      sweep = new Sweep(members, adds);
      this.fifo.push({ sweep });
      this.sweeps.push(sweep);
    }
    const before = sweep.held;
    const riding = sweep.join(push, members, adds, tag);
    this.sweepsHeld += sweep.held - before;
    const done = riding.then((r) => {
      if (r.error !== undefined) this.options.onError?.(r.error);
      return { delivered: r.delivered, dropped: r.dropped };
    });
    if (!this.pumping) this.pump();
    return { targeted: members.length, done };
  }

  /** Writes a chunk of members from the head of the FIFO on, then again next turn while any is left. */
  private pump(): void {
    const now = performance.now();
    // The rate is what one turn wrote over the time until the next began: the event loop's
    // other work and the kernel's writes included.
    if (this.pumping && this.lastTurnWrote > 0 && now > this.lastTurnAt) {
      const r = this.lastTurnWrote / (now - this.lastTurnAt);
      this.writeRate = this.writeRate === 0 ? r : this.writeRate * 0.7 + r * 0.3;
    }
    this.lastTurnAt = now;
    this.pumping = true;
    let budget = this.options.chunk;
    let wrote = 0;
    while (budget > 0 && this.fifo.length > 0) {
      const head = this.fifo[0] as Entry;
      if (head.sweep !== undefined) {
        const visited = head.sweep.write(budget);
        budget -= visited;
        wrote += visited;
        if (!head.sweep.active) {
          this.fifo.shift();
          this.sweeps.splice(this.sweeps.indexOf(head.sweep), 1);
          this.sweepsHeld -= head.sweep.held;
        }
        continue;
      }
      const before = head.run.index;
      this.write(head.run, budget);
      budget -= head.run.index - before;
      wrote += head.run.index - before;
      this.queued -= head.run.index - before;
      if (head.run.index >= head.run.members.length) {
        this.fifo.shift();
        head.finish();
      }
    }
    this.lastTurnWrote = wrote;
    if (this.fifo.length > 0) setImmediate(() => this.pump());
    else this.pumping = false;
  }

  /** Takes up to `n` tokens from the process-wide bucket (refilled at `ceiling` per second, burst of 100 ms). */
  private take(n: number, ceiling: number): number {
    const now = performance.now();
    this.tokens = Math.min(ceiling / 10, this.tokens + ((now - this.refilled) * ceiling) / 1000);
    this.refilled = now;
    const granted = Math.min(n, Math.floor(this.tokens));
    this.tokens -= granted;
    return granted;
  }

  /**
   * Writes the next `count` members. A member whose codec cannot carry the push (binary data for
   * a JSON connection) is skipped and counted as dropped; the error is kept for onError (a
   * fan-out in a later turn must not throw where nobody catches it).
   */
  private write(s: Run, count: number): void {
    const end = Math.min(s.members.length, s.index + count);
    for (let i = s.index; i < end; i++) {
      const m = s.members[i] as Member;
      if (!m.open) continue;
      const f = s.frames.tryFor(m);
      if (f === null) {
        s.dropped++;
        s.error ??= s.frames.error;
      } else if (m.deliver(f, 0)) s.delivered++;
      else s.dropped++;
    }
    s.index = end;
  }

  /** Stops the paced fan-outs still going out (their `done` resolves with what was written). */
  close(): void {
    this.closed = true;
  }
}

/** The journal position of the first push an entry has not written everywhere. */
function tagOf(e: Entry | undefined): number | undefined {
  return e === undefined ? undefined : e.sweep !== undefined ? e.sweep.firstTag : e.run.tag;
}
