import type { Cursor, Recipient } from '../delivery/delivery.js';
import type { Member } from '../hub/member.js';
import { encodePush } from '../hub/push-frames.js';
import type { Link, TransportName } from '../net/link.js';
import type { OutFrame } from '../net/out-frame.js';
import type { Codec } from '../protocol/codec.js';
import { DISCONNECT, type DisconnectInfo, type DisconnectName } from '../protocol/disconnect.js';
import type { Envelope } from '../protocol/envelope.js';
import { WheelEntry, type WheelTimer } from '../timer/wheel.js';
import type { TokenInfo } from './denials.js';
import { type OneWay, positionOf } from './one-way.js';
import type { Bucket } from './rate-limit.js';
import type { KeepaliveOptions } from './settings.js';

/** Where a connection is in its life. */
export type ConnectionState = 'handshake' | 'auth' | 'open' | 'closing' | 'closed';

/**
 * What the gateway does for a connection; the connection knows its gateway only through this
 * (it is the gateway's own object, passed in, not imported).
 */
export interface ConnectionOwner {
  readonly keepalive: KeepaliveOptions | undefined;
  readonly highWaterMark: number;
  /** The gateway clock's now (monotonic ms). */
  now(): number;
  disconnect(conn: Connection, name: DisconnectName, reason?: string): void;
  countOut(messages?: number): void;
  /** qos-0 pushes (`messages`, default 1) were dropped because the connection's buffer is over its high-water mark. */
  dropped(conn: Connection, messages?: number): void;
  /** The connection's buffer went over its high-water mark. */
  overWater(conn: Connection): void;
  join(conn: Connection, label: string): boolean;
  leave(conn: Connection, label: string): boolean;
  /** Handshake deadline passed. */
  handshakeExpired(conn: Connection): void;
  /** Nothing received for keepalive.timeout. */
  keepaliveExpired(conn: Connection, idleMs: number): void;
  /** Runs the connection's timer (`onWheelTimer`) again in `delayMs`. */
  rearm(conn: Connection, delayMs: number): void;
}

/**
 * The fields of a connection that most connections never set, or set for a moment (a slow
 * consumer's deadline, the close): one object made when first needed, so an idle connection
 * does not carry seven empty fields (56 bytes).
 */
class Rare {
  slowTimer: WheelTimer | undefined = undefined;
  closeInfo: DisconnectInfo | undefined = undefined;
  subscribed: string[] | undefined = undefined;
  oneWay: OneWay | undefined = undefined;
  resumeFrom: string | undefined = undefined;
  subBucket: Bucket | undefined = undefined;
  data: Record<string, unknown> | undefined = undefined;
}

/**
 * One client connection, on any transport. Holds only what every connection needs; the
 * application's own state goes in `data`. It is its own entry on the timing wheel (the
 * handshake deadline, then the keepalive checks), so no timer object is allocated for it.
 */
export class Connection extends WheelEntry implements Member, Recipient, Bucket {
  /** Monotonic-clock time (ms) of the last frame received: any frame counts as life. */
  lastRecv: number;
  state: ConnectionState = 'handshake';
  /** Requests of this connection whose handlers have not answered yet. */
  pending = 0;
  /** Authenticated user id; undefined for an anonymous connection. */
  user: string | undefined = undefined;
  /** Device and client version, as the validate hook reported them. */
  device: string | undefined = undefined;
  version: string | undefined = undefined;
  /**
   * Labels, in the order they were added (undefined until the first). An array, not a Set: a
   * connection has a few labels, and a Set's table would cost ~200 bytes per connection.
   */
  labels: string[] | undefined = undefined;
  /** The labels the identity gave (validate hook): on resume these come from the new identity. */
  identityLabels: readonly string[] | undefined = undefined;
  /** Wall-clock time the connection was accepted (ms since the epoch). */
  readonly connectedAt = Date.now();
  /** Whether the client has sent its hello (TCP: required first; WS: optional). */
  helloSeen = false;
  /** Whether `connect` was emitted (then `disconnect` will be). */
  opened = false;
  /** The session id given in welcome (for resume), when resume is on. */
  session: string | undefined = undefined;
  /** qos-1 delivery state (owned by the delivery module). */
  qos1: Cursor | undefined = undefined;
  deliveryOn = false;
  /** The seq the next qos-1 cursor starts after (owned by the delivery module). */
  qos1Sent = -1;
  /** Inbound rate limit (token bucket, milli-tokens): -1 is a full bucket. */
  tokens = -1;
  refilled = 0;
  /** The bucket of the user's frames, shared by its connections (set while it holds a slot of its user). */
  userBucket: Bucket | undefined = undefined;
  /** What the validator reported of the token (bans and revocations are checked against it). */
  token: TokenInfo | undefined = undefined;
  /** What few connections have, or have for a moment: made at the first such field set. */
  private rare: Rare | undefined = undefined;

