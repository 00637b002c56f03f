import { type ChainableCommander, Cluster } from 'ioredis';
import type { RedisClient } from '../util/redis.js';
import type { NewMessage } from './store.js';

export type Arg = string | number | Buffer;

/** One call's promise, settled with its own reply. */
interface Waiter {
  resolve: (v: number) => void;
  reject: (err: unknown) => void;
}

/** What one bucket's script runs this turn (see the store's pylonTurn). */
class Batch {
  /** Per message: packed expiresAt createdAt id. */
  readonly messages: Arg[] = [];
  /** Each message's number (1-based), by its packed bytes (a push to many users packs once). */
  readonly messageOf = new Map<Buffer, number>();
  /** Per append: user message. */
  readonly appends: Arg[] = [];
  readonly appendWaiters: Waiter[] = [];
  /** Per ack: user uptoSeq; one per user (a later ack of the user raises its seq). */
  readonly acks: Arg[] = [];
  readonly ackWaiters: Waiter[] = [];
  readonly ackOf = new Map<string, number>();
  /** The later acks of a user in this turn, by its ack's index: settled with it, removing nothing more. */
  readonly ackLater = new Map<number, Waiter[]>();

  get calls(): number {
    return this.appendWaiters.length + this.ackWaiters.length;
  }
}

/** Calls in one script at most; more in the same turn go in a second one, sent after it. */
const MAX_CALLS = 1000;

/**
 * Replies after which a call is sent again (every call of a turn is idempotent: an append by
 * (user, message id), an ack cumulative): the slot moved or is moving, the cluster is failing
 * over or down, or the connection was lost with the reply. ioredis follows these by itself for
 * single commands and for a pipeline whose commands all failed alike, not for a pipeline with a
 * WAIT at its end (WAIT answers where the scripts were redirected).
 */
export const RETRIABLE =
  /^(?:MOVED|ASK|TRYAGAIN|CLUSTERDOWN|LOADING|READONLY|MASTERDOWN) |^Connection is closed|^Command aborted due to connection close/;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface TurnOptions {
  /** The store's bounds, passed to the script. */
  maxPerUser: number;
  maxDead: number;
  /** Appends an id is remembered for (an append of a remembered id stores nothing). */
  window: number;
  /** Replicas that must confirm a turn's appends (WAIT at the end of its pipeline); 0: none. */
  waitReplicas: number;
  waitTimeout: number;
  /** ms a call may take, re-sends included (plus waitTimeout when it waits for replicas). */
  timeout: number;
  /** The store was closed: nothing is sent again. */
  closed: () => boolean;
  /** `p`, or a rejection at `deadline` (the store's bound on a cluster's own waits). */
  within: <T>(p: Promise<T>, deadline: number) => Promise<T>;
}

/**
 * Group commit for Redis: the appends and acks of one event-loop turn, from every push and every
 * connection, run in Redis as one script per bucket (pylonTurn), in call order, instead of a
 * script per user of each push and one per ack: one command to encode, one write and one reply
 * on the connection to that bucket's master. Each append is still atomic per user as before, and
 * each call settles with its own part of the reply after Redis ran it. Acks of one user in a turn
 * become one (the highest seq; acks are cumulative). With `waitReplicas`, the script is followed
 * by WAIT in the same pipeline and its appends resolve only once that many replicas confirmed
 * (durability unchanged).
 *
 * Every call is idempotent (an append by user and message id, an ack cumulative), so a turn whose
 * reply was lost is sent again whole. A script that fails part-way (out of memory) has kept the
 * writes before the failure, like a crash between two per-user scripts did: its calls reject and
 * may be retried.
 *
 * A read (pending, lastSeq) first sends what the turn holds, so it comes after those writes on
 * the connection, as it did when each write was sent at once.
 */
export class RedisTurn {
  private byBucket = new Map<string, Batch>();
  private scheduled = false;

  constructor(
    private readonly redis: RedisClient,
    private readonly options: TurnOptions,
  ) {}

  /** Appends `packed` (the message `id`) to `user`'s inbox in `bucket`: resolves with its seq. */
  append(bucket: string, user: string, packed: Buffer, message: NewMessage): Promise<number> {
    return new Promise((resolve, reject) => {
      const b = this.batch(bucket);
      let m = b.messageOf.get(packed);
      if (m === undefined) {
        b.messages.push(packed, message.expiresAt, message.createdAt, message.id);
        m = b.messages.length / 4;
        b.messageOf.set(packed, m);
      }
      b.appends.push(user, m);
      b.appendWaiters.push({ resolve, reject });
      this.added(bucket, b);
    });
  }

