import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { budgets, type Holder } from './budget.js';
import { HttpLink, type HttpLinkOptions, type StreamFormat } from './http-link.js';
import { LinkError, type LinkInfo } from './link.js';
import { clientAddress, type TrustedProxies } from './proxy.js';

export interface HttpTransportOptions extends HttpLinkOptions {
  /** Sessions: `POST {path}` opens one (its body is the hello), `POST {path}/send` posts to one. */
  path: string;
  /** One-way streams: `GET {streamPath}?token=…`; '' turns them off. */
  streamPath: string;
  /** Largest message (one line of a POST), bytes. */
  maxMessage: number;
  /** Largest POST body, bytes. */
  maxPost: number;
  /** POSTs to one session per second (`rate`), with a burst of `burst`; over it the session is closed with rate_limited. */
  postRate: { rate: number; burst: number };
  /** Open HTTP streams of this process, at most (sessions and one-way streams together). */
  maxStreams: number;
  trustedProxies: TrustedProxies;
  /** The prefix of session ids (`{nodeId}-…`): a POST for another node's session goes there. */
  nodeId: string;
  /**
   * Carry the messages of a POST for a session of another node to that node (the cluster),
   * which calls `post` there. Without it such a POST is answered 404.
   */
  forward?: (node: string, session: string, messages: Uint8Array[]) => Promise<void>;
}

/** What `post` did with a POST's messages. */
export type PostResult = 'delivered' | 'unknown' | 'rate_limited';

const NEWLINE = 0x0a;
const CR = 0x0d;

/**
 * Pylon over plain HTTP, for networks that break WebSocket: a session is a long response the
 * server writes its messages to (Server-Sent Events, or JSON lines), and POSTs of the client's
 * messages, one JSON envelope per line, keyed by the session id the response's
 * `x-pylon-session` header gave. Any node of a cluster takes a POST: one for a session elsewhere
 * is carried there (no sticky sessions). `GET {streamPath}` is a one-way stream for clients
 * without an SDK (`curl -N`, EventSource). Served on the WebSocket listener's HTTP server.
 *
 * Bounds: open streams (`maxStreams`, besides the gateway's connection limits), POST size
 * (`maxPost`, each message `maxMessage`), POSTs per session per second (`postRate`), bytes of
 * POST bodies being read (the process-wide budget of partial frames), bytes queued per stream
 * (`maxBuffered`) and in all (the outbound budget).
 */
export class HttpTransport {
  private readonly sessions = new Map<string, HttpLink>();
  /** Streams being opened (their body read, their admission asked): counted against maxStreams. */
  private opening = 0;
  private readonly buckets = new WeakMap<HttpLink, { tokens: number; at: number }>();
  private stopped = false;

  constructor(private readonly o: HttpTransportOptions) {}

  /** Open streams (sessions and one-way streams). */
  get streams(): number {
    return this.sessions.size;
  }

  /** Takes the request if it is for this transport; false when it is not. */
  handle(req: IncomingMessage, res: ServerResponse): boolean {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q < 0 ? url : url.slice(0, q);
    const o = this.o;
    const open = path === o.path;
    const send = path === `${o.path}/send`;
    const stream = o.streamPath !== '' && path === o.streamPath;
    if (!open && !send && !stream) return false;
    res.setHeader('access-control-allow-origin', '*');
    res.setHeader('access-control-expose-headers', 'x-pylon-session');
    if (req.method === 'OPTIONS') {
      res.writeHead(204, {
        'access-control-allow-methods': stream ? 'GET' : 'POST',
        'access-control-allow-headers': 'content-type, x-pylon-session, last-event-id, authorization',
        'access-control-max-age': '600',
      });
      res.end();
      return true;
    }
    const want = stream ? 'GET' : 'POST';
    if (req.method !== want) {
      answer(res, 405, `${want} only`, { allow: want });
      return true;
    }
    const query = new URLSearchParams(q < 0 ? '' : url.slice(q + 1));
    // A hook that throws, or a status Node refuses, is answered 500: never an unhandled rejection.
    const handled = send ? this.onSend(req, res) : this.opened(req, res, query, stream);
    handled.catch(() => {
      if (!res.headersSent) answer(res, 500, 'internal server error');
      else res.destroy();
    });
    return true;
  }

