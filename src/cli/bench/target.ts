// Where a bench may aim (loopback only), and how its connections are spread over client
// processes and loopback source addresses.
import { isIPv4, isIPv6 } from 'node:net';
import type { SourceRun } from './messages.js';

/**
 * Connections per source address when the addresses are chosen by default: the gateway's default
 * `maxConnectionsPerIp` (10,000 per process) counts source addresses, so staying at 10,000 keeps
 * every connection under it whatever the number of worker processes.
 */
export const DEFAULT_PER_ADDRESS = 10_000;
/** Most connections one client process may hold (this machine allows 20,000 open files per process). */
export const MAX_PER_PROCESS = 19_500;

export interface HostPort {
  host: string;
  port: number;
}

/** `host:port`, `[v6]:port` or `tcp://host:port`. `localhost` becomes 127.0.0.1. */
export function parseHostPort(spec: string, what: string): HostPort {
  const text = spec.trim().replace(/^tcp:\/\//, '');
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(text);
  if (m === null) throw new Error(`${what}: expected host:port, got "${spec}"`);
  const port = Number(m[3]);
  if (!(port > 0 && port < 65536)) throw new Error(`${what}: bad port in "${spec}"`);
  return { host: normalHost((m[1] ?? m[2])!), port };
}

function normalHost(host: string): string {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' ? '127.0.0.1' : h;
}

/** True for 127.0.0.0/8, ::1 and ::ffff:127.x.x.x. */
export function isLoopback(host: string): boolean {
  const h = normalHost(host);
  if (isIPv4(h)) return h.startsWith('127.');
  if (isIPv6(h)) {
    if (h === '::1' || h === '0:0:0:0:0:0:0:1') return true;
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(h);
    return mapped !== null && mapped[1]!.startsWith('127.');
  }
  return false;
}

/** Throws unless `host` is a loopback address. */
export function assertLoopback(host: string, what: string): void {
  if (!isLoopback(host)) {
    throw new Error(
      `${what}: refusing to load-test "${host}": bench targets must be loopback (127.0.0.0/8 or ::1)`,
    );
  }
}

/** A URL of one of `protocols` whose host is loopback; returns its host (brackets removed) and port. */
export function loopbackUrl(spec: string, what: string, protocols: string[]): URL {
  let url: URL;
  try {
    url = new URL(spec);
  } catch {
    throw new Error(`${what}: not a URL: "${spec}"`);
  }
  if (!protocols.includes(url.protocol)) {
    throw new Error(`${what}: expected ${protocols.map((p) => `${p}//`).join(' or ')} URL, got "${spec}"`);
  }
  assertLoopback(url.hostname, what);
  return url;
}

/** Sizes of K even slices of n. */
export function slices(n: number, k: number): number[] {
  const base = Math.floor(n / k);
  const extra = n % k;
  return Array.from({ length: k }, (_, i) => base + (i < extra ? 1 : 0));
}

/** The default source addresses for n connections: 127.0.0.2, 127.0.0.3, … (at least one per process). */
export function defaultSources(n: number, processes: number): string[] {
  const count = Math.max(processes, Math.ceil(n / DEFAULT_PER_ADDRESS));
  if (count > 253) {
    throw new Error(`${n} connections need ${count} source addresses; 127.0.0.2 to 127.0.0.254 are 253`);
  }
  return Array.from({ length: count }, (_, i) => `127.0.0.${i + 2}`);
}

/** Source ports the bench binds: above the well-known and registered ranges most services use. */
export const PORT_MIN = 10_000;
export const PORT_MAX = 65_536;

/**
 * Spreads the connections over the addresses evenly (connection g of n binds address
 * floor(g·A/n)), and cuts that sequence into the processes' slices: for each process, runs of
 * consecutive connections sharing an address. Each address's ports [PORT_MIN, PORT_MAX) are split
 * between its runs in proportion to their counts. No addresses: one run per process, address null.
 */
export function planSources(sizes: number[], addresses: string[]): SourceRun[][] {
  const n = sizes.reduce((a, b) => a + b, 0);
  if (addresses.length === 0) return sizes.map((count) => [{ address: null, count, portFrom: 0, portTo: 0 }]);
  const a = addresses.length;
  const plans: SourceRun[][] = [];
  const perAddress = new Map<number, SourceRun[]>();
  let g = 0;
  for (const size of sizes) {
    const runs: SourceRun[] = [];
    const end = g + size;
    while (g < end) {
      const idx = Math.floor((g * a) / n);
      // First connection index that maps to the next address.
      const nextStart = Math.ceil(((idx + 1) * n) / a);
      const stop = Math.min(end, nextStart);
      const run: SourceRun = { address: addresses[idx]!, count: stop - g, portFrom: 0, portTo: 0 };
      runs.push(run);
      const list = perAddress.get(idx) ?? [];
      list.push(run);
      perAddress.set(idx, list);
      g = stop;
    }
    if (runs.length === 0)
      runs.push({ address: addresses[0]!, count: 0, portFrom: PORT_MIN, portTo: PORT_MIN });
    plans.push(runs);
  }
  const space = PORT_MAX - PORT_MIN;
  for (const [idx, runs] of perAddress) {
    const total = runs.reduce((s, r) => s + r.count, 0);
    if (total > space) {
      throw new Error(
        `source address ${addresses[idx]} would carry ${total} connections; at most ${space} fit (give more sourceAddresses)`,
      );
    }
    let port = PORT_MIN;
    let used = 0;
    for (const r of runs) {
      used += r.count;
      const to = PORT_MIN + Math.floor((space * used) / total);
      r.portFrom = port;
      r.portTo = to;
      port = to;
    }
  }
  return plans;
}
