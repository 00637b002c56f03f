import type { IncomingHttpHeaders } from 'node:http';
import type { Envelope } from '../protocol/envelope.js';
import { upgradeToken } from './auth.js';

/**
 * A one-way stream (`GET /stream`, read by `curl -N` or an EventSource): the client sends no
 * hello, so the gateway makes one from the query, and remembers what the stream asked for.
 *
 * Its position, the SSE event id of each message, is `{session}:{seq}`: the resume session
 * the welcome gave, and the highest qos-1 seq written to the stream. A stream opened again with
 * that id in `Last-Event-ID` (EventSource sends it by itself) resumes the session (its labels,
 * the qos-0 pushes it missed while within the resume window) and acknowledges every qos-1
 * message up to the seq: the position is the acknowledgement, because a reader without an SDK
 * has no other way to send one. A stream that stays open can also acknowledge by POSTing
 * `{"kind":"ack","seq":N}` to its session (it then gets more than the delivery window).
 */
export interface OneWay {
  /** Labels to subscribe to after the welcome (through authorizeSub, like a client's `sub`). */
  labels: string[];
  /** The qos-1 seq the stream's reader had seen (from Last-Event-ID); 0 for none. */
  seen: number;
  /** The highest qos-1 seq written to this stream. */
  written: number;
}

/** Labels a stream may ask for in its URL, at most (more is refused by `sub` anyway). */
const MAX_QUERY_LABELS = 256;

/** The hello a one-way stream stands for, and what it asked for. */
export function oneWayHello(
  query: URLSearchParams,
  headers: IncomingHttpHeaders,
): { hello: Envelope; oneWay: OneWay } {
  const data: Record<string, unknown> = { codec: 'json' };
  const token = upgradeToken(query, headers);
  if (token !== undefined) data.token = token;
  const last = lastEventId(query, headers);
  let seen = 0;
  if (last !== undefined) {
    const i = last.lastIndexOf(':');
    const session = i < 0 ? last : last.slice(0, i);
    const digits = i < 0 ? '' : last.slice(i + 1);
    if (session.length > 0) data.session = session;
    if (/^\d{1,15}$/.test(digits) && Number(digits) > 0) seen = Number(digits);
  }
  const labels: string[] = [];
  for (const value of query.getAll('labels')) {
    for (const l of value.split(',')) {
      const label = l.trim();
      if (label.length > 0 && !labels.includes(label)) labels.push(label);
      if (labels.length > MAX_QUERY_LABELS) break;
    }
  }
  return { hello: { kind: 'hello', data }, oneWay: { labels, seen, written: seen } };
}

function lastEventId(query: URLSearchParams, headers: IncomingHttpHeaders): string | undefined {
  const h = headers['last-event-id'];
  const v = typeof h === 'string' && h.length > 0 ? h : (query.get('lastEventId') ?? undefined);
  return v !== undefined && v.length > 0 && v.length <= 512 ? v : undefined;
}

/** The event id of a stream now: `{session}:{seq}`. */
export function positionOf(session: string | undefined, oneWay: OneWay): string {
  return `${session ?? ''}:${oneWay.written}`;
}
