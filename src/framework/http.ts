import { clientAddress, type TrustedProxies } from '../net/proxy.js';
import { ProtocolError } from '../protocol/errors.js';
import type { Connection } from './connection.js';
import { bufferOf, type Protocol } from './protocol.js';

/**
 * A small HTTP/1.1 server protocol (workerman's Http, goes' http): request line, headers and a
 * Content-Length body in; a status, headers and a body out, with Content-Length always set.
 * Keep-alive: the default in HTTP/1.1 (unless `Connection: close`), only with
 * `Connection: keep-alive` in HTTP/1.0 (ab's way); otherwise the connection is closed after the
 * answer. Requests are answered in the order they came (pipelining works when the application
 * answers in order). `Expect: 100-continue` is answered at once. No chunked request bodies
 * (411), no upgrades.
 */

export interface HttpRequest {
  method: string;
  /** The request target as sent, e.g. "/search?q=1". */
  url: string;
  /** `url` up to "?". */
  path: string;
  /** `url` after "?" ("" when none). */
  query: string;
  version: '1.0' | '1.1';
  /** Lower-case names; a repeated header's values joined with ", ". */
  headers: Record<string, string>;
  /** The Content-Length body (a view of the received bytes: copy what must outlive the handler). */
  body: Uint8Array;
  /** Whether the connection stays open after the answer. */
  keepAlive: boolean;
  /** The client: the peer, or the address a trusted proxy reported. */
  remoteAddress: string;
}

export interface HttpResponse {
  /** Default 200. */
  status?: number;
  headers?: Record<string, string | number>;
  /** A string is sent as UTF-8 (default type text/plain), bytes as application/octet-stream. */
  body?: string | Uint8Array;
}

/** What `connection.send` takes on http://: a response, or just a body (status 200). */
export type HttpReply = HttpResponse | string | Uint8Array;

export interface HttpProtocolOptions {
  /** Largest request line + headers, in bytes. Default 16 KiB (431 above it). */
  maxHeaderSize?: number;
  /** Largest body, in bytes. Default 1 MiB (413 above it). */
  maxBody?: number;
  /** Addresses of reverse proxies whose X-Forwarded-For / X-Real-IP are believed (the server fills it). */
  trustedProxies?: TrustedProxies;
}

/** A request that cannot be served: answered with `status`, then the connection is closed. */
export class HttpError extends ProtocolError {
  override name = 'HttpError';
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message, status === 413 || status === 431 ? 'FRAME_TOO_LARGE' : 'PROTOCOL');
  }
}

/** Parsed head waiting for its body, and the answers still owed (oldest first). */
interface HttpState {
  head: Head | undefined;
  /** Per request not yet answered: bit 1 keep-alive, bit 2 HEAD. */
  owed: number[];
  /** The flags of the last request (for sends beyond the requests). */
  last: number;
}

interface Head {
  request: HttpRequest;
  /** Offset of the body in the packet. */
  bodyStart: number;
  total: number;
}

const KEEP = 1;
const HEAD = 2;
const CRLFCRLF = Buffer.from('\r\n\r\n');
const CONTINUE = Buffer.from('HTTP/1.1 100 Continue\r\n\r\n');
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const BAD_VALUE = /[\r\n\0]/;

