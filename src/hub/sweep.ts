import { type OutFrame, OutFrameBatch } from '../net/out-frame.js';
import type { Member } from './member.js';
import { type Broadcast, encodePush } from './push-frames.js';

/** Broadcasts one sweep may be writing at once; one more waits behind it (or is refused). */
export const SWEEP_MAX_ACTIVE = 32;
/** Broadcasts one sweep takes in all; the next one starts a new sweep (bounds what a sweep holds). */
export const SWEEP_MAX_JOINS = 1024;

/** One broadcast riding a sweep. */
interface Rider {
  push: Broadcast;
  /** Its place in the sweep: riders are in this order on every connection. */
  seq: number;
  /** The cursor when it joined: it has gone round once when the cursor comes back here. */
  from: number;
  /** The cursor passed the end since it joined. */
  wrapped: boolean;
  tag: number | undefined;
  delivered: number;
  dropped: number;
  /** Why it could not be encoded for some codec (its members of that codec were skipped). */
  error: unknown;
  /** Its frame per codec name; null when it cannot be encoded for that codec. */
  frames: Map<string, OutFrame | null>;
  finish: (r: { delivered: number; dropped: number; error: unknown }) => void;
}

/** What a sweep writes to the members of one (codec, segment): the frame and who rides in it. */
interface Batch {
  frame: OutFrame | undefined;
  riders: Rider[];
  /** Riders that cannot be encoded for this codec: each member of it counts as dropped for them. */
  skipped: Rider[];
}

/**
 * Broadcasts to everyone, written in one pass over the connections: a broadcast made while
 * another is being written does not wait for it to finish, it joins the pass where the cursor is
 * and goes round once from there (the rest of this lap, then the start of the next). A
 * connection the cursor reaches gets every broadcast riding the sweep in one write, in the order
 * they were made. With broadcasts arriving faster than a pass takes, k of them cost about one
 * pass (the per-connection write dominates, not its bytes), and each reaches every connection
 * within one pass of being made, as ws's broadcast to completion does, instead of waiting
 * behind the k-1 before it.
 *
 * Only pushes to `{all: true}` without variants ride sweeps, because only there is who a push
 * is for known from the first one: everyone the sweep holds that is still open, plus the
 * connections that joined the hub since, which a joining broadcast appends as a segment that the
 * earlier riders skip.
 */
export class Sweep {
  /** Where each segment of `members` begins, and the first rider (seq) its members get. */
  private readonly segStart: number[] = [0];
  private readonly segSeq: number[] = [0];
  private cursor = 0;
  private readonly riders: Rider[] = [];
  private joins = 0;
  private known: Set<Member> | undefined = undefined;
  /** Batches by codec name and segment, rebuilt when the riders change. */
  private batches = new Map<string, Batch>();
  private where: Map<Member, number> | undefined = undefined;

  constructor(
    private readonly members: Member[],
    /** The hub's count of members added, when `members` was taken. */
    private addsSeen: number,
  ) {}

  /** Still writing. */
  get active(): boolean {
    return this.riders.length > 0;
  }

  /** Whether one more broadcast may join. */
  get open(): boolean {
    return this.riders.length > 0 && this.riders.length < SWEEP_MAX_ACTIVE && this.joins < SWEEP_MAX_JOINS;
  }

  /** Members held (for the fan-outs' memory bound). */
  get held(): number {
    return this.members.length;
  }

  /** Member visits left until the last rider has gone round. */
  remaining(): number {
    const last = this.riders[this.riders.length - 1];
    if (last === undefined) return 0;
    return last.wrapped ? last.from - this.cursor : this.members.length - this.cursor + last.from;
  }

  /** The journal position of the first rider, for whoever waits behind the sweep. */
  get firstTag(): number | undefined {
    return this.riders[0]?.tag;
  }

  /**
   * A broadcast to everyone: `everyone` is the hub's members now and `adds` its count of members
   * added. The members added since the sweep last looked are appended as this rider's segment
   * (they are the last `adds - addsSeen` of `everyone`, the hub's map keeping insertion order).
   */
  join(
    push: Broadcast,
    everyone: Member[],
    adds: number,
    tag: number | undefined,
  ): Promise<{ delivered: number; dropped: number; error: unknown }> {
    const seq = this.joins++;
    if (seq > 0) {
      const fresh = Math.min(adds - this.addsSeen, everyone.length);
      if (fresh > 0) {
        if (this.known === undefined) this.known = new Set(this.members);
        const start = this.members.length;
        for (let i = everyone.length - fresh; i < everyone.length; i++) {
          const m = everyone[i] as Member;
          if (this.known.has(m)) continue;
          this.known.add(m);
          this.members.push(m);
          this.where?.set(m, this.members.length - 1);
        }
        if (this.members.length > start) {
          this.segStart.push(start);
          this.segSeq.push(seq);
        }
      }
      this.addsSeen = adds;
    }
    this.batches.clear();
    return new Promise((finish) => {
      this.riders.push({
        push,
        seq,
        from: this.cursor,
        wrapped: false,
        tag,
        delivered: 0,
        dropped: 0,
        error: undefined,
        frames: new Map(),
        finish,
      });
    });
  }

