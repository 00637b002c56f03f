import type Database from 'better-sqlite3';
import type { Denial } from './denial-log.js';
import { type DenialLog, decodeDenial, denialKey, encodeDenial, mergeDenials } from './denial-log.js';

/*
 * Tables (created on open, also in files of older versions):
 * - denials(key, data, until): bans and revocations, deleted once they end.
 * - denials_version(id = 1, v): bumped by every change.
 */
const SCHEMA = `
CREATE TABLE IF NOT EXISTS denials (
  key TEXT PRIMARY KEY,
  data TEXT NOT NULL,
  until INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS denials_version (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  v INTEGER NOT NULL
);
INSERT OR IGNORE INTO denials_version (id, v) VALUES (1, 0);
`;

/** Bans and revocations in the SQLite file of a SqliteStore (same connection, same durability). */
export class SqliteDenials implements DenialLog {
  private readonly s;
  private readonly putTx: Database.Transaction<(d: Denial) => void>;
  private readonly removeTx: Database.Transaction<(key: string) => void>;

  constructor(db: Database.Database) {
    db.exec(SCHEMA);
    const s = {
      put: db.prepare('INSERT OR REPLACE INTO denials (key, data, until) VALUES (?, ?, ?)'),
      remove: db.prepare('DELETE FROM denials WHERE key = ?'),
      expire: db.prepare('DELETE FROM denials WHERE until <= ?'),
      list: db.prepare('SELECT data FROM denials WHERE until > ?'),
      get: db.prepare('SELECT data FROM denials WHERE key = ? AND until > ?'),
      bump: db.prepare('UPDATE denials_version SET v = v + 1 WHERE id = 1'),
      version: db.prepare('SELECT v FROM denials_version WHERE id = 1'),
    };
    this.s = s;
    this.putTx = db.transaction((rule: Denial) => {
      const now = Date.now();
      const had = s.get.get(denialKey(rule), now) as { data: string } | undefined;
      const d = mergeDenials(had === undefined ? undefined : decodeDenial(had.data), rule);
      s.expire.run(now);
      s.put.run(denialKey(d), encodeDenial(d), d.until);
      s.bump.run();
    });
    this.removeTx = db.transaction((key: string) => {
      s.remove.run(key);
      s.bump.run();
    });
  }

  async put(d: Denial): Promise<void> {
    this.putTx.immediate(d);
  }

  async remove(key: string): Promise<void> {
    this.removeTx.immediate(key);
  }

  async list(): Promise<Denial[]> {
    const rows = this.s.list.all(Date.now()) as Array<{ data: string }>;
    const out: Denial[] = [];
    for (const r of rows) {
      const d = decodeDenial(r.data);
      if (d !== undefined) out.push(d);
    }
    return out;
  }

  async version(): Promise<string> {
    return String((this.s.version.get() as { v: number }).v);
  }
}
