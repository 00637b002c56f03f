import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { makeDir } from '../util/make-dir.js';
import type { DenialLog } from './denial-log.js';
import { GroupCommit } from './group-commit.js';
import type { HistoryLog } from './history-log.js';
import { DEFAULT_DEDUPE_WINDOW, DEFAULT_MAX_DEAD_LETTERS, DEFAULT_MAX_PER_USER } from './memory-store.js';
import type { SessionLog } from './session-log.js';
import { SqliteDenials } from './sqlite-denials.js';
import { SqliteHistory } from './sqlite-history.js';
import { SqliteSessions } from './sqlite-sessions.js';
import type {
  DeadLetter,
  DeadReason,
  MessageStore,
  NewMessage,
  StoredMessage,
  StoreOptions,
  StoreStats,
} from './store.js';

/*
 * Layout (schema version 1, in PRAGMA user_version):
 * - users(user, last_seq, pending): the last seq ever given to the user, never lowered, so seqs are
 *   not reused after acks delete rows; `pending` counts the user's inbox rows (the overflow check
 *   without a count(*)).
 * - inbox(user, seq, ...) with PRIMARY KEY (user, seq) and an index on expires_at. `data` holds
 *   JSON text when is_binary = 0 and the raw bytes of a Uint8Array (a BLOB) when is_binary = 1.
 *   Each user of a push gets its own row (the payload is repeated per user).
 * - dead_letters(n AUTOINCREMENT, ...): the same columns plus reason and dead_at; newest = highest
 *   n; trimmed to the newest maxDeadLetters by n.
 * - counters(name, value): 'messages' (rows in inbox) and 'dead_letters' (moved aside, ever).
 * - recent_ids(user, id, seq): the ids of each user's last `dedupeWindow` appends, so that an
 *   append of an id the user already got returns its seq and stores nothing (rows with seq <=
 *   last_seq - dedupeWindow are not matched). Every FORGET_EVERY-th append of a user deletes
 *   its rows past the window, so a user has fewer than dedupeWindow + FORGET_EVERY rows.
 *   Created on open in files of older versions (which then remember nothing yet).
 */
const SCHEMA = `
CREATE TABLE IF NOT EXISTS users (
  user TEXT PRIMARY KEY,
  last_seq INTEGER NOT NULL,
  pending INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS inbox (
  user TEXT NOT NULL,
  seq INTEGER NOT NULL,
  id TEXT NOT NULL,
  type TEXT NOT NULL,
  is_binary INTEGER NOT NULL,
  data BLOB NOT NULL,
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  PRIMARY KEY (user, seq)
);
CREATE INDEX IF NOT EXISTS inbox_expires_at ON inbox (expires_at);
CREATE TABLE IF NOT EXISTS dead_letters (
  n INTEGER PRIMARY KEY AUTOINCREMENT,
  user TEXT NOT NULL,
  seq INTEGER NOT NULL,
  id TEXT NOT NULL,
  type TEXT NOT NULL,
  is_binary INTEGER NOT NULL,
  data BLOB NOT NULL,
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  reason TEXT NOT NULL,
  dead_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS recent_ids (
  user TEXT NOT NULL,
  id TEXT NOT NULL,
  seq INTEGER NOT NULL,
  PRIMARY KEY (user, id)
) WITHOUT ROWID;
-- Earlier versions indexed recent_ids by (user, seq): kept up on every append, it cost more than
-- the scan of a user's rows it saved once every FORGET_EVERY appends (measured).
DROP INDEX IF EXISTS recent_ids_seq;
INSERT OR IGNORE INTO counters (name, value) VALUES ('messages', 0), ('dead_letters', 0);
PRAGMA user_version = 1;
`;

const COLUMNS = 'user, seq, id, type, is_binary, data, created_at, expires_at';

/** A user's recent_ids rows past the window are deleted when their seq is a multiple of this. */
const FORGET_EVERY = 32;

