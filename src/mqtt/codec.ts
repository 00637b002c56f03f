import mqtt from 'mqtt-packet';
import type { Codec } from '../protocol/codec.js';
import type { Envelope } from '../protocol/envelope.js';
import { ProtocolError, PylonError } from '../protocol/errors.js';
import { stringifyJson } from '../protocol/json-codec.js';
import { MAX_TYPE_LENGTH } from '../protocol/validate.js';

type Packet = mqtt.Packet;

/** MQTT 5 reason codes Pylon sends (OASIS MQTT 5.0, section 2.4). */
export const REASON = {
  success: 0x00,
  unspecified: 0x80,
  malformed: 0x81,
  protocolError: 0x82,
  implementationSpecific: 0x83,
  unsupportedVersion: 0x84,
  badCredentials: 0x86,
  notAuthorized: 0x87,
  serverUnavailable: 0x88,
  serverBusy: 0x89,
  banned: 0x8a,
  shuttingDown: 0x8b,
  keepAliveTimeout: 0x8d,
  sessionTakenOver: 0x8e,
  topicFilterInvalid: 0x8f,
  packetTooLarge: 0x95,
  quotaExceeded: 0x97,
  administrativeAction: 0x98,
  payloadFormatInvalid: 0x99,
  qosNotSupported: 0x9b,
  useAnotherServer: 0x9c,
  connectionRateExceeded: 0x9f,
  wildcardsNotSupported: 0xa2,
} as const;

/** Pylon's disconnect names (src/protocol/disconnect.ts) as MQTT 5 reason codes. */
const REASON_OF: Record<string, number> = {
  normal: REASON.success,
  closed: REASON.success,
  going_away: REASON.serverUnavailable,
  shutdown: REASON.shuttingDown,
  reconnect_elsewhere: REASON.useAnotherServer,
  keepalive_timeout: REASON.keepAliveTimeout,
  handshake_timeout: REASON.protocolError,
  slow_consumer: REASON.quotaExceeded,
  internal_error: REASON.implementationSpecific,
  rate_limited: REASON.connectionRateExceeded,
  overloaded: REASON.serverBusy,
  buffers_full: REASON.serverBusy,
  frame_timeout: REASON.protocolError,
  too_many_user_connections: REASON.quotaExceeded,
  token_expired: REASON.notAuthorized,
  protocol_error: REASON.protocolError,
  frame_too_large: REASON.packetTooLarge,
  unauthorized: REASON.badCredentials,
  kicked: REASON.administrativeAction,
  replaced: REASON.sessionTakenOver,
  forbidden: REASON.notAuthorized,
  bad_hello: REASON.protocolError,
  identity_too_long: REASON.quotaExceeded,
  banned: REASON.banned,
  token_revoked: REASON.notAuthorized,
};

/** MQTT 3.1.1 CONNACK return codes for a refused CONNECT (section 3.2.2.3). */
function connackV3(name: string): number {
  if (name === 'unauthorized' || name === 'token_expired' || name === 'token_revoked') return 4;
  if (name === 'bad_hello' || name === 'protocol_error') return 2; // identifier rejected
  if (name === 'overloaded' || name === 'shutdown' || name === 'buffers_full' || name === 'going_away')
    return 3;
  return 5; // not authorized
}

/** What a `res` with this request id answers: the MQTT packet it becomes. */
type Answer =
  | { cmd: 'suback'; granted: number; count: number; refused?: number }
  | { cmd: 'unsuback'; count: number }
  | { cmd: 'puback' };

const MAX_PACKET_ID = 0xffff;
const PUBACK: Answer = { cmd: 'puback' };
/** An envelope the gateway takes and does nothing with (a client's pong). */
const NOTHING: Envelope = { kind: 'pong' };
/** qos-1 PUBLISHes of ours waiting for their PUBACK, per connection (Pylon's own in-flight cap is lower). */
const MAX_INFLIGHT = 0xffff;

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * One parser per protocol version for the whole process: packets come whole (mqttPacketLength
 * framed them) and are parsed at once, so no connection needs a parser of its own (an
 * EventEmitter, a buffer list and a packet each: most of what an idle MQTT connection held).
 */
const parsers = new Map<
  4 | 5,
  { parser: ReturnType<typeof mqtt.parser>; packet?: Packet; failure?: Error }
