/** How long after a failed store call the gateway reports the store as failing (ms). */
export const STORE_FAILURE_WINDOW = 30_000;

export interface StoreHealthStatus {
  /** No store call failed in the last 30 s. */
  ok: boolean;
  /** Store calls that failed since the start. */
  errors: number;
  /** The last failure's message, while `ok` is false. */
  error?: string;
}

/**
 * Whether the message store works, as seen by the calls delivery makes (append, pending, ack,
 * bury, and the expiry sweep once a minute, which doubles as a probe). A damaged SQLite file
 * or an unreachable Redis shows here, in /healthz (503) and in pylon_store_up.
 */
export class StoreHealth {
  errors = 0;
  private lastError = '';
  private lastErrorAt = -Infinity;

  failed(err: unknown): void {
    this.errors++;
    this.lastError = err instanceof Error ? err.message : String(err);
    this.lastErrorAt = Date.now();
  }

  status(now = Date.now()): StoreHealthStatus {
    if (now - this.lastErrorAt > STORE_FAILURE_WINDOW) return { ok: true, errors: this.errors };
    return { ok: false, errors: this.errors, error: this.lastError };
  }
}
