import { connect as netConnect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { CloseInfo } from '../src/framework/connection.js';
import { jsonResponse } from '../src/framework/http.js';
import { createServer } from '../src/framework/server.js';
import { createLogger } from '../src/log/logger.js';

const silent = createLogger('silent');
const servers: Array<{ close(): Promise<void> }> = [];

afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function httpServer(extra: { trustedProxies?: string[]; maxConnections?: number } = {}) {
  const connects: number[] = [];
  const closes: CloseInfo[] = [];
  const server = createServer({
    listen: 'http://127.0.0.1:0',
    logger: silent,
    ...extra,
    onConnect: (c) => connects.push(c.id),
    onClose: (_c, info) => closes.push(info),
    onMessage(conn, req) {
      if (req.path === '/hello') conn.send('hello world');
      else if (req.path === '/echo')
        conn.send({ status: 200, headers: { 'X-Method': req.method }, body: req.body.slice() });
      else if (req.path === '/who')
        conn.send(jsonResponse({ remote: req.remoteAddress, conn: conn.remoteAddress }));
      else conn.send({ status: 404, body: 'not found' });
    },
  });
  servers.push(server);
  const { port } = await server.listen();
  return { server, port, connects, closes, base: `http://127.0.0.1:${port}` };
}

/** A raw HTTP client: writes requests, reads responses by Content-Length. */
class RawHttp {
  private buf = Buffer.alloc(0);
  closed = false;
  private wake: (() => void) | undefined;
  constructor(readonly socket: Socket) {
    socket.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.wake?.();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake?.();
    });
    socket.on('error', () => {});
  }
  static open(port: number): Promise<RawHttp> {
    return new Promise((resolve, reject) => {
      const s = netConnect({ port, host: '127.0.0.1' }, () => resolve(new RawHttp(s)));
      s.once('error', reject);
    });
  }
  async response(ms = 5000): Promise<{ status: number; headers: Record<string, string>; body: string }> {
    const deadline = Date.now() + ms;
    for (;;) {
      const end = this.buf.indexOf('\r\n\r\n');
      if (end >= 0) {
        const lines = this.buf.toString('latin1', 0, end).split('\r\n');
        const headers: Record<string, string> = {};
        for (const l of lines.slice(1)) {
          const i = l.indexOf(':');
          headers[l.slice(0, i).toLowerCase()] = l.slice(i + 1).trim();
        }
        const length = Number(headers['content-length'] ?? 0);
        if (this.buf.length >= end + 4 + length) {
          const body = this.buf.toString('utf8', end + 4, end + 4 + length);
          this.buf = this.buf.subarray(end + 4 + length);
          return { status: Number(lines[0]!.split(' ')[1]), headers, body };
        }
      }
      if (this.closed) throw new Error(`closed before a whole response: ${this.buf.toString()}`);
      if (Date.now() > deadline) throw new Error('no response');
      await new Promise<void>((r) => {
        this.wake = r;
        setTimeout(r, 50);
      });
    }
  }
  async waitClosed(ms = 5000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!this.closed) {
      if (Date.now() > deadline) throw new Error('still open');
      await new Promise((r) => setTimeout(r, 10));
    }
  }
}

describe('http:// protocol', () => {
  it('serves keep-alive requests from fetch, reusing its connections', async () => {
    const { base, connects } = await httpServer();
    for (let i = 0; i < 5; i++) {
      const res = await fetch(`${base}/hello`);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toBe('text/plain; charset=utf-8');
      expect(await res.text()).toBe('hello world');
    }
    const posted = await fetch(`${base}/echo`, { method: 'POST', body: 'some body' });
    expect(posted.headers.get('x-method')).toBe('POST');
    expect(await posted.text()).toBe('some body');
    // undici's pool may open a second socket early (it does with Node's own server too): the
    // point is that sockets are reused, not one per request.
    expect(connects.length).toBeLessThanOrEqual(2);
  });

  it('answers several requests per raw connection, pipelined too', async () => {
    const { port } = await httpServer();
    const c = await RawHttp.open(port);
    c.socket.write('GET /hello HTTP/1.1\r\nHost: x\r\n\r\n');
    expect((await c.response()).body).toBe('hello world');
    c.socket.write('POST /echo HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET /nope HTTP/1.1\r\n\r\n');
    expect((await c.response()).body).toBe('abc');
    const missing = await c.response();
    expect(missing.status).toBe(404);
    expect(missing.headers.connection).toBe('keep-alive');
    c.socket.write('GET /hello HTTP/1.1\r\nConnection: close\r\n\r\n');
    const last = await c.response();
    expect(last.headers.connection).toBe('close');
    await c.waitClosed();
  });

  it('answers Expect: 100-continue before the body comes', async () => {
    const { port } = await httpServer();
    const c = await RawHttp.open(port);
    c.socket.write('POST /echo HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n');
    expect((await c.response()).status).toBe(100);
    c.socket.write('hello');
    expect((await c.response()).body).toBe('hello');
  });

  it('HTTP/1.0 ab-style: kept with Connection: keep-alive (and Content-Length), closed without', async () => {
    const { port, closes } = await httpServer();
    const ab = await RawHttp.open(port);
    for (let i = 0; i < 3; i++) {
      ab.socket.write('GET /hello HTTP/1.0\r\nConnection: Keep-Alive\r\nHost: x\r\n\r\n');
      const r = await ab.response();
      expect(r.body).toBe('hello world');
      expect(r.headers['content-length']).toBe('11');
      expect(r.headers.connection).toBe('keep-alive');
    }
    expect(ab.closed).toBe(false);
    const plain = await RawHttp.open(port);
    plain.socket.write('GET /hello HTTP/1.0\r\n\r\n');
    expect((await plain.response()).headers.connection).toBe('close');
    await plain.waitClosed();
    expect(closes.map((c) => c.reason)).toEqual(['HTTP connection not kept alive']);
  });

  it('refuses chunked bodies with 411 and bad requests with 400, then closes', async () => {
    const { port, closes } = await httpServer();
    const chunked = await RawHttp.open(port);
    chunked.socket.write('POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n');
    expect((await chunked.response()).status).toBe(411);
    await chunked.waitClosed();
    const bad = await RawHttp.open(port);
    bad.socket.write('HELLO\r\n\r\n');
    expect((await bad.response()).status).toBe(400);
    await bad.waitClosed();
    expect(closes.map((c) => c.code)).toEqual([4500, 4500]);
  });

  it('the real client address comes from X-Forwarded-For only through a trusted proxy', async () => {
    const trusted = await httpServer({ trustedProxies: ['127.0.0.1'] });
    const viaProxy = await fetch(`${trusted.base}/who`, { headers: { 'X-Forwarded-For': '203.0.113.7' } });
    expect(await viaProxy.json()).toEqual({ remote: '203.0.113.7', conn: '203.0.113.7' });
    const untrusted = await httpServer();
    const spoofed = await fetch(`${untrusted.base}/who`, { headers: { 'X-Forwarded-For': '203.0.113.7' } });
    expect(((await spoofed.json()) as { remote: string }).remote).toMatch(/127\.0\.0\.1$/);
  });

  it('answers 503 over maxConnections', async () => {
    const { port } = await httpServer({ maxConnections: 1 });
    const first = await RawHttp.open(port);
    first.socket.write('GET /hello HTTP/1.1\r\n\r\n');
    await first.response();
    const second = await RawHttp.open(port);
    expect((await second.response()).status).toBe(503);
    await second.waitClosed();
  });
});
