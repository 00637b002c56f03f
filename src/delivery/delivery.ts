import { OutFrame } from '../net/out-frame.js';
import type { Codec } from '../protocol/codec.js';
import type { Envelope } from '../protocol/envelope.js';
import type { MessageStore, NewMessage, StoredMessage } from '../store/store.js';
import type { TimingWheel, WheelTimer } from '../timer/wheel.js';
import type { Qos1Spans } from '../trace/qos1-spans.js';
import { StoreHealth } from './store-health.js';
import type { UndeliveredWatch } from './undelivered.js';

/** A connection as qos-1 delivery sees it (the gateway's Connection implements it). */
export interface Recipient {
  readonly id: string;
  readonly user: string | undefined;
  readonly open: boolean;
  readonly codec: Codec;
  /** Write a prepared frame (qos 1: with its seq); qos 1 is never dropped for backpressure. */
  deliver(frame: OutFrame, qos: 0 | 1, seq?: number): boolean;
  /** Slot owned by the delivery module: this connection's delivery cursor, while it has messages in flight. */
  qos1: Cursor | undefined;
  /** Slot owned by the delivery module: qos 1 is on for this connection (after its welcome). */
  deliveryOn: boolean;
  /**
   * A reader that cannot ack as it reads (a one-way stream): what was written to it stays in
   * flight, not re-sent on a timer, until it acks or comes back with its position.
   */
  readonly noRedelivery?: boolean;
  /**
   * Slot owned by the delivery module: the highest seq written when its cursor was released
   * (everything up to it acked, nothing after it waiting), -1 before. A new cursor starts there,
   * so the next message in sequence goes out without reading the store first.
   */
  qos1Sent: number;
}

export interface DeliveryHost {
  /** The open connections of `user` on this gateway. */
  recipientsOf(user: string): Iterable<Recipient>;
  onError(err: unknown, what: string): void;
}

export interface DeliveryOptions {
  /** Default time a qos-1 message waits for its ack, online or offline (ms). Default 24 h. */
  ttl: number;
  /** First redelivery of an unacked message after this long (ms); doubles each time. Default 10 s. */
  redeliveryBase: number;
  /** Longest wait between redeliveries (ms). Default 5 min. */
  redeliveryMax: number;
  /** Redeliveries of one message before it is moved aside as a dead letter. Default 10. */
  redeliveryCap: number;
  /** Messages sent to one connection and not yet acked, at most. Default 64. */
  window: number;
  /** How often expired messages are swept out of the store (ms). Default 60 s. */
  expireEvery: number;
  /**
   * Users stored (and sent to) per turn of the event loop: a push to more users is stored in
   * batches of this many, yielding between them, so a push to 100,000 users never stalls the
   * process. Default 1000.
   */
  batch: number;
  /**
   * A qos-1 message still unacknowledged this long after its store write is reported once
   * (`undelivered` event and webhook), while someone listens. Default 30 s.
   */
  undeliveredAfter: number;
  /** Messages watched for that at once in the process; more are not watched (counted). Default 200,000. */
  maxWatched: number;
}

export const DEFAULT_DELIVERY: DeliveryOptions = {
  ttl: 24 * 3600_000,
  redeliveryBase: 10_000,
  redeliveryMax: 300_000,
  redeliveryCap: 10,
  window: 64,
  expireEvery: 60_000,
  batch: 1000,
  undeliveredAfter: 30_000,
  maxWatched: 200_000,
};

export interface DeliveryCounters {
  stored: number;
  sent: number;
  redelivered: number;
  acked: number;
  deadLetters: number;
}

interface QueuedPush {
  users: readonly string[];
  message: NewMessage;
  /** Seqs of the users stored so far (the first seqs.length users). */
  seqs: number[];
  resolve(seqs: number[]): void;
  reject(err: unknown): void;
}

/**
 * Per-connection delivery state. Seqs go out on a connection strictly in order (the client's
 * dedup relies on it), never more than `window` unacked at once.
 */
export class Cursor {
  /** Highest seq written on this connection; -1 until the first sync from the store. */
  sent = -1;
  /** Seqs written and not yet acked, ascending. */
  inflight: number[] = [];
  attempts = 0;
  timer: WheelTimer | undefined = undefined;
  syncing = false;
  again = false;
  /** A read of the store failed: the next timer retries it. */
  retrySync = false;
  constructor(
    readonly recipient: Recipient,
    readonly delivery: Delivery,
  ) {}
}

