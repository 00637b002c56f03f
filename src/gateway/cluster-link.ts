import type { Target } from '../hub/member.js';
import type { Logger } from '../log/logger.js';
import type { MessageStore } from '../store/store.js';
import type { WheelTimer } from '../timer/wheel.js';
import type { Denial } from './denials.js';
import type { GatewayAddresses, GatewayStats, HandedSession, PushOptions } from './types.js';

/**
 * What one gateway runs on the connections it holds, and what crosses to the other nodes of a
 * cluster: the node that accepts an operation runs it here (`ClusterNode.run`) and hands it to
 * its adapter, which carries it to the nodes it concerns; they run the same operation. One
 * variant per cross-node operation, one case in `run`: nothing else to add.
 */
export type Operation =
  /** A push: user targets narrowed to the users of the node that runs it. */
  | { op: 'push'; id: string; target: Target; type: string; data: unknown; options: PushOptions }
  /** Close the connections of a user, or one connection. */
  | { op: 'kick'; target: { user: string } | { connection: string }; reason?: string }
  /** Change the labels of the connections of a user. */
  | { op: 'labels'; user: string; change: { add?: string[]; remove?: string[] } }
  /** A ban or revocation added (it is in the store already), or one lifted (`remove`: its key). Every node. */
  | { op: 'deny'; add?: Denial; remove?: string }
  /** Messages a client POSTed at another node for its HTTP session here (one POST's, in order). */
  | { op: 'post'; session: string; messages: Uint8Array[] };

/**
 * The adapter a gateway runs its operations through (the shape of socket.io's adapter and
 * centrifuge's broker). Without the `cluster` option the gateway uses a local adapter: nothing
 * to carry. A cluster (src/cluster) learns from the node which labels and users it holds
 * (`watchLabels`, `watchUsers`) and carries each operation only to the nodes that hold its
 * target: label pushes to the nodes with members of the label, user operations to the user's
 * nodes, `{all: true}` to every node.
 */
export interface ClusterLink {
  /** Called once by the gateway's constructor. */
  attach(node: ClusterNode): void;
  /**
   * An operation this node accepted and has run on its own connections (a qos-1 push is stored
   * already): carry it to the other nodes it concerns. Rejects with PylonError UNAVAILABLE when
   * a qos-0 operation could not leave this node.
   */
  publish(op: Operation): Promise<void>;
  /** The keys pushes are made idempotent with, shared by every node (see IdempotencyKeys). */
  readonly keys?: IdempotencyKeys;
  /** Called by gateway.close(). */
  detach(): Promise<void>;
  /**
   * This node is going away (a reload drains it, or a stop): hand its sessions to the other
   * nodes, which call `node.adoptSessions` so that its clients resume there. Optional.
   */
  handOffSessions?(sessions: HandedSession[]): Promise<void>;
}

/**
 * Keys that make a push idempotent: the first caller of a key claims it for `ttlMs`; later
 * callers within that window get what the first one settled (or its claim, while it runs).
 */
export interface IdempotencyKeys {
  /** Claims `key` with `value`; resolves undefined if claimed now, else the value already there. */
  claim(key: string, value: string, ttlMs: number): Promise<string | undefined>;
  /** Replaces the claimed value (the outcome), keeping the key for `ttlMs` from now. */
  settle(key: string, value: string, ttlMs: number): Promise<void>;
  /** Forgets a claim whose push failed, so that a retry can go through. */
  release(key: string): Promise<void>;
}

/**
 * The gateway as its cluster sees it: what the cluster may ask of the node it is attached to,
 * and nothing else (not the Gateway class). The gateway implements it with an internal object.
 */
export interface ClusterNode {
  /** This gateway's id: the prefix of its connection ids. */
  readonly nodeId: string;
  /** Wall-clock start (ms since the epoch). */
  readonly startedAt: number;
  readonly logger: Logger;
  /** Where qos-1 messages wait (every node of a cluster must reach the same one). */
  readonly store: MessageStore;
  /** The listeners' addresses, once listening. */
  readonly addresses: GatewayAddresses;
  /** Stopped accepting (a reload or a stop drains it). */
  readonly draining: boolean;
  stats(): GatewayStats;
  /** Open connections per label. */
  labelCounts(): Map<string, number>;
  online(user: string): boolean;
  /** Users with an open connection on this node. */
  localUsers(): Set<string>;
  /** Calls `listener` with the user of each connection that opens or closes. Returns the unsubscribe. */
  watchUsers(listener: (user: string) => void): () => void;
  /**
   * Calls `listener` with each label that gets its first member on this node (`present` true)
   * or loses its last (false). One listener. Returns the unsubscribe.
   */
  watchLabels(listener: (label: string, present: boolean) => void): () => void;
  after(ms: number, fn: () => void): WheelTimer;
  every(ms: number, fn: () => void): WheelTimer;
  /** Run an operation another node accepted, on this node's connections. */
  run(op: Operation): Promise<void>;
  /** Sessions another node handed over as it went away. */
  adoptSessions(sessions: readonly HandedSession[]): void;
  /**
   * New qos-1 messages for `user` were stored elsewhere: send them to this node's connections
   * (`trace`: the push they are for and its traceparent, when it is traced).
   */
  notify(user: string, trace?: { push: string; traceparent: string }): void;
}
