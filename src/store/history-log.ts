/** One push in a label's history, as a durable store keeps it. */
export interface LoggedEntry {
  /** Position in the label's history within its epoch: 1, 2, 3, … */
  pos: number;
  /** The push's id (the same on every node that recorded it). */
  id: string;
  type: string;
  data: unknown;
  /** ms since the epoch. */
  at: number;
}

export interface LoggedHistory {
  /**
   * Changes whenever the label's history starts again (created, dropped and created again, or
   * a store that does not keep it across restarts): positions of two epochs do not compare.
   */
  epoch: string;
  /** Oldest first. */
  entries: LoggedEntry[];
  /** Position of the label's newest entry (0 when it has none). */
  last: number;
}

/**
 * Label histories in a durable store (SQLite, Redis), shared by the gateways that share the
 * store. Appends are idempotent per (label, push id): several gateways that each record one
 * label push store it once.
 */
export interface HistoryLog {
  /** Append `entry` to each label's history, keeping its newest `keep`. */
  append(labels: readonly string[], keep: number, entry: Omit<LoggedEntry, 'pos'>): Promise<void>;
  /** The newest `limit` entries of `label` with a position above `since`, oldest first. */
  read(label: string, limit: number, since: number): Promise<LoggedHistory>;
}

/** Labels with a durable history, at most (the least recently written are dropped). Default 100,000. */
export const DEFAULT_MAX_HISTORY_LABELS = 100_000;

/**
 * Bytes of all durable histories together (each entry's data and type), at most: past it the
 * least recently written labels are dropped. Default 256 MiB.
 */
export const DEFAULT_MAX_HISTORY_BYTES = 256 * 1024 * 1024;

/** A new epoch id: 8 random bytes, hex. */
export function newEpoch(): string {
  const b = new Uint8Array(8);
  crypto.getRandomValues(b);
  return Buffer.from(b).toString('hex');
}