  /** Acks `user`'s messages up to `upto` in `bucket`: resolves with how many were removed. */
  ack(bucket: string, user: string, upto: number): Promise<number> {
    return new Promise((resolve, reject) => {
      const b = this.batch(bucket);
      const k = b.ackOf.get(user);
      if (k !== undefined) {
        // The user's earlier ack this turn takes this one's seq if higher; this one removes nothing more.
        if (upto > (b.acks[k * 2 + 1] as number)) b.acks[k * 2 + 1] = upto;
        const later = b.ackLater.get(k);
        if (later === undefined) b.ackLater.set(k, [{ resolve, reject }]);
        else later.push({ resolve, reject });
        return;
      }
      b.ackOf.set(user, b.ackWaiters.length);
      b.acks.push(user, upto);
      b.ackWaiters.push({ resolve, reject });
      this.added(bucket, b);
    });
  }

  /** Sends what the turn holds now (before a read, and at the end of the turn). */
  flush(): void {
    if (this.byBucket.size === 0) return;
    const all = this.byBucket;
    this.byBucket = new Map();
    for (const [bucket, b] of all) void this.send(bucket, b);
  }

  private batch(bucket: string): Batch {
    let b = this.byBucket.get(bucket);
    if (b === undefined) {
      b = new Batch();
      this.byBucket.set(bucket, b);
    }
    return b;
  }

  private added(bucket: string, b: Batch): void {
    if (b.calls >= MAX_CALLS) {
      this.byBucket.delete(bucket);
      void this.send(bucket, b);
    }
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => {
        this.scheduled = false;
        this.flush();
      });
    }
  }

  /** The batch's script (and WAIT), sent again while the reply says to. */
  private async send(bucket: string, b: Batch): Promise<void> {
    const { waitReplicas, waitTimeout } = this.options;
    const waiting = waitReplicas > 0 && b.appendWaiters.length > 0;
    const deadline = Date.now() + this.options.timeout + (waiting ? waitTimeout : 0);
    const args: Arg[] = [
      `${bucket}expiry`,
      `${bucket}stats`,
      `${bucket}dead`,
      bucket,
      this.options.maxPerUser,
      this.options.maxDead,
      this.options.window,
      waiting ? 1 : 0,
      b.messages.length / 4,
      ...b.messages,
      b.appendWaiters.length,
      ...b.appends,
      b.ackWaiters.length,
      ...b.acks,
    ];
    for (let delay = 50; ; delay = Math.min(delay * 2, 400)) {
      const p = this.redis.pipeline() as ChainableCommander & { pylonTurn(...a: Arg[]): unknown };
      p.pylonTurn(...args);
      // In the same pipeline, so on the connection that ran the script: WAIT counts from its last write.
      if (waiting) p.call('WAIT', waitReplicas, waitTimeout);
      let err: Error | null = null;
      let out: number[] = [];
      try {
        const results = await this.options.within(p.exec(), deadline);
        if (results === null) err = new Error('redis store: pipeline was discarded');
        else {
          const [e, value] = results[0] ?? [new Error('redis store: no reply'), undefined];
          err = e;
          out = value as number[];
          const acked = waiting ? results[1] : undefined;
          if (err === null && acked !== undefined) {
            if (acked[0] !== null) err = acked[0];
            else if (Number(acked[1]) < waitReplicas) {
              // The acks in it are done; its appends are stored but not confirmed.
              this.settleAcks(b, out);
              const short = new Error(
                `redis store: append reached ${Number(acked[1])} of ${waitReplicas} replicas within ${waitTimeout} ms (it may be stored; appending the same id again stores it once)`,
              );
              for (const w of b.appendWaiters) w.reject(short);
              return;
            }
          }
        }
      } catch (e) {
        err = e as Error;
      }
      if (err === null) {
        for (let i = 0; i < b.appendWaiters.length; i++) b.appendWaiters[i]?.resolve(Number(out[i]));
        this.settleAcks(b, out);
        return;
      }
      if (this.options.closed() || !RETRIABLE.test(err.message) || Date.now() + delay >= deadline) {
        for (const w of b.appendWaiters) w.reject(err);
        for (const w of b.ackWaiters) w.reject(err);
        for (const later of b.ackLater.values()) for (const w of later) w.reject(err);
        return;
      }
      if (this.redis instanceof Cluster) this.redis.refreshSlotsCache();
      await sleep(delay);
    }
  }

  private settleAcks(b: Batch, out: number[]): void {
    const from = b.appendWaiters.length;
    for (let i = 0; i < b.ackWaiters.length; i++) b.ackWaiters[i]?.resolve(Number(out[from + i]));
    for (const later of b.ackLater.values()) for (const w of later) w.resolve(0);
  }
}
