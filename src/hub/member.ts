import type { OutFrame } from '../net/out-frame.js';
import type { Codec } from '../protocol/codec.js';

/**
 * A connection as the hub sees it. The hub defines this and the gateway's Connection
 * implements it, so the hub never imports the gateway.
 */
export interface Member {
  readonly id: string;
  /** The authenticated user, or undefined for an anonymous connection. */
  readonly user: string | undefined;
  /** The connection's labels, in the order they were added (undefined: none). */
  readonly labels: readonly string[] | undefined;
  readonly codec: Codec;
  /** Whether the member can still be written to. */
  readonly open: boolean;
  /**
   * Write a prepared push. For qos 0 a member over its high-water mark drops it and returns
   * false; qos 1 is always queued (its delivery is guarded by acks and redelivery).
   */
  deliver(frame: OutFrame, qos: 0 | 1): boolean;
}

/** Who a push is for. */
export type Target =
  | { user: string }
  | { users: string[] }
  | { connection: string }
  | { all: true }
  | { labels: LabelQuery };

/**
 * Label selection: `all` (intersection), `any` (union), `not` (exclusion). A connection matches
 * when it has every `all` label, at least one `any` label (when `any` is given), and no `not`
 * label. At least one of `all` and `any` must be non-empty, or `not` alone selects everyone
 * without those labels.
 */
export interface LabelQuery {
  all?: string[];
  any?: string[];
  not?: string[];
}