/**
 * qos 1, at least once: store, then send; re-send until acked, with backoff, up to a cap; deliver
 * what waited in the inbox when the user connects. The store is the truth: a message is only
 * forgotten once acked, expired, or buried after the cap ("the client doesn't ack, the data isn't
 * deleted").
 */
export class Delivery {
  readonly counters: DeliveryCounters = { stored: 0, sent: 0, redelivered: 0, acked: 0, deadLetters: 0 };
  /** Failures of the store's calls (what /healthz reports). */
  readonly health = new StoreHealth();
  /** Pushes being stored batch by batch, in call order. */
  private readonly queue: QueuedPush[] = [];
  private readonly sweeper: WheelTimer;
  /** Acked-or-notify (set by the gateway). */
  watch: UndeliveredWatch | undefined;
  /** Spans from each traced message's write to its ack (set by the gateway when tracing is on). */
  spans: Qos1Spans | undefined;

  constructor(
    readonly store: MessageStore,
    private readonly host: DeliveryHost,
    private readonly wheel: TimingWheel,
    readonly options: DeliveryOptions,
  ) {
    this.sweeper = wheel.every(options.expireEvery, sweep, this);
  }

  /**
   * Store one message for each user, then send it to each user's open connections. Resolves
   * once stored for every user: from then on it survives a crash. Returns each user's seq.
   *
   * Ordered per user: pushes are stored in the order they were called. A push to more than
   * `batch` users is stored a batch per event-loop turn; pushes called meanwhile wait behind it
   * (FIFO), so a user's seqs follow the calls. If the store fails part-way, the users of earlier
   * batches keep the message and the call rejects saying how many were stored.
   */
  push(
    users: readonly string[],
    message: Omit<NewMessage, 'createdAt' | 'expiresAt'>,
    ttl?: number,
  ): Promise<number[]> {
    const now = Date.now();
    const m: NewMessage = { ...message, createdAt: now, expiresAt: now + (ttl ?? this.options.ttl) };
    if (this.queue.length === 0 && users.length <= this.options.batch) return this.store1(users, m);
    return new Promise<number[]>((resolve, reject) => {
      this.queue.push({ users, message: m, seqs: [], resolve, reject });
      if (this.queue.length === 1) void this.drainQueue();
    });
  }

  /** Stores one batch and sends it. */
  private async store1(users: readonly string[], m: NewMessage): Promise<number[]> {
    let seqs: number[];
    try {
      seqs = await this.store.append(users, m);
    } catch (err) {
      this.health.failed(err);
      throw err;
    }
    this.counters.stored += seqs.length;
    this.watch?.track(m.id, users, seqs);
    for (let i = 0; i < users.length; i++) {
      const seq = seqs[i] as number;
      const stored: StoredMessage = { ...m, seq };
      for (const r of this.host.recipientsOf(users[i] as string)) this.offer(r, stored);
    }
    return seqs;
  }

