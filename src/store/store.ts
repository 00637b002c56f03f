import type { DenialLog } from './denial-log.js';
import type { HistoryLog } from './history-log.js';
import type { SessionLog } from './session-log.js';
/**
 * Durable per-user inboxes for qos-1 pushes (store-then-send). One interface, several backends
 * (memory, sqlite, redis) that pass one conformance suite (test/conformance/).
 *
 * Guarantees every implementation gives:
 * - `append` assigns the user's next seq: strictly increasing per user, never reused, also
 *   across restarts of a durable store; a message is durable once `append` has resolved.
 * - `append` is idempotent per (user, message id): appending an id the user already got returns
 *   the seq it got then and stores nothing (no new seq, no second copy in `pending`, no overflow,
 *   stats unchanged), also if that message was acked, expired or moved aside since, as long as
 *   fewer than `dedupeWindow` newer messages were appended for that user after it. Past that
 *   the id is forgotten and an append of it is a new message. One call may mix users for whom
 *   the id is new with users for whom it is a repeat. So the gateways of a cluster that each
 *   append one push for a user connected to several of them, and a command re-sent across a
 *   reconnection or a failover, give the user one seq. Memory for this is bounded: at most
 *   `dedupeWindow` ids per user.
 * - `pending` returns unacked, unexpired messages in seq order.
 * - acks are cumulative: `ack(user, n)` removes every message of that user with seq <= n.
 * - messages past their TTL, and the oldest messages of a user over the per-user cap, are moved
 *   aside (dead letters, with a reason) and counted, never silently lost.
 */
export interface StoredMessage {
  /** The user's sequence number, from 1. */
  seq: number;
  /** The push's id (the same for every user of one push). */
  id: string;
  type: string;
  /** A JSON-compatible value, or a Uint8Array. */
  data: unknown;
  /** ms since the epoch. */
  createdAt: number;
  /** ms since the epoch; the message is dead after it. */
  expiresAt: number;
}

export interface NewMessage {
  id: string;
  type: string;
  data: unknown;
  createdAt: number;
  expiresAt: number;
}

export type DeadReason = 'expired' | 'overflow' | 'redelivery_cap';

export interface DeadLetter extends StoredMessage {
  user: string;
  reason: DeadReason;
  /** ms since the epoch. */
  deadAt: number;
}

export interface StoreStats {
  /** Messages waiting in inboxes (not acked, not dead). */
  messages: number;
  /** Messages moved aside since the store was created (durable stores: ever). */
  deadLetters: number;
}

export interface MessageStore {
  /**
   * Label histories kept in this store (SQLite and Redis): then `$history` survives restarts and
   * is shared by the gateways of the store. Absent: histories live in each gateway's memory.
   */
  readonly history?: HistoryLog;
  /**
   * Resume sessions and the qos-0 journal kept in this store (SQLite and Redis): then a client
   * resumes after a restart of the gateway, or through another gateway of the store. Absent:
   * sessions live in each gateway's memory.
   */
  readonly sessions?: SessionLog;
  /**
   * Bans and token revocations kept in this store (SQLite and Redis): then every gateway of the
   * store refuses the same users and tokens, after a restart too. Absent: each gateway's memory.
   */
  readonly denials?: DenialLog;
  /**
   * Store one message for each user, in one atomic step per user (one transaction for the batch
   * where the backend allows). Returns each user's seq, in the order of `users`: a new one, or,
   * for a user who already got `message.id` within the dedupe window (or who is listed twice),
   * the seq of that first append, with nothing stored for them.
   * A user over `maxPerUser` has its oldest messages moved aside as "overflow".
   */
  append(users: readonly string[], message: NewMessage): Promise<number[]>;
  /** Up to `limit` messages of `user` with seq > `afterSeq`, not acked, not expired at `now`, in seq order. */
  pending(user: string, afterSeq: number, limit: number, now: number): Promise<StoredMessage[]>;
  /** Cumulative ack: removes the user's messages with seq <= `uptoSeq`. Returns how many were removed. */
  ack(user: string, uptoSeq: number): Promise<number>;
  /** The highest seq ever assigned to `user` (0 if none). */
  lastSeq(user: string): Promise<number>;
  /** Move one message aside (e.g. it hit the redelivery cap). No-op if it is gone. */
  bury(user: string, seq: number, reason: DeadReason, now: number): Promise<void>;
  /** Move every message past its expiry at `now` aside as "expired". Returns how many. */
  expire(now: number): Promise<number>;
  /** The most recent dead letters, newest first (for operators). */
  deadLetters(limit: number): Promise<DeadLetter[]>;
  stats(): Promise<StoreStats>;
  close(): Promise<void>;
}

export interface StoreOptions {
  /** Most messages kept per user; older ones are moved aside as "overflow". Default 10,000. */
  maxPerUser?: number;
  /** Most dead letters kept (oldest are deleted, still counted). Default 100,000. */
  maxDeadLetters?: number;
  /**
   * Message ids remembered per user to make `append` idempotent: a repeat is recognised while
   * fewer than this many newer messages were appended for that user. Memory: this many ids per
   * user at most. Default 1,000.
   */
  dedupeWindow?: number;
}
