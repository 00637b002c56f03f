/** A dropped connection's session as a durable store keeps it, to be resumed after a restart or on another node. */
export interface StoredSession {
  id: string;
  user: string | undefined;
  /** Added by the application (conn.join, updateUserLabels). */
  labels: string[];
  /** Subscribed by the client (`sub`). */
  subscribed: string[];
  /** The id of the connection that dropped (pushes to it in the journal are replayed too). */
  connection: string;
  /** The qos-0 journal it was saved against (its epoch), and the position there it had been sent up to. */
  epoch: string;
  pos: number;
  /** ms since the epoch, when it was saved (a gateway with another journal replays what it recorded after). */
  at: number;
}

/**
 * Resume sessions, and the state a gateway leaves for its next run, in a durable store (SQLite,
 * Redis): a client comes back after the gateway restarted, or through another gateway of the
 * store, with its labels, and with the pushes it missed where the journal it was saved against
 * is still known; checks of unacknowledged qos-1 messages go on after a clean restart.
 *
 * Bounds: a session is kept for the `ttl` it was saved with (the resume window), and on SQLite
 * at most DEFAULT_MAX_STORED_SESSIONS of them (the soonest to expire go first; on Redis the
 * expiries and each gateway's own bounds hold them); a state for its `ttl`, one per name.
 */
export interface SessionLog {
  /** Keep these sessions for `ttlMs` (a session saved again replaces the earlier copy). */
  save(sessions: readonly StoredSession[], ttlMs: number): Promise<void>;
  /** Remove session `id` and return it, once: a second take, or one after its ttl, gets undefined. */
  take(id: string): Promise<StoredSession | undefined>;
  /** Forget these sessions (pushed out of a gateway's bounds). */
  remove(ids: readonly string[]): Promise<void>;
  /** Leave `snapshot` under `name` for `ttlMs` (a gateway stopping cleanly; a later put replaces it). */
  putState(name: string, snapshot: Uint8Array, ttlMs: number): Promise<void>;
  /** Remove and return the snapshot under `name`, once (the gateway's next run). */
  takeState(name: string): Promise<Uint8Array | undefined>;
}

/** Sessions a durable store keeps at most (the oldest go first). Default 1,000,000 (~300 bytes each). */
export const DEFAULT_MAX_STORED_SESSIONS = 1_000_000;

export function encodeSession(s: StoredSession): string {
  return JSON.stringify([s.user ?? null, s.labels, s.subscribed, s.connection, s.epoch, s.pos, s.at]);
}

export function decodeSession(id: string, text: string): StoredSession | undefined {
  try {
    const [user, labels, subscribed, connection, epoch, pos, at] = JSON.parse(text) as [
      string | null,
      string[],
      string[],
      string,
      string,
      number,
      number,
    ];
    return { id, user: user ?? undefined, labels, subscribed, connection, epoch, pos, at };
  } catch {
    return undefined;
  }
}
