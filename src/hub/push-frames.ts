import { OutFrame } from '../net/out-frame.js';
import type { Codec } from '../protocol/codec.js';
import type { Envelope } from '../protocol/envelope.js';
import type { Member } from './member.js';

/** A qos-0 push on its way to many members. */
export interface Broadcast {
  type: string;
  /** The default payload. */
  data: unknown;
  /**
   * Per-label payloads (sim's multi-version push): a member gets the variant of the first of
   * its labels, in the order it got them, that has one; otherwise `data`.
   */
  variants?: ReadonlyMap<string, unknown>;
  /**
   * The labels the push was addressed to (its `all` then `any` labels): for a protocol whose
   * messages are on a topic (MQTT), a member gets the push on the first of them it holds.
   */
  topics?: readonly string[];
}

/** The encoded frames of one push, built on first use per (codec, variant). */
export class FrameCache {
  /** null: the push cannot be encoded for that codec (binary data for JSON, say). */
  private readonly byKey = new Map<string, OutFrame | null>();
  /** The first reason a frame could not be made. */
  error: unknown = undefined;

  constructor(private readonly push: Broadcast) {}

  /** The frame for `m`; throws if the push cannot be encoded for it. */
  for(m: Member): OutFrame {
    const f = this.tryFor(m);
    if (f === null) throw this.error;
    return f;
  }

  /** The frame for `m`, or null when the push cannot be encoded for its codec (remembered, not retried). */
  tryFor(m: Member): OutFrame | null {
    const variants = this.push.variants;
    const variant = variants === undefined ? '' : variantFor(m.labels, variants);
    const topic = m.codec.encodePushOn === undefined ? undefined : topicFor(m.labels, this.push.topics);
    let key = variant === '' ? m.codec.name : `${m.codec.name}\u0000${variant}`;
    if (topic !== undefined) key = `${key}\u0001${topic}`;
    let f = this.byKey.get(key);
    if (f === undefined) {
      const data = variant === '' ? this.push.data : variants?.get(variant);
      try {
        f = encodePush(m.codec, this.push.type, data, topic);
      } catch (err) {
        this.error ??= err;
        f = null;
      }
      this.byKey.set(key, f);
    }
    return f;
  }
}

/** The variant a connection with `labels` gets: its first label that has one ('' for the default). */
export function variantFor(
  labels: readonly string[] | undefined,
  variants: ReadonlyMap<string, unknown>,
): string {
  if (labels !== undefined) for (const label of labels) if (variants.has(label)) return label;
  return '';
}

/** The push frame of a broadcast for one connection's codec and labels. */
export function encodeBroadcast(
  codec: Codec,
  labels: readonly string[] | undefined,
  push: Broadcast,
): OutFrame {
  const variant = push.variants === undefined ? '' : variantFor(labels, push.variants);
  const topic = codec.encodePushOn === undefined ? undefined : topicFor(labels, push.topics);
  return encodePush(codec, push.type, variant === '' ? push.data : push.variants?.get(variant), topic);
}

/** The first of a push's label `topics` that a member with `labels` holds. */
export function topicFor(
  labels: readonly string[] | undefined,
  topics: readonly string[] | undefined,
): string | undefined {
  if (labels === undefined || topics === undefined) return undefined;
  for (const t of topics) if (labels.includes(t)) return t;
  return undefined;
}

/** A push's frame for `codec`; on `topic` (a label) for a codec that carries topics (MQTT). */
export function encodePush(codec: Codec, type: string, data: unknown, topic?: string): OutFrame {
  const env: Envelope = data === undefined ? { kind: 'push', type } : { kind: 'push', type, data };
  const bytes =
    topic !== undefined && codec.encodePushOn !== undefined
      ? codec.encodePushOn(topic, env)
      : codec.encode(env);
  return new OutFrame(bytes, !codec.binary);
}