  /** Stores the queued pushes in order, a batch per event-loop turn. */
  private async drainQueue(): Promise<void> {
    const batch = this.options.batch;
    while (this.queue.length > 0) {
      const q = this.queue[0] as QueuedPush;
      const from = q.seqs.length;
      const users = from === 0 && q.users.length <= batch ? q.users : q.users.slice(from, from + batch);
      try {
        for (const seq of await this.store1(users, q.message)) q.seqs.push(seq);
      } catch (err) {
        this.queue.shift();
        q.reject(
          from === 0
            ? err
            : new Error(`stored for ${from} of ${q.users.length} users, then: ${(err as Error).message}`, {
                cause: err,
              }),
        );
        continue;
      }
      if (q.seqs.length >= q.users.length) {
        this.queue.shift();
        q.resolve(q.seqs);
      }
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  }

  /** A connection of a user opened: send what waits in the inbox. */
  attach(r: Recipient): void {
    if (r.user === undefined) return;
    r.deliveryOn = true;
    this.sync(this.cursorOf(r));
  }

  /** The connection's cursor, created on demand: an idle connection keeps none (~120 bytes saved). */
  private cursorOf(r: Recipient): Cursor {
    if (r.qos1 === undefined) {
      r.qos1 = new Cursor(r, this);
      r.qos1.sent = r.qos1Sent;
    }
    return r.qos1;
  }

  /** Nothing in flight and nothing being read: forget the cursor; the store knows what is next. */
  private release(cur: Cursor): void {
    const r = cur.recipient;
    if (r.qos1 !== cur || cur.inflight.length > 0 || cur.syncing || cur.timer !== undefined) return;
    r.qos1 = undefined;
    r.qos1Sent = cur.sent;
  }

  /**
   * New messages for `user` were stored elsewhere (another node of the cluster): send them to
   * this node's connections of the user, from their cursors, in order.
   */
  notify(user: string): void {
    for (const r of this.host.recipientsOf(user)) if (r.deliveryOn && r.open) this.sync(this.cursorOf(r));
  }

  /** The connection closed: forget its cursor (the inbox keeps the messages). */
  detach(r: Recipient): void {
    this.spans?.gone(r, 'connection closed before the ack');
    r.deliveryOn = false;
    const cur = r.qos1;
    if (cur === undefined) return;
    cur.timer?.cancel();
    cur.timer = undefined;
    r.qos1 = undefined;
  }

  /**
   * A connection that is starting says its reader had seen every seq up to `seq` before (a
   * one-way stream's position): they are acked, and its cursor starts after them. Unlike `ack`,
   * not bounded by what this connection was sent: the position comes from an earlier one.
   */
  ackSeen(r: Recipient, seq: number): void {
    const user = r.user;
    if (user === undefined || seq <= 0 || r.qos1 !== undefined) return;
    r.qos1Sent = Math.max(r.qos1Sent, seq);
    this.store.ack(user, seq).then(
      (n) => {
        this.counters.acked += n;
        this.watch?.acked(user, seq);
      },
      (err) => this.failed(err, 'store ack'),
    );
  }

  /** The client acked every seq up to `seq`: drop them from the inbox and send what is next. */
  ack(r: Recipient, seq: number): void {
    const user = r.user;
    const cur = r.qos1;
    if (user === undefined || cur === undefined) return;
    // Never beyond what this connection was sent: a client cannot ack messages it never saw.
    const upto = Math.min(seq, cur.sent);
    if (upto <= 0) return;
    this.store.ack(user, upto).then(
      (n) => {
        this.counters.acked += n;
        this.watch?.acked(user, upto);
      },
      (err) => this.failed(err, 'store ack'),
    );
    for (const other of this.host.recipientsOf(user)) {
      this.spans?.acked(other, upto);
      const c = other.qos1;
      if (c === undefined) continue;
      const before = c.inflight.length;
      while (c.inflight.length > 0 && (c.inflight[0] as number) <= upto) c.inflight.shift();
      if (c.inflight.length < before) c.attempts = 0;
      if (c.inflight.length === 0) {
        c.timer?.cancel();
        c.timer = undefined;
      }
      if (before >= this.options.window && c.inflight.length < this.options.window) this.sync(c);
      else this.release(c);
    }
  }

  close(): void {
    this.sweeper.cancel();
    this.watch?.close();
  }

  /** Times `seq` was written to this gateway's connections of `user` that hold it unacked. */
  attempts(user: string, seq: number): number {
    let n = 0;
    for (const r of this.host.recipientsOf(user)) {
      const c = r.qos1;
      if (c?.inflight.includes(seq)) n = Math.max(n, c.inflight[0] === seq ? c.attempts + 1 : 1);
    }
    return n;
  }

  private offer(r: Recipient, m: StoredMessage): void {
    if (!r.deliveryOn || !r.open) return;
    const cur = this.cursorOf(r);
    if (cur.syncing || cur.sent < 0 || m.seq !== cur.sent + 1) {
      // Out of step (first sync running, or a gap): let the store say what comes next, in order.
      this.sync(cur);
      return;
    }
    if (cur.inflight.length >= this.options.window) return; // picked up by sync after acks
    this.send(cur, m);
  }

  /** Sends, in seq order, what the store holds after this connection's cursor, up to the window. */
  private sync(cur: Cursor): void {
    if (cur.syncing) {
      cur.again = true;
      return;
    }
    cur.syncing = true;
    this.syncLoop(cur).then(
      () => {
        cur.syncing = false;
        this.release(cur);
      },
      (err) => {
        cur.syncing = false;
        this.failed(err, 'store pending');
        // Retry later: the redelivery timer doubles as the retry of a failed read.
        cur.retrySync = true;
        this.arm(cur);
      },
    );
  }

  private async syncLoop(cur: Cursor): Promise<void> {
    const r = cur.recipient;
    const user = r.user as string;
    for (;;) {
      cur.again = false;
      const room = this.options.window - cur.inflight.length;
      if (room <= 0 || !r.open || r.qos1 !== cur) return;
      const after = Math.max(cur.sent, 0);
      const batch = await this.store.pending(user, after, room, Date.now());
      if (!r.open || r.qos1 !== cur) return;
      for (const m of batch) if (m.seq > cur.sent) this.send(cur, m);
      if (cur.sent < 0) cur.sent = 0;
      if (batch.length < room && !cur.again) return;
    }
  }

  private send(cur: Cursor, m: StoredMessage): void {
    const r = cur.recipient;
    r.deliver(encodeQos1(r.codec, m), 1, m.seq);
    this.counters.sent++;
    this.spans?.sent(r, m.seq, m.id, 1);
    cur.sent = m.seq;
    cur.inflight.push(m.seq);
    if (cur.timer === undefined && r.noRedelivery !== true) this.arm(cur);
  }

  private arm(cur: Cursor): void {
    const o = this.options;
    const delay = Math.min(o.redeliveryMax, o.redeliveryBase * 2 ** Math.min(cur.attempts, 20));
    if (cur.timer) cur.timer.reschedule(delay);
    else cur.timer = this.wheel.schedule(delay, redeliver, cur);
  }

  /** @internal The redelivery deadline of `cur` passed. */
  async redeliver(cur: Cursor): Promise<void> {
    const r = cur.recipient;
    if (!r.open || r.qos1 !== cur || r.user === undefined) return;
    if (cur.inflight.length === 0) {
      cur.timer = undefined;
      if (cur.retrySync) {
        cur.retrySync = false;
        this.sync(cur);
      } else this.release(cur);
      return;
    }
    cur.attempts++;
    const user = r.user;
    if (cur.attempts > this.options.redeliveryCap) {
      // A client that never acks cannot loop forever: the oldest message is moved aside.
      const seq = cur.inflight[0] as number;
      cur.attempts = 0;
      try {
        await this.store.bury(user, seq, 'redelivery_cap', Date.now());
        // Out of flight only once it is buried: a failed bury keeps it, for a later round.
        const i = cur.inflight.indexOf(seq);
        if (i >= 0) cur.inflight.splice(i, 1);
        this.counters.deadLetters++;
        this.spans?.end(r, seq, 'redelivery cap: moved to dead letters');
        this.watch?.buried(user, seq);
      } catch (err) {
        this.failed(err, 'store bury');
      }
    }
    this.arm(cur);
    if (cur.inflight.length === 0) return;
    const first = cur.inflight[0] as number;
    const again = await this.store.pending(user, first - 1, cur.inflight.length, Date.now());
    if (!r.open || r.qos1 !== cur) return;
    const wanted = new Set(cur.inflight);
    for (const m of again) {
      if (!wanted.has(m.seq)) continue;
      r.deliver(encodeQos1(r.codec, m), 1, m.seq);
      this.counters.redelivered++;
      this.spans?.sent(r, m.seq, m.id, cur.attempts + 1);
    }
    // Messages that expired or were acked elsewhere are no longer in flight.
    const present = new Set(again.map((m) => m.seq));
    if (this.spans !== undefined)
      for (const s of cur.inflight)
        if (!present.has(s)) this.spans.end(r, s, 'expired or acknowledged elsewhere');
    cur.inflight = cur.inflight.filter((s) => present.has(s));
  }

  /** @internal A store call failed: counted in `health`, logged. */
  failed(err: unknown, what: string): void {
    this.health.failed(err);
    this.host.onError(err, what);
  }

  /** @internal */
  async sweep(): Promise<void> {
    try {
      const n = await this.store.expire(Date.now());
      this.counters.deadLetters += n;
    } catch (err) {
      this.failed(err, 'store expire');
    }
  }
}

function redeliver(cur: Cursor): void {
  cur.delivery.redeliver(cur).catch((err) => cur.delivery.failed(err, 'redelivery'));
}

function sweep(d: Delivery): void {
  void d.sweep();
}

export function encodeQos1(codec: Codec, m: StoredMessage): OutFrame {
  const env: Envelope =
    m.data === undefined
      ? { kind: 'push', seq: m.seq, type: m.type, qos: 1 }
      : { kind: 'push', seq: m.seq, type: m.type, qos: 1, data: m.data };
  return new OutFrame(codec.encode(env), !codec.binary);
}
