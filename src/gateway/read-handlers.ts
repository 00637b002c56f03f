import { PylonError } from '../protocol/errors.js';
import type { Connection } from './connection.js';
import type { History } from './history.js';
import { checkLabel } from './labels.js';
import type { GatewayOptions } from './options.js';
import type { Presence } from './presence.js';
import type { Router } from './router.js';

/** What the read handlers need. */
export interface ReadHost {
  readonly router: Router;
  readonly presence: Presence;
  readonly history: History;
  readonly authorizeSub: GatewayOptions['authorizeSub'];
}

/**
 * `$presence` and `$history`: clients read who is in a label and what was said there, if they
 * have the label or the authorizeSub hook allows `read`. Types starting with `$` are Pylon's.
 */
export function installReadHandlers(core: ReadHost): void {
  const authorize = core.authorizeSub;
  const mayRead = async (conn: Connection, label: unknown): Promise<string> => {
    const l = checkLabel(label);
    if (conn.has(l) || (authorize !== undefined && (await authorize(conn, l, 'read')) === true)) return l;
    throw new PylonError('FORBIDDEN', `not allowed to read "${l}"`);
  };
  core.router.handle('$presence', async (data, ctx) => {
    const label = await mayRead(ctx.connection, (data as { label?: unknown } | undefined)?.label);
    return core.presence.of(label);
  });
  core.router.handle('$history', async (data, ctx) => {
    const d = data as { label?: unknown; limit?: unknown; since?: unknown } | undefined;
    const label = await mayRead(ctx.connection, d?.label);
    const limit = d?.limit === undefined ? 50 : d.limit;
    if (!Number.isInteger(limit) || (limit as number) < 1 || (limit as number) > 1000) {
      throw new PylonError('BAD_REQUEST', 'limit: must be an integer from 1 to 1000');
    }
    const since = d?.since === undefined ? 0 : d.since;
    if (!Number.isInteger(since) || (since as number) < 0)
      throw new PylonError('BAD_REQUEST', 'since: must be a position (an integer from 0)');
    return core.history.read(label, limit as number, since as number);
  });
}
