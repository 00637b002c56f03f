import type { IncomingHttpHeaders } from 'node:http';
import { PylonError } from '../protocol/errors.js';
import type { TransportName } from '../transport/link.js';

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

const MAX_LABEL = 256;

/** Checks an identity returned by a validate hook; a broken one is the application's bug. */
export function checkIdentity(id: unknown, maxLabels: number): Identity {
  if (typeof id !== 'object' || id === null)
    throw new TypeError('validate must return an identity object or null');
  const i = id as Identity;
  if (i.user !== undefined && (typeof i.user !== 'string' || i.user.length === 0)) {
    throw new TypeError('identity.user must be a non-empty string when given');
  }
  if (i.labels !== undefined) {
    if (!Array.isArray(i.labels)) throw new TypeError('identity.labels must be an array of strings');
    if (i.labels.length > maxLabels) throw new TypeError(`identity.labels has more than ${maxLabels} labels`);
    for (const l of i.labels) checkLabel(l);
  }
  return i;
}

/** A label is a non-empty string of at most 256 characters. */
export function checkLabel(label: unknown): string {
  if (typeof label !== 'string' || label.length === 0 || label.length > MAX_LABEL) {
    throw new PylonError('BAD_REQUEST', `a label must be a string of 1 to ${MAX_LABEL} characters`);
  }
  return label;
}