export function httpProtocol(options: HttpProtocolOptions = {}): Protocol<HttpRequest, HttpReply> {
  const maxHeader = options.maxHeaderSize ?? 16 * 1024;
  const maxBody = options.maxBody ?? 1024 * 1024;
  const trusted = options.trustedProxies ?? new Set<string>();
  return {
    name: 'http',
    input(buffer, conn) {
      const state = stateOf(conn);
      if (state.head !== undefined) return state.head.total;
      const buf = bufferOf(buffer);
      const end = buf.indexOf(CRLFCRLF);
      if (end < 0) {
        if (buf.length > maxHeader) throw new HttpError(431, `request head larger than ${maxHeader} bytes`);
        return 0;
      }
      if (end + 4 > maxHeader) throw new HttpError(431, `request head larger than ${maxHeader} bytes`);
      const head = parseHead(buf, end, maxBody);
      head.request.remoteAddress = clientAddress(conn.peerAddress, head.request.headers, trusted);
      state.head = head;
      // curl and others wait for this before sending a larger body.
      if (head.total > buf.length && head.request.headers.expect?.toLowerCase() === '100-continue') {
        conn.write(CONTINUE, false);
      }
      return head.total;
    },
    decode(packet, conn) {
      const state = stateOf(conn);
      let head = state.head;
      state.head = undefined;
      if (head === undefined) {
        // Not through input (a ws:// or udp:// packet): the packet must be one whole request.
        const buf = bufferOf(packet);
        const end = buf.indexOf(CRLFCRLF);
        if (end < 0 || end + 4 > maxHeader) throw new HttpError(400, 'incomplete request head');
        head = parseHead(buf, end, maxBody);
        head.request.remoteAddress = clientAddress(conn.peerAddress, head.request.headers, trusted);
        if (head.total !== packet.length)
          throw new HttpError(400, 'body length does not match Content-Length');
      }
      const req = head.request;
      if (head.total > head.bodyStart) req.body = packet.subarray(head.bodyStart, head.total);
      state.last = (req.keepAlive ? KEEP : 0) | (req.method === 'HEAD' ? HEAD : 0);
      state.owed.push(state.last);
      conn.remoteAddress = req.remoteAddress;
      return req;
    },
    encode(reply, conn) {
      const state = stateOf(conn);
      const flags = state.owed.length > 0 ? state.owed.shift()! : state.last;
      const keep = (flags & KEEP) !== 0;
      if (!keep) conn.closeAfterSend('HTTP connection not kept alive');
      return encodeResponse(reply, keep, (flags & HEAD) !== 0);
    },
    errorReply(error) {
      const status = error instanceof HttpError ? error.status : error.code === 'FRAME_TOO_LARGE' ? 413 : 400;
      const body = `${error.message}\n`;
      return Buffer.from(
        `HTTP/1.1 ${status} ${STATUS[status] ?? 'Error'}\r\nConnection: close\r\n` +
          `Content-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
      );
    },
  };
}

function stateOf(conn: Connection<HttpRequest, HttpReply>): HttpState {
  let s = conn.protocolState as HttpState | undefined;
  if (s === undefined) {
    s = { head: undefined, owed: [], last: KEEP };
    conn.protocolState = s;
  }
  return s;
}

const EMPTY = new Uint8Array(0);

/** Parses the request line and headers of `buf[0, end)` (end: the index of "\r\n\r\n"). */
function parseHead(buf: Buffer, end: number, maxBody: number): Head {
  const text = buf.toString('latin1', 0, end);
  // RFC 9112 2.2: ignore empty lines before the request line.
  let pos = 0;
  while (text.startsWith('\r\n', pos)) pos += 2;
  let eol = text.indexOf('\r\n', pos);
  if (eol < 0) eol = text.length;
  const line = text.slice(pos, eol);
  const s1 = line.indexOf(' ');
  const s2 = line.indexOf(' ', s1 + 1);
  if (s1 <= 0 || s2 <= s1 + 1 || line.indexOf(' ', s2 + 1) >= 0)
    throw new HttpError(400, 'malformed request line');
  const method = line.slice(0, s1);
  const url = line.slice(s1 + 1, s2);
  const proto = line.slice(s2 + 1);
  if (!TOKEN.test(method)) throw new HttpError(400, 'malformed method');
  let version: '1.0' | '1.1';
  if (proto === 'HTTP/1.1') version = '1.1';
  else if (proto === 'HTTP/1.0') version = '1.0';
  else if (/^HTTP\/\d\.\d$/.test(proto)) throw new HttpError(505, `${proto} is not supported`);
  else throw new HttpError(400, 'malformed request line');

  const headers: Record<string, string> = {};
  pos = eol + 2;
  while (pos < text.length) {
    let next = text.indexOf('\r\n', pos);
    if (next < 0) next = text.length;
    const colon = text.indexOf(':', pos);
    if (colon <= pos || colon > next) throw new HttpError(400, 'malformed header line');
    const name = text.slice(pos, colon);
    if (!TOKEN.test(name)) throw new HttpError(400, 'malformed header name');
    const value = text.slice(colon + 1, next).trim();
    const key = name.toLowerCase();
    const prev = headers[key];
    headers[key] = typeof prev === 'string' ? `${prev}, ${value}` : value;
    pos = next + 2;
  }

  if (headers['transfer-encoding'] !== undefined) {
    throw new HttpError(411, 'chunked request bodies are not supported: send Content-Length');
  }
  let length = 0;
  const cl = headers['content-length'];
  if (cl !== undefined) {
    // Repeated identical values ("5, 5") are allowed (RFC 9110 8.6); anything else is not.
    const values = cl.split(',');
    const first = values[0]!.trim();
    if (!/^\d{1,15}$/.test(first) || values.some((v) => v.trim() !== first)) {
      throw new HttpError(400, 'bad Content-Length');
    }
    length = Number(first);
    if (length > maxBody) throw new HttpError(413, `body larger than ${maxBody} bytes`);
  }
  const conn = headers.connection?.toLowerCase();
  const keepAlive =
    version === '1.1'
      ? !(conn !== undefined && hasToken(conn, 'close'))
      : conn !== undefined && hasToken(conn, 'keep-alive');
  const q = url.indexOf('?');
  const request: HttpRequest = {
    method,
    url,
    path: q < 0 ? url : url.slice(0, q),
    query: q < 0 ? '' : url.slice(q + 1),
    version,
    headers,
    body: EMPTY,
    keepAlive,
    remoteAddress: '',
  };
  return { request, bodyStart: end + 4, total: end + 4 + length };
}

function hasToken(list: string, token: string): boolean {
  if (list === token) return true;
  for (const part of list.split(',')) if (part.trim() === token) return true;
  return false;
}

let dateText = '';
let dateSecond = 0;

/** The Date header, formatted at most once a second. */
function httpDate(): string {
  const now = Date.now();
  const second = Math.floor(now / 1000);
  if (second !== dateSecond) {
    dateSecond = second;
    dateText = new Date(now).toUTCString();
  }
  return dateText;
}

/** Statuses that carry no body (RFC 9110 6.4.1). */
function bodiless(status: number): boolean {
  return status < 200 || status === 204 || status === 304;
}

/** The response's bytes: one buffer, head and body. */
export function encodeResponse(reply: HttpReply, keepAlive: boolean, headRequest: boolean): Uint8Array {
  const res: HttpResponse =
    typeof reply === 'string' || reply instanceof Uint8Array ? { body: reply } : reply;
  const status = res.status ?? 200;
  if (!Number.isInteger(status) || status < 100 || status > 999)
    throw new RangeError(`bad HTTP status ${status}`);
  const body = res.body ?? '';
  let head = `HTTP/1.1 ${status} ${STATUS[status] ?? 'Unknown'}\r\nDate: ${httpDate()}\r\n`;
  let hasType = false;
  if (res.headers !== undefined) {
    for (const name of Object.keys(res.headers)) {
      const value = String(res.headers[name]);
      if (!TOKEN.test(name) || BAD_VALUE.test(value))
        throw new TypeError(`bad header ${JSON.stringify(name)}`);
      const lower = name.toLowerCase();
      if (lower === 'content-length' || lower === 'connection' || lower === 'transfer-encoding') continue;
      if (lower === 'content-type') hasType = true;
      head += `${name}: ${value}\r\n`;
    }
  }
  head += keepAlive ? 'Connection: keep-alive\r\n' : 'Connection: close\r\n';
  const noBody = bodiless(status);
  if (noBody) return Buffer.from(`${head}\r\n`, 'latin1');
  if (typeof body === 'string') {
    if (!hasType) head += 'Content-Type: text/plain; charset=utf-8\r\n';
    const length = Buffer.byteLength(body);
    return headRequest
      ? Buffer.from(`${head}Content-Length: ${length}\r\n\r\n`, 'latin1')
      : Buffer.from(`${head}Content-Length: ${length}\r\n\r\n${body}`);
  }
  if (!hasType) head += 'Content-Type: application/octet-stream\r\n';
  head += `Content-Length: ${body.length}\r\n\r\n`;
  const headLength = Buffer.byteLength(head);
  const out = Buffer.allocUnsafe(headLength + (headRequest ? 0 : body.length));
  out.write(head, 0, 'utf8');
  if (!headRequest) out.set(body, headLength);
  return out;
}

/** A JSON response. */
export function jsonResponse(
  value: unknown,
  status = 200,
  headers: Record<string, string> = {},
): HttpResponse {
  return {
    status,
    headers: { 'Content-Type': 'application/json; charset=utf-8', ...headers },
    body: JSON.stringify(value) ?? 'null',
  };
}

const STATUS: Record<number, string> = {
  100: 'Continue',
  101: 'Switching Protocols',
  200: 'OK',
  201: 'Created',
  202: 'Accepted',
  204: 'No Content',
  301: 'Moved Permanently',
  302: 'Found',
  303: 'See Other',
  304: 'Not Modified',
  307: 'Temporary Redirect',
  308: 'Permanent Redirect',
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  408: 'Request Timeout',
  409: 'Conflict',
  411: 'Length Required',
  413: 'Content Too Large',
  415: 'Unsupported Media Type',
  429: 'Too Many Requests',
  431: 'Request Header Fields Too Large',
  500: 'Internal Server Error',
  501: 'Not Implemented',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
  505: 'HTTP Version Not Supported',
};
