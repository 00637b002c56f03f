import { type HistoryLog, newEpoch } from '../store/history-log.js';

/** Which labels keep a history, and how much. */
export interface HistoryRule {
  /** A label, a prefix ending in "*" (e.g. "room_*"), or a regular expression. */
  match: string | RegExp;
  /** Messages kept per label. */
  size: number;
  /** Messages older than this are dropped (ms). Default: kept until pushed out. */
  maxAge?: number;
}

/** What all histories of the process may hold together. */
export interface HistoryLimits {
  /** Labels with a history, at most; over it the least recently used history is dropped. Default 10,000. */
  labels: number;
  /** Bytes of all histories (data as JSON text, plus ~64 bytes an entry); over it, least recently used first. Default 32 MiB. */
  bytes: number;
  /** A history of a label nobody holds is dropped once unused for this long (ms). Default 1 hour. */
  idleTtl: number;
}

export const DEFAULT_HISTORY_LIMITS: HistoryLimits = {
  labels: 10_000,
  bytes: 32 * 1024 * 1024,
  idleTtl: 3_600_000,
};

export interface HistoryEntry {
  type: string;
  data: unknown;
  /** ms since the epoch. */
  at: number;
  /** Position in the label's history (1, 2, …) within its epoch. */
  pos: number;
}

/** What `$history` answers. */
export interface HistoryPage {
  label: string;
  /** Changes when the label's history started again (lost, dropped, or a restart of a gateway that keeps it in memory). */
  epoch: string;
  /** Position of the newest entry the label has had in this epoch (0: none). */
  last: number;
  /** Oldest first. */
  messages: HistoryEntry[];
}

interface Ring {
  epoch: string;
  last: number;
  size: number;
  maxAge: number | undefined;
  entries: HistoryEntry[];
  /** The estimated size of each entry, in step with `entries`. */
  sizes: number[];
  /** Bytes of the entries (their sizes' sum). */
  bytes: number;
  /** Last record or read, ms since the epoch. */
  touched: number;
}

/** What one entry is counted as, besides its data. */
const ENTRY_OVERHEAD = 64;

/**
 * The last N pushes of each label that has a history rule, for clients joining a room to see
 * what was said before (the chat example shows it). Bounded per label by its rule (size and
 * age) and for the whole process by HistoryLimits: label count and bytes, evicting the least
 * recently used history, and histories of labels nobody holds after idleTtl. Labels without a
 * rule cost nothing.
 *
 * With a HistoryLog (the store's: SQLite, Redis), histories are written to it and read from it
 * instead: they survive restarts, every gateway of the store reads the same one, and a push
 * recorded by several gateways is kept once (by its id). Bounds there: the rule's size per label,
 * and the log's count of labels.
 */
export class History {
  /** In least-recently-used order (a Map keeps insertion order; a touch re-inserts). */
  private readonly rings = new Map<string, Ring>();
  private totalBytes = 0;

  constructor(
    private readonly rules: readonly HistoryRule[],
    private readonly limits: HistoryLimits = DEFAULT_HISTORY_LIMITS,
    /** How many connections hold a label (the hub's count). */
    private readonly holders: (label: string) => number = () => 0,
    private readonly log?: HistoryLog,
    private readonly onError: (err: unknown) => void = () => {},
  ) {}

  get enabled(): boolean {
    return this.rules.length > 0;
  }

  /** Kept in the store, shared by every gateway of it (then written once, by the accepting one). */
  get shared(): boolean {
    return this.log !== undefined;
  }

  /** Labels with a history, and their bytes. */
  stats(): { labels: number; bytes: number } {
    return { labels: this.rings.size, bytes: this.totalBytes };
  }

  /** Record the push `id` that went to `labels`. */
  record(labels: Iterable<string>, entry: Omit<HistoryEntry, 'pos'>, id: string): void {
    if (this.log !== undefined) {
      this.logAppend(labels, entry, id);
      return;
    }
    let size = -1;
    for (const label of labels) {
      let ring = this.rings.get(label);
      if (ring === undefined) {
        const rule = this.rules.find((r) => matches(r.match, label));
        if (rule === undefined) continue;
        ring = {
          epoch: newEpoch(),
          last: 0,
          size: rule.size,
          maxAge: rule.maxAge,
          entries: [],
          sizes: [],
          bytes: 0,
          touched: entry.at,
        };
      } else this.rings.delete(label);
      this.rings.set(label, ring);
      ring.touched = entry.at;
      if (size < 0) size = entrySize(entry);
      ring.entries.push({ ...entry, pos: ++ring.last });
      ring.sizes.push(size);
      ring.bytes += size;
      this.totalBytes += size;
      if (ring.entries.length > ring.size) this.shift(ring);
    }
    if (size >= 0) this.evict();
  }