  /** Messages posted to `session` (here, or carried from the node that took the POST). */
  post(session: string, messages: readonly Uint8Array[]): PostResult {
    const link = this.sessions.get(session);
    if (link === undefined || !link.open) return 'unknown';
    if (!this.takePost(link)) {
      link.fail(
        new LinkError('rate_limited', `more than ${this.o.postRate.rate} POSTs/s to one HTTP session`),
      );
      return 'rate_limited';
    }
    link.deliver(messages);
    return 'delivered';
  }

  /** Stop taking requests; open streams stay (the gateway closes them). */
  stop(): void {
    this.stopped = true;
  }

  /** onOpen with its slot in maxStreams held from the first check to the end of the opening. */
  private async opened(
    req: IncomingMessage,
    res: ServerResponse,
    query: URLSearchParams,
    oneWay: boolean,
  ): Promise<void> {
    const o = this.o;
    if (this.stopped) return answer(res, 503, 'server shutting down');
    if (this.sessions.size + this.opening >= o.maxStreams) {
      req.resume();
      return answer(res, 503, `this server holds its most HTTP streams (${o.maxStreams})`);
    }
    this.opening++;
    try {
      await this.onOpen(req, res, query, oneWay);
    } finally {
      this.opening--;
    }
  }

  private async onOpen(
    req: IncomingMessage,
    res: ServerResponse,
    query: URLSearchParams,
    oneWay: boolean,
  ): Promise<void> {
    const o = this.o;
    let hello: Uint8Array | undefined;
    if (!oneWay) {
      const body = await readBody(req, o.maxMessage);
      if (typeof body === 'number') return answer(res, body, bodyError(body, o.maxMessage));
      hello = body;
    }
    if (res.destroyed) return;
    const peer = req.socket.remoteAddress ?? '';
    const remoteAddress = clientAddress(peer, req.headers, o.trustedProxies);
    const admitted = await o.sink.admit({ transport: 'http', remoteAddress, headers: req.headers });
    if (admitted !== true) return answer(res, admitted.status, admitted.reason);
    if (res.destroyed) return;
    if (this.stopped) return answer(res, 503, 'server shutting down');
    if (res.socket === null) {
      // Pipelined behind another response on its socket: a stream there would never start
      // (and never learn that the socket closed). One stream per connection.
      req.socket.destroy();
      return;
    }
    const format = formatOf(query, req.headers.accept);
    const session = `${o.nodeId}-${randomBytes(18).toString('base64url')}`;
    res.writeHead(200, {
      'content-type': format === 'sse' ? 'text/event-stream; charset=utf-8' : 'application/x-ndjson',
      'cache-control': 'no-store',
      'x-accel-buffering': 'no',
      'x-pylon-session': session,
    });
    res.flushHeaders();
    req.socket.setNoDelay(true);
    req.socket.setKeepAlive(true, 30_000);
    const link = new HttpLink(res, o, remoteAddress, session, format, oneWay);
    this.sessions.set(session, link);
    res.once('close', () => this.sessions.delete(session));
    const info: LinkInfo = {
      transport: 'http',
      remoteAddress,
      remotePort: link.remotePort,
      headers: req.headers,
      url: req.url ?? '/',
      query,
      protocol: oneWay ? 'stream' : '',
    };
    o.sink.onOpen(link, info);
    if (hello !== undefined && hello.length > 0) link.deliver([hello]);
  }

