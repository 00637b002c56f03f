import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Logger } from '../log/logger.js';
import { PylonError } from '../protocol/errors.js';
import { type ApiKeys, isLoopbackHost } from './keys.js';

/**
 * A small HTTP JSON server for the admin API (node:http, no framework): a route table, JSON
 * bodies with a size limit and a content-type check, API keys, and one error shape,
 * `{"error": {"code", "message"}}`. Request bodies and keys are never logged.
 */

export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

export interface RouteContext {
  req: IncomingMessage;
  res: ServerResponse;
  /** Values of the `{name}` segments of the route's path, URL-decoded. */
  params: Record<string, string>;
  query: URLSearchParams;
  /** The parsed JSON body; undefined when the request had none (or the route reads none). */
  body: unknown;
}

export interface Route {
  method: HttpMethod;
  /** E.g. `/v1/users/{id}`: a `{name}` segment matches one path segment into params.name. */
  path: string;
  /**
   * `key` (default): needs a valid API key when keys are configured. `health`: like `key`, but
   * open when the server's `openHealth` is set. `open`: never checked.
   */
  access?: 'key' | 'health' | 'open';
  /** Whether to read a JSON body. Default: true for POST, PUT and PATCH. */
  body?: boolean;
  /** Answers a JSON value (sent with 200), or RESPONDED when it wrote the response itself. */
  handler(ctx: RouteContext): unknown;
}

/** Returned by a handler that has written its response itself (streams, other content types). */
export const RESPONDED: unique symbol = Symbol('responded');

/**
 * Called for a request no route matches (before any key check: it does its own, e.g. to serve
 * the dashboard's static files). Return false to let the server answer 404.
 */
export type Fallback = (
  req: IncomingMessage,
  res: ServerResponse,
) => boolean | undefined | Promise<boolean | undefined>;

export interface HttpOptions {
  routes: readonly Route[];
  keys: ApiKeys;
  openHealth?: boolean;
  /** Largest request body, bytes. Default 1 MiB; over it: 413. */
  maxBody?: number;
  fallback?: Fallback;
  logger: Logger;
}

export const DEFAULT_MAX_BODY = 1024 * 1024;

const STATUS: Record<string, number> = {
  BAD_REQUEST: 400,
  UNAUTHORIZED: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  METHOD_NOT_ALLOWED: 405,
  CONFLICT: 409,
  PAYLOAD_TOO_LARGE: 413,
  MISDIRECTED: 421,
  UNSUPPORTED_MEDIA_TYPE: 415,
  TOO_MANY_REQUESTS: 429,
  INTERNAL: 500,
  UNAVAILABLE: 503,
  TIMEOUT: 504,
};

/** The HTTP status of a PylonError code (unknown codes: 500). */
export function httpStatus(code: string): number {
  return STATUS[code] ?? 500;
}

interface Compiled {
  route: Route;
  segments: string[];
}

/** The request handler, for node:http or to mount in another server. */
export function createHttpHandler(options: HttpOptions): (req: IncomingMessage, res: ServerResponse) => void {
  const routes: Compiled[] = options.routes.map((route) => ({ route, segments: split(route.path) }));
  const maxBody = options.maxBody ?? DEFAULT_MAX_BODY;
  const log = options.logger;
  return (req, res) => {
    handle(req, res).catch((err: unknown) => {
      const e = err instanceof PylonError ? err : undefined;
      if (e === undefined || httpStatus(e.code) >= 500) {
        log.error({ err, method: req.method, path: pathOf(req) }, 'admin http: request failed');
      }
      if (res.headersSent) {
        res.destroy();
        return;
      }
      sendError(res, e?.code ?? 'INTERNAL', e?.message ?? 'internal error; see the server log');
    });
  };

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    // Without keys only this machine may call; a browser page of another name rebound to
    // 127.0.0.1 still sends its own name as Host (DNS rebinding): refused before anything runs.
    if (!options.keys.required && !isLoopbackHost(req.headers.host)) {
      res.setHeader('connection', 'close');
      throw new PylonError(
        'MISDIRECTED',
        'this admin API has no keys and answers only requests for 127.0.0.1, localhost or [::1]',
      );
    }
    const target = req.url ?? '/';
    const q = target.indexOf('?');
    const url = {
      pathname: q < 0 ? target : target.slice(0, q),
      searchParams: new URLSearchParams(q < 0 ? '' : target.slice(q + 1)),
    };
    const path = split(url.pathname);
    const found = match(routes, path);
    if (found === undefined) {
      if (options.fallback && (await options.fallback(req, res)) !== false) return;
      throw new PylonError('NOT_FOUND', `no route for ${url.pathname}`);
    }
    const byMethod = found.find((m) => m.route.method === req.method);
    if (byMethod === undefined) {
      res.setHeader('allow', [...new Set(found.map((m) => m.route.method))].join(', '));
      throw new PylonError('METHOD_NOT_ALLOWED', `${req.method} is not allowed on ${url.pathname}`);
    }
    const { route, params } = byMethod;
    const access = route.access ?? 'key';
    const open = access === 'open' || (access === 'health' && options.openHealth === true);
    if (!open && !options.keys.allows(req.headers.authorization)) {
      log.debug(
        { method: req.method, path: url.pathname, remote: req.socket.remoteAddress },
        'admin http: unauthorized',
      );
      res.setHeader('www-authenticate', 'Bearer');
      throw new PylonError('UNAUTHORIZED', 'a valid API key is required (Authorization: Bearer <key>)');
    }
    const wantsBody = route.body ?? (req.method === 'POST' || req.method === 'PUT' || req.method === 'PATCH');
    const body = wantsBody ? await readJson(req, res, maxBody) : undefined;
    const result = await route.handler({ req, res, params, query: url.searchParams, body });
    if (result === RESPONDED) return;
    sendJson(res, 200, result ?? {});
  }
}

