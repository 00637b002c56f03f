import type Database from 'better-sqlite3';
import {
  DEFAULT_MAX_HISTORY_BYTES,
  DEFAULT_MAX_HISTORY_LABELS,
  type HistoryLog,
  type LoggedEntry,
  type LoggedHistory,
  newEpoch,
} from './history-log.js';

/*
 * Tables (created on open, also in files of older versions):
 * - history_labels(label, epoch, last_pos, touched, bytes): one row per label with a history.
 * - history_totals('bytes'): the bytes of every entry's data and type, all labels together.
 * - history(label, pos, id, type, is_binary, data, at): its newest entries; (label, id) unique.
 */
export const HISTORY_SCHEMA = `
CREATE TABLE IF NOT EXISTS history_labels (
  label TEXT PRIMARY KEY,
  epoch TEXT NOT NULL,
  last_pos INTEGER NOT NULL,
  touched INTEGER NOT NULL,
  bytes INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS history_totals (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS history_labels_touched ON history_labels (touched);
CREATE TABLE IF NOT EXISTS history (
  label TEXT NOT NULL,
  pos INTEGER NOT NULL,
  id TEXT NOT NULL,
  type TEXT NOT NULL,
  is_binary INTEGER NOT NULL,
  data BLOB,
  at INTEGER NOT NULL,
  PRIMARY KEY (label, pos)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS history_id ON history (label, id);
`;

interface Row {
  pos: number;
  id: string;
  type: string;
  is_binary: number;
  data: Buffer | string;
  at: number;
}

/** Label histories in the SQLite file of a SqliteStore (same connection, same durability). */
export class SqliteHistory implements HistoryLog {
  private readonly appendTx: (labels: readonly string[], keep: number, e: Omit<LoggedEntry, 'pos'>) => void;
  private readonly s;

  constructor(
    db: Database.Database,
    private readonly maxLabels = DEFAULT_MAX_HISTORY_LABELS,
    private readonly maxBytes = DEFAULT_MAX_HISTORY_BYTES,
  ) {
    db.exec(HISTORY_SCHEMA);
    const s = {
      meta: db.prepare('SELECT epoch, last_pos FROM history_labels WHERE label = ?'),
      had: db.prepare('SELECT 1 FROM history WHERE label = ? AND id = ?'),
      create: db.prepare('INSERT INTO history_labels (label, epoch, last_pos, touched) VALUES (?, ?, 1, ?)'),
      bump: db.prepare(
        'UPDATE history_labels SET last_pos = last_pos + 1, touched = ? WHERE label = ? RETURNING last_pos',
      ),
      insert: db.prepare(
        'INSERT INTO history (label, pos, id, type, is_binary, data, at) VALUES (?, ?, ?, ?, ?, ?, ?)',
      ),
      trim: db.prepare('DELETE FROM history WHERE label = ? AND pos <= ?'),
      trimmedBytes: db.prepare(
        'SELECT COALESCE(SUM(length(data) + length(type)), 0) AS n FROM history WHERE label = ? AND pos <= ?',
      ),
      addBytes: db.prepare('UPDATE history_labels SET bytes = bytes + ? WHERE label = ?'),
      total: db.prepare("SELECT value FROM history_totals WHERE name = 'bytes'"),
      addTotal: db.prepare(
        "INSERT INTO history_totals (name, value) VALUES ('bytes', ?) ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
      ),
      labelBytes: db.prepare('SELECT bytes FROM history_labels WHERE label = ?'),
      count: db.prepare('SELECT count(*) AS n FROM history_labels'),
      oldest: db.prepare('SELECT label FROM history_labels ORDER BY touched LIMIT 1'),
      dropLabel: db.prepare('DELETE FROM history_labels WHERE label = ?'),
      dropEntries: db.prepare('DELETE FROM history WHERE label = ?'),
      read: db.prepare(
        'SELECT pos, id, type, is_binary, data, at FROM history WHERE label = ? AND pos > ? ORDER BY pos DESC LIMIT ?',
      ),
    };
    this.s = s;
    const tx = db.transaction((labels: readonly string[], keep: number, e: Omit<LoggedEntry, 'pos'>) => {
      const isBinary = e.data instanceof Uint8Array ? 1 : 0;
      const data = isBinary
        ? Buffer.from(
            (e.data as Uint8Array).buffer,
            (e.data as Uint8Array).byteOffset,
            (e.data as Uint8Array).byteLength,
          )
        : (JSON.stringify(e.data) ?? 'null');
      const size =
        (typeof data === 'string' ? Buffer.byteLength(data) : data.length) + Buffer.byteLength(e.type);
      let created = 0;
      let delta = 0;
      for (const label of labels) {
        if (s.had.get(label, e.id) !== undefined) continue;
        let pos: number;
        if (s.meta.get(label) === undefined) {
          s.create.run(label, newEpoch(), e.at);
          pos = 1;
          created++;
        } else pos = (s.bump.get(e.at, label) as { last_pos: number }).last_pos;
        s.insert.run(label, pos, e.id, e.type, isBinary, data, e.at);
        let change = size;
        if (pos > keep) {
          change -= (s.trimmedBytes.get(label, pos - keep) as { n: number }).n;
          s.trim.run(label, pos - keep);
        }
        s.addBytes.run(change, label);
        delta += change;
      }
      if (delta !== 0) s.addTotal.run(delta);
      // Bounds: labels (when one was created) and bytes, the least recently written out first.
      let over = created > 0 ? (s.count.get() as { n: number }).n - this.maxLabels : 0;
      let bytes = (s.total.get() as { value: number } | undefined)?.value ?? 0;
      while (over > 0 || bytes > this.maxBytes) {
        const oldest = s.oldest.get() as { label: string } | undefined;
        if (oldest === undefined) break;
        const gone = (s.labelBytes.get(oldest.label) as { bytes: number }).bytes;
        s.dropLabel.run(oldest.label);
        s.dropEntries.run(oldest.label);
        s.addTotal.run(-gone);
        bytes -= gone;
        over--;
      }
    });
    this.appendTx = (labels, keep, e) => tx.immediate(labels, keep, e);
  }

  async append(labels: readonly string[], keep: number, entry: Omit<LoggedEntry, 'pos'>): Promise<void> {
    if (labels.length > 0) this.appendTx(labels, Math.max(1, Math.floor(keep)), entry);
  }

  async read(label: string, limit: number, since: number): Promise<LoggedHistory> {
    const meta = this.s.meta.get(label) as { epoch: string; last_pos: number } | undefined;
    if (meta === undefined) return { epoch: '', entries: [], last: 0 };
    const rows = this.s.read.all(label, since, Math.floor(limit)) as Row[];
    const entries = rows.reverse().map((r) => ({
      pos: r.pos,
      id: r.id,
      type: r.type,
      data: r.is_binary === 1 ? new Uint8Array(r.data as Buffer) : JSON.parse(String(r.data)),
      at: r.at,
    }));
    return { epoch: meta.epoch, entries, last: meta.last_pos };
  }
}
