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

export interface PresenceEvent {
  label: string;
  user: string;
}

/**
 * Who is in a label, by user: a user is present while at least one of its connections has the
 * label. For labels with presence on, the label's members get `presence.join` when a user's
 * first connection joins and `presence.leave` when its last one leaves (anonymous connections
 * are not announced).
 */
export class Presence {
  constructor(
    private readonly hub: Hub<Connection>,
    private readonly announced: (label: string) => boolean,
  ) {}

  /** The users in `label` and how many there are (connections of one user count once). */
  of(label: string, limit = 1000): { label: string; count: number; users: string[] } {
    const users = new Set<string>();
    for (const c of this.hub.ofLabel(label)) if (c.user !== undefined) users.add(c.user);
    return { label, count: users.size, users: [...users].sort().slice(0, limit) };
  }

  /** `conn` now has `label` (it is already indexed). */
  joined(conn: Connection, label: string): void {
    if (conn.user === undefined || !this.announced(label)) return;
    if (this.othersOfUser(conn, label)) return;
    this.announce(label, 'presence.join', { label, user: conn.user }, conn);
  }

  /** `conn` no longer has `label` (already removed from the index), or it closed. */
  left(conn: Connection, label: string): void {
    if (conn.user === undefined || !this.announced(label)) return;
    if (this.othersOfUser(conn, label)) return;
    this.announce(label, 'presence.leave', { label, user: conn.user }, undefined);
  }

  private othersOfUser(conn: Connection, label: string): boolean {
    for (const c of this.hub.ofUser(conn.user as string)) if (c !== conn && c.has(label)) return true;
    return false;
  }

  private announce(label: string, type: string, event: PresenceEvent, except: Connection | undefined): void {
    for (const m of this.hub.ofLabel(label)) if (m !== except) m.send(type, event);
  }
}
