import { deserialize, serialize } from 'node:v8';
import type { Target } from '../hub/member.js';
import type { Broadcast } from '../hub/push-frames.js';
import { newEpoch } from '../store/history-log.js';

export interface JournalEntry {
  /** Position in the journal, from 1, strictly increasing. */
  pos: number;
  /** ms since the epoch. */
  at: number;
  target: Target;
  push: Broadcast;
}

export interface JournalOptions {
  /** Entries kept at most. */
  size: number;
  /** Entries older than this (ms) are dropped. */
  maxAge: number;
}

/**
 * The recent qos-0 pushes, so a client that comes back within the resume window gets what it
 * missed: a bounded ring of (target, push), replayed by matching the target against the
 * resumed session. One journal for every kind of target; memory is bounded by size and age.
 *
 * Its epoch names it: positions of two epochs do not compare. A gateway that stops cleanly
 * leaves a snapshot; the gateway that takes it over goes on with the same epoch and positions.
 */
export class Journal {
  private readonly ring: Array<JournalEntry | undefined>;
  private head = 0; // index of the oldest entry
  private count = 0;
  private pos = 0;
  private _epoch = newEpoch();

  constructor(private readonly options: JournalOptions) {
    this.ring = new Array(Math.max(1, options.size));
  }

  get epoch(): string {
    return this._epoch;
  }

  /** The position of the newest entry (0 when none was ever added). */
  get last(): number {
    return this.pos;
  }

  add(target: Target, push: Broadcast, now: number): number {
    this.trim(now);
    const entry: JournalEntry = { pos: ++this.pos, at: now, target, push };
    const size = this.ring.length;
    if (this.count === size) {
      this.ring[this.head] = entry;
      this.head = (this.head + 1) % size;
    } else {
      this.ring[(this.head + this.count) % size] = entry;
      this.count++;
    }
    return entry.pos;
  }

  /**
   * The entries after position `after`, oldest first. `complete` is false when some of them
   * were already dropped (by size or age): the caller then knows the replay has a hole.
   */
  since(after: number, now: number): { entries: JournalEntry[]; complete: boolean } {
    this.trim(now);
    const entries: JournalEntry[] = [];
    const size = this.ring.length;
    for (let i = 0; i < this.count; i++) {
      const e = this.ring[(this.head + i) % size] as JournalEntry;
      if (e.pos > after) entries.push(e);
    }
    const oldest = this.count > 0 ? (this.ring[this.head] as JournalEntry).pos : this.pos + 1;
    return { entries, complete: oldest <= after + 1 };
  }

  /** The journal as bytes (entries within maxAge at `now`), for `restore` by the gateway that takes over. */
  snapshot(now: number): Uint8Array {
    this.trim(now);
    const entries: JournalEntry[] = [];
    const size = this.ring.length;
    for (let i = 0; i < this.count; i++) entries.push(this.ring[(this.head + i) % size] as JournalEntry);
    return serialize({ v: 1, epoch: this._epoch, last: this.pos, entries });
  }

  /**
   * Go on with the journal of `snapshot` (its epoch, its positions, its newest entries that fit).
   * Returns false, changing nothing, for bytes that are not a snapshot or once entries were added.
   */
  restore(snapshot: Uint8Array, now: number): boolean {
    if (this.pos !== 0) return false;
    let s: { v: number; epoch: string; last: number; entries: JournalEntry[] };
    try {
      s = deserialize(snapshot);
    } catch {
      return false;
    }
    if (s?.v !== 1 || typeof s.epoch !== 'string' || !Number.isInteger(s.last) || !Array.isArray(s.entries))
      return false;
    this._epoch = s.epoch;
    this.pos = s.last;
    const size = this.ring.length;
    for (const e of s.entries.slice(-size)) this.ring[this.count++] = e;
    this.trim(now);
    return true;
  }

  private trim(now: number): void {
    const size = this.ring.length;
    while (this.count > 0) {
      const e = this.ring[this.head] as JournalEntry;
      if (now - e.at <= this.options.maxAge) break;
      this.ring[this.head] = undefined;
      this.head = (this.head + 1) % size;
      this.count--;
    }
  }
}
