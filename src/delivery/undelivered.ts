import { deserialize, serialize } from 'node:v8';
import type { MessageStore, StoredMessage } from '../store/store.js';
import type { TimingWheel, WheelTimer } from '../timer/wheel.js';

/** A qos-1 message still not acknowledged `undeliveredAfter` ms after it was stored. */
export interface UndeliveredEvent {
  user: string;
  /** The push's id (the same for every user of one push). */
  id: string;
  seq: number;
  type: string;
  data: unknown;
  /** ms since the epoch, when it was stored. */
  createdAt: number;
  /** ms between createdAt and now. */
  age: number;
  /**
   * Times this gateway wrote it to a connection of the user (first send and redeliveries);
   * 0 when the user had no connection here that it was sent to (offline, or on another node).
   */
  attempts: number;
}

/** A message reported undelivered was acknowledged after all (the business may withdraw its notification). */
export interface DeliveredEvent {
  user: string;
  id: string;
  seq: number;
  type: string;
  /** ms since the epoch, when `undelivered` was emitted. */
  notifiedAt: number;
  /** ms between the notification and when this gateway saw the message gone from the inbox. */
  after: number;
}

export interface UndeliveredOptions {
  /** ms after its store write an unacknowledged message is reported. */
  after: number;
  /**
   * Messages waiting for their check, at most, in this process; the same number of reported
   * messages are remembered for their `delivered` (the oldest forgotten first).
   */
  maxWatched: number;
}

export interface UndeliveredHost {
  /** Someone listens (the gateway has `undelivered` listeners): watch new messages. */
  enabled(): boolean;
  undelivered(e: UndeliveredEvent): void;
  delivered(e: DeliveredEvent): void;
  /** Times `seq` was written to this gateway's connections of `user` (0 if none holds it). */
  attempts(user: string, seq: number): number;
  /**
   * Keys claimed once across every node that shares them (the cluster's idempotency keys):
   * resolves the value already held, or undefined when this call claimed the key.
   */
  readonly keys: { claim(key: string, value: string, ttlMs: number): Promise<string | undefined> };
  onError(err: unknown, what: string): void;
}

/** The messages of one store write, checked together. */
interface Group {
  watch: UndeliveredWatch;
  id: string;
  users: readonly string[];
  seqs: readonly number[];
  /** ms since the epoch, when the check is due. */
  due: number;
}

interface Reported {
  id: string;
  seq: number;
  type: string;
  notifiedAt: number;
  expiresAt: number;
}

/** Checks read from the store per event-loop turn. */
const BATCH = 500;

/**
 * Acked-or-notify: every qos-1 message stored while someone listens is checked `after` ms later;
 * if it is still in the user's inbox (not acknowledged, not expired), `undelivered` is emitted
 * once for it across the cluster (a key claimed per user and message id: nodes that each stored a
 * label push for a user connected to both report it once), so the business can hand it to a
 * mobile or web push service. A reported message that leaves the inbox before it expires is
 * reported `delivered`: at once when the ack reaches this gateway, otherwise when the next check
 * (every `after` ms) finds it gone — which is also what a message moved aside by overflow or the
 * redelivery cap on another node looks like (rare; counted as delivered).
 *
 * What is held: a user reference and a seq per watched message, at most `maxWatched` in the
 * process (messages past it are not watched, and counted). The checks live in this process; a
 * gateway that stops cleanly leaves them in the store (`snapshot`) for its next run (`restore`),
 * a crash before a check runs loses that report (the message itself stays in the store).
 */
export class UndeliveredWatch {
  readonly counters = { watched: 0, reported: 0, deliveredAfter: 0, unwatched: 0 };
  /** Reported messages per user, waiting to be acknowledged. */
  private readonly reported = new Map<string, Reported[]>();
  private reportedCount = 0;
  /** Groups waiting for their check. */
  private readonly waiting = new Set<Group>();
  private poll: WheelTimer | undefined;
  private polling = false;
  private closed = false;

