import { createServer, request, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/**
 * An HTTP proxy of the kind that breaks WebSocket: plain requests (and their streamed answers)
 * pass through to `target`, upgrades are refused with 403 ("refuse") or left hanging ("hang"),
 * as corporate proxies and some carriers do.
 */
export async function noWsProxy(
  target: string,
  mode: 'refuse' | 'hang' = 'refuse',
): Promise<{ url: string; upgrades: number; close(): Promise<void> }> {
  const t = new URL(target);
  const hanging = new Set<Socket>();
  const state = { upgrades: 0 };
  const server: Server = createServer((req, res) => {
    const up = request(
      { host: t.hostname, port: t.port, method: req.method, path: req.url, headers: req.headers },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        res.flushHeaders();
        answer.pipe(res);
      },
    );
    up.on('error', () => res.destroy());
    res.on('close', () => up.destroy());
    req.pipe(up);
  });
  server.on('upgrade', (_req, socket: Socket) => {
    state.upgrades++;
    if (mode === 'hang') {
      hanging.add(socket);
      socket.on('error', () => {});
      return;
    }
    socket.end('HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `127.0.0.1:${port}`,
    get upgrades() {
      return state.upgrades;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of hanging) s.destroy();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
