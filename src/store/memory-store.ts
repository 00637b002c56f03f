import type {
  DeadLetter,
  DeadReason,
  MessageStore,
  NewMessage,
  StoredMessage,
  StoreOptions,
  StoreStats,
} from './store.js';

export const DEFAULT_MAX_PER_USER = 10_000;
export const DEFAULT_MAX_DEAD_LETTERS = 100_000;
/** Message ids remembered per user for idempotent appends. */
export const DEFAULT_DEDUPE_WINDOW = 1000;

/** The parts of a message shared by every user of one push (cloned once per `append`). */
interface Body {
  id: string;
  type: string;
  data: unknown;
  createdAt: number;
  expiresAt: number;
}

/** One user's copy of a message. `gone` once acked, expired, buried or overflowed. */
interface Entry {
  seq: number;
  user: string;
  body: Body;
  gone: boolean;
}

interface Inbox {
  /** Ascending by seq; entries before `head` are gone, entries after it may be (holes). */
  items: Entry[];
  head: number;
  /** Entries at or after `head` that are gone. */
  holes: number;
  /** Entries that are not gone. */
  live: number;
  lastSeq: number;
  /** Message id -> seq of the user's last `dedupeWindow` appends (oldest first): append is idempotent by id. */
  ids: Map<string, number>;
}

/**
 * Keeps everything in the process: nothing survives a restart (seqs start from 1 again), so
 * it suits tests, development and qos 1 "while this process lives".
 *
 * Each user's inbox is an array ascending by seq with a head index: append is a push, a
 * cumulative ack moves the head, and entries moved aside from the middle are marked and skipped
 * until the array is compacted (amortized O(1) per message). Expiry uses one min-heap by
 * `expiresAt` over all entries (lazy: entries gone for another reason are dropped when they come
 * up, and the heap is rebuilt when it is mostly such). Appending in TTL order, the common case,
 * makes each heap push O(1).
 *
 * `data` is cloned (structuredClone) once per `append`, so a caller changing its object later
 * does not change the store; messages returned by `pending` share it and must not be mutated.
 *
 * Idempotent appends: each user's inbox keeps a Map of the ids of its last `dedupeWindow`
 * appends (insertion order; the oldest is dropped when a new one comes), so at most that many
 * ids per user.
 */

export class MemoryStore implements MessageStore {
  private readonly inboxes = new Map<string, Inbox>();
  private readonly heap: Entry[] = [];
  private readonly maxPerUser: number;
  private readonly dead: DeadRing;
  private messages = 0;
  private deadCount = 0;
  private readonly dedupeWindow: number;

  constructor(options: StoreOptions = {}) {
    this.maxPerUser = Math.max(1, options.maxPerUser ?? DEFAULT_MAX_PER_USER);
    this.dedupeWindow = Math.max(1, options.dedupeWindow ?? DEFAULT_DEDUPE_WINDOW);
    this.dead = new DeadRing(Math.max(0, options.maxDeadLetters ?? DEFAULT_MAX_DEAD_LETTERS));
  }

  async append(users: readonly string[], message: NewMessage): Promise<number[]> {
    const body: Body = {
      id: message.id,
      type: message.type,
      data: structuredClone(message.data),
      createdAt: message.createdAt,
      expiresAt: message.expiresAt,
    };
    const seqs: number[] = [];
    for (const user of users) {
      let inbox = this.inboxes.get(user);
      if (inbox === undefined) {
        inbox = { items: [], head: 0, holes: 0, live: 0, lastSeq: 0, ids: new Map() };
        this.inboxes.set(user, inbox);
      }
      const had = inbox.ids.get(message.id);
      if (had !== undefined) {
        seqs.push(had);
        continue;
      }
      const entry: Entry = { seq: ++inbox.lastSeq, user, body, gone: false };
      inbox.ids.set(message.id, entry.seq);
      if (inbox.ids.size > this.dedupeWindow) inbox.ids.delete(inbox.ids.keys().next().value as string);
      inbox.items.push(entry);
      inbox.live++;
      this.messages++;
      this.heapPush(entry);
      seqs.push(entry.seq);
      // Overflow: the oldest live entries go, stamped with the push's own time.
      for (let i = inbox.head; inbox.live > this.maxPerUser && i < inbox.items.length; i++) {
        const old = inbox.items[i] as Entry;
        if (!old.gone) this.moveAside(inbox, old, 'overflow', message.createdAt);
      }
      this.tidy(inbox);
    }
    return seqs;
  }

  async pending(user: string, afterSeq: number, limit: number, now: number): Promise<StoredMessage[]> {
    const inbox = this.inboxes.get(user);
    const out: StoredMessage[] = [];
    if (inbox === undefined || limit <= 0) return out;
    const items = inbox.items;
    for (let i = firstAfter(items, inbox.head, afterSeq); i < items.length && out.length < limit; i++) {
      const e = items[i] as Entry;
      if (e.gone || e.body.expiresAt < now) continue;
      out.push(toStored(e));
    }
    return out;
  }

  async ack(user: string, uptoSeq: number): Promise<number> {
    const inbox = this.inboxes.get(user);
    if (inbox === undefined) return 0;
    let removed = 0;
    const items = inbox.items;
    let i = inbox.head;
    for (; i < items.length; i++) {
      const e = items[i] as Entry;
      if (e.seq > uptoSeq) break;
      if (e.gone) inbox.holes--;
      else {
        e.gone = true;
        removed++;
      }
    }
    inbox.head = i;
    inbox.live -= removed;
    this.messages -= removed;
    this.tidy(inbox);
    return removed;
  }

