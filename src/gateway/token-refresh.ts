import type { DisconnectName } from '../protocol/disconnect.js';
import { PylonError } from '../protocol/errors.js';
import type { TimingWheel, WheelTimer } from '../timer/wheel.js';
import { checkIdentity, type Validator } from './auth.js';
import type { Connection } from './connection.js';
import type { Refusal, TokenInfo } from './denials.js';
import { checkRoom, type LabelLimits, type LabelTotals } from './labels.js';
import type { Router } from './router.js';

/**
 * Token refresh without reconnecting (PROTOCOL.md, section 4): a connection whose token has an
 * expiry (`identity.token.expiresAt`) is sent a `$refresh` push some time before it, the client
 * answers with a `$refresh` request carrying a new token, and the gateway validates it and
 * updates the identity in place. A connection whose token expires unrefreshed is closed with
 * `token_expired` (4011: fetch a new token, then reconnect). One wheel timer per connection with
 * an expiring token.
 */

export interface TokenRefreshOptions {
  /** Ask for a new token this long before the expiry (ms; at most half the time left). Default 30 s. */
  lead?: number;
  /** Close this long after the expiry (ms): room for a refresh in flight or a skewed clock. Default 0. */
  grace?: number;
}

export const DEFAULT_TOKEN_REFRESH: Required<TokenRefreshOptions> = { lead: 30_000, grace: 0 };

/** What refresh needs from the gateway. */
export interface RefreshHost {
  readonly router: Router;
  readonly handshake: { validate: Validator | undefined; labels: LabelLimits };
  readonly labelTotals: LabelTotals;
  readonly tokenRefresh: Required<TokenRefreshOptions>;
  readonly authorizeSub:
    | ((conn: Connection, label: string, action: 'sub') => boolean | Promise<boolean>)
    | undefined;
  wheelOf(): TimingWheel;
  refusal(user: string | undefined, token: TokenInfo | undefined): Refusal | undefined;
  disconnect(conn: Connection, name: DisconnectName, reason?: string): void;
  join(conn: Connection, label: string): boolean;
  leave(conn: Connection, label: string): boolean;
}

/** Timer state: a prompt (`$refresh` push) comes first, then the close. */
interface Expiry {
  conn: Connection;
  host: RefreshHost;
  /** ms since the epoch: the expiry, and when to ask for a new token. */
  at: number;
  promptAt: number;
  prompted: boolean;
  timer: WheelTimer | undefined;
}

const expiries = new WeakMap<Connection, Expiry>();

/** Arms (or re-arms, after a refresh) the connection's expiry from `conn.token`; cancels it without one. */
export function armExpiry(host: RefreshHost, conn: Connection): void {
  const old = expiries.get(conn);
  old?.timer?.cancel();
  const at = conn.token?.expiresAt;
  if (at === undefined) {
    expiries.delete(conn);
    return;
  }
  const left = Math.max(0, at - Date.now());
  const promptAt = at - Math.min(host.tokenRefresh.lead, left / 2);
  const e: Expiry = { conn, host, at, promptAt, prompted: false, timer: undefined };
  expiries.set(conn, e);
  schedule(e);
}

/** The connection is gone: its timer too. */
export function disarmExpiry(conn: Connection): void {
  expiries.get(conn)?.timer?.cancel();
  expiries.delete(conn);
}

/** Whether a token that expired already (the validator's clock tolerance let it through) should be refused. */
export function expired(token: TokenInfo | undefined, grace: number): boolean {
  return token?.expiresAt !== undefined && token.expiresAt + grace <= Date.now();
}

/** Longest single wait on the wheel; a later expiry is waited for in steps. */
const MAX_STEP = 7 * 86_400_000;

/** ms until the next step: the prompt (`lead` before the expiry, at most half the time left when armed), then the close. */
function untilNext(e: Expiry): number {
  return (e.prompted ? e.at + e.host.tokenRefresh.grace : e.promptAt) - Date.now();
}

function schedule(e: Expiry): void {
  e.timer = e.host.wheelOf().schedule(Math.min(MAX_STEP, Math.max(1, untilNext(e))), onExpiry, e);
}

function onExpiry(e: Expiry): void {
  const { conn, host } = e;
  e.timer = undefined;
  if (expiries.get(conn) !== e || conn.state !== 'open') return;
  if (untilNext(e) > 0) {
    schedule(e); // a step of a long wait (or the wheel's tick came early)
    return;
  }
  if (!e.prompted) {
    e.prompted = true;
    conn.write({ kind: 'push', type: '$refresh', data: { expiresAt: e.at } });
    schedule(e);
    return;
  }
  expiries.delete(conn);
  host.disconnect(conn, 'token_expired', `token expired at ${new Date(e.at).toISOString()}`);
}

