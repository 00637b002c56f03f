import { createHash, timingSafeEqual } from 'node:crypto';
import { isIP } from 'node:net';

/** Shortest API key accepted. */
export const MIN_KEY_LENGTH = 16;

/**
 * The admin API keys. Several may be configured (to rotate them without downtime); a request
 * is allowed when its bearer token equals any of them. Comparison is in constant time: both
 * sides are hashed to 32 bytes and compared with timingSafeEqual, and every key is compared
 * whatever matched, so neither the length nor the position of a key leaks through timing.
 */
export class ApiKeys {
  private readonly digests: Buffer[];

  constructor(keys: readonly string[] = []) {
    for (const [i, k] of keys.entries()) {
      if (typeof k !== 'string' || k.length < MIN_KEY_LENGTH) {
        throw new Error(`admin API key #${i + 1} must be a string of at least ${MIN_KEY_LENGTH} characters`);
      }
    }
    this.digests = keys.map(digest);
  }

  /** Whether any key is configured (without keys, every request is allowed: loopback only). */
  get required(): boolean {
    return this.digests.length > 0;
  }

  /** Whether `token` is one of the keys. Always false without keys. */
  matches(token: string | undefined): boolean {
    if (token === undefined || token.length === 0) return false;
    const d = digest(token);
    let ok = false;
    for (const k of this.digests) ok = timingSafeEqual(k, d) || ok;
    return ok;
  }

  /** Whether a request with this `authorization` header value may call a protected method. */
  allows(authorization: string | undefined): boolean {
    return !this.required || this.matches(bearerToken(authorization));
  }
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

/** The token of an `Authorization: Bearer <token>` header value, else undefined. */
export function bearerToken(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header);
  return m?.[1];
}

/** Whether `host` is a loopback address (127.0.0.0/8, ::1, localhost). */
export function isLoopback(host: string): boolean {
  const h = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  if (h === 'localhost') return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  if (isIP(h) === 6) return h === '::1' || h.toLowerCase().startsWith('::ffff:127.');
  return false;
}

/**
 * Refuse to serve the admin API beyond loopback without a key: anyone who can reach it could
 * push to every user and kick every connection.
 */
export function assertBindable(host: string, keys: ApiKeys): void {
  if (keys.required || isLoopback(host)) return;
  throw new Error(
    `refusing to serve the admin API on ${host} without an API key: configure at least one key ` +
      '(options.keys), or bind it to 127.0.0.1',
  );
}

/**
 * Whether a `Host` header (or an Origin's host) names this machine: a loopback address or
 * `localhost`, with or without a port. Without keys the admin API answers only such requests,
 * so a web page whose name was rebound to 127.0.0.1 (DNS rebinding) cannot drive it from the
 * operator's browser: the browser still sends the page's own name as Host.
 */
export function isLoopbackHost(header: string | undefined): boolean {
  if (header === undefined || header === '') return false;
  let host = header.trim().toLowerCase();
  if (host.startsWith('[')) {
    const end = host.indexOf(']');
    if (end < 0) return false;
    const rest = host.slice(end + 1);
    if (rest !== '' && !/^:\d{1,5}$/.test(rest)) return false;
    host = host.slice(0, end + 1);
  } else {
    const colon = host.lastIndexOf(':');
    if (colon >= 0) {
      if (!/^\d{1,5}$/.test(host.slice(colon + 1))) return false;
      host = host.slice(0, colon);
    }
  }
  return isLoopback(host);
}

/** Whether an `Origin` header is a page served from this machine (http(s)://loopback[:port]). */
export function isLoopbackOrigin(origin: string): boolean {
  const m = /^https?:\/\/([^/]+)$/i.exec(origin.trim());
  return m !== null && isLoopbackHost(m[1]);
}
