import type { Admission, AdmitInfo } from '../transport/link.js';
import type { RateLimitOptions, ResolvedOptions } from './options.js';

/**
 * Who may connect: the process-wide and per-address connection limits, the WebSocket origin
 * allow-list and the application's verify hook — all decided before a connection costs a
 * WebSocket object or a hub entry.
 */
export class AdmissionControl {
  /** Open links per remote address (from accept to socket close). */
  private readonly perAddress = new Map<string, number>();
  private open = 0;
  refused = 0;

  constructor(private readonly o: ResolvedOptions) {}

  admit(info: AdmitInfo, closing: boolean): Admission | Promise<Admission> {
    if (closing) return this.refuse(503, 'server shutting down');
    if (this.open >= this.o.maxConnections) return this.refuse(503, 'too many connections');
    if ((this.perAddress.get(info.remoteAddress) ?? 0) >= this.o.maxConnectionsPerIp) {
      return this.refuse(429, 'too many connections from this address');
    }
    if (info.transport !== 'ws') return true;
    const ws = this.o.ws;
    const origins = ws?.origins;
    if (origins !== undefined && !origins.includes('*')) {
      const origin = info.headers.origin;
      if (origin === undefined || !origins.includes(origin)) return this.refuse(403, 'origin not allowed');
    }
    const verify = ws?.verify;
    if (verify === undefined) return true;
    const answer = verify({ remoteAddress: info.remoteAddress, headers: info.headers });
    return answer instanceof Promise ? answer.then((a) => this.verdict(a)) : this.verdict(answer);
  }

  /** A link was accepted. Returns false if the limits were passed meanwhile (concurrent upgrades). */
  opened(address: string): boolean {
    this.open++;
    const n = (this.perAddress.get(address) ?? 0) + 1;
    this.perAddress.set(address, n);
    return this.open <= this.o.maxConnections && n <= this.o.maxConnectionsPerIp;
  }

  /** A link's socket closed. */
  closed(address: string): void {
    this.open--;
    const n = (this.perAddress.get(address) ?? 1) - 1;
    if (n <= 0) this.perAddress.delete(address);
    else this.perAddress.set(address, n);
  }

  private verdict(a: boolean | { status: number; reason: string }): Admission {
    if (a === true) return true;
    if (a === false) return this.refuse(403, 'refused');
    this.refused++;
    return a;
  }

  private refuse(status: number, reason: string): Admission {
    this.refused++;
    return { status, reason };
  }
}

/**
 * Per-connection token bucket state: two small integers on the connection (milli-tokens and a
 * whole-ms time), so V8 keeps them unboxed instead of allocating a heap number for each.
 */
export interface Bucket {
  /** Milli-tokens; -1 until the first frame (a full bucket). */
  tokens: number;
  /** Whole ms of the last refill. */
  refilled: number;
}

/** Takes one token for a frame received at `now` (whole ms); false when the connection is over its rate. */
export function takeToken(b: Bucket, limit: RateLimitOptions, now: number): boolean {
  const burst = limit.burst * 1000;
  const tokens =
    b.tokens < 0 ? burst : Math.min(burst, b.tokens + Math.floor((now - b.refilled) * limit.rate));
  b.refilled = now;
  if (tokens < 1000) {
    b.tokens = tokens;
    return false;
  }
  b.tokens = tokens - 1000;
  return true;
}
