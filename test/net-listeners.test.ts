import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { connect } from '../src/client/index.js';
import { createServer } from '../src/framework/server.js';
import { devValidator } from '../src/index.js';
import { createLogger } from '../src/log/logger.js';
import { makeCert } from './support/cert.js';
import { startGateway, stopAll } from './support/gateway.js';

// One socket layer under both faces: what one face's listeners could do, the other's can too.
const silent = createLogger('silent');
const servers: Array<{ close(): Promise<void> }> = [];
const dir = mkdtempSync(join(tmpdir(), 'pylon-net-'));
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
  await stopAll();
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function upgrade(
  url: string,
  options: { headers?: Record<string, string>; ca?: Buffer; localAddress?: string } = {},
) {
  return new Promise<number>((resolve) => {
    const ws = new WebSocket(url, options);
    ws.on('open', () => resolve(101));
    ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
    ws.on('error', () => resolve(-1));
  });
}

describe('framework servers get what the gateway had', () => {
  it('TLS: line:// over TLS and wss://', async () => {
    const tls = makeCert(dir, 'localhost');
    const ca = readFileSync(tls.cert);
    const line = createServer({
      listen: 'line://127.0.0.1:0',
      tls,
      logger: silent,
      onMessage: (c, m) => c.send(`tls: ${m}`),
    });
    servers.push(line);
    const { port } = await line.listen();
    const answer = await new Promise<string>((resolve, reject) => {
      const s = tlsConnect({ host: '127.0.0.1', port, ca, servername: 'localhost' }, () => s.write('hi\n'));
      s.on('data', (d) => resolve(d.toString()));
      s.on('error', reject);
    });
    expect(answer).toBe('tls: hi\n');
    const ws = createServer({
      listen: 'ws://127.0.0.1:0/',
      tls,
      logger: silent,
      onMessage: (c, m) => c.send(m),
    });
    servers.push(ws);
    const address = await ws.listen();
    expect(address.url).toMatch(/^wss:\/\//);
    expect(await upgrade(address.url, { ca })).toBe(101);
  });

  it('admission: per-address limit, origin allow-list and a verify hook before the upgrade', async () => {
    const server = createServer({
      listen: 'ws://127.0.0.1:0/',
      logger: silent,
      maxConnectionsPerIp: 1,
      ws: {
        origins: ['https://app.example'],
        verify: ({ headers }) => (headers['x-ok'] === 'yes' ? true : { status: 401, reason: 'no' }),
      },
    });
    servers.push(server);
    const { url } = await server.listen();
    const good = { origin: 'https://app.example', 'x-ok': 'yes' };
    expect(await upgrade(url, { headers: { ...good, origin: 'https://evil.example' } })).toBe(403);
    expect(await upgrade(url, { headers: { origin: 'https://app.example' } })).toBe(401);
    expect(await upgrade(url, { headers: good, localAddress: '127.0.0.1' })).toBe(101);
    expect(await upgrade(url, { headers: good, localAddress: '127.0.0.1' })).toBe(429);
    expect(await upgrade(url, { headers: good, localAddress: '127.0.0.2' })).toBe(101);
    expect(server.refusedCount).toBe(3);
  });

  it('admission on TCP: a refused connection is closed at once', async () => {
    const server = createServer({ listen: 'line://127.0.0.1:0', logger: silent, maxConnectionsPerIp: 1 });
    servers.push(server);
    const { port } = await server.listen();
    const open = () =>
      new Promise<{ closed: Promise<void> }>((resolve) => {
        const s = netConnect({ port, host: '127.0.0.1' }, () =>
          resolve({ closed: new Promise((r) => s.on('close', () => r())) }),
        );
        s.on('error', () => {});
      });
    await open();
    await (await open()).closed;
    expect(server.refusedCount).toBe(1);
  });
});

describe('the gateway gets what the framework had', () => {
  it('trusted proxies: the client address behind one counts for limits and shows on the connection', async () => {
    const { gateway, wsUrl } = await startGateway({
      validate: devValidator(),
      trustedProxies: ['127.0.0.1'],
      maxConnectionsPerIp: 1,
    });
    const viaProxy = (client: string) => ({ 'x-forwarded-for': client });
    expect(await upgrade(`${wsUrl}?token=a`, { headers: viaProxy('203.0.113.7') })).toBe(101);
    expect(await upgrade(`${wsUrl}?token=b`, { headers: viaProxy('203.0.113.7') })).toBe(429);
    expect(await upgrade(`${wsUrl}?token=c`, { headers: viaProxy('198.51.100.1') })).toBe(101);
    await expect.poll(() => gateway.connectionsOf('a').length).toBe(1);
    expect(gateway.connectionsOf('a')[0]!.remoteAddress).toBe('203.0.113.7');
    expect(gateway.userInfo('c').connections[0]!.remoteAddress).toBe('198.51.100.1');
  });

  it('an untrusted peer cannot say where it is from', async () => {
    const { gateway, wsUrl } = await startGateway({ validate: devValidator() });
    const client = await connect(`${wsUrl}?token=z`, {
      reconnect: false,
      headers: { 'x-forwarded-for': '203.0.113.7' },
    });
    expect(gateway.connectionsOf('z')[0]!.remoteAddress).toBe('127.0.0.1');
    client.close();
  });
});
