/** Which labels keep a history, and how much. */
export interface HistoryRule {
  /** A label, a prefix ending in "*" (e.g. "room_*"), or a regular expression. */
  match: string | RegExp;
  /** Messages kept per label. */
  size: number;
  /** Messages older than this are dropped (ms). Default: kept until pushed out. */
  maxAge?: number;
}

export interface HistoryEntry {
  type: string;
  data: unknown;
  /** ms since the epoch. */
  at: number;
}

interface Ring {
  size: number;
  maxAge: number | undefined;
  entries: HistoryEntry[];
}

/**
 * The last N pushes of each label that has a history rule, for clients joining a room to see
 * what was said before (the chat example shows it). Bounded per label by size and age; labels
 * without a rule cost nothing.
 */
export class History {
  private readonly rings = new Map<string, Ring>();

  constructor(private readonly rules: readonly HistoryRule[]) {}

  get enabled(): boolean {
    return this.rules.length > 0;
  }

  /** Record a push that went to `labels`. */
  record(labels: Iterable<string>, entry: HistoryEntry): void {
    for (const label of labels) {
      let ring = this.rings.get(label);
      if (ring === undefined) {
        const rule = this.rules.find((r) => matches(r.match, label));
        if (rule === undefined) continue;
        ring = { size: rule.size, maxAge: rule.maxAge, entries: [] };
        this.rings.set(label, ring);
      }
      ring.entries.push(entry);
      if (ring.entries.length > ring.size) ring.entries.shift();
    }
  }

  /** The last `limit` entries of `label`, oldest first. */
  of(label: string, limit: number, now = Date.now()): HistoryEntry[] {
    const ring = this.rings.get(label);
    if (ring === undefined) return [];
    if (ring.maxAge !== undefined) {
      const cutoff = now - ring.maxAge;
      while (ring.entries.length > 0 && (ring.entries[0] as HistoryEntry).at < cutoff) ring.entries.shift();
    }
    return ring.entries.slice(-limit);
  }
}

function matches(match: string | RegExp, label: string): boolean {
  if (match instanceof RegExp) return match.test(label);
  if (match.endsWith('*')) return label.startsWith(match.slice(0, -1));
  return match === label;
}
