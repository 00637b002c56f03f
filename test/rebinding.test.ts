import { request } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { type AdminServer, startAdmin } from '../src/api/index.js';
import { startGateway, stopAll } from './support/gateway.js';
import { Child } from './support/process.js';

// DNS rebinding: a web page at evil.example whose name now resolves to 127.0.0.1 can make the
// operator's browser send requests to a keyless admin API or a dev-auth gateway on loopback.
// The browser still names the page's host in Host and Origin: those are what is checked.
const admins: AdminServer[] = [];
const children: Child[] = [];
afterEach(async () => {
  await Promise.all(admins.splice(0).map((a) => a.close()));
  for (const c of children.splice(0)) c.kill('SIGKILL');
  await stopAll();
});

function status(
  port: number,
  method: string,
  path: string,
  host: string,
  headers: Record<string, string> = {},
) {
  return new Promise<number>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method, path, headers: { host, ...headers } }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.end(method === 'POST' ? JSON.stringify({ to: { all: true }, type: 't' }) : undefined);
  });
}

describe('the keyless admin API', () => {
  it('answers only Host names of this machine; others get 421 before anything runs', async () => {
    const { gateway } = await startGateway();
    const admin = await startAdmin(gateway, { httpPort: 0, grpcPort: false });
    admins.push(admin);
    const port = admin.http.port;
    const json = { 'content-type': 'application/json' };
    expect(await status(port, 'POST', '/v1/push', 'evil.example', json)).toBe(421);
    expect(await status(port, 'POST', '/v1/push', `evil.example:${port}`, json)).toBe(421);
    expect(await status(port, 'GET', '/v1/debug/heap-snapshot', 'evil.example')).toBe(421);
    expect(await status(port, 'GET', '/', 'evil.example')).toBe(421);
    expect(await status(port, 'GET', '/v1/stats', '127.0.0.1.evil.example')).toBe(421);
    expect(await status(port, 'POST', '/v1/push', `127.0.0.1:${port}`, json)).toBe(200);
    expect(await status(port, 'GET', '/v1/stats', `localhost:${port}`)).toBe(200);
    expect(await status(port, 'GET', '/v1/stats', `[::1]:${port}`)).toBe(200);
    expect(await status(port, 'GET', '/healthz', 'localhost')).toBe(200);
  });

  it('with keys, any Host is served (the key is the check)', async () => {
    const { gateway } = await startGateway();
    const admin = await startAdmin(gateway, { httpPort: 0, grpcPort: false, keys: ['k'.repeat(20)] });
    admins.push(admin);
    expect(await status(admin.http.port, 'GET', '/v1/stats', 'api.example.com')).toBe(401);
    expect(
      await status(admin.http.port, 'GET', '/v1/stats', 'api.example.com', {
        authorization: `Bearer ${'k'.repeat(20)}`,
      }),
    ).toBe(200);
  });
});

describe('pylon start with dev auth', () => {
  it('opens WebSockets only for pages of this machine (or clients that send no Origin)', async () => {
    const cli = new Child(
      process.execPath,
      [
        'dist/cli/main.js',
        'start',
        '--ws-port',
        '0',
        '--tcp-port',
        '0',
        '--store',
        'memory',
        '--admin-port',
        '-1',
      ],
      { PYLON_LOG_LEVEL: 'warn' },
    );
    children.push(cli);
    const url = (await cli.waitFor(/WebSocket on (ws:\/\/\S+)/))[1]!;
    const port = new URL(url).port;
    const upgrade = (origin?: string) =>
      new Promise<number>((resolve) => {
        const ws = new WebSocket(`${url}?token=alice`, origin ? { headers: { origin } } : {});
        ws.on('open', () => {
          resolve(101);
          ws.close();
        });
        ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
        ws.on('error', () => {});
      });
    expect(await upgrade('http://evil.example')).toBe(403);
    expect(await upgrade(`http://evil.example:${port}`)).toBe(403);
    expect(await upgrade(`http://127.0.0.1:${port}`)).toBe(101);
    expect(await upgrade(`http://localhost:${port}`)).toBe(101);
    expect(await upgrade()).toBe(101);
    // The HTTP transport: a rebound page's same-origin GET sends no Origin, but its Host names it.
    const streamOf = (host: string) =>
      new Promise<number>((resolve, reject) => {
        const req = request(
          { host: '127.0.0.1', port, path: '/stream?token=alice', headers: { host } },
          (res) => {
            resolve(res.statusCode ?? 0);
            res.destroy();
          },
        );
        req.on('error', reject);
        req.end();
      });
    expect(await streamOf(`evil.example:${port}`)).toBe(403);
    expect(await streamOf(`127.0.0.1:${port}`)).toBe(200);
    expect(
      await status(Number(port), 'POST', '/http', `evil.example:${port}`, {
        origin: `http://evil.example:${port}`,
      }),
    ).toBe(403);
  });
});
