import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { installEcho } from '../src/cli/echo.js';
import { connect } from '../src/client/index.js';
import { devValidator } from '../src/index.js';
import { makeCert as makeCertIn } from './support/cert.js';
import { once, RawTcp, startGateway, stopAll } from './support/gateway.js';

afterEach(stopAll);

/** The HTTP status a WebSocket upgrade got, or 101 when it opened. */
function upgradeStatus(
  url: string,
  headers: Record<string, string> = {},
  localAddress?: string,
): Promise<number> {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, { headers, localAddress });
    ws.on('open', () => {
      resolve(101);
      // keep it open: the test counts it
    });
    ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
    ws.on('error', () => {});
  });
}

describe('connection limits', () => {
  it('refuses connections over maxConnections: TCP is closed, WebSocket gets 503', async () => {
    const { gateway, tcpUrl, wsUrl } = await startGateway({ maxConnections: 2 });
    expect(await upgradeStatus(wsUrl)).toBe(101);
    const a = await RawTcp.open(tcpUrl);
    a.sendJson({ kind: 'hello' });
    await a.until((r) => r.frames.length === 1);
    expect(await upgradeStatus(wsUrl)).toBe(503);
    const refused = await RawTcp.open(tcpUrl);
    await refused.waitClosed();
    expect(refused.frames).toHaveLength(0);
    expect(gateway.stats().refused).toBe(2);
    a.destroy();
    await expect.poll(() => gateway.stats().connections).toBe(1);
    expect(await upgradeStatus(wsUrl)).toBe(101);
  });

  it('refuses a remote address over maxConnectionsPerIp (429), while other addresses get in', async () => {
    const { wsUrl } = await startGateway({ maxConnectionsPerIp: 2 });
    expect(await upgradeStatus(wsUrl, {}, '127.0.0.1')).toBe(101);
    expect(await upgradeStatus(wsUrl, {}, '127.0.0.1')).toBe(101);
    expect(await upgradeStatus(wsUrl, {}, '127.0.0.1')).toBe(429);
    expect(await upgradeStatus(wsUrl.replace('127.0.0.1', '127.0.0.1'), {}, '127.0.0.2')).toBe(101);
  });

  it('closes a connection that sends faster than its rate with rate_limited (4006); others are unaffected', async () => {
    const { gateway, tcpUrl } = await startGateway({ rateLimit: { rate: 50, burst: 20 } });
    installEcho(gateway);
    const calm = await connect(tcpUrl, { reconnect: false });
    const flood = await RawTcp.open(tcpUrl);
    flood.sendJson({ kind: 'hello' });
    await flood.until((r) => r.frames.length === 1);
    for (let i = 0; i < 200; i++) flood.sendJson({ kind: 'msg', type: 'noise', data: i });
    await flood.waitClosed();
    expect(flood.json().at(-1)).toMatchObject({
      kind: 'kick',
      data: { code: 4006, name: 'rate_limited', reconnect: true },
    });
    for (let i = 0; i < 10; i++) await expect(calm.request('echo', i)).resolves.toBe(i);
  });

  it('limits the labels of one connection', async () => {
    const { tcpUrl } = await startGateway({
      validate: devValidator(),
      authorizeSub: () => true,
      maxLabels: 3,
    });
    const c = await connect(tcpUrl, { token: 'lab', reconnect: false });
    await expect(c.subscribe(['a', 'b', 'c'])).resolves.toEqual(['a', 'b', 'c']);
    await expect(c.subscribe(['d'])).rejects.toMatchObject({ code: 'TOO_MANY_REQUESTS' });
    // All or nothing: a sub that would pass the limit joins none of its labels.
    await expect(c.unsubscribe(['c'])).resolves.toEqual(['a', 'b']);
    await expect(c.subscribe(['c', 'd'])).rejects.toMatchObject({ code: 'TOO_MANY_REQUESTS' });
    await expect(c.unsubscribe(['zz'])).resolves.toEqual(['a', 'b']);
    await expect(c.subscribe(['x'.repeat(300)])).rejects.toMatchObject({ code: 'BAD_REQUEST' });
  });
});

describe('WebSocket admission', () => {
  it('allows only listed origins (403 before the upgrade)', async () => {
    const { wsUrl } = await startGateway({ ws: { port: 0, origins: ['https://app.example.com'] } });
    expect(await upgradeStatus(wsUrl, { origin: 'https://app.example.com' })).toBe(101);
    expect(await upgradeStatus(wsUrl, { origin: 'https://evil.example.com' })).toBe(403);
    expect(await upgradeStatus(wsUrl)).toBe(403);
  });

  it('runs the verify hook before the upgrade, sync or async, with its own status', async () => {
    let asked = 0;
    const { gateway, wsUrl } = await startGateway({
      ws: {
        port: 0,
        verify: async ({ headers }) => {
          asked++;
          await new Promise((r) => setTimeout(r, 10));
          if (headers['x-api-version'] === '2') return true;
          return { status: 400, reason: 'upgrade your app' };
        },
      },
    });
    expect(await upgradeStatus(wsUrl, { 'x-api-version': '1' })).toBe(400);
    expect(gateway.stats().connections).toBe(0);
    expect(await upgradeStatus(wsUrl, { 'x-api-version': '2' })).toBe(101);
    expect(asked).toBe(2);
  });
});

describe('TLS', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pylon-tls-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const makeCert = (name: string) => makeCertIn(dir, name);
  const peerName = (port: number, ca: Buffer) =>
    new Promise<string>((resolve, reject) => {
      const s = tlsConnect({ host: '127.0.0.1', port, ca, servername: 'localhost' }, () => {
        resolve(String(s.getPeerCertificate().subject.CN));
        s.destroy();
      });
      s.on('error', reject);
    });

  it('serves tls:// and wss:// with the given certificate, and reloads it without a restart', async () => {
    const first = makeCert('first');
    const files = { cert: join(dir, 'live.crt'), key: join(dir, 'live.key') };
    writeFileSync(files.cert, readFileSync(first.cert));
    writeFileSync(files.key, readFileSync(first.key));
    const { gateway, tcpUrl, wsUrl } = await startGateway({
      tcp: { port: 0, tls: files },
      ws: { port: 0, tls: files },
    });
    installEcho(gateway);
    const ca1 = readFileSync(first.cert);
    const overTls = await connect(tcpUrl.replace('tcp:', 'tls:'), { tls: { ca: ca1 }, reconnect: false });
    const overWss = await connect(wsUrl.replace('ws:', 'wss:'), { tls: { ca: ca1 }, reconnect: false });
    await expect(overTls.request('echo', 'secret')).resolves.toBe('secret');
    await expect(overWss.request('echo', 'secret')).resolves.toBe('secret');
    // Plain TCP to a TLS port does not get in.
    const plain = netConnect(Number(new URL(tcpUrl).port), '127.0.0.1');
    plain.on('error', () => {});
    plain.write('\u0000\u0000\u0000\u0002{}');
    await once<void>((resolve) => plain.on('close', () => resolve()));

    const second = makeCert('second');
    writeFileSync(files.cert, readFileSync(second.cert));
    writeFileSync(files.key, readFileSync(second.key));
    expect(await peerName(Number(new URL(tcpUrl).port), ca1)).toBe('first');
    gateway.reloadTls();
    const ca2 = readFileSync(second.cert);
    expect(await peerName(Number(new URL(tcpUrl).port), ca2)).toBe('second');
    expect(await peerName(Number(new URL(wsUrl).port), ca2)).toBe('second');
    // Connections made before the reload keep working.
    await expect(overTls.request('echo', 'still')).resolves.toBe('still');
  });
});
