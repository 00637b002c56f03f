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
    const key = variant === '' ? m.codec.name : `${m.codec.name}\u0000${variant}`;
    let f = this.byKey.get(key);
    if (f === undefined) {
      const data = variant === '' ? this.push.data : variants?.get(variant);
      try {
        f = encodePush(m.codec, this.push.type, data);
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
  return encodePush(codec, push.type, variant === '' ? push.data : push.variants?.get(variant));
}

export function encodePush(codec: Codec, type: string, data: unknown): OutFrame {
  const env: Envelope = data === undefined ? { kind: 'push', type } : { kind: 'push', type, data };
  return new OutFrame(codec.encode(env), !codec.binary);
}
