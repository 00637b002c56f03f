import { readFile, stat } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { extname, join, normalize, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The package root: this file is dist/cli/static.js (or src/cli/static.ts under the tests). */
export const PACKAGE_ROOT = fileURLToPath(new URL('../../', import.meta.url));

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.txt': 'text/plain; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.gif': 'image/gif',
  '.webp': 'image/webp',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
};

export interface StaticOptions {
  /** The package root (default: the one this file is in). */
  root?: string;
}

/**
 * The WebSocket listener's HTTP handler for `pylon start`: the chat page of examples/chat/ at
 * `/` (and the files next to it), and the browser SDK at `/pylon-client.js`. GET and HEAD only;
 * a path that leaves the folder, or names nothing, is 404. Every answer says `no-cache`, so an
 * edited page shows on reload.
 */
export function staticHandler(
  options: StaticOptions = {},
): (req: IncomingMessage, res: ServerResponse) => void {
  const root = options.root ?? PACKAGE_ROOT;
  const pageDir = join(root, 'examples', 'chat');
  const sdk = join(root, 'dist', 'browser', 'pylon-client.js');
  return (req, res) => {
    serve(req, res, pageDir, sdk).catch(() => {
      if (!res.headersSent) send(res, req, 500, 'text/plain; charset=utf-8', 'internal error\n');
      else res.destroy();
    });
  };
}

async function serve(req: IncomingMessage, res: ServerResponse, pageDir: string, sdk: string): Promise<void> {
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.setHeader('allow', 'GET, HEAD');
    send(res, req, 405, 'text/plain; charset=utf-8', 'method not allowed\n');
    return;
  }
  const file = resolvePath(req.url ?? '/', pageDir, sdk);
  if (file === undefined) {
    notFound(req, res);
    return;
  }
  let body: Buffer;
  try {
    const s = await stat(file);
    if (!s.isFile()) {
      notFound(req, res);
      return;
    }
    body = await readFile(file);
  } catch {
    notFound(req, res);
    return;
  }
  send(res, req, 200, CONTENT_TYPES[extname(file).toLowerCase()] ?? 'application/octet-stream', body);
}

/**
 * The file a request path names, or undefined: `/` is the page, `/pylon-client.js` the SDK,
 * anything else a file inside `pageDir` after decoding and normalizing (no `..` escapes, no
 * encoded separators, no NUL bytes).
 */
export function resolvePath(url: string, pageDir: string, sdk: string): string | undefined {
  let path: string;
  try {
    path = decodeURIComponent(new URL(url, 'http://localhost').pathname);
  } catch {
    return undefined;
  }
  if (path === '/' || path === '/index.html') return join(pageDir, 'index.html');
  if (path === '/pylon-client.js') return sdk;
  if (path.includes('\0') || path.includes('\\')) return undefined;
  const file = normalize(join(pageDir, path));
  if (!file.startsWith(pageDir + sep)) return undefined;
  return file;
}

function notFound(req: IncomingMessage, res: ServerResponse): void {
  send(res, req, 404, 'text/plain; charset=utf-8', 'not found\n');
}

function send(
  res: ServerResponse,
  req: IncomingMessage,
  status: number,
  type: string,
  body: string | Buffer,
): void {
  const bytes = typeof body === 'string' ? Buffer.from(body) : body;
  res.writeHead(status, {
    'content-type': type,
    'content-length': bytes.length,
    'cache-control': 'no-cache',
    'x-content-type-options': 'nosniff',
  });
  res.end(req.method === 'HEAD' ? undefined : bytes);
}
