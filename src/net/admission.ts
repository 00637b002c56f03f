import type { IncomingHttpHeaders } from 'node:http';
import type { Admission, AdmitInfo } from './link.js';

export interface AdmissionOptions {
  /** Connections at once; more are refused (TCP closed, WebSocket 503, UDP dropped). */
  maxConnections: number;
  /** Connections one remote address may hold; more are refused (WebSocket 429). */
  maxConnectionsPerIp: number;
  /** Allowed `Origin` headers of WebSocket upgrades (exact; "*" any). Default: any. */
  origins?: readonly string[];
  /**
   * Called before a WebSocket upgrade, so a refused client costs no WebSocket state: true to
   * accept, false for 403, or a status and reason.
   */
  verify?: (request: {
    remoteAddress: string;
    headers: IncomingHttpHeaders;
  }) => boolean | { status: number; reason: string } | Promise<boolean | { status: number; reason: string }>;
}

/**
 * Who may connect, for either face: the process-wide and per-address connection limits, the
 * WebSocket origin allow-list and the application's verify hook — all decided before a
 * connection costs a link object. A sink owns one for all its listeners and calls `opened` and
 * `closed` as links come and go.
 */
export class AdmissionControl {
  /** Open links per remote address (from accept to socket close). */
  private readonly perAddress = new Map<string, number>();
  private open = 0;
  refused = 0;

  constructor(private readonly o: AdmissionOptions) {}

  get connections(): number {
    return this.open;
  }

  admit(info: AdmitInfo, closing: boolean): Admission | Promise<Admission> {
    if (closing) return this.refuse(503, 'server shutting down');
    if (this.open >= this.o.maxConnections) return this.refuse(503, 'too many connections');
    if ((this.perAddress.get(info.remoteAddress) ?? 0) >= this.o.maxConnectionsPerIp) {
      return this.refuse(429, 'too many connections from this address');
    }
    // Browsers come over WebSocket and HTTP: the origin list and the verify hook see both.
    if (info.transport !== 'ws' && info.transport !== 'http') return true;
    const origins = this.o.origins;
    if (origins !== undefined && !origins.includes('*')) {
      const origin = info.headers.origin;
      // A browser's same-origin GET (an EventSource of the HTTP transport) sends no Origin; its
      // Sec-Fetch-Site, which pages cannot set, says where it came from.
      const sameOrigin =
        origin === undefined && info.transport === 'http' && info.headers['sec-fetch-site'] === 'same-origin';
      if (!sameOrigin && (origin === undefined || !origins.includes(origin)))
        return this.refuse(403, 'origin not allowed');
    }
    const verify = this.o.verify;
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
