import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { extname, join, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Connection } from '../gateway/connection.js';
import type { Gateway } from '../gateway/gateway.js';
import type { DisconnectInfo } from '../protocol/disconnect.js';
import type { Fallback, Route } from './http.js';

/**
 * The admin dashboard: a single page for operators (web/, built into dist/web by
 * scripts/build-web.mjs), served by the admin HTTP server at `/`. The static files are served
 * without a key; every API call the page makes carries the admin key (Authorization: Bearer),
 * kept in the browser's sessionStorage. This module also keeps the recent disconnects that the
 * page shows: `GET /v1/disconnects` and the deltas in the stats stream (stats-stream.ts).
 */

/** One gateway `disconnect` event, as the dashboard shows it. */
export interface DisconnectRecord {
  /** Increasing number of the record (1, 2, ...): a client that has seen `seq` asks for what is after it. */
  seq: number;
  /** ISO 8601. */
  at: string;
  connection: string;
  user?: string;
  transport: string;
  remoteAddress: string;
  code: number;
  name: string;
  reason: string;
}

/** A ring buffer of the last `size` disconnects of a gateway. */
export class DisconnectLog {
  private readonly ring: DisconnectRecord[] = [];
  private seq = 0;
  private readonly listener = (conn: Connection, info: DisconnectInfo): void => this.record(conn, info);

  constructor(
    private readonly gateway: Gateway,
    readonly size = 100,
  ) {
    gateway.on('disconnect', this.listener);
  }

  /** The records after `seq` (all kept ones by default), oldest first. */
  since(seq = 0): DisconnectRecord[] {
    if (seq >= this.seq) return [];
    const first = this.ring.findIndex((r) => r.seq > seq);
    return first < 0 ? [] : this.ring.slice(first);
  }

  /** The seq of the newest record (0: none yet). */
  get last(): number {
    return this.seq;
  }

  /** Stop listening to the gateway. */
  close(): void {
    this.gateway.off('disconnect', this.listener);
  }

  private record(conn: Connection, info: DisconnectInfo): void {
    const r: DisconnectRecord = {
      seq: ++this.seq,
      at: new Date().toISOString(),
      connection: conn.id,
      transport: conn.transport,
      remoteAddress: conn.remoteAddress,
      code: info.code,
      name: info.name,
      reason: info.reason,
    };
    if (conn.user !== undefined) r.user = conn.user;
    this.ring.push(r);
    if (this.ring.length > this.size) this.ring.shift();
  }
}

/** `GET /v1/disconnects[?after=seq]`: the recent disconnects, oldest first, with the newest seq. */
export function dashboardRoutes(log: DisconnectLog): Route[] {
  return [
    {
      method: 'GET',
      path: '/v1/disconnects',
      handler: ({ query }) => {
        const after = query.get('after');
        const seq = after !== null && /^\d{1,15}$/.test(after) ? Number(after) : 0;
        return { disconnects: log.since(seq), last: log.last, size: log.size };
      },
    },
  ];
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.txt': 'text/plain; charset=utf-8',
};

const SECURITY_HEADERS = {
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
  'content-security-policy':
    "default-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self'; " +
    "script-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
};

/**
 * Where the built dashboard is: dist/web beside the compiled module (dist/api/dashboard.js),
 * or <root>/dist/web when running from the sources (src/api/dashboard.ts, e.g. under Vitest).
 */
export function defaultDashboardDir(): string {
  const candidates = [fileURLToPath(new URL('../web/', import.meta.url))];
  candidates.push(fileURLToPath(new URL('../../dist/web/', import.meta.url)));
  return candidates.find((d) => existsSync(join(d, 'index.html'))) ?? (candidates[0] as string);
}

/**
 * The static files of the dashboard, as a fallback of the admin HTTP server: GET and HEAD of
 * `/` (index.html) and of the files in `dir`; anything else is left to the server (404).
 */
export function dashboardFallback(dir = defaultDashboardDir()): Fallback {
  const root = resolve(dir);
  return async (req: IncomingMessage, res: ServerResponse) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') return false;
    const raw = (req.url ?? '/').split('?')[0] as string;
    let path: string;
    try {
      path = decodeURIComponent(raw);
    } catch {
      return false;
    }
    if (path === '/' || path === '/index.html') path = '/index.html';
    // Only plain names: no dot segments, no backslashes, no NUL; and it must stay under root.
    if (!/^(\/[A-Za-z0-9_-][A-Za-z0-9._-]*)+$/.test(path) || path.includes('/..')) return false;
    const file = resolve(root, `.${path}`);
    if (!file.startsWith(root + sep)) return false;
    const type = TYPES[extname(file)];
    if (type === undefined) return false;
    let body: Buffer;
    try {
      body = await readFile(file);
    } catch {
      if (path !== '/index.html') return false;
      body = Buffer.from('The dashboard is not built: run `npm run build` (scripts/build-web.mjs).\n');
      res.writeHead(404, { 'content-type': TYPES['.txt'], ...SECURITY_HEADERS });
      res.end(body);
      return true;
    }
    res.writeHead(200, {
      'content-type': type,
      'content-length': body.length,
      'cache-control': 'no-cache',
      ...SECURITY_HEADERS,
    });
    res.end(req.method === 'HEAD' ? undefined : body);
    return true;
  };
}
