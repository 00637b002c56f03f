import type { Fanout } from '../hub/fanout.js';
import type { Hub } from '../hub/hub.js';
import type { Connection } from './connection.js';

/** Which labels announce joins and leaves to their members. */
export type PresenceRule = string[] | RegExp | ((label: string) => boolean);

export function presenceMatcher(rule: PresenceRule | undefined): (label: string) => boolean {
  if (rule === undefined) return () => false;
  if (typeof rule === 'function') return rule;
  if (rule instanceof RegExp) return (label) => rule.test(label);
  const set = new Set(rule);
  return (label) => set.has(label);
}

/** The data of a `presence.join` or `presence.leave` push. */
export interface PresenceEvent {
  label: string;
  /** The users who joined (or left) since the last announcement of this label. */
  users: string[];
  /** Set when exactly one user joined (or left): `users[0]`. */
  user?: string;
}

/** Announcements of one label wait at least this long after the previous flush (ms). */
export const PRESENCE_WINDOW = 100;

/**
 * Who is in a label, by user: a user is present while at least one of its connections has the
 * label. For labels with presence on, the label's members get `presence.join` when a user's
 * first connection joins and `presence.leave` when its last one leaves (anonymous connections
 * are not announced).
 *
 * Announcements are coalesced: changes are collected and flushed at most every 100 ms (at
 * once, on the next turn, when the gateway was quiet), and a user who joined and left in
 * between is not announced at all. One flush sends each label at most one leave and one join,
 * listing every user, encoded once for all members (a lone joiner is not sent its own join). So N users joining a label of N members
 * cost O(N) announcements, and a client flapping sub/unsub costs one at most per window.
 */
export class Presence {
  /** label -> user -> whether the user was present at the last announcement. */
  private pending = new Map<string, Map<string, boolean>>();
  private scheduled = false;
  private lastFlush = -Infinity;

  constructor(
    private readonly hub: Hub<Connection>,
    private readonly announced: (label: string) => boolean,
    private readonly fanout: Fanout,
    /** Runs `fn` after `ms` (the gateway's wheel). */
    private readonly after: (ms: number, fn: () => void) => void,
    private readonly now: () => number,
  ) {}

  /** The users in `label` and how many there are (connections of one user count once). */
  of(label: string, limit = 1000): { label: string; count: number; users: string[] } {
    const users = new Set<string>();
    for (const c of this.hub.ofLabel(label)) if (c.user !== undefined) users.add(c.user);
    return { label, count: users.size, users: [...users].sort().slice(0, limit) };
  }

  /** `conn` now has `label` (it is already indexed). */
  joined(conn: Connection, label: string): void {
    this.changed(conn, label, false);
  }

  /** `conn` no longer has `label` (already removed from the index), or it closed. */
  left(conn: Connection, label: string): void {
    this.changed(conn, label, true);
  }

  /** `wasPresent`: whether the user was in the label before this change. */
  private changed(conn: Connection, label: string, wasPresent: boolean): void {
    const user = conn.user;
    if (user === undefined || !this.announced(label)) return;
    let users = this.pending.get(label);
    if (users === undefined) {
      users = new Map();
      this.pending.set(label, users);
    }
    if (!users.has(user)) {
      // Another connection of the user in the label means no change was visible.
      users.set(user, wasPresent || this.present(label, user, conn));
    }
    this.schedule();
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    const wait = this.lastFlush + PRESENCE_WINDOW - this.now();
    if (wait <= 0) setImmediate(flushPresence, this);
    else this.after(wait, () => this.flush());
  }

  /** @internal Announce what changed since the last flush. */
  flush(): void {
    this.scheduled = false;
    this.lastFlush = this.now();
    const pending = this.pending;
    this.pending = new Map();
    for (const [label, users] of pending) {
      const joined: string[] = [];
      const left: string[] = [];
      for (const [user, was] of users) {
        const is = this.present(label, user, undefined);
        if (is && !was) joined.push(user);
        else if (!is && was) left.push(user);
      }
      if (joined.length === 0 && left.length === 0) continue;
      const members = [...this.hub.ofLabel(label)];
      if (left.length > 0) this.announce(members, 'presence.leave', label, left);
      if (joined.length > 0) {
        // A user alone in its join is not told of it; in a batch everyone gets the whole list
        // (a joiner must learn of the others who joined with it).
        const lone = joined.length === 1 ? joined[0] : undefined;
        this.announce(
          lone === undefined ? members : members.filter((m) => m.user !== lone),
          'presence.join',
          label,
          joined,
        );
      }
    }
  }

  private announce(members: Connection[], type: string, label: string, users: string[]): void {
    const data: PresenceEvent = users.length === 1 ? { label, users, user: users[0] } : { label, users };
    try {
      void this.fanout.deliver(members, { type, data }).done;
    } catch {
      // Fan-out refused (paced pushes at their limit): presence is best effort, like qos 0.
    }
  }

  /** Whether a connection of `user` other than `except` has `label`. */
  private present(label: string, user: string, except: Connection | undefined): boolean {
    for (const c of this.hub.ofUser(user)) if (c !== except && c.has(label)) return true;
    return false;
  }
}

function flushPresence(p: Presence): void {
  p.flush();
}