>();

function parseOne(
  bytes: Uint8Array,
  version: 4 | 5,
): { packet: Packet | undefined; failure: Error | undefined } {
  let entry = parsers.get(version);
  if (entry === undefined) {
    const e: { parser: ReturnType<typeof mqtt.parser>; packet?: Packet; failure?: Error } = {
      parser: mqtt.parser({ protocolVersion: version }),
    };
    e.parser.on('packet', (p: Packet) => {
      e.packet = p;
    });
    e.parser.on('error', (err: Error) => {
      e.failure = err;
    });
    parsers.set(version, e);
    entry = e;
  }
  entry.packet = undefined;
  entry.failure = undefined;
  // Whatever an earlier malformed or short packet left in it is dropped first, and the version
  // set again (reading a CONNECT sets it to the CONNECT's).
  const parser = entry.parser as unknown as {
    _resetState(): void;
    _pos: number;
    settings: { protocolVersion: number };
  };
  parser._resetState();
  parser._pos = 0; // not reset by _resetState, and read by the length parser
  parser.settings.protocolVersion = version;
  entry.parser.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  return { packet: entry.packet, failure: entry.failure };
}

/** The payload of a PUBLISH as Pylon data: JSON when it is UTF-8 JSON, else the bytes. */
export function payloadData(payload: Uint8Array): unknown {
  if (payload.length === 0) return new Uint8Array(0);
  try {
    return JSON.parse(utf8.decode(payload));
  } catch {
    return new Uint8Array(payload);
  }
}

/** Pylon data as a PUBLISH payload: bytes as they are, a string as its UTF-8, anything else as JSON. */
export function dataPayload(data: unknown): Buffer {
  if (data instanceof Uint8Array) return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  if (typeof data === 'string') return Buffer.from(data);
  if (data === undefined) return Buffer.alloc(0);
  return Buffer.from(stringifyJson(data) ?? 'null');
}

/** Whether a topic filter has MQTT wildcards (`+`, `#`). */
export function hasWildcard(topic: string): boolean {
  return topic.includes('+') || topic.includes('#');
}

/** Per connection and for the whole gateway: how many bytes of last wills may be held. */
export const DEFAULT_MAX_WILL = 4096;
export const DEFAULT_MAX_WILL_TOTAL = 16 * 1024 * 1024;

/**
 * The wills a gateway holds: a will waits for the whole life of its connection, so what 10,000
 * connections can make the gateway keep is bounded here, per will and in all.
 */
export class WillBudget {
  held = 0;
  constructor(
    readonly maxWill: number = DEFAULT_MAX_WILL,
    readonly maxTotal: number = DEFAULT_MAX_WILL_TOTAL,
  ) {}
}

/**
 * Pylon's envelopes as MQTT 3.1.1 and 5.0 packets, for one connection (docs/mqtt.md): the
 * gateway sees an MQTT client as any other connection, CONNECT being its hello and SUBSCRIBE a
 * `sub`. One instance per connection, since MQTT needs state the envelope does not carry: the
 * protocol version, which request ids are SUBSCRIBEs or PUBLISHes, which packet id carries which
 * qos-1 seq. Bytes in are whole packets (mqttPacketLength frames them); packets are parsed by
 * mqtt-packet.
 */
export class MqttCodec implements Codec {
  /** 'mqtt5' once a CONNECT said 5: frames shared between connections differ by version. */
  name: 'mqtt' | 'mqtt5' = 'mqtt';
  readonly binary = true;
  /** 4 (3.1.1) or 5, from the CONNECT; 3 (3.1) is read as 3.1.1. */
  version: 3 | 4 | 5 = 4;
  /**
   * From the CONNECT's keepalive: one and a half times it, in ms (MQTT 3.1.1 section 3.1.2.10);
   * a keepalive of 0 leaves the gateway's keepalive timeout in force.
   */
  keepaliveMs: number | undefined = undefined;
  private connected = false;
  /** No CONNECT yet: the next packet must be one. */
  get awaitingConnect(): boolean {
    return !this.connected;
  }
  /** The CONNACK went out (the welcome): a refusal from then on is a DISCONNECT, not a CONNACK. */
  private welcomed = false;
  /** The reason code of the DISCONNECT to come, when the codec knows it better than the kick's name. */
  private refusal: number | undefined = undefined;
  /** The CONNECT's last will, until a DISCONNECT from the client withdraws it. */
  will: { topic: string; data: unknown } | undefined = undefined;
  /** Bytes of the will counted in the budget. */
  private willBytes = 0;