  constructor(
    private readonly store: MessageStore,
    private readonly wheel: TimingWheel,
    private readonly host: UndeliveredHost,
    private readonly o: UndeliveredOptions,
  ) {}

  /** Messages waiting for a check, and reported ones waiting for their ack. */
  get size(): number {
    return this.counters.watched + this.reportedCount;
  }

  /** `users[i]` got `seqs[i]` for the push `id`: check each `after` ms from now. */
  track(id: string, users: readonly string[], seqs: readonly number[]): void {
    if (this.closed || users.length === 0 || !this.host.enabled()) return;
    if (this.counters.watched + users.length > this.o.maxWatched) {
      this.counters.unwatched += users.length;
      return;
    }
    this.schedule({ watch: this, id, users, seqs, due: Date.now() + this.o.after });
  }

  private schedule(g: Group): void {
    this.counters.watched += g.users.length;
    this.waiting.add(g);
    this.wheel.schedule(Math.max(1, g.due - Date.now()), fire, g);
  }

  /** The checks still waiting and the reported messages still unacknowledged, as bytes for `restore`. */
  snapshot(): Uint8Array {
    const groups = [...this.waiting].map((g) => [g.id, g.users, g.seqs, g.due]);
    return serialize({ v: 1, groups, reported: [...this.reported] });
  }

  /** Goes on with the checks and reports of a snapshot (within maxWatched). False: not a snapshot. */
  restore(bytes: Uint8Array): boolean {
    let s: {
      v: number;
      groups: Array<[string, string[], number[], number]>;
      reported: Array<[string, Reported[]]>;
    };
    try {
      s = deserialize(bytes);
    } catch {
      return false;
    }
    if (s?.v !== 1 || !Array.isArray(s.groups) || !Array.isArray(s.reported)) return false;
    for (const [id, users, seqs, due] of s.groups) {
      if (this.counters.watched + users.length > this.o.maxWatched) this.counters.unwatched += users.length;
      else this.schedule({ watch: this, id, users, seqs, due });
    }
    for (const [user, list] of s.reported) for (const r of list) this.remember(user, r);
    return true;
  }

  /** How long a snapshot taken now is worth keeping (ms): until its last reported message expires. */
  snapshotTtl(now = Date.now()): number {
    let until = now + this.o.after * 4;
    for (const g of this.waiting) until = Math.max(until, g.due + this.o.after);
    for (const list of this.reported.values()) for (const r of list) until = Math.max(until, r.expiresAt);
    return Math.max(60_000, until - now);
  }

  /** The user acknowledged everything up to `upto` on this gateway. */
  acked(user: string, upto: number): void {
    const list = this.reported.get(user);
    if (list === undefined) return;
    const now = Date.now();
    const left = list.filter((r) => {
      if (r.seq > upto) return true;
      this.deliveredAfter(user, r, now);
      return false;
    });
    this.setReported(user, left);
  }

  /** `seq` of `user` was moved aside here (the redelivery cap): not delivered, so no `delivered` for it. */
  buried(user: string, seq: number): void {
    const list = this.reported.get(user);
    if (list !== undefined)
      this.setReported(
        user,
        list.filter((r) => r.seq !== seq),
      );
  }

  close(): void {
    this.closed = true;
    this.poll?.cancel();
  }

  /** @internal The group's time came: report what is still in the inboxes. */
  async check(g: Group): Promise<void> {
    if (this.closed) return; // left in `waiting` for the snapshot
    this.waiting.delete(g);
    try {
      for (let i = 0; i < g.users.length && !this.closed; i += BATCH) {
        const end = Math.min(i + BATCH, g.users.length);
        await Promise.all(
          g.users.slice(i, end).map((user, k) => this.checkOne(g.id, user, g.seqs[i + k] as number)),
        );
        if (end < g.users.length) await new Promise<void>((r) => setImmediate(r));
      }
    } finally {
      this.counters.watched -= g.users.length;
    }
  }