  constructor(
    readonly id: string,
    readonly link: Link,
    public codec: Codec,
    /** @internal */
    readonly owner: ConnectionOwner,
    now: number,
  ) {
    super();
    this.lastRecv = now;
    this.refilled = now;
  }

  /**
   * @internal The connection's one timer, on the wheel. While the handshake (hello, then the
   * validate hook) runs it is the handshake deadline; afterwards it checks for life:
   * - idle < interval: sleep until the connection has been idle for one interval;
   * - interval <= idle < timeout: send a ping and check again after min(interval, time left);
   * - idle >= timeout: close with keepalive_timeout.
   * Received frames only update `lastRecv`; they never touch the timer, so busy connections
   * cost one check per interval.
   */
  onWheelTimer(): void {
    const host = this.owner;
    if (this.state === 'handshake' || this.state === 'auth') {
      host.handshakeExpired(this);
      return;
    }
    if (this.state !== 'open') return;
    const gatewayKa = host.keepalive;
    if (gatewayKa === undefined) return;
    // A protocol whose client keeps itself alive (MQTT's keepalive): no pings, its own timeout.
    const own = this.codec.keepaliveMs;
    const ka = own === undefined ? gatewayKa : { interval: own, timeout: own };
    if (this.oneWay !== undefined) {
      // A one-way stream cannot answer: it gets a sign of life each interval, and a reader that
      // is gone shows as a write error or as a buffer over its cap (slow_consumer).
      this.link.heartbeat?.();
      host.rearm(this, ka.interval);
      return;
    }
    const idle = host.now() - this.lastRecv;
    if (idle >= ka.timeout) {
      host.keepaliveExpired(this, idle);
      return;
    }
    if (idle >= ka.interval) {
      this.write({ kind: 'ping' });
      host.rearm(this, Math.min(ka.interval, ka.timeout - idle));
      return;
    }
    host.rearm(this, ka.interval - idle);
  }

  get transport(): TransportName {
    return this.link.transport;
  }

  get remoteAddress(): string {
    return this.link.remoteAddress;
  }

  /** Bytes queued for this connection and not yet written to its socket. */
  get buffered(): number {
    return this.link.buffered;
  }

  /** The application's per-connection state (the validate hook's `data` lands here). */
  get data(): Record<string, unknown> {
    const rare = this.more();
    rare.data ??= {};
    return rare.data;
  }

  /** Armed while the outgoing buffer is over the high-water mark (slow-consumer deadline). */
  get slowTimer(): WheelTimer | undefined {
    return this.rare?.slowTimer;
  }
  set slowTimer(v: WheelTimer | undefined) {
    if (v !== undefined || this.rare !== undefined) this.more().slowTimer = v;
  }

  /** Set when the connection is closed; reported in the disconnect event. */
  get closeInfo(): DisconnectInfo | undefined {
    return this.rare?.closeInfo;
  }
  set closeInfo(v: DisconnectInfo | undefined) {
    if (v !== undefined || this.rare !== undefined) this.more().closeInfo = v;
  }