  /** `wills`: where wills are counted; none: they are not kept (nothing could send them). */
  constructor(private readonly wills?: WillBudget) {}

  /** The will is gone (sent, withdrawn, or the connection closed): its bytes leave the budget. */
  dropWill(): void {
    this.will = undefined;
    if (this.wills !== undefined) this.wills.held -= this.willBytes;
    this.willBytes = 0;
  }
  /** Request ids of SUBSCRIBE, UNSUBSCRIBE and qos-1 PUBLISH packets (their packet ids); made when first needed. */
  private answers: Map<number, Answer> | undefined = undefined;
  /** Our qos-1 PUBLISHes: packet id -> seq, and seq -> packet id (a redelivery reuses its id). */
  private seqOf: Map<number, number> | undefined = undefined;
  private idOf: Map<number, number> | undefined = undefined;
  private nextId = 0;

  decode(bytes: Uint8Array): Envelope {
    const { packet: p, failure } = parseOne(bytes, this.version === 5 ? 5 : 4);
    if (failure !== undefined || p === undefined)
      throw new ProtocolError(`malformed MQTT packet: ${failure?.message ?? 'incomplete'}`, 'PROTOCOL');
    if (!this.connected && p.cmd !== 'connect')
      throw new ProtocolError(
        `the first MQTT packet must be CONNECT, got ${p.cmd.toUpperCase()}`,
        'PROTOCOL',
      );
    switch (p.cmd) {
      case 'connect':
        return this.connect(p);
      case 'subscribe': {
        const topics = p.subscriptions.map((s) => s.topic);
        const refused = topics.some(hasWildcard) ? REASON.wildcardsNotSupported : undefined;
        this.answersMap().set(p.messageId ?? 0, {
          cmd: 'suback',
          granted: Math.min(1, ...p.subscriptions.map((s) => s.qos)),
          count: topics.length,
          ...(refused !== undefined ? { refused } : {}),
        });
        // A filter with wildcards is not a label: no label is asked for, so the answer is a refusal.
        return { kind: 'sub', id: p.messageId ?? 0, data: { labels: refused === undefined ? topics : [] } };
      }
      case 'unsubscribe':
        this.answersMap().set(p.messageId ?? 0, { cmd: 'unsuback', count: p.unsubscriptions.length });
        return { kind: 'unsub', id: p.messageId ?? 0, data: { labels: p.unsubscriptions } };
      case 'publish': {
        // The topic is the route name: the same bound as every codec's `type`.
        if (p.topic.length > MAX_TYPE_LENGTH)
          throw new ProtocolError(
            `topic must be at most ${MAX_TYPE_LENGTH} characters, got ${p.topic.length}`,
            'PROTOCOL',
          );
        const data = payloadData(p.payload as Buffer);
        if (p.qos === 0) return { kind: 'msg', type: p.topic, data };
        if (p.qos === 1) {
          this.answersMap().set(p.messageId ?? 0, PUBACK);
          return { kind: 'req', id: p.messageId ?? 0, type: p.topic, data };
        }
        this.refusal = REASON.qosNotSupported;
        throw new ProtocolError('QoS 2 is not supported: publish with QoS 0 or 1', 'PROTOCOL');
      }
      case 'puback': {
        const seq = this.seqOf?.get(p.messageId ?? 0);
        // Not in flight (a second PUBACK of a PUBLISH that was sent again): nothing to do.
        if (seq === undefined) return NOTHING;
        // Cumulative, like Pylon's ack: MQTT acknowledges qos-1 PUBLISHes in the order they were sent.
        for (const [id, s] of this.seqOf as Map<number, number>) {
          if (s > seq) continue;
          this.seqOf?.delete(id);
          this.idOf?.delete(s);
        }
        return { kind: 'ack', seq };
      }
      case 'pingreq':
        return { kind: 'ping' };
      case 'disconnect':
        // A normal DISCONNECT withdraws the will (MQTT 5's 0x04 asks for it to be sent all the same).
        if ((p as mqtt.IDisconnectPacket).reasonCode !== 0x04) this.dropWill();
        return { kind: 'bye' };
      default:
        throw new ProtocolError(`MQTT ${p.cmd.toUpperCase()} is not accepted from a client here`, 'PROTOCOL');
    }
  }

