import type { Target } from '../hub/member.js';
import type { Envelope } from '../protocol/envelope.js';
import { PylonError } from '../protocol/errors.js';

/** One thing seen on a tap: a push accepted here for the user or label, or a frame from the user. */
export interface TapEvent {
  /** ms since the epoch. */
  at: number;
  dir: 'push' | 'in';
  /** push: the push's type; in: the frame's type (req, msg). */
  type: string | undefined;
  /** in: the frame's kind. */
  kind?: string;
  qos?: 0 | 1;
  /** push: what it was addressed to, in short ("user u1", "labels room:1", "all"). */
  target?: string;
  /** in: the connection and its user. */
  connection?: string;
  user?: string;
  /** The data as JSON, cut to TAP_DATA characters. */
  data?: string;
}

/** Whose traffic a tap sees: one user's, or one label's. */
export type TapFilter = { user: string } | { label: string };

/** Taps open at once in a process. */
export const MAX_TAPS = 16;
/** Characters of data a tap event carries at most. */
export const TAP_DATA = 1024;

interface Tap {
  filter: TapFilter;
  sink: (e: TapEvent) => void;
}

/**
 * Live taps on the traffic of one user or one label (the dashboard's live tail): the pushes this
 * gateway accepts for them, and the requests and messages the user's connections send. Off until
 * a tap is added; then each push and client frame costs one check of `active` and a match per
 * tap. Bounded: MAX_TAPS taps per process, each event's data cut to TAP_DATA characters.
 */
export class Taps {
  /** A tap is open (read on every push and client frame). */
  active = false;
  private readonly taps = new Set<Tap>();

  add(filter: TapFilter, sink: (e: TapEvent) => void): () => void {
    if (this.taps.size >= MAX_TAPS)
      throw new PylonError('TOO_MANY_REQUESTS', `${MAX_TAPS} taps are open already`);
    const tap: Tap = { filter, sink };
    this.taps.add(tap);
    this.active = true;
    return () => {
      this.taps.delete(tap);
      this.active = this.taps.size > 0;
    };
  }

  /** A push accepted on this gateway. */
  push(target: Target, type: string, data: unknown, qos: 0 | 1): void {
    let event: TapEvent | undefined;
    for (const t of this.taps) {
      if (!concerns(t.filter, target)) continue;
      event ??= { at: Date.now(), dir: 'push', type, qos, target: describe(target), data: cut(data) };
      t.sink(event);
    }
  }

  /** A request or message from a connection of `user`. */
  inbound(connection: string, user: string, env: Envelope): void {
    let event: TapEvent | undefined;
    for (const t of this.taps) {
      if (!('user' in t.filter) || t.filter.user !== user) continue;
      event ??= {
        at: Date.now(),
        dir: 'in',
        kind: env.kind,
        type: env.type,
        connection,
        user,
        data: cut(env.data),
      };
      t.sink(event);
    }
  }
}

function concerns(f: TapFilter, t: Target): boolean {
  if ('all' in t) return true;
  if ('user' in f) {
    if ('user' in t) return t.user === f.user;
    if ('users' in t) return t.users.includes(f.user);
    return false;
  }
  if ('labels' in t) return (t.labels.all ?? []).includes(f.label) || (t.labels.any ?? []).includes(f.label);
  return false;
}

function describe(t: Target): string {
  if ('all' in t) return 'all';
  if ('user' in t) return `user ${t.user}`;
  if ('users' in t) return `users ${t.users.length}`;
  if ('connection' in t) return `connection ${t.connection}`;
  const parts: string[] = [];
  if (t.labels.all?.length) parts.push(`all ${t.labels.all.join(',')}`);
  if (t.labels.any?.length) parts.push(`any ${t.labels.any.join(',')}`);
  if (t.labels.not?.length) parts.push(`not ${t.labels.not.join(',')}`);
  return `labels ${parts.join(' ')}`;
}

function cut(data: unknown): string | undefined {
  if (data === undefined) return undefined;
  let text: string;
  try {
    text = data instanceof Uint8Array ? `(${data.length} bytes)` : (JSON.stringify(data) ?? 'null');
  } catch {
    text = '(not JSON)';
  }
  return text.length > TAP_DATA ? `${text.slice(0, TAP_DATA)}…` : text;
}