  private async checkOne(id: string, user: string, seq: number): Promise<void> {
    let m: StoredMessage | undefined;
    const now = Date.now();
    try {
      [m] = await this.store.pending(user, seq - 1, 1, now);
    } catch (err) {
      this.host.onError(err, 'undelivered check');
      return;
    }
    if (m === undefined || m.seq !== seq || m.id !== id || this.closed) return;
    // Once across the nodes: those that stored it for this user check it at about the same time.
    const hold = Math.max(this.o.after * 4, 60_000);
    let prior: string | undefined;
    try {
      prior = await this.host.keys.claim(`undelivered:${user}:${id}`, '1', hold);
    } catch (err) {
      this.host.onError(err, 'undelivered claim');
      return;
    }
    if (prior !== undefined) return;
    this.counters.reported++;
    this.remember(user, { id, seq, type: m.type, notifiedAt: now, expiresAt: m.expiresAt });
    this.host.undelivered({
      user,
      id,
      seq,
      type: m.type,
      data: m.data,
      createdAt: m.createdAt,
      age: now - m.createdAt,
      attempts: this.host.attempts(user, seq),
    });
  }

  private remember(user: string, r: Reported): void {
    // Bounded: past maxWatched, the user reported longest ago is forgotten (no `delivered` for them).
    while (this.reportedCount >= this.o.maxWatched && this.reported.size > 0) {
      const [oldest] = this.reported.keys();
      this.setReported(oldest as string, []);
    }
    const list = this.reported.get(user);
    if (list === undefined) {
      this.reported.set(user, [r]);
      this.reportedCount++;
    } else {
      list.push(r);
      this.reportedCount++;
    }
    if (this.poll === undefined) this.poll = this.wheel.every(this.o.after, pollReported, this);
  }

  private setReported(user: string, after: Reported[]): void {
    this.reportedCount += after.length - (this.reported.get(user)?.length ?? 0);
    if (after.length === 0) this.reported.delete(user);
    else this.reported.set(user, after);
    if (this.reportedCount === 0 && this.poll !== undefined) {
      this.poll.cancel();
      this.poll = undefined;
    }
  }

  private deliveredAfter(user: string, r: Reported, now: number): void {
    this.counters.deliveredAfter++;
    this.host.delivered({
      user,
      id: r.id,
      seq: r.seq,
      type: r.type,
      notifiedAt: r.notifiedAt,
      after: now - r.notifiedAt,
    });
  }

  /** @internal Reported messages acknowledged on other nodes: gone from the inbox before they expired. */
  async pollReported(): Promise<void> {
    if (this.polling) return; // the previous poll is still reading
    this.polling = true;
    try {
      const users = [...this.reported.keys()];
      for (let i = 0; i < users.length && !this.closed; i += BATCH) {
        await Promise.all(users.slice(i, i + BATCH).map((user) => this.recheck(user)));
        await new Promise<void>((r) => setImmediate(r));
      }
    } finally {
      this.polling = false;
    }
  }

  private async recheck(user: string): Promise<void> {
    const list = this.reported.get(user);
    if (list === undefined) return;
    const now = Date.now();
    const still = new Set<number>();
    try {
      // One read from the oldest reported seq on (the inbox is in seq order).
      const first = Math.min(...list.map((r) => r.seq));
      const last = Math.max(...list.map((r) => r.seq));
      const pending = await this.store.pending(user, first - 1, Math.min(last - first + 1, 10_000), now);
      for (const m of pending) still.add(m.seq);
    } catch (err) {
      this.host.onError(err, 'undelivered recheck');
      return;
    }
    const current = this.reported.get(user);
    if (current === undefined) return;
    const left = current.filter((r) => {
      if (still.has(r.seq) || !list.includes(r)) return true;
      if (r.expiresAt > now) this.deliveredAfter(user, r, now);
      return false;
    });
    this.setReported(user, left);
  }
}

function fire(g: Group): void {
  void g.watch.check(g);
}

function pollReported(w: UndeliveredWatch): void {
  void w.pollReported();
}
