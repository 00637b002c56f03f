import type { IncomingHttpHeaders } from 'node:http';
import { BlockList, isIP } from 'node:net';

/**
 * The real client address behind reverse proxies. `X-Forwarded-For` and `X-Real-IP` are
 * believed ONLY when the peer itself is a trusted proxy: anyone else could write them.
 */

/** Canonical form for comparisons: IPv4-mapped IPv6 ("::ffff:10.0.0.1") as plain IPv4, lower case. */
export function normalizeAddress(address: string): string {
  const a = address.trim().toLowerCase();
  return a.startsWith('::ffff:') && isIP(a.slice(7)) === 4 ? a.slice(7) : a;
}

/** Addresses believed when they forward a client's address. */
export interface TrustedProxies {
  /** Addresses and ranges given (0: trust none). */
  readonly size: number;
  has(address: string): boolean;
}

/**
 * The trusted proxies: IP addresses and CIDR ranges ("10.0.0.0/8", "fd00::/8"; in Kubernetes the
 * pod network of the Ingress controller, whose pods change addresses).
 */
export function trustSet(addresses: readonly string[] | undefined): TrustedProxies {
  const list = new BlockList();
  let size = 0;
  for (const a of addresses ?? []) {
    const [base = '', bits, extra] = a.split('/');
    const n = normalizeAddress(base);
    const family = isIP(n);
    const prefix = bits === undefined ? undefined : Number(bits);
    const max = family === 6 ? 128 : 32;
    if (
      family === 0 ||
      extra !== undefined ||
      (prefix !== undefined && (!/^\d{1,3}$/.test(bits as string) || (prefix as number) > max))
    )
      throw new TypeError(`trustedProxies: "${a}" is not an IP address or a CIDR range`);
    const type = family === 6 ? 'ipv6' : 'ipv4';
    if (prefix === undefined) list.addAddress(n, type);
    else list.addSubnet(n, prefix, type);
    size++;
  }
  return {
    size,
    has(address: string): boolean {
      const n = normalizeAddress(address);
      const family = isIP(n);
      return family !== 0 && list.check(n, family === 6 ? 'ipv6' : 'ipv4');
    },
  };
}

/**
 * The client address for a request that came from `peer`:
 * - `peer` is not trusted: `peer`, whatever the headers say;
 * - else `X-Forwarded-For`, read from the right: the first address that is not itself a trusted
 *   proxy (the leftmost one when all are trusted);
 * - else `X-Real-IP`;
 * - else `peer`. Values that are not IP addresses are ignored.
 */
export function clientAddress(
  peer: string,
  headers: IncomingHttpHeaders | Record<string, string | undefined>,
  trusted: TrustedProxies,
): string {
  if (trusted.size === 0 || !trusted.has(normalizeAddress(peer))) return peer;
  const xff = headers['x-forwarded-for'];
  const forwarded = Array.isArray(xff) ? xff.join(',') : xff;
  if (forwarded) {
    const hops = forwarded.split(',');
    let leftmost = '';
    for (let i = hops.length - 1; i >= 0; i--) {
      const hop = normalizeAddress(stripPort(hops[i]!));
      if (isIP(hop) === 0) break;
      leftmost = hop;
      if (!trusted.has(hop)) return hop;
    }
    if (leftmost) return leftmost;
  }
  const real = headers['x-real-ip'];
  if (typeof real === 'string') {
    const r = normalizeAddress(stripPort(real));
    if (isIP(r) !== 0) return r;
  }
  return peer;
}

/** "1.2.3.4:5678" -> "1.2.3.4", "[::1]:80" -> "::1"; a bare IPv6 address is left alone. */
function stripPort(hop: string): string {
  const h = hop.trim();
  if (h.startsWith('[')) {
    const end = h.indexOf(']');
    return end > 0 ? h.slice(1, end) : h;
  }
  const colon = h.indexOf(':');
  return colon > 0 && h.indexOf(':', colon + 1) < 0 ? h.slice(0, colon) : h;
}
