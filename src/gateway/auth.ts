import type { IncomingHttpHeaders } from 'node:http';
import type { TransportName } from '../net/link.js';
import { PylonError } from '../protocol/errors.js';
import type { TokenInfo } from './denials.js';
import { checkLabel, checkRoom, type LabelLimits } from './labels.js';

/** Who a connection is, as the validate hook says. */
export interface Identity {
  /** The user id: pushes to this user reach this connection. Absent: an anonymous connection. */
  user?: string;
  /** Labels the connection starts with (e.g. "version_v2", "room_2018"). */
  labels?: string[];
  device?: string;
  /** Client version, e.g. "2.1.0". */
  version?: string;
  /** Anything else; lands in `connection.data`. */
  data?: Record<string, unknown>;
  /**
   * The token's id, issue and expiry times (ms since the epoch), as far as the validator knows
   * them: what bans and revocations are checked against (`jwtValidator` fills it from `jti`,
   * `iat`, `exp`). A token without `issuedAt` is not concerned by "revoke issued before".
   */
  token?: TokenInfo;
}

/** What the validate hook knows about the connection besides its token. */
export interface AuthMeta {
  transport: TransportName;
  remoteAddress: string;
  /** The WebSocket upgrade's headers (empty on TCP). */
  headers: IncomingHttpHeaders;
}

/**
 * Checks a token and returns the identity, or rejects: throw (a PylonError's message becomes the
 * disconnect reason) or return null/undefined. The connection is registered only after it
 * resolves, and is closed with `unauthorized` (4502) if it rejects.
 */
export type Validator = (
  token: string | undefined,
  meta: AuthMeta,
) => Identity | null | undefined | Promise<Identity | null | undefined>;

/**
 * Development mode: the token is the user id, no check at all; no token gives an anonymous
 * connection. Never expose a gateway that uses it beyond loopback.
 */
export function devValidator(): Validator {
  return (token) => (token ? { user: token } : {});
}

/** The token of a WebSocket upgrade: `?token=` or `Authorization: Bearer …`. */
export function upgradeToken(query: URLSearchParams, headers: IncomingHttpHeaders): string | undefined {
  const q = query.get('token');
  if (q) return q;
  const h = headers.authorization;
  if (typeof h === 'string') {
    const m = /^Bearer\s+(.+)$/i.exec(h.trim());
    if (m) return m[1];
  }
  return undefined;
}

/** Longest user id, device and version an identity may carry (characters). */
export const IDENTITY_LIMITS = { user: 256, device: 128, version: 64 } as const;

/** A validate hook gave a user id, device or version over IDENTITY_LIMITS: refused with identity_too_long (4507). */
export class IdentityTooLong extends Error {}

/**
 * Thrown by a validate hook for a token that is good but expired (the JWT validator does past
 * its clock tolerance): refused with token_expired (4011), so a client with a token source
 * gets a new one and reconnects, instead of unauthorized (4502), after which it stays away.
 */
export class TokenExpired extends PylonError {
  constructor(message = 'token expired', options?: { cause?: unknown }) {
    super('UNAUTHORIZED', message, options);
  }
}

/**
 * Checks an identity returned by a validate hook. A broken one (wrong types, too many labels) is
 * the application's bug and throws TypeError; one whose strings are too long (dev auth turns any
 * token into a user id) throws IdentityTooLong.
 */
export function checkIdentity(id: unknown, limits: LabelLimits): Identity {
  if (typeof id !== 'object' || id === null)
    throw new TypeError('validate must return an identity object or null');
  const i = id as Identity;
  if (i.user !== undefined && (typeof i.user !== 'string' || i.user.length === 0)) {
    throw new TypeError('identity.user must be a non-empty string when given');
  }
  for (const field of ['device', 'version'] as const) {
    if (i[field] !== undefined && typeof i[field] !== 'string')
      throw new TypeError(`identity.${field} must be a string when given`);
  }
  for (const field of ['user', 'device', 'version'] as const) {
    const v = i[field];
    if (v !== undefined && v.length > IDENTITY_LIMITS[field]) {
      throw new IdentityTooLong(`${field} longer than ${IDENTITY_LIMITS[field]} characters`);
    }
  }
  if (i.token !== undefined) {
    const t = i.token as Record<string, unknown>;
    if (typeof t !== 'object' || t === null)
      throw new TypeError('identity.token must be an object when given');
    if (t.id !== undefined && (typeof t.id !== 'string' || t.id.length > 256))
      throw new TypeError('identity.token.id must be a string of at most 256 characters');
    for (const f of ['issuedAt', 'expiresAt'] as const) {
      if (t[f] !== undefined && (typeof t[f] !== 'number' || !Number.isFinite(t[f])))
        throw new TypeError(`identity.token.${f} must be ms since the epoch`);
    }
  }
  if (i.labels !== undefined) {
    if (!Array.isArray(i.labels)) throw new TypeError('identity.labels must be an array of strings');
    for (const l of i.labels) checkLabel(l);
    try {
      checkRoom(limits, undefined, undefined, i.labels);
    } catch (err) {
      throw new TypeError(`identity.labels: ${(err as Error).message}`);
    }
  }
  return i;
}