  /** Writes up to `budget` members from the cursor on; returns how many it visited. */
  write(budget: number): number {
    let visited = 0;
    while (visited < budget && this.riders.length > 0) {
      const first = this.riders[0] as Rider;
      // Stop where the oldest rider has gone round: past it, it must not ride again.
      const end = Math.min(
        this.members.length,
        this.cursor + budget - visited,
        first.wrapped ? first.from : this.members.length,
      );
      this.writeRange(this.cursor, end);
      visited += end - this.cursor;
      this.cursor = end;
      if (this.cursor >= this.members.length) {
        this.cursor = 0;
        for (const r of this.riders) r.wrapped = true;
      }
      let retired = 0;
      while (retired < this.riders.length) {
        const r = this.riders[retired] as Rider;
        if (!r.wrapped || r.from > this.cursor) break;
        retired++;
      }
      if (retired > 0) {
        for (const r of this.riders.splice(0, retired))
          r.finish({ delivered: r.delivered, dropped: r.dropped, error: r.error });
        this.batches.clear();
      }
    }
    return visited;
  }

  private writeRange(from: number, to: number): void {
    let seg = segmentOf(this.segStart, from);
    let next = this.segStart[seg + 1] ?? Number.POSITIVE_INFINITY;
    for (let i = from; i < to; i++) {
      while (i >= next) {
        seg++;
        next = this.segStart[seg + 1] ?? Number.POSITIVE_INFINITY;
      }
      const m = this.members[i] as Member;
      if (!m.open) continue;
      const b = this.batchFor(m, seg);
      for (const r of b.skipped) r.dropped++;
      if (b.frame === undefined) continue;
      const ok = m.deliver(b.frame, 0);
      for (const r of b.riders) {
        if (ok) r.delivered++;
        else r.dropped++;
      }
    }
  }

  /** The frame for `m`'s codec from the riders segment `seg` gets (those made since it joined). */
  private batchFor(m: Member, seg: number): Batch {
    const codec = m.codec;
    const key = seg === 0 ? codec.name : `${codec.name}\u0000${seg}`;
    let b = this.batches.get(key);
    if (b !== undefined) return b;
    const minSeq = this.segSeq[seg] as number;
    const parts: OutFrame[] = [];
    const riding: Rider[] = [];
    const skipped: Rider[] = [];
    for (const r of this.riders) {
      if (r.seq < minSeq) continue;
      let f = r.frames.get(codec.name);
      if (f === undefined) {
        try {
          f = encodePush(codec, r.push.type, r.push.data);
        } catch (err) {
          r.error ??= err;
          f = null;
        }
        r.frames.set(codec.name, f);
      }
      if (f === null) skipped.push(r);
      else {
        parts.push(f);
        riding.push(r);
      }
    }
    const frame = parts.length === 0 ? undefined : parts.length === 1 ? parts[0] : new OutFrameBatch(parts);
    b = { frame, riders: riding, skipped };
    this.batches.set(key, b);
    return b;
  }

  /**
   * The journal position of the first rider that has not reached `m` yet, or undefined when
   * every rider has (or `m` is not in the sweep). O(members) once per sweep, then O(riders).
   */
  unwrittenFrom(m: Member): number | undefined {
    if (this.where === undefined) {
      this.where = new Map();
      for (let i = 0; i < this.members.length; i++) this.where.set(this.members[i] as Member, i);
    }
    const x = this.where.get(m);
    if (x === undefined) return undefined;
    const minSeq = this.segSeq[segmentOf(this.segStart, x)] as number;
    const c = this.cursor;
    for (const r of this.riders) {
      if (r.seq < minSeq) continue;
      const reached = r.wrapped ? x >= r.from || x < c : x >= r.from && x < c;
      if (!reached) return r.tag;
    }
    return undefined;
  }
}

/** The segment index `i` falls in (segments are few: a binary search is not worth it). */
function segmentOf(starts: readonly number[], i: number): number {
  let s = 0;
  while (s + 1 < starts.length && (starts[s + 1] as number) <= i) s++;
  return s;
}