  /** The last `limit` entries of `label` after position `since`, oldest first, with its epoch. */
  async read(label: string, limit: number, since = 0, now = Date.now()): Promise<HistoryPage> {
    if (this.log !== undefined) {
      const h = await this.log.read(label, limit, since);
      const maxAge = this.rules.find((r) => matches(r.match, label))?.maxAge;
      const cutoff = maxAge === undefined ? -Infinity : now - maxAge;
      const messages = h.entries
        .filter((e) => e.at >= cutoff)
        .map(({ type, data, at, pos }) => ({ type, data, at, pos }));
      return { label, epoch: h.epoch, last: h.last, messages };
    }
    const ring = this.rings.get(label);
    if (ring === undefined) return { label, epoch: '', last: 0, messages: [] };
    this.rings.delete(label);
    this.rings.set(label, ring);
    ring.touched = now;
    if (ring.maxAge !== undefined) {
      const cutoff = now - ring.maxAge;
      while (ring.entries.length > 0 && (ring.entries[0] as HistoryEntry).at < cutoff) this.shift(ring);
    }
    const after = since > 0 ? ring.entries.filter((e) => e.pos > since) : ring.entries;
    return { label, epoch: ring.epoch, last: ring.last, messages: after.slice(-limit) };
  }

  /** The log's appends, grouped by the size of the labels' rules (usually one group). */
  private logAppend(labels: Iterable<string>, entry: Omit<HistoryEntry, 'pos'>, id: string): void {
    const bySize = new Map<number, string[]>();
    for (const label of labels) {
      const rule = this.rules.find((r) => matches(r.match, label));
      if (rule === undefined) continue;
      const list = bySize.get(rule.size);
      if (list) list.push(label);
      else bySize.set(rule.size, [label]);
    }
    for (const [size, list] of bySize) {
      (this.log as HistoryLog).append(list, size, { id, ...entry }).catch(this.onError);
    }
  }

  /** Drops the histories of labels nobody holds that were not used for idleTtl. Call now and then. */
  sweep(now = Date.now()): number {
    let dropped = 0;
    for (const [label, ring] of this.rings) {
      // LRU order: from here on every ring was used more recently.
      if (now - ring.touched < this.limits.idleTtl) break;
      if (this.holders(label) > 0) continue;
      this.drop(label, ring);
      dropped++;
    }
    return dropped;
  }

  private shift(ring: Ring): void {
    ring.entries.shift();
    const size = ring.sizes.shift() as number;
    ring.bytes -= size;
    this.totalBytes -= size;
  }

  /** Least recently used first, until within the limits. */
  private evict(): void {
    const { labels, bytes } = this.limits;
    while (this.rings.size > labels || this.totalBytes > bytes) {
      const first = this.rings.entries().next().value as [string, Ring] | undefined;
      if (first === undefined) return;
      this.drop(first[0], first[1]);
    }
  }

  private drop(label: string, ring: Ring): void {
    this.rings.delete(label);
    this.totalBytes -= ring.bytes;
  }
}

/** An entry's size: its data as JSON text (the common case: chat messages), plus the type and a fixed overhead. */
function entrySize(e: Omit<HistoryEntry, 'pos'>): number {
  let data = 0;
  if (e.data instanceof Uint8Array) data = e.data.length;
  else if (e.data !== undefined) {
    try {
      data = JSON.stringify(e.data)?.length ?? 0;
    } catch {
      data = 1024;
    }
  }
  return ENTRY_OVERHEAD + e.type.length + data;
}

function matches(match: string | RegExp, label: string): boolean {
  if (match instanceof RegExp) return match.test(label);
  if (match.endsWith('*')) return label.startsWith(match.slice(0, -1));
  return match === label;
}