  private async onSend(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const o = this.o;
    const session = req.headers['x-pylon-session'];
    if (typeof session !== 'string' || session.length === 0 || session.length > 128) {
      req.resume();
      return answer(
        res,
        400,
        'x-pylon-session: the header of the session (from the stream response) is missing',
      );
    }
    const node = nodeOf(session);
    const here = node === o.nodeId || o.forward === undefined || node === undefined;
    if (here && this.sessions.get(session)?.open !== true) {
      // Not a session of this node: answered before its body is read (a guess costs nothing).
      req.resume();
      return answer(res, 404, 'no such session (it ended): open a new one');
    }
    const body = await readBody(req, o.maxPost);
    if (typeof body === 'number') return answer(res, body, bodyError(body, o.maxPost));
    let messages: Uint8Array[];
    try {
      messages = lines(body, o.maxMessage);
    } catch (err) {
      return answer(res, 413, (err as Error).message);
    }
    if (here) {
      const result = this.post(session, messages);
      if (result === 'unknown') return answer(res, 404, 'no such session (it ended): open a new one');
      if (result === 'rate_limited') return answer(res, 429, 'too many POSTs; the session is closed');
      res.writeHead(204).end();
      return;
    }
    try {
      await o.forward?.(node as string, session, messages);
    } catch {
      return answer(res, 503, 'the node of this session cannot be reached now');
    }
    res.writeHead(202).end();
  }

  private takePost(link: HttpLink): boolean {
    const { rate, burst } = this.o.postRate;
    const now = Date.now();
    let b = this.buckets.get(link);
    if (b === undefined) {
      b = { tokens: burst, at: now };
      this.buckets.set(link, b);
    }
    b.tokens = Math.min(burst, b.tokens + ((now - b.at) * rate) / 1000);
    b.at = now;
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }
}

/** The node part of a session id (`{nodeId}-{random}`). */
function nodeOf(session: string): string | undefined {
  const i = session.indexOf('-');
  return i > 0 ? session.slice(0, i) : undefined;
}

function formatOf(query: URLSearchParams, accept: string | undefined): StreamFormat {
  const f = query.get('format');
  if (f === 'sse' || f === 'ndjson') return f;
  return accept?.includes('text/event-stream') ? 'sse' : 'ndjson';
}

/** The non-empty lines of a body (LF or CRLF), each at most `max` bytes. */
export function lines(body: Uint8Array, max: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  let start = 0;
  for (let i = 0; i <= body.length; i++) {
    if (i < body.length && body[i] !== NEWLINE) continue;
    let end = i;
    if (end > start && body[end - 1] === CR) end--;
    if (end - start > max) throw new Error(`a message of ${end - start} bytes is over the limit of ${max}`);
    if (end > start) out.push(body.subarray(start, end));
    start = i + 1;
  }
  return out;
}

function bodyError(status: number, max: number): string {
  return status === 413 ? `the body is over ${max} bytes` : 'the body could not be read';
}

/** A request body being read, as the process-wide budget of partial bytes sees it. */
class BodyHolder implements Holder {
  readonly seq = Number.MAX_SAFE_INTEGER;
  inHeld = 0;
  frameSince = 0;
  outHeld = 0;
  readonly paused = false;
  readonly buffered = 0;
  constructor(private readonly req: IncomingMessage) {}
  fail(_err: LinkError): void {
    this.req.destroy();
  }
}

/** The body, or the HTTP status to answer: 413 over `max`, 400 when the request broke off. */
function readBody(req: IncomingMessage, max: number): Promise<Uint8Array | number> {
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > max) {
    req.resume();
    return Promise.resolve(413);
  }
  return new Promise((resolve) => {
    const holder = new BodyHolder(req);
    const chunks: Buffer[] = [];
    let size = 0;
    const done = (v: Uint8Array | number) => {
      budgets.setInbound(holder, 0, false);
      resolve(v);
    };
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > max) {
        req.removeAllListeners('data');
        req.resume();
        done(413);
        return;
      }
      chunks.push(chunk);
      budgets.setInbound(holder, size, true);
    });
    req.once('end', () => done(size > max ? 413 : Buffer.concat(chunks, size)));
    req.once('error', () => done(400));
    req.once('close', () => {
      if (!req.complete) done(400);
    });
  });
}

function answer(
  res: ServerResponse,
  status: number,
  message: string,
  headers: Record<string, string> = {},
): void {
  if (res.headersSent || res.destroyed) {
    res.destroy();
    return;
  }
  // A verify hook's status outside what HTTP allows would make writeHead throw.
  if (!Number.isInteger(status) || status < 400 || status > 599) status = 403;
  const body = `${JSON.stringify({ error: message })}\n`;
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    ...headers,
  });
  res.end(body);
}