  async lastSeq(user: string): Promise<number> {
    return this.inboxes.get(user)?.lastSeq ?? 0;
  }

  async bury(user: string, seq: number, reason: DeadReason, now: number): Promise<void> {
    const inbox = this.inboxes.get(user);
    if (inbox === undefined) return;
    const i = firstAfter(inbox.items, inbox.head, seq - 1);
    const e = inbox.items[i];
    if (e === undefined || e.seq !== seq || e.gone) return;
    this.moveAside(inbox, e, reason, now);
    this.tidy(inbox);
  }

  async expire(now: number): Promise<number> {
    let n = 0;
    const touched = new Set<Inbox>();
    for (let top = this.heap[0]; top !== undefined && top.body.expiresAt < now; top = this.heap[0]) {
      this.heapPop();
      if (top.gone) continue;
      const inbox = this.inboxes.get(top.user) as Inbox;
      this.moveAside(inbox, top, 'expired', now);
      touched.add(inbox);
      n++;
    }
    for (const inbox of touched) this.tidy(inbox);
    return n;
  }

  async deadLetters(limit: number): Promise<DeadLetter[]> {
    return this.dead.newest(limit);
  }

  async stats(): Promise<StoreStats> {
    return { messages: this.messages, deadLetters: this.deadCount };
  }

  async close(): Promise<void> {}

  private moveAside(inbox: Inbox, e: Entry, reason: DeadReason, now: number): void {
    e.gone = true;
    inbox.live--;
    inbox.holes++;
    this.messages--;
    this.deadCount++;
    this.dead.push({ ...toStored(e), user: e.user, reason, deadAt: now });
  }

  /** Moves the head past gone entries; compacts the array when it is mostly dead weight. */
  private tidy(inbox: Inbox): void {
    const items = inbox.items;
    while (inbox.head < items.length && (items[inbox.head] as Entry).gone) {
      inbox.head++;
      inbox.holes--;
    }
    if (inbox.head === items.length) {
      items.length = 0;
      inbox.head = 0;
      inbox.holes = 0;
    } else {
      const dead = inbox.head + inbox.holes;
      if (dead > 32 && dead * 2 > items.length) {
        inbox.items = items.filter((e, i) => i >= inbox.head && !e.gone);
        inbox.head = 0;
        inbox.holes = 0;
      }
    }
    this.maybeRebuildHeap();
  }

  private heapPush(e: Entry): void {
    const h = this.heap;
    let i = h.push(e) - 1;
    const key = e.body.expiresAt;
    while (i > 0) {
      const p = (i - 1) >> 1;
      const parent = h[p] as Entry;
      if (parent.body.expiresAt <= key) break;
      h[i] = parent;
      i = p;
    }
    h[i] = e;
  }

  private heapPop(): void {
    const h = this.heap;
    const last = h.pop();
    if (last === undefined || h.length === 0) return;
    this.siftDown(0, last);
  }

  private siftDown(i: number, e: Entry): void {
    const h = this.heap;
    const n = h.length;
    const key = e.body.expiresAt;
    for (;;) {
      let c = 2 * i + 1;
      if (c >= n) break;
      const right = h[c + 1];
      if (right !== undefined && right.body.expiresAt < (h[c] as Entry).body.expiresAt) c++;
      const child = h[c] as Entry;
      if (child.body.expiresAt >= key) break;
      h[i] = child;
      i = c;
    }
    h[i] = e;
  }

  /** Drops gone entries from the heap once they are most of it (amortized O(1) per removal). */
  private maybeRebuildHeap(): void {
    const h = this.heap;
    if (h.length < 1024 || h.length < 4 * this.messages) return;
    let j = 0;
    for (const e of h) if (!e.gone) h[j++] = e;
    h.length = j;
    for (let i = (j >> 1) - 1; i >= 0; i--) this.siftDown(i, h[i] as Entry);
  }
}

/** Index of the first entry at or after `from` with seq > `afterSeq` (binary search). */
function firstAfter(items: Entry[], from: number, afterSeq: number): number {
  let lo = from;
  let hi = items.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((items[mid] as Entry).seq <= afterSeq) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function toStored(e: Entry): StoredMessage {
  const b = e.body;
  return { seq: e.seq, id: b.id, type: b.type, data: b.data, createdAt: b.createdAt, expiresAt: b.expiresAt };
}

/** The newest `cap` dead letters, in a ring. */
class DeadRing {
  private readonly items: DeadLetter[] = [];
  private next = 0;

  constructor(private readonly cap: number) {}

  push(d: DeadLetter): void {
    if (this.cap === 0) return;
    if (this.items.length < this.cap) this.items.push(d);
    else this.items[this.next] = d;
    this.next = (this.next + 1) % this.cap;
  }

  newest(limit: number): DeadLetter[] {
    const n = Math.min(Math.max(0, limit), this.items.length);
    const out: DeadLetter[] = [];
    const len = this.items.length;
    for (let k = 1; k <= n; k++) out.push(this.items[(this.next - k + len * 2) % len] as DeadLetter);
    return out;
  }
}
