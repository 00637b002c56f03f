import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import type { CloseInfo } from '../src/framework/connection.js';
import { createServer } from '../src/framework/server.js';
import { createLogger } from '../src/log/logger.js';

const silent = createLogger('silent');
const servers: Array<{ close(): Promise<void> }> = [];

afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function eventually(pred: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error('condition not met');
    await new Promise((r) => setTimeout(r, 10));
  }
}

function open(
  url: string,
  headers: Record<string, string> = {},
): Promise<{ ws: WebSocket; got: Array<string | Buffer> }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers });
    const got: Array<string | Buffer> = [];
    ws.on('message', (data: Buffer, isBinary) => got.push(isBinary ? data : data.toString()));
    ws.once('open', () => resolve({ ws, got }));
    ws.once('error', reject);
  });
}

describe('ws://', () => {
  it('each WebSocket message is a packet: text as strings, binary as bytes, and back the same way', async () => {
    const closes: CloseInfo[] = [];
    const server = createServer({
      listen: 'ws://127.0.0.1:0/game',
      logger: silent,
      onMessage(conn, message) {
        if (message === 'quit') conn.close('as you wish', 4100);
        else
          conn.send(
            typeof message === 'string' ? `text:${message}` : Uint8Array.from([...message].reverse()),
          );
      },
      onClose: (_c, info) => closes.push(info),
    });
    servers.push(server);
    const { url } = await server.listen();
    expect(url).toMatch(/^ws:\/\/127\.0\.0\.1:\d+\/game$/);
    const { ws, got } = await open(url);
    ws.send('hi');
    ws.send(Buffer.from([1, 2, 3]));
    await eventually(() => got.length === 2);
    expect(got).toEqual(['text:hi', Buffer.from([3, 2, 1])]);
    const closed = new Promise<[number, string]>((r) =>
      ws.once('close', (code, reason) => r([code, reason.toString()])),
    );
    ws.send('quit');
    expect(await closed).toEqual([4100, 'as you wish']);
    await eventually(() => closes.length === 1);
    expect(closes[0]).toEqual({ code: 4100, name: 'closed', reason: 'as you wish' });
  });

  it('remoteAddress comes from X-Forwarded-For / X-Real-IP only when the peer is a trusted proxy', async () => {
    const addresses: string[] = [];
    const make = async (trustedProxies: string[]) => {
      const server = createServer({
        listen: 'ws://127.0.0.1:0',
        logger: silent,
        trustedProxies,
        onConnect(conn) {
          addresses.push(`${conn.remoteAddress} via ${conn.peerAddress}`);
          expect(conn.headers['x-real-ip']).toBeDefined();
        },
      });
      servers.push(server);
      return (await server.listen()).url;
    };
    const trusted = await make(['127.0.0.1']);
    const untrusted = await make(['10.9.9.9']);
    const headers = { 'X-Forwarded-For': '198.51.100.1, 127.0.0.1', 'X-Real-IP': '198.51.100.2' };
    (await open(trusted, headers)).ws.close();
    (await open(untrusted, headers)).ws.close();
    await eventually(() => addresses.length === 2);
    expect(addresses[0]).toMatch(/^198\.51\.100\.1 via (::ffff:)?127\.0\.0\.1$/);
    expect(addresses[1]).toMatch(/^(::ffff:)?127\.0\.0\.1 via (::ffff:)?127\.0\.0\.1$/);
  });

  it('a message over maxPayload closes with frame_too_large; the path is enforced', async () => {
    const closes: CloseInfo[] = [];
    const server = createServer({
      listen: 'ws://127.0.0.1:0/only',
      logger: silent,
      ws: { maxPayload: 16 },
      onError: () => {},
      onClose: (_c, info) => closes.push(info),
    });
    servers.push(server);
    const { url } = await server.listen();
    await expect(open(url.replace('/only', '/other'))).rejects.toThrow(/404/);
    const { ws } = await open(url);
    ws.send('x'.repeat(17));
    await eventually(() => closes.length === 1);
    expect(closes[0]!.name).toBe('frame_too_large');
  });
});