/** The `$refresh` request: validate the new token and update the connection's identity in place. */
export function installRefresh(host: RefreshHost): void {
  host.router.handle('$refresh', async (data, ctx) => {
    const conn = ctx.connection;
    const validate = host.handshake.validate;
    if (validate === undefined) throw new PylonError('BAD_REQUEST', 'this gateway has no tokens to refresh');
    const token = (data as { token?: unknown } | undefined)?.token;
    if (typeof token !== 'string' || token.length === 0 || token.length > 16_384)
      throw new PylonError('BAD_REQUEST', 'token: must be a string of 1 to 16,384 characters');
    let result: unknown;
    try {
      result = await validate(token, {
        transport: conn.transport,
        remoteAddress: conn.remoteAddress,
        headers: {},
      });
    } catch (err) {
      throw err instanceof PylonError ? err : new PylonError('UNAUTHORIZED', 'token refused');
    }
    if (result === null || result === undefined) throw new PylonError('UNAUTHORIZED', 'token refused');
    let identity: ReturnType<typeof checkIdentity>;
    try {
      identity = checkIdentity(result, host.handshake.labels);
    } catch (err) {
      throw new PylonError('UNAUTHORIZED', `identity refused: ${(err as Error).message}`);
    }
    if (identity.user !== conn.user) throw new PylonError('FORBIDDEN', 'the token is for another user');
    if (expired(identity.token, host.tokenRefresh.grace))
      throw new PylonError('UNAUTHORIZED', 'token expired');
    const refused = host.refusal(identity.user, identity.token);
    if (refused !== undefined) {
      host.disconnect(conn, refused.name, refused.reason);
      throw new PylonError('FORBIDDEN', refused.reason);
    }
    if (conn.state !== 'open') throw new PylonError('UNAVAILABLE', 'connection closed');
    await relabel(host, conn, identity.labels ?? []);
    // Closed while authorizeSub answered: nothing to update (and no timer to arm for it).
    if (conn.state !== 'open') throw new PylonError('UNAVAILABLE', 'connection closed');
    conn.token = identity.token;
    if (identity.device !== undefined) conn.device = identity.device;
    if (identity.version !== undefined) conn.version = identity.version;
    if (identity.data) Object.assign(conn.data, identity.data);
    armExpiry(host, conn);
    const out: { labels: string[]; expiresAt?: number } = { labels: [...(conn.labels ?? [])] };
    if (identity.token?.expiresAt !== undefined) out.expiresAt = identity.token.expiresAt;
    return out;
  });
}

/**
 * The labels of a new identity, by the rules of a resume: the token's labels are the new
 * token's (the old ones it no longer gives are left, unless the client subscribed to them), the
 * labels the client subscribed to must pass authorizeSub again, those the application added stay.
 */
async function relabel(host: RefreshHost, conn: Connection, labels: readonly string[]): Promise<void> {
  const next = [...new Set(labels)];
  const before = conn.identityLabels ?? [];
  const added = next.filter((l) => !conn.has(l));
  if (added.length > 0) {
    try {
      const dropped = new Set(
        before.filter((l) => !next.includes(l) && !(conn.subscribed ?? []).includes(l)),
      );
      checkRoom(host.handshake.labels, host.labelTotals, conn.labels, added, dropped);
    } catch (err) {
      throw new PylonError('TOO_MANY_REQUESTS', (err as Error).message);
    }
  }
  const subscribed = conn.subscribed ?? [];
  const authorize = host.authorizeSub;
  const kept =
    authorize === undefined
      ? subscribed.slice()
      : (
          await Promise.all(
            subscribed.map(async (l) => ((await authorize(conn, l, 'sub')) === true ? l : undefined)),
          )
        ).filter((l): l is string => l !== undefined);
  if (conn.state !== 'open') return;
  for (const l of subscribed) {
    if (kept.includes(l)) continue;
    if (!next.includes(l)) host.leave(conn, l);
    conn.subscribed = conn.subscribed?.filter((x) => x !== l);
  }
  for (const l of before) if (!next.includes(l) && !kept.includes(l)) host.leave(conn, l);
  for (const l of added) host.join(conn, l);
  conn.identityLabels = next;
}
