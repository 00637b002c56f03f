import type { Hub } from '../hub/hub.js';
import { PylonError } from '../protocol/errors.js';
import type { Connection } from './connection.js';
import { checkLabel, checkRoom, type LabelLimits } from './labels.js';
import type { Presence } from './presence.js';

/**
 * Labels on connections: join and leave (the connection's own list, the hub's index and
 * presence kept in step, the limits checked first), and a user's labels changed on all its
 * connections at once.
 */

/** Adds `label` to `conn` (O(1) in the hub). False if it had it or is closing; throws over a limit. */
export function joinLabel(
  hub: Hub<Connection>,
  presence: Presence,
  limits: LabelLimits,
  conn: Connection,
  label: string,
): boolean {
  checkLabel(label);
  if (conn.state === 'closing' || conn.state === 'closed') return false;
  const labels = conn.labels ?? [];
  if (labels.includes(label)) return false;
  checkRoom(limits, hub.has(conn) ? hub : undefined, labels, [label]);
  conn.labels = ownLabels(conn);
  conn.labels.push(hub.intern(label));
  hub.indexLabel(conn, label);
  if (conn.state === 'open') presence.joined(conn, label);
  return true;
}

/** Removes `label` from `conn`. False if it did not have it. */
export function leaveLabel(
  hub: Hub<Connection>,
  presence: Presence,
  conn: Connection,
  label: string,
): boolean {
  const at = conn.labels?.indexOf(label) ?? -1;
  if (at < 0) return false;
  ownLabels(conn).splice(at, 1);
  const sub = conn.subscribed?.indexOf(label) ?? -1;
  if (sub >= 0) conn.subscribed?.splice(sub, 1);
  hub.unindexLabel(conn, label);
  if (conn.state === 'open') presence.left(conn, label);
  return true;
}

/**
 * The connection's label list, to change: until the first change it is the identity's own list
 * (one array for both, copied on write).
 */
function ownLabels(conn: Connection): string[] {
  if (conn.labels === undefined) conn.labels = [];
  else if (conn.labels === conn.identityLabels) conn.labels = conn.labels.slice();
  return conn.labels;
}

/** Adds and removes labels on every open connection of `user` here, all or nothing. Returns how many connections. */
export function updateLabels(
  hub: Hub<Connection>,
  limits: LabelLimits,
  user: string,
  change: { add?: string[]; remove?: string[] },
): number {
  const conns = hub.ofUser(user);
  const add = change.add ?? [];
  const remove = new Set(change.remove ?? []);
  for (const l of add) checkLabel(l);
  // All or nothing: check every connection's room for the new labels before changing any.
  for (const c of conns) {
    try {
      checkRoom(limits, hub, c.labels, add, remove);
    } catch (err) {
      throw new PylonError('TOO_MANY_REQUESTS', `add: connection ${c.id}: ${(err as Error).message}`);
    }
  }
  for (const c of conns) {
    for (const l of change.remove ?? []) c.leave(l);
    for (const l of add) c.join(l);
  }
  return conns.length;
}
