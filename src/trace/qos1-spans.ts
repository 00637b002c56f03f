import type { Span } from '@opentelemetry/api';
import { SpanStatusCode } from '@opentelemetry/api';
import type { Tracing } from './tracing.js';

/** Traced qos-1 pushes remembered at once (their traceparent until sent), and spans open at once. */
const MAX_PUSHES = 10_000;
const MAX_OPEN = 10_000;
/** A push not sent within this long is forgotten (the user is offline; its delivery is not traced). */
const PUSH_TTL = 5 * 60_000;

/** Who a span is kept for: a connection (its user's seq is the span's key). */
export interface Traced {
  readonly id: string;
  readonly user: string | undefined;
}

/**
 * Spans of qos-1 delivery, one per message and connection, from the write to the ack (or to the
 * connection's end): `pylon.qos1.deliver`, a child of the push that stored the message, on the
 * node that sends it. The push's trace comes with it: from the push here, or with the cluster's
 * nudge from the node that stored it. Bounded: MAX_PUSHES pushes remembered, MAX_OPEN spans open,
 * beyond which messages go untraced (counted in `untraced`).
 */
export class Qos1Spans {
  /** push id -> [traceparent, ms remembered at] (insertion order: the oldest first). */
  private readonly pushes = new Map<string, [string, number]>();
  private readonly open = new Map<Traced, Map<number, Span>>();
  private openCount = 0;
  untraced = 0;

  constructor(private readonly tracing: Tracing) {}

  /** The push `id` was made in the trace `traceparent`. */
  remember(id: string, traceparent: string): void {
    const now = Date.now();
    this.pushes.delete(id);
    this.pushes.set(id, [traceparent, now]);
    for (const [k, [, at]] of this.pushes) {
      if (this.pushes.size <= MAX_PUSHES && now - at < PUSH_TTL) break;
      this.pushes.delete(k);
    }
  }

  /** Message `seq` of push `id` was written to `to` (again, on a redelivery). */
  sent(to: Traced, seq: number, id: string, attempt: number): void {
    let spans = this.open.get(to);
    const known = spans?.get(seq);
    if (known !== undefined) {
      known.addEvent('redelivered', { 'pylon.attempt': attempt });
      return;
    }
    const p = this.pushes.get(id);
    if (p === undefined) return;
    if (this.openCount >= MAX_OPEN) {
      this.untraced++;
      return;
    }
    const span = this.tracing.start(
      'pylon.qos1.deliver',
      { 'pylon.push.id': id, 'pylon.user': to.user ?? '', 'pylon.seq': seq, 'pylon.connection': to.id },
      this.tracing.parent(p[0]),
    );
    if (spans === undefined) {
      spans = new Map();
      this.open.set(to, spans);
    }
    spans.set(seq, span);
    this.openCount++;
  }

  /** `to` acknowledged every seq up to `upto`. */
  acked(to: Traced, upto: number): void {
    const spans = this.open.get(to);
    if (spans === undefined) return;
    for (const [seq, span] of spans) {
      if (seq > upto) continue;
      span.setAttribute('pylon.acked', true);
      span.end();
      spans.delete(seq);
      this.openCount--;
    }
    if (spans.size === 0) this.open.delete(to);
  }

  /** Message `seq` left `to`'s flight unacknowledged (buried at the redelivery cap, expired): its span ends. */
  end(to: Traced, seq: number, why: string): void {
    const spans = this.open.get(to);
    const span = spans?.get(seq);
    if (spans === undefined || span === undefined) return;
    span.setAttribute('pylon.acked', false);
    span.setStatus({ code: SpanStatusCode.UNSET, message: why });
    span.end();
    spans.delete(seq);
    this.openCount--;
    if (spans.size === 0) this.open.delete(to);
  }

  /** `to` is gone: its spans end unacknowledged (the message waits in the store for the next connection). */
  gone(to: Traced, why: string): void {
    const spans = this.open.get(to);
    if (spans === undefined) return;
    for (const span of spans.values()) {
      span.setAttribute('pylon.acked', false);
      span.setStatus({ code: SpanStatusCode.UNSET, message: why });
      span.end();
      this.openCount--;
    }
    this.open.delete(to);
  }

  get size(): number {
    return this.openCount;
  }
}