/** An HTTP server with the handler; listen on it yourself. */
export function createHttpServer(options: HttpOptions): Server {
  const server = createServer(createHttpHandler(options));
  server.headersTimeout = 20_000;
  server.requestTimeout = 60_000;
  return server;
}

export function sendJson(res: ServerResponse, status: number, value: unknown): void {
  const text = JSON.stringify(value);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
  });
  res.end(text);
}

export function sendError(res: ServerResponse, code: string, message: string): void {
  sendJson(res, httpStatus(code), { error: { code, message } });
}

// ---- routing ----

function split(path: string): string[] {
  return path.split('/').filter((s) => s.length > 0);
}

function pathOf(req: IncomingMessage): string {
  const u = req.url ?? '/';
  const q = u.indexOf('?');
  return q < 0 ? u : u.slice(0, q);
}

/** Routes whose path matches, with their params; undefined when none does. */
function match(
  routes: Compiled[],
  path: string[],
): Array<{ route: Route; params: Record<string, string> }> | undefined {
  const out: Array<{ route: Route; params: Record<string, string> }> = [];
  for (const c of routes) {
    if (c.segments.length !== path.length) continue;
    const params: Record<string, string> = {};
    let ok = true;
    for (let i = 0; i < path.length && ok; i++) {
      const want = c.segments[i] as string;
      const got = path[i] as string;
      if (want.startsWith('{') && want.endsWith('}'))
        params[want.slice(1, -1)] = decode(got, want.slice(1, -1));
      else ok = want === got;
    }
    if (ok) out.push({ route: c.route, params });
  }
  return out.length > 0 ? out : undefined;
}

function decode(segment: string, name: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new PylonError('BAD_REQUEST', `${name}: not valid URL encoding`);
  }
}

// ---- bodies ----

/** Largest body read (and discarded) after answering 413, before the socket is closed. */
const DRAIN_LIMIT = 16 * 1024 * 1024;

async function readJson(req: IncomingMessage, res: ServerResponse, maxBody: number): Promise<unknown> {
  const declared = req.headers['content-length'];
  const hasBody =
    (declared !== undefined && declared !== '0') || req.headers['transfer-encoding'] !== undefined;
  if (!hasBody) return undefined;
  const type = req.headers['content-type'] ?? '';
  if (!/^application\/([\w.+-]+\+)?json\s*(;|$)/i.test(type)) {
    throw new PylonError('UNSUPPORTED_MEDIA_TYPE', 'content-type: must be application/json');
  }
  const bytes = await readBody(req, Number(declared ?? 0) > maxBody ? 0 : maxBody);
  if (bytes === undefined) {
    // Close the connection after the answer; the rest of the body is read and discarded
    // meanwhile (bounded), so the client is not reset while still sending and reads the 413.
    res.setHeader('connection', 'close');
    throw new PylonError('PAYLOAD_TOO_LARGE', `body: larger than ${maxBody} bytes`);
  }
  if (bytes.length === 0) return undefined;
  try {
    return JSON.parse(bytes.toString('utf8'));
  } catch {
    throw new PylonError('BAD_REQUEST', 'body: invalid JSON');
  }
}

/** The body, or undefined once it is over `max` bytes (what follows is discarded, up to DRAIN_LIMIT). */
function readBody(req: IncomingMessage, max: number): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (over) {
        if (size > DRAIN_LIMIT) req.socket.destroy();
        return;
      }
      if (size > max) {
        over = true;
        chunks.length = 0;
        resolve(undefined);
        return;
      }
      chunks.push(chunk);
    });
    req.once('end', () => resolve(over ? undefined : Buffer.concat(chunks, size)));
    req.once('error', reject);
    req.once('close', () => {
      if (!req.complete) reject(new PylonError('BAD_REQUEST', 'body: the connection closed before its end'));
    });
    if (max === 0 && !over) {
      // Declared too large: answer at once, before reading anything.
      over = true;
      resolve(undefined);
    }
  });
}