  private connect(p: mqtt.IConnectPacket): Envelope {
    if (this.connected) throw new ProtocolError('a second CONNECT', 'PROTOCOL');
    this.connected = true;
    const version = p.protocolVersion ?? 4;
    this.version = version === 5 ? 5 : version === 3 ? 3 : 4;
    if (this.version === 5) this.name = 'mqtt5';
    const keepalive = p.keepalive ?? 0;
    if (keepalive > 0) this.keepaliveMs = keepalive * 1500;
    const w = this.wills;
    if (w !== undefined && p.will !== undefined && p.will !== null && typeof p.will.topic === 'string') {
      if (p.will.topic.length > MAX_TYPE_LENGTH)
        throw new ProtocolError(`will topic must be at most ${MAX_TYPE_LENGTH} characters`, 'PROTOCOL');
      const payload = typeof p.will.payload === 'string' ? Buffer.from(p.will.payload) : p.will.payload;
      const bytes = payload.length + p.will.topic.length;
      if (bytes > w.maxWill || w.held + bytes > w.maxTotal) {
        this.refusal = REASON.quotaExceeded;
        throw new ProtocolError(
          bytes > w.maxWill
            ? `a will of ${bytes} bytes is larger than the ${w.maxWill} allowed`
            : 'the server holds as many wills as it may: try later',
          'PROTOCOL',
        );
      }
      w.held += bytes;
      this.willBytes = bytes;
      this.will = { topic: p.will.topic, data: payloadData(payload) };
    }
    const password = p.password === undefined ? undefined : Buffer.from(p.password).toString('utf8');
    // The token: the password when there is one (a JWT, an API key), else the username.
    const token = password !== undefined && password !== '' ? password : p.username;
    const data: Record<string, unknown> = { client: `mqtt/${this.version === 5 ? '5.0' : '3.1.1'}` };
    if (token !== undefined && token !== '') data.token = token;
    return { kind: 'hello', data };
  }

  encode(env: Envelope): Uint8Array {
    const p = this.packetOf(env);
    if (p === undefined) return new Uint8Array(0);
    return mqtt.generate(p, { protocolVersion: this.version === 5 ? 5 : 4 });
  }

  private packetOf(env: Envelope): Packet | undefined {
    const v5 = this.version === 5;
    switch (env.kind) {
      case 'welcome':
        this.welcomed = true;
        return v5
          ? { cmd: 'connack', sessionPresent: false, reasonCode: REASON.success }
          : { cmd: 'connack', sessionPresent: false, returnCode: 0 };
      case 'kick': {
        const k = (env.data ?? {}) as { name?: string; reason?: string };
        const name = k.name ?? 'kicked';
        // Before a CONNECT there is nobody to answer: the connection is just closed.
        if (!this.connected) return undefined;
        if (!this.welcomed) {
          // Refused before CONNACK: the refusal is the CONNACK.
          return v5
            ? {
                cmd: 'connack',
                sessionPresent: false,
                reasonCode: this.refusal ?? connackV5(name),
                properties: { reasonString: k.reason },
              }
            : {
                cmd: 'connack',
                sessionPresent: false,
                returnCode: this.refusal !== undefined ? 3 : connackV3(name),
              };
        }
        // MQTT 3.1.1 has no DISCONNECT from the server: the connection is just closed.
        if (!v5) return undefined;
        const reasonCode = this.refusal ?? REASON_OF[name] ?? REASON.unspecified;
        return { cmd: 'disconnect', reasonCode, properties: { reasonString: k.reason } };
      }
      case 'res':
        return this.answer(env);
      case 'push':
      case 'msg':
        return this.publish(env);
      case 'pong':
        return { cmd: 'pingresp' };
      // The server does not ping an MQTT client (the client pings, within its keepalive).
      case 'ping':
        return undefined;
      case 'bye':
        return v5 ? { cmd: 'disconnect', reasonCode: REASON.success } : undefined;
      default:
        return undefined;
    }
  }