export interface SqliteStoreOptions extends StoreOptions {
  /** Run PRAGMA quick_check when opening (refuses a damaged file). Default true. */
  integrityCheck?: boolean;
}

const CORRUPT_HINT =
  ' (if the file is damaged: stop Pylon, move the file aside or restore it from a backup, and start again; ' +
  'a damaged file is never written to)';

/** Refuses a damaged file before anything is written to it. */
function checkIntegrity(db: Database.Database, where: string): void {
  let problems: string[];
  try {
    const rows = db.pragma('quick_check(20)') as Array<{ quick_check: string }>;
    problems = rows.map((r) => r.quick_check).filter((p) => p !== 'ok');
  } catch (err) {
    problems = [(err as Error).message];
  }
  if (problems.length > 0) {
    throw new Error(
      `${where} failed its integrity check (PRAGMA quick_check): ${problems.slice(0, 3).join('; ')}${CORRUPT_HINT}; ` +
        'to start without the check (not advised): --no-store-check, or store-check: false in the config file',
    );
  }
}

interface Row {
  seq: number;
  id: string;
  type: string;
  is_binary: number;
  data: string | Buffer;
  created_at: number;
  expires_at: number;
}

interface DeadRow extends Row {
  user: string;
  reason: DeadReason;
  dead_at: number;
}

/**
 * A MessageStore in one SQLite file (better-sqlite3). Reads run synchronously inside the
 * returned promise's executor; appends and acks of one event-loop turn are committed together
 * (GroupCommit: one transaction per turn, a savepoint per write, each promise settled after the
 * commit), other writes each in one transaction, so the file is always consistent.
 *
 * Several processes may share the file (the workers of `pylon start --workers N`, and two
 * generations of them during a reload): every write transaction is BEGIN IMMEDIATE, so it takes
 * the write lock first and waits for it (busy_timeout, 5 s). A deferred one that reads before it
 * writes (append looks up recent ids first) fails at once with "database is locked" when another
 * process committed in between: SQLite cannot upgrade a stale read snapshot, and does not wait.
 *
 * WAL with synchronous = NORMAL: a committed transaction is in the WAL before `append` resolves,
 * so it survives a crash or SIGKILL of this process; only a crash of the OS or a power loss
 * before the next checkpoint can lose the last transactions (FULL would fsync every commit).
 */
export class SqliteStore implements MessageStore {
  private readonly maxPerUser: number;
  private readonly maxDeadLetters: number;
  private readonly s: ReturnType<typeof prepare>;
  private readonly dedupeWindow: number;
  /** Label histories, in the same file. */
  readonly history: HistoryLog;
  /** Resume sessions and journals, in the same file. */
  readonly sessions: SessionLog;
  /** Bans and revocations, in the same file. */
  readonly denials: DenialLog;
  /** The statements of an append and an ack, run in a transaction by `group`. */
  private readonly appendRows: (users: readonly string[], message: NewMessage) => number[];
  private readonly ackRows: (user: string, uptoSeq: number) => number;
  private readonly buryTx: (user: string, seq: number, reason: DeadReason, now: number) => void;
  private readonly expireTx: (now: number) => number;
  /** Appends and acks of one event-loop turn, in one transaction. */
  private readonly group: GroupCommit;

