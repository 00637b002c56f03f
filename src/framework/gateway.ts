import type { Connection } from '../gateway/connection.js';
import type { Gateway } from '../gateway/gateway.js';
import type { Context, Handler } from '../gateway/router.js';
import { PylonError } from '../protocol/errors.js';
import { type Group, leaveGroup } from './group.js';

/**
 * Groups with the envelope gateway: its connections can be group members too, and a gateway
 * message type can be routed into a group, where the group's `on(type)` route runs it inside
 * the mailbox as `(connection, data, group)`; for a request its return value is the answer.
 *
 * ```ts
 * const room = new Group<Connection>({ name: 'room-1' });
 * room.on('room.move', (conn, data) => { … });
 * gateway.handle('room.move', intoGroup(room));                        // one group
 * gateway.handle('room.move', intoGroup((ctx) => groupOf(ctx.connection))); // the sender's group
 * leaveGroupsOnDisconnect(gateway);  // members leave their group when they disconnect
 * ```
 *
 * Plain `gateway.handle('room.move', (data, ctx) => group.call('move', { conn: ctx.connection, data }))`
 * works as well.
 */
export function intoGroup(
  group: Group<Connection> | ((ctx: Context) => Group<Connection> | undefined),
  type?: string,
): Handler {
  return (data, ctx) => {
    const g = typeof group === 'function' ? group(ctx) : group;
    if (g === undefined) throw new PylonError('FORBIDDEN', `"${ctx.type}": the connection is in no group`);
    return g.dispatch(ctx.connection, type ?? ctx.type, data);
  };
}

/** Remove each gateway connection from its group when it disconnects (the group's `$leave` runs). */
export function leaveGroupsOnDisconnect(gateway: Gateway): void {
  gateway.on('disconnect', (conn) => leaveGroup(conn));
}
