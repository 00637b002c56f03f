import type Database from 'better-sqlite3';
import {
  DEFAULT_MAX_STORED_SESSIONS,
  decodeSession,
  encodeSession,
  type SessionLog,
  type StoredSession,
} from './session-log.js';

/*
 * Tables (created on open, also in files of older versions):
 * - sessions(id, data, expires_at): dropped sessions waiting to be resumed.
 * - gateway_state(name, data, expires_at): what a gateway left for its next run as it stopped.
 */
export const SESSION_SCHEMA = `
CREATE TABLE IF NOT EXISTS sessions (
  id TEXT PRIMARY KEY,
  data TEXT NOT NULL,
  expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS sessions_expires ON sessions (expires_at);
CREATE TABLE IF NOT EXISTS gateway_state (
  name TEXT PRIMARY KEY,
  data BLOB NOT NULL,
  expires_at INTEGER NOT NULL
) WITHOUT ROWID;
`;

/** Saves between two counts of the table (to keep it within maxSessions). */
const COUNT_EVERY = 1000;

/** Resume sessions and journals in the SQLite file of a SqliteStore (same connection, same durability). */
export class SqliteSessions implements SessionLog {
  private readonly saveTx: (sessions: readonly StoredSession[], expiresAt: number) => void;
  private readonly s;
  private saves = 0;

  constructor(
    db: Database.Database,
    private readonly maxSessions = DEFAULT_MAX_STORED_SESSIONS,
  ) {
    db.exec(SESSION_SCHEMA);
    const s = {
      put: db.prepare('INSERT OR REPLACE INTO sessions (id, data, expires_at) VALUES (?, ?, ?)'),
      take: db.prepare('DELETE FROM sessions WHERE id = ? RETURNING data, expires_at'),
      remove: db.prepare('DELETE FROM sessions WHERE id = ?'),
      expire: db.prepare('DELETE FROM sessions WHERE expires_at < ?'),
      count: db.prepare('SELECT count(*) AS n FROM sessions'),
      trim: db.prepare(
        'DELETE FROM sessions WHERE id IN (SELECT id FROM sessions ORDER BY expires_at LIMIT ?)',
      ),
      putState: db.prepare('INSERT OR REPLACE INTO gateway_state (name, data, expires_at) VALUES (?, ?, ?)'),
      takeState: db.prepare('DELETE FROM gateway_state WHERE name = ? RETURNING data, expires_at'),
    };
    this.s = s;
    const tx = db.transaction((sessions: readonly StoredSession[], expiresAt: number) => {
      s.expire.run(Date.now());
      for (const x of sessions) s.put.run(x.id, encodeSession(x), expiresAt);
      this.saves += sessions.length;
      if (this.saves >= COUNT_EVERY || sessions.length > 1) {
        this.saves = 0;
        const over = (s.count.get() as { n: number }).n - this.maxSessions;
        if (over > 0) s.trim.run(over);
      }
    });
    this.saveTx = (sessions, expiresAt) => tx.immediate(sessions, expiresAt);
  }

  async save(sessions: readonly StoredSession[], ttlMs: number): Promise<void> {
    if (sessions.length > 0) this.saveTx(sessions, Date.now() + ttlMs);
  }

  async take(id: string): Promise<StoredSession | undefined> {
    const row = this.s.take.get(id) as { data: string; expires_at: number } | undefined;
    if (row === undefined || row.expires_at < Date.now()) return undefined;
    return decodeSession(id, row.data);
  }

  async remove(ids: readonly string[]): Promise<void> {
    for (const id of ids) this.s.remove.run(id);
  }

  async putState(name: string, snapshot: Uint8Array, ttlMs: number): Promise<void> {
    this.s.putState.run(
      name,
      Buffer.from(snapshot.buffer, snapshot.byteOffset, snapshot.length),
      Date.now() + ttlMs,
    );
  }

  async takeState(name: string): Promise<Uint8Array | undefined> {
    const row = this.s.takeState.get(name) as { data: Buffer; expires_at: number } | undefined;
    if (row === undefined || row.expires_at < Date.now()) return undefined;
    return new Uint8Array(row.data);
  }
}