  private constructor(
    private readonly db: Database.Database,
    options: StoreOptions,
  ) {
    this.maxPerUser = Math.max(1, options.maxPerUser ?? DEFAULT_MAX_PER_USER);
    this.maxDeadLetters = Math.max(0, options.maxDeadLetters ?? DEFAULT_MAX_DEAD_LETTERS);
    this.dedupeWindow = Math.max(1, options.dedupeWindow ?? DEFAULT_DEDUPE_WINDOW);
    const s = prepare(db);
    this.s = s;
    this.history = new SqliteHistory(db);
    this.sessions = new SqliteSessions(db);
    this.denials = new SqliteDenials(db);
    // The inbox counter changes once per transaction, by what its appends and acks added up to.
    let delta = 0;
    this.group = new GroupCommit(db, {
      begin: () => {
        delta = 0;
      },
      end: () => {
        if (delta !== 0) s.addCounter.run(delta, 'messages');
      },
    });
    const window = this.dedupeWindow;

    this.appendRows = (users: readonly string[], m: NewMessage): number[] => {
      const isBinary = m.data instanceof Uint8Array ? 1 : 0;
      const data = encodeData(m.data);
      const seqs: number[] = [];
      let moved = 0;
      let lastDead = 0;
      let fresh = 0;
      for (const user of users) {
        const had = s.recentId.get(user, m.id, window) as { seq: number } | undefined;
        if (had !== undefined) {
          seqs.push(had.seq);
          continue;
        }
        // An UPDATE then a SELECT: 4-5x cheaper than one upsert with RETURNING (measured).
        let seq = 1;
        let pending = 1;
        if (s.bumpUser.run(user).changes === 0) s.newUser.run(user);
        else ({ last_seq: seq, pending } = s.userRow.get(user) as { last_seq: number; pending: number });
        s.insert.run(user, seq, m.id, m.type, isBinary, data, m.createdAt, m.expiresAt);
        s.rememberId.run(user, m.id, seq);
        // Ids past the window are not matched (recentId); their rows go every FORGET_EVERY seqs.
        if (seq % FORGET_EVERY === 0) s.forgetIds.run(user, seq - window);
        seqs.push(seq);
        fresh++;
        const over = pending - this.maxPerUser;
        if (over > 0) {
          // The oldest `over` rows go, stamped with the push's own time.
          const cutoff = (s.nthSeq.get(user, over - 1) as { seq: number }).seq;
          const info = s.buryUpTo.run('overflow', m.createdAt, user, cutoff);
          s.deleteUpTo.run(user, cutoff);
          s.addPending.run(-info.changes, user);
          moved += info.changes;
          lastDead = Number(info.lastInsertRowid);
        }
      }
      delta += fresh - moved;
      if (moved > 0) this.movedAside(moved, lastDead);
      return seqs;
    };

    this.ackRows = (user: string, uptoSeq: number): number => {
      const n = s.deleteUpTo.run(user, uptoSeq).changes;
      if (n > 0) {
        s.addPending.run(-n, user);
        delta -= n;
      }
      return n;
    };

    this.buryTx = immediate(db, (user: string, seq: number, reason: DeadReason, now: number): void => {
      const info = s.buryOne.run(reason, now, user, seq);
      if (info.changes === 0) return;
      s.deleteOne.run(user, seq);
      s.addPending.run(-1, user);
      s.addCounter.run(-1, 'messages');
      this.movedAside(1, Number(info.lastInsertRowid));
    });

    this.expireTx = immediate(db, (now: number): number => {
      const perUser = s.expiredPerUser.all(now) as { user: string; n: number }[];
      if (perUser.length === 0) return 0;
      const info = s.buryExpired.run(now, now);
      s.deleteExpired.run(now);
      for (const { user, n } of perUser) s.addPending.run(-n, user);
      s.addCounter.run(-info.changes, 'messages');
      this.movedAside(info.changes, Number(info.lastInsertRowid));
      return info.changes;
    });
  }