  /** The labels the client asked for with `sub` (and still has): on resume they pass authorizeSub again. */
  get subscribed(): string[] | undefined {
    return this.rare?.subscribed;
  }
  set subscribed(v: string[] | undefined) {
    if (v !== undefined || this.rare !== undefined) this.more().subscribed = v;
  }

  /** A one-way HTTP stream: what it asked for, and its position. */
  get oneWay(): OneWay | undefined {
    return this.rare?.oneWay;
  }
  set oneWay(v: OneWay | undefined) {
    if (v !== undefined || this.rare !== undefined) this.more().oneWay = v;
  }

  /** The session id the client asked to resume in its hello. */
  get resumeFrom(): string | undefined {
    return this.rare?.resumeFrom;
  }
  set resumeFrom(v: string | undefined) {
    if (v !== undefined || this.rare !== undefined) this.more().resumeFrom = v;
  }

  /** The `sub`/`unsub` rate limit's bucket, made on the first one. */
  get subBucket(): Bucket | undefined {
    return this.rare?.subBucket;
  }
  set subBucket(v: Bucket | undefined) {
    if (v !== undefined || this.rare !== undefined) this.more().subBucket = v;
  }

  private more(): Rare {
    this.rare ??= new Rare();
    return this.rare;
  }

  get open(): boolean {
    return this.state === 'open';
  }

  /** @internal Recipient: a one-way stream is not re-sent qos 1 on a timer (it cannot ack as it reads). */
  get noRedelivery(): boolean {
    return this.oneWay !== undefined;
  }

  /** Whether the connection has `label`. */
  has(label: string): boolean {
    return this.labels?.includes(label) ?? false;
  }

  /** Add a label (O(1)); pushes to that label reach this connection from now on. */
  join(label: string): boolean {
    return this.owner.join(this, label);
  }

  /** Remove a label (O(1)). */
  leave(label: string): boolean {
    return this.owner.leave(this, label);
  }

  /**
   * Push a one-way message to this client (qos 0, at most once). Returns false when the
   * connection is not open or its buffer is over the high-water mark (then it is dropped).
   */
  send(type: string, data?: unknown): boolean {
    if (this.state !== 'open') return false;
    return this.deliver(encodePush(this.codec, type, data), 0);
  }

  /** Close with a disconnect code from the table (default "kicked": the client will not reconnect). */
  close(name: DisconnectName = 'kicked', reason?: string): void {
    if (!(name in DISCONNECT)) throw new RangeError(`unknown disconnect name "${name}"`);
    if (name === 'going_away')
      throw new RangeError('going_away (1001) is what clients send; the server closes with another name');
    this.owner.disconnect(this, name, reason);
  }

  /** @internal Member: write a prepared push, dropping qos 0 over the high-water mark. */
  deliver(frame: OutFrame, qos: 0 | 1, seq?: number): boolean {
    if (this.state !== 'open') return false;
    if (qos === 0 && this.link.buffered >= this.owner.highWaterMark) {
      this.owner.dropped(this, frame.messages);
      return false;
    }
    this.owner.countOut(frame.messages);
    const ow = this.oneWay;
    if (ow !== undefined && seq !== undefined && seq > ow.written) {
      ow.written = seq;
      this.link.eventId = positionOf(this.session, ow);
    }
    if (!this.link.sendFrame(frame)) this.owner.overWater(this);
    return true;
  }

  /** @internal Encode and send one envelope (responses, control frames: never dropped). */
  write(env: Envelope): boolean {
    const codec = this.codec;
    const link = this.link;
    let ok: boolean;
    // Text codecs: the string goes straight into the frame (one buffer, no intermediate bytes).
    if (codec.encodeText !== undefined && link.sendText !== undefined) {
      const text = codec.encodeText(env);
      this.owner.countOut();
      ok = link.sendText(text);
    } else {
      const bytes = codec.encode(env);
      this.owner.countOut();
      ok = link.send(bytes, !codec.binary);
    }
    if (!ok) this.owner.overWater(this);
    return ok;
  }
}
