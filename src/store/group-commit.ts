import type Database from 'better-sqlite3';

interface Op {
  fn: () => unknown;
  resolve: (v: unknown) => void;
  reject: (err: unknown) => void;
  value: unknown;
}

/** Writes gathered into one transaction at most (then it commits and a new one starts). */
const MAX_OPS = 2000;

/**
 * Group commit: the writes of one event-loop turn (appends and acks from every connection and
 * push of that turn) run in one BEGIN IMMEDIATE transaction, committed before the next turn's.
 * Every promise settles only after the COMMIT: a write that resolved is in the WAL, as when each
 * had its own transaction (durability unchanged), for one commit per turn instead of one per
 * write. If one write throws, the whole transaction is rolled back and each write runs again in
 * a transaction of its own, so only the failing one fails (no savepoint per write on the way
 * that matters: they cost as much as the writes).
 */
export class GroupCommit {
  private ops: Op[] = [];
  private scheduled = false;
  /** The last batch failed in one of its writes (not in BEGIN or COMMIT). */
  private opFailed = false;
  private readonly tx: Database.Transaction<(ops: Op[]) => void>;
  private readonly one: Database.Transaction<(op: Op) => void>;

  /**
   * `turn`: what the writes of a transaction gather and write once at its end (the store's
   * counters): `begin` forgets what a rolled-back transaction gathered, `end` writes it, inside
   * the transaction.
   */
  constructor(
    private readonly db: Database.Database,
    turn?: { begin: () => void; end: () => void },
  ) {
    this.tx = db.transaction((ops: Op[]) => {
      turn?.begin();
      for (const op of ops) {
        try {
          op.value = op.fn();
        } catch (err) {
          this.opFailed = true;
          throw err;
        }
      }
      turn?.end();
    });
    this.one = db.transaction((op: Op) => {
      turn?.begin();
      op.value = op.fn();
      turn?.end();
    });
  }

  /** Runs `fn` (a write: statements only, no transaction of its own) in this turn's transaction. */
  run<T>(fn: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.ops.push({ fn, resolve: resolve as (v: unknown) => void, reject, value: undefined });
      if (this.ops.length >= MAX_OPS) this.flush();
      else if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => {
          this.scheduled = false;
          this.flush();
        });
      }
    });
  }

  /** Whether writes wait for this turn's commit (a read must not run before them). */
  get waiting(): boolean {
    return this.ops.length > 0;
  }

  /** Commits what is gathered: before the file is closed, and before a read or another write. */
  flush(): void {
    const ops = this.ops;
    if (ops.length === 0) return;
    this.ops = [];
    if (!this.db.open) {
      for (const op of ops) op.reject(new TypeError('The database connection is not open'));
      return;
    }
    this.opFailed = false;
    try {
      this.tx.immediate(ops);
      for (const op of ops) op.resolve(op.value);
      return;
    } catch (err) {
      // BEGIN or COMMIT failed (the file is locked past busy_timeout, the disk is full): none is stored.
      if (!this.opFailed) {
        for (const op of ops) op.reject(err);
        return;
      }
      // One write threw: rolled back, nothing of it stored; each write again on its own.
    }
    for (const op of ops) {
      try {
        this.one.immediate(op);
        op.resolve(op.value);
      } catch (err) {
        op.reject(err);
      }
    }
  }
}