  /**
   * Opens (creating it and its directory if needed) the store at `path`, and checks the file
   * (PRAGMA quick_check, O(size of the file): `integrityCheck: false` skips it for huge files).
   * Every failure throws an Error that names the file and says what to do.
   */
  static open(path: string, options: SqliteStoreOptions = {}): SqliteStore {
    const where = `sqlite store ${path}`;
    if (path !== ':memory:' && path !== '') {
      try {
        makeDir(dirname(path));
      } catch (err) {
        throw new Error(`${where}: ${(err as Error).message}; choose a path in a writable directory`, {
          cause: err,
        });
      }
    }
    let db: Database.Database;
    try {
      db = new Database(path);
    } catch (err) {
      throw new Error(`${where}: cannot open the file: ${(err as Error).message}`, { cause: err });
    }
    try {
      db.pragma('busy_timeout = 5000');
      // Several processes (the workers of one server) open the file at once: switching it to WAL
      // can answer SQLITE_BUSY at once instead of waiting, so the opening is tried again.
      for (let attempt = 0; ; attempt++) {
        try {
          // Before anything writes to the file.
          if (options.integrityCheck !== false) checkIntegrity(db, where);
          db.pragma('journal_mode = WAL');
          // Durable against a crash of the process (SIGKILL included), not of the OS: see the class doc.
          db.pragma('synchronous = NORMAL');
          db.exec(SCHEMA);
          break;
        } catch (err) {
          if ((err as { code?: string }).code !== 'SQLITE_BUSY' || attempt >= 50) throw err;
          sleepSync(100);
        }
      }
      return new SqliteStore(db, options);
    } catch (err) {
      db.close();
      if ((err as Error).message.startsWith(where)) throw err;
      throw new Error(`${where}: ${(err as Error).message}${CORRUPT_HINT}`, { cause: err });
    }
  }

  async append(users: readonly string[], message: NewMessage): Promise<number[]> {
    if (users.length === 0) return [];
    return this.group.run(() => this.appendRows(users, message));
  }

  async pending(user: string, afterSeq: number, limit: number, now: number): Promise<StoredMessage[]> {
    if (this.group.waiting) this.group.flush(); // a read or write sees this turn's appends and acks
    if (limit <= 0) return [];
    const rows = this.s.pending.all(user, afterSeq, now, Math.floor(limit)) as Row[];
    return rows.map(toStored);
  }

  async ack(user: string, uptoSeq: number): Promise<number> {
    return this.group.run(() => this.ackRows(user, uptoSeq));
  }

  async lastSeq(user: string): Promise<number> {
    if (this.group.waiting) this.group.flush(); // a read or write sees this turn's appends and acks
    const row = this.s.lastSeq.get(user) as { last_seq: number } | undefined;
    return row?.last_seq ?? 0;
  }

  async bury(user: string, seq: number, reason: DeadReason, now: number): Promise<void> {
    if (this.group.waiting) this.group.flush(); // a read or write sees this turn's appends and acks
    this.buryTx(user, seq, reason, now);
  }

  async expire(now: number): Promise<number> {
    if (this.group.waiting) this.group.flush(); // a read or write sees this turn's appends and acks
    return this.expireTx(now);
  }

  async deadLetters(limit: number): Promise<DeadLetter[]> {
    if (limit <= 0) return [];
    const rows = this.s.deadLetters.all(Math.floor(limit)) as DeadRow[];
    return rows.map((r) => ({ ...toStored(r), user: r.user, reason: r.reason, deadAt: r.dead_at }));
  }

  async stats(): Promise<StoreStats> {
    const rows = this.s.counters.all() as { name: string; value: number }[];
    const get = (name: string) => rows.find((r) => r.name === name)?.value ?? 0;
    return { messages: get('messages'), deadLetters: get('dead_letters') };
  }

  async close(): Promise<void> {
    this.group.flush();
    if (this.db.open) this.db.close();
  }

  /** Counts `n` rows just moved aside; the newest has dead_letters.n = `last`. Trims the table. */
  private movedAside(n: number, last: number): void {
    this.s.addCounter.run(n, 'dead_letters');
    this.s.trimDead.run(last - this.maxDeadLetters);
  }
}

