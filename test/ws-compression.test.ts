import { connect as netConnect } from 'node:net';
import { deflateRawSync } from 'node:zlib';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { connect } from '../src/client/index.js';
import { devValidator } from '../src/index.js';
import { startGateway, stopAll } from './support/gateway.js';

// permessage-deflate on the gateway's WebSocket listener, against the ws package's client (what
// a browser does: it offers client_max_window_bits and keeps its context between messages).

afterEach(stopAll);

interface Peer {
  ws: WebSocket;
  got: Array<Record<string, unknown>>;
  extensions: string;
  bytesRead(): number;
}

async function peer(url: string, perMessageDeflate: false | Record<string, unknown>): Promise<Peer> {
  const ws = new WebSocket(`${url}?token=u${Math.random().toString(36).slice(2)}`, { perMessageDeflate });
  const got: Array<Record<string, unknown>> = [];
  let extensions = '';
  ws.once('upgrade', (res) => {
    extensions = String(res.headers['sec-websocket-extensions'] ?? '');
  });
  ws.on('message', (m) => got.push(JSON.parse(String(m))));
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  const socket = (ws as unknown as { _socket: { bytesRead: number } })._socket;
  return { ws, got, extensions, bytesRead: () => socket.bytesRead };
}

const big = (n: number) => ({ text: 'pylon '.repeat(n), n });

describe('WebSocket compression', () => {
  it('negotiates with a client that keeps its context: pushes compressed, requests inflated, in both directions', async () => {
    const { gateway, wsUrl } = await startGateway({
      validate: devValidator(),
      ws: { port: 0, compression: true },
    });
    gateway.handle('echo', (d) => d);
    const p = await peer(wsUrl, { threshold: 0 });
    expect(p.extensions).toBe('permessage-deflate; server_no_context_takeover; client_max_window_bits=10');
    // Requests the client compresses with its context kept (each refers back to the last).
    for (let i = 0; i < 5; i++)
      p.ws.send(JSON.stringify({ kind: 'req', id: i + 1, type: 'echo', data: big(200 + i) }));
    await expect.poll(() => p.got.filter((f) => f.kind === 'res').length).toBe(5);
    expect(p.got.filter((f) => f.kind === 'res').map((f) => (f.data as { n: number }).n)).toEqual([
      200, 201, 202, 203, 204,
    ]);
    // A 12 KB push arrives whole, in far fewer bytes on the wire.
    const before = p.bytesRead();
    await gateway.push({ all: true }, 'news', big(2000));
    await expect.poll(() => p.got.some((f) => f.type === 'news')).toBe(true);
    const news = p.got.find((f) => f.type === 'news') as { data: { text: string } };
    expect(news.data.text).toHaveLength(12_000);
    expect(p.bytesRead() - before).toBeLessThan(1000);
    // Under the threshold (1024 bytes): sent as it is.
    await gateway.push({ all: true }, 'small', { a: 1 });
    await expect.poll(() => p.got.some((f) => f.type === 'small')).toBe(true);
    p.ws.close();
  });

  it('a broadcast reaches compressing and plain clients alike; a client without context takeover is answered so', async () => {
    const { gateway, wsUrl } = await startGateway({ ws: { port: 0, compression: { threshold: 100 } } });
    const plain = await peer(wsUrl, false);
    const nct = await peer(wsUrl, { threshold: 0, clientNoContextTakeover: true });
    const kept = await Promise.all(Array.from({ length: 20 }, () => peer(wsUrl, { threshold: 0 })));
    expect(plain.extensions).toBe('');
    expect(nct.extensions).toBe('permessage-deflate; server_no_context_takeover; client_no_context_takeover');
    const all = [plain, nct, ...kept];
    for (let i = 0; i < 3; i++) await gateway.push({ all: true }, 'b', big(100 + i));
    await expect.poll(() => all.every((p) => p.got.filter((f) => f.type === 'b').length === 3)).toBe(true);
    for (const p of all)
      expect(p.got.filter((f) => f.type === 'b').map((f) => (f.data as { n: number }).n)).toEqual([
        100, 101, 102,
      ]);
    for (const p of all) p.ws.close();
  });

  it('the Node SDK with compression: true negotiates it; requests and answers go compressed', async () => {
    const { gateway, wsUrl } = await startGateway({ ws: { port: 0, compression: true } });
    gateway.handle('echo', (d) => d);
    const c = await connect(wsUrl, { compression: true, reconnect: false });
    const [conn] = [...gateway.connections.values()] as unknown as Array<{
      link: { deflate?: { clientBits: number } };
    }>;
    expect(conn?.link.deflate?.clientBits).toBe(10);
    for (let i = 0; i < 3; i++) expect(await c.request('echo', big(500 + i))).toEqual(big(500 + i));
    await c.close();
  });

  it('off by default: an offer is not answered (the client sends plain frames)', async () => {
    const { wsUrl } = await startGateway();
    const p = await peer(wsUrl, { threshold: 0 });
    expect(p.extensions).toBe('');
    p.ws.close();
  });

  it('a small compressed frame that inflates past maxFrame closes the link with frame_too_large (4501)', async () => {
    const { wsUrl } = await startGateway({ ws: { port: 0, compression: true }, maxFrame: 65_536 });
    const u = new URL(wsUrl);
    const socket = netConnect({ host: u.hostname, port: Number(u.port) });
    let response = Buffer.alloc(0);
    socket.on('data', (c: Buffer) => {
      response = Buffer.concat([response, c]);
    });
    await new Promise<void>((r) => socket.once('connect', () => r()));
    socket.write(
      `GET ${u.pathname} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
        'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n' +
        'Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover\r\n\r\n',
    );
    await expect.poll(() => response.includes('\r\n\r\n')).toBe(true);
    expect(String(response)).toMatch(/Sec-WebSocket-Extensions: permessage-deflate/);
    // 4 MiB of zeros: about 4 KB compressed.
    const bomb = deflateRawSync(Buffer.alloc(4 * 1024 * 1024), { level: 9 });
    const payload = bomb; // a complete raw stream (final block) inflates too
    const mask = Buffer.from([1, 2, 3, 4]);
    const masked = Buffer.from(payload.map((b, i) => b ^ (mask[i & 3] as number)));
    const header = Buffer.from([0xc1, 0x80 | 126, payload.length >> 8, payload.length & 0xff]);
    const start = response.length;
    socket.write(Buffer.concat([header, mask, masked]));
    await new Promise<void>((r) => socket.once('close', () => r()));
    const frames = response.subarray(start);
    // The close frame: 0x88, length, code 4501.
    const at = frames.indexOf(0x88);
    expect(at).toBeGreaterThanOrEqual(0);
    expect(frames.readUInt16BE(at + 2)).toBe(4501);
  });
});