  private answer(env: Envelope): Packet | undefined {
    const id = env.id ?? 0;
    const a = this.answers?.get(id);
    if (a === undefined) return undefined;
    this.answers?.delete(id);
    const v5 = this.version === 5;
    const err = env.error;
    if (a.cmd === 'suback') {
      // All or nothing, as Pylon's sub: every filter gets the same answer. 3.1.1 knows only 0x80 for a refusal.
      const refused = a.refused ?? (err === undefined ? undefined : reasonOfError(err.code));
      const code = refused === undefined ? a.granted : v5 ? refused : 0x80;
      return { cmd: 'suback', messageId: id, granted: new Array<number>(a.count).fill(code) };
    }
    if (a.cmd === 'unsuback') {
      return v5
        ? {
            cmd: 'unsuback',
            messageId: id,
            granted: new Array(a.count).fill(err === undefined ? 0 : reasonOfError(err.code)),
          }
        : { cmd: 'unsuback', messageId: id, granted: [] };
    }
    if (!v5 || err === undefined) return { cmd: 'puback', messageId: id };
    return {
      cmd: 'puback',
      messageId: id,
      reasonCode: reasonOfError(err.code, true),
      properties: { reasonString: err.message },
    };
  }

  /**
   * A push addressed to labels, on the label this connection holds: its topic. MQTT 5 carries the
   * push's type as the user property `type` when it is not the topic; MQTT 3.1.1 cannot.
   */
  encodePushOn(topic: string, env: Envelope): Uint8Array {
    const p = this.publish(env, topic);
    return mqtt.generate(p, { protocolVersion: this.version === 5 ? 5 : 4 });
  }

  private answersMap(): Map<number, Answer> {
    this.answers ??= new Map();
    return this.answers;
  }

  /** A label's latest history entry, sent after a SUBSCRIBE as the topic's retained message. */
  encodeRetained(topic: string, env: Envelope): Uint8Array {
    const p = this.publish({ ...env, qos: 0, seq: undefined }, topic);
    p.retain = true;
    return mqtt.generate(p, { protocolVersion: this.version === 5 ? 5 : 4 });
  }

  private publish(env: Envelope, on?: string): mqtt.IPublishPacket {
    const topic = on ?? env.type ?? '';
    const payload = dataPayload(env.data);
    if (env.qos !== 1 || env.seq === undefined) {
      const p: mqtt.IPublishPacket = { cmd: 'publish', topic, payload, qos: 0, retain: false, dup: false };
      if (this.version === 5 && env.type !== undefined && env.type !== topic)
        p.properties = { userProperties: { type: env.type } };
      return p;
    }
    // A redelivery of a seq keeps its packet id, with DUP set.
    this.seqOf ??= new Map();
    this.idOf ??= new Map();
    let id = this.idOf.get(env.seq);
    const dup = id !== undefined;
    if (id === undefined) {
      if (this.seqOf.size >= MAX_INFLIGHT)
        throw new PylonError('TOO_MANY_REQUESTS', 'too many qos-1 PUBLISHes in flight');
      do {
        this.nextId = (this.nextId % MAX_PACKET_ID) + 1;
      } while (this.seqOf.has(this.nextId));
      id = this.nextId;
      this.seqOf.set(id, env.seq);
      this.idOf.set(env.seq, id);
    }
    return { cmd: 'publish', topic, payload, qos: 1, messageId: id, retain: false, dup };
  }
}

/** A refused CONNECT's reason code (MQTT 5). */
function connackV5(name: string): number {
  if (name === 'bad_hello' || name === 'protocol_error') return REASON.protocolError;
  return REASON_OF[name] ?? REASON.notAuthorized;
}

/**
 * A PylonError code as an MQTT 5 reason code: in a SUBACK or UNSUBACK a bad request is a bad
 * topic filter, in a PUBACK a payload the handler or the push refused.
 */
function reasonOfError(code: string, puback = false): number {
  if (code === 'FORBIDDEN' || code === 'UNAUTHORIZED') return REASON.notAuthorized;
  if (code === 'BAD_REQUEST') return puback ? REASON.payloadFormatInvalid : REASON.topicFilterInvalid;
  if (code === 'TOO_MANY_REQUESTS') return REASON.quotaExceeded;
  if (code === 'NOT_FOUND') return 0x10; // no matching subscribers: nobody handles this topic
  return REASON.unspecified;
}