function prepare(db: Database.Database) {
  const toDead = `INSERT INTO dead_letters (${COLUMNS}, reason, dead_at) SELECT ${COLUMNS}, ?, ? FROM inbox`;
  return {
    bumpUser: db.prepare('UPDATE users SET last_seq = last_seq + 1, pending = pending + 1 WHERE user = ?'),
    newUser: db.prepare('INSERT INTO users (user, last_seq, pending) VALUES (?, 1, 1)'),
    userRow: db.prepare('SELECT last_seq, pending FROM users WHERE user = ?'),
    insert: db.prepare(`INSERT INTO inbox (${COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`),
    // An id among the user's last `window` appends (rows past it may wait for forgetIds).
    recentId: db.prepare(
      `SELECT r.seq FROM recent_ids r JOIN users u ON u.user = r.user
       WHERE r.user = ? AND r.id = ? AND r.seq > u.last_seq - ?`,
    ),
    rememberId: db.prepare('INSERT OR REPLACE INTO recent_ids (user, id, seq) VALUES (?, ?, ?)'),
    // Scans the user's rows (fewer than dedupeWindow + FORGET_EVERY): no index on seq to keep up.
    forgetIds: db.prepare('DELETE FROM recent_ids WHERE user = ? AND seq <= ?'),
    nthSeq: db.prepare('SELECT seq FROM inbox WHERE user = ? ORDER BY seq LIMIT 1 OFFSET ?'),
    buryUpTo: db.prepare(`${toDead} WHERE user = ? AND seq <= ? ORDER BY seq`),
    deleteUpTo: db.prepare('DELETE FROM inbox WHERE user = ? AND seq <= ?'),
    buryOne: db.prepare(`${toDead} WHERE user = ? AND seq = ?`),
    deleteOne: db.prepare('DELETE FROM inbox WHERE user = ? AND seq = ?'),
    expiredPerUser: db.prepare('SELECT user, count(*) AS n FROM inbox WHERE expires_at < ? GROUP BY user'),
    buryExpired: db.prepare(
      `INSERT INTO dead_letters (${COLUMNS}, reason, dead_at) SELECT ${COLUMNS}, 'expired', ? FROM inbox
       WHERE expires_at < ? ORDER BY expires_at, user, seq`,
    ),
    deleteExpired: db.prepare('DELETE FROM inbox WHERE expires_at < ?'),
    addPending: db.prepare('UPDATE users SET pending = pending + ? WHERE user = ?'),
    addCounter: db.prepare('UPDATE counters SET value = value + ? WHERE name = ?'),
    trimDead: db.prepare('DELETE FROM dead_letters WHERE n <= ?'),
    pending: db.prepare(
      `SELECT seq, id, type, is_binary, data, created_at, expires_at FROM inbox
       WHERE user = ? AND seq > ? AND expires_at >= ? ORDER BY seq LIMIT ?`,
    ),
    lastSeq: db.prepare('SELECT last_seq FROM users WHERE user = ?'),
    deadLetters: db.prepare(`SELECT ${COLUMNS}, reason, dead_at FROM dead_letters ORDER BY n DESC LIMIT ?`),
    counters: db.prepare('SELECT name, value FROM counters'),
  };
}

/** Uint8Array -> its bytes (BLOB); anything else -> JSON text (undefined is stored as null). */
function encodeData(data: unknown): string | Buffer {
  if (data instanceof Uint8Array) return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  return JSON.stringify(data) ?? 'null';
}

function toStored(r: Row): StoredMessage {
  const data = r.is_binary === 1 ? new Uint8Array(r.data as Buffer) : JSON.parse(String(r.data));
  return {
    seq: r.seq,
    id: r.id,
    type: r.type,
    data,
    createdAt: r.created_at,
    expiresAt: r.expires_at,
  };
}

/** `fn` as a transaction that begins with BEGIN IMMEDIATE (see the class comment). */
function immediate<A extends unknown[], R>(db: Database.Database, fn: (...args: A) => R): (...args: A) => R {
  const tx = db.transaction(fn);
  return (...args: A) => tx.immediate(...args);
}

/** Blocks the thread for `ms` (only while a store is opened, at start). */
function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}
