import { OutFrame } from '../net/out-frame.js';
import type { Codec } from '../protocol/codec.js';
import type { Envelope } from '../protocol/envelope.js';
import { PylonError } from '../protocol/errors.js';
import type { Member } from './member.js';

/** A qos-0 push on its way to many members. */
export interface Broadcast {
  type: string;
  /** The default payload. */
  data: unknown;
  /**
   * Per-label payloads (sim's multi-version push): a member gets the variant of the first of
   * its labels, in the order it got them, that has one; otherwise `data`.
   */
  variants?: ReadonlyMap<string, unknown>;
}

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
  /** Why the run stopped early (the push could not be encoded). */
  error: unknown;
  /** The push's position in the resume journal, if it has one. */
  tag: number | undefined;
  /** Each member's index, built when first asked (unwrittenFrom). */
  where?: Map<Member, number>;
}

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
  private readonly fifo: Array<{ run: Run; finish: () => void }> = [];
  private pumping = false;
  /** Members of the fan-outs in the FIFO not written yet (bounded by MAX_QUEUED_MEMBERS). */
  private queued = 0;
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
    const run = head.run;
    if (run.where === undefined) {
      run.where = new Map();
      for (let i = run.index; i < run.members.length; i++) run.where.set(run.members[i] as Member, i);
    }
    const i = run.where.get(m);
    if (i !== undefined && i >= run.index) return run.tag;
    return this.fifo[1]?.run.tag;
  }

  /** Members waiting in the FIFO, and how long they would take to write at the current rate (ms). */
  backlog(): { queued: number; ms: number } {
    if (this.queued === 0) return { queued: 0, ms: 0 };
    // Before any turn was timed: a chunk per 10 ms, a conservative guess.
    const rate = this.writeRate > 0 ? this.writeRate : this.options.chunk / 10;
    return { queued: this.queued, ms: Math.round(this.queued / rate) };
  }

  /**
   * Backpressure for a push about to be accepted: throws TOO_MANY_REQUESTS while the backlog is
   * over `maxBacklogMs`, so a caller that pushes faster than the sockets drain learns it at once
   * instead of its pushes arriving later and later (each waits behind all the earlier ones).
   */
  admit(targets: number): void {
    const max = this.options.maxBacklogMs;
    if (max === undefined || targets <= this.options.chunk || this.queued === 0) return;
    const b = this.backlog();
    if (b.ms <= max) return;
    this.refused++;
    throw new PylonError(
      'TOO_MANY_REQUESTS',
      `the broadcasts waiting here would take ${b.ms} ms to write (${b.queued} deliveries), more than ${max} ms; try later`,
    );
  }

  deliver(members: Member[], push: Broadcast, rate?: number, tag?: number): FanoutResult {
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
      if (!this.write(run, targeted)) throw run.error;
      return { targeted, done: Promise.resolve({ delivered: run.delivered, dropped: run.dropped }) };
    }
    if (!paced) {
      if (this.queued + targeted > (this.options.maxQueued ?? MAX_QUEUED_MEMBERS)) {
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
    // A push that cannot be encoded stops its run; the error goes to onError (the caller has its answer).
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
        const ok = budget <= 0 || this.write(run, budget);
        if (ok && run.index < targeted && !this.closed) {
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
    const queuedBefore = this.queued;
    let budget = this.options.chunk;
    while (budget > 0 && this.fifo.length > 0) {
      const head = this.fifo[0] as { run: Run; finish: () => void };
      const before = head.run.index;
      const ok = this.write(head.run, budget);
      budget -= head.run.index - before;
      this.queued -= head.run.index - before;
      if (!ok || head.run.index >= head.run.members.length) {
        this.fifo.shift();
        this.queued -= head.run.members.length - head.run.index; // a run stopped early
        head.finish();
      }
    }
    this.lastTurnWrote = queuedBefore - this.queued;
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
   * Writes the next `count` members. False when the push cannot be encoded (the run stops; a
   * fan-out in a later turn must not throw where nobody catches it).
   */
  private write(s: Run, count: number): boolean {
    const end = Math.min(s.members.length, s.index + count);
    try {
      for (let i = s.index; i < end; i++) {
        const m = s.members[i] as Member;
        if (!m.open) continue;
        if (m.deliver(s.frames.for(m), 0)) s.delivered++;
        else s.dropped++;
      }
    } catch (err) {
      s.index = s.members.length;
      s.error = err;
      return false;
    }
    s.index = end;
    return true;
  }

  /** Stops the paced fan-outs still going out (their `done` resolves with what was written). */
  close(): void {
    this.closed = true;
  }
}

/** The encoded frames of one push, built on first use per (codec, variant). */
class FrameCache {
  private readonly byKey = new Map<string, OutFrame>();

  constructor(private readonly push: Broadcast) {}

  for(m: Member): OutFrame {
    const variants = this.push.variants;
    const variant = variants === undefined ? '' : variantFor(m.labels, variants);
    const key = variant === '' ? m.codec.name : `${m.codec.name}\u0000${variant}`;
    let f = this.byKey.get(key);
    if (f === undefined) {
      const data = variant === '' ? this.push.data : variants?.get(variant);
      f = encodePush(m.codec, this.push.type, data);
      this.byKey.set(key, f);
    }
    return f;
  }
}

/** The variant a connection with `labels` gets: its first label that has one ('' for the default). */
export function variantFor(
  labels: readonly string[] | undefined,
  variants: ReadonlyMap<string, unknown>,
): string {
  if (labels !== undefined) for (const label of labels) if (variants.has(label)) return label;
  return '';
}

/** The push frame of a broadcast for one connection's codec and labels. */
export function encodeBroadcast(
  codec: Codec,
  labels: readonly string[] | undefined,
  push: Broadcast,
): OutFrame {
  const variant = push.variants === undefined ? '' : variantFor(labels, push.variants);
  return encodePush(codec, push.type, variant === '' ? push.data : push.variants?.get(variant));
}

export function encodePush(codec: Codec, type: string, data: unknown): OutFrame {
  const env: Envelope = data === undefined ? { kind: 'push', type } : { kind: 'push', type, data };
  return new OutFrame(codec.encode(env), !codec.binary);
}
