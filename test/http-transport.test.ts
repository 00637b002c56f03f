import { afterEach, describe, expect, it } from 'vitest';
import type { Gateway, GatewayOptions } from '../src/index.js';
import { startGateway, stopAll } from './support/gateway.js';
import { HttpPeer } from './support/http-peer.js';

/** Pylon over HTTP from a client that has only fetch: sessions (SSE and JSON lines), POSTs, limits. */

afterEach(async () => {
  await stopAll();
});

const validate = (token: unknown) => {
  const [user, labels] = String(token).split(':');
  if (user === 'bad') return null;
  return { user: user as string, labels: labels ? labels.split(',') : [] };
};

async function setup(options: GatewayOptions = {}): Promise<{ gateway: Gateway; base: string }> {
  const { gateway, wsUrl } = await startGateway({ validate, authorizeSub: () => true, ...options });
  gateway.handle('echo', (data) => data);
  return { gateway, base: wsUrl.replace(/^ws:/, 'http:').replace(/\/ws$/, '') };
}

const hello = (token: string, extra: Record<string, unknown> = {}) => ({
  kind: 'hello',
  data: { token, ...extra },
});

describe('HTTP transport: sessions', () => {
  for (const format of ['sse', 'ndjson'] as const) {
    it(`${format}: welcome, request and response, pushes, qos-1 ack, bye`, async () => {
      const { gateway, base } = await setup();
      const peer = await HttpPeer.open(base, { hello: hello('ann:news'), format });
      expect(peer.status).toBe(200);
      expect(peer.session).toMatch(new RegExp(`^${gateway.nodeId}-`));
      await peer.until((p) => p.of('welcome').length === 1);
      const welcome = peer.of('welcome')[0]?.data as Record<string, unknown>;
      expect(welcome).toMatchObject({ user: 'ann', codec: 'json', labels: ['news'] });
      expect(gateway.connectionsOf('ann')[0]?.transport).toBe('http');

      const posted = await peer.send([
        { kind: 'req', id: 1, type: 'echo', data: { n: 1 } },
        { kind: 'req', id: 2, type: 'echo', data: { n: 2 } },
      ]);
      expect(posted.status).toBe(204);
      await peer.until((p) => p.of('res').length === 2);
      expect(peer.of('res').map((r) => [r.id, r.data])).toEqual([
        [1, { n: 1 }],
        [2, { n: 2 }],
      ]);

      await gateway.push({ labels: { all: ['news'] } }, 'headline', { t: 'a\nb' });
      await gateway.push({ user: 'ann' }, 'order', { id: 7 }, { qos: 1 });
      await peer.until((p) => p.of('push').length === 2);
      expect(peer.of('push', 'headline')[0]?.data).toEqual({ t: 'a\nb' });
      const order = peer.of('push', 'order')[0] as { seq: number; qos: number };
      expect(order.qos).toBe(1);
      expect((await peer.send([{ kind: 'ack', seq: order.seq }])).status).toBe(204);
      await expect.poll(() => gateway.stats().qos1?.acked).toBe(1);

      expect((await peer.send([{ kind: 'bye' }])).status).toBe(204);
      await peer.until((p) => p.ended);
      expect(gateway.connectionsOf('ann')).toHaveLength(0);
      // The session is over: a POST to it says so.
      expect((await peer.send([{ kind: 'ping' }])).status).toBe(404);
    });
  }

  it('a refused token gets the kick and the end of the stream; a bad hello too', async () => {
    const { base } = await setup();
    const peer = await HttpPeer.open(base, { hello: hello('bad') });
    await peer.until((p) => p.ended);
    expect(peer.of('kick')[0]?.data).toMatchObject({ code: 4502 });
    const msgpack = await HttpPeer.open(base, { hello: hello('ann', { codec: 'msgpack' }) });
    await msgpack.until((p) => p.ended);
    expect(msgpack.of('kick')[0]?.data).toMatchObject({ code: 4506, reason: 'over HTTP the codec is JSON' });
  });

  it('a dropped stream is a lost connection, and the session resumes on a new one', async () => {
    const { gateway, base } = await setup();
    const first = await HttpPeer.open(base, { hello: hello('bo') });
    await first.until((p) => p.of('welcome').length === 1);
    await first.send([{ kind: 'sub', id: 1, labels: undefined, data: { labels: ['room'] } }]);
    await first.until((p) => p.of('res').length === 1);
    const session = (first.of('welcome')[0] as { data: { session: string } }).data.session;
    const lost = new Promise<number>((resolve) =>
      gateway.once('disconnect', (_c, info) => resolve(info.code)),
    );
    first.drop();
    expect(await lost).toBe(1006);
    await gateway.push({ labels: { all: ['room'] } }, 'missed', { n: 1 });
    const second = await HttpPeer.open(base, { hello: hello('bo', { session }) });
    await second.until((p) => p.of('push', 'missed').length === 1);
    expect(second.of('welcome')[0]?.data).toMatchObject({ resumed: true, recovered: true });
    expect(gateway.connectionsOf('bo')[0]?.labels).toContain('room');
  });

  it('limits: POST size, message size, unknown and missing sessions, POST rate, method', async () => {
    const { gateway, base } = await setup({
      maxFrame: 1024,
      ws: { port: 0, http: { maxPost: 4096, postRate: { rate: 1, burst: 3 } } },
    });
    const peer = await HttpPeer.open(base, { hello: hello('cy') });
    await peer.until((p) => p.of('welcome').length === 1);
    const big = await fetch(`${base}/http/send`, {
      method: 'POST',
      headers: { 'x-pylon-session': peer.session },
      body: 'x'.repeat(5000),
    });
    expect(big.status).toBe(413);
    const line = await peer.send([{ kind: 'req', id: 1, type: 'echo', data: 'y'.repeat(2000) }]);
    expect(line.status).toBe(413);
    expect((await line.json()).error).toMatch(/over the limit of 1024/);
    expect((await peer.send([{ kind: 'ping' }], base, `${gateway.nodeId}-nosuchsession`)).status).toBe(404);
    const none = await fetch(`${base}/http/send`, { method: 'POST', body: '{}' });
    expect(none.status).toBe(400);
    expect((await fetch(`${base}/http`)).status).toBe(405);
    // A big hello is refused before any connection exists.
    const hugeHello = await fetch(`${base}/http`, { method: 'POST', body: 'z'.repeat(2000) });
    expect(hugeHello.status).toBe(413);
    // The burst is 3 POSTs (one went above); the next ones are over the rate: 429, and the session closes with 4006.
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) statuses.push((await peer.send([{ kind: 'ping' }])).status);
    expect(statuses).toContain(429);
    await peer.until((p) => p.ended);
    expect(peer.of('kick').at(-1)?.data).toMatchObject({ code: 4006 });
  });

  it('answers CORS preflights, so a page of another origin can use it', async () => {
    const { base } = await setup();
    const pre = await fetch(`${base}/http/send`, {
      method: 'OPTIONS',
      headers: { origin: 'https://app.example', 'access-control-request-headers': 'x-pylon-session' },
    });
    expect(pre.status).toBe(204);
    expect(pre.headers.get('access-control-allow-headers')).toContain('x-pylon-session');
    expect(pre.headers.get('access-control-allow-origin')).toBe('*');
  });

  it("is off with ws.http: false (the path is the page handler's)", async () => {
    const { base } = await setup({ ws: { port: 0, http: false } });
    expect((await fetch(`${base}/http`, { method: 'POST', body: '{}' })).status).toBe(404);
  });
});

describe('HTTP transport: one-way streams (GET /stream)', () => {
  it("delivers the user's and the labels' pushes with event ids; Last-Event-ID resumes and acknowledges qos 1", async () => {
    const { gateway, base } = await setup();
    const first = await HttpPeer.open(base, { get: '/stream?token=dee&labels=alerts,ops', format: 'sse' });
    expect(first.status).toBe(200);
    await first.until((p) => p.of('res').length === 1);
    expect(first.of('res')[0]?.data).toEqual({ labels: ['alerts', 'ops'] });
    const session = (first.of('welcome')[0] as { data: { session: string } }).data.session;
    expect(first.ids[0]).toBe(`${session}:0`);
    await gateway.push({ labels: { all: ['alerts'] } }, 'alert', { level: 'high' });
    await gateway.push({ user: 'dee' }, 'task', { n: 1 }, { qos: 1 });
    await gateway.push({ user: 'dee' }, 'task', { n: 2 }, { qos: 1 });
    await first.until((p) => p.of('push').length === 3);
    const seqs = first.of('push', 'task').map((m) => m.seq as number);
    expect(first.ids.at(-1)).toBe(`${session}:${seqs[1]}`);
    // The reader saw n: 1 only (its last event id said so) when the stream broke.
    const seenId = first.ids[first.messages.indexOf(first.of('push', 'task')[0] as Record<string, unknown>)];
    expect(seenId).toBe(`${session}:${seqs[0]}`);
    const lost = new Promise<void>((resolve) => gateway.once('disconnect', () => resolve()));
    first.drop();
    await lost;
    await gateway.push({ labels: { all: ['ops'] } }, 'deploy', { v: 2 });
    const second = await HttpPeer.open(base, {
      get: '/stream?token=dee&labels=alerts,ops',
      format: 'sse',
      headers: { 'last-event-id': seenId as string },
    });
    await second.until((p) => p.of('push', 'deploy').length === 1 && p.of('push', 'task').length === 1);
    expect(second.of('welcome')[0]?.data).toMatchObject({ resumed: true, recovered: true });
    // n: 1 was acknowledged by the position; n: 2 comes again, once.
    expect(second.of('push', 'task').map((m) => m.data)).toEqual([{ n: 2 }]);
    await expect.poll(() => gateway.stats().qos1?.acked).toBe(1);
    // Acknowledged by a POST to the stream's session, the rest is gone too.
    const seq2 = second.of('push', 'task')[0]?.seq;
    expect((await second.send([{ kind: 'ack', seq: seq2 }])).status).toBe(204);
    await expect.poll(() => gateway.stats().qos1?.acked).toBe(2);
    // The stream is not closed for saying nothing: it is kept alive by the server.
    expect(gateway.connectionsOf('dee')).toHaveLength(1);
  });

  it('works with curl -N (JSON lines, token in the header) and refuses a bad token with the kick', async () => {
    const { gateway, base } = await setup();
    const { spawn } = await import('node:child_process');
    const curl = spawn('curl', ['-sN', '-H', 'authorization: Bearer eve', `${base}/stream?format=ndjson`]);
    let out = '';
    curl.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    try {
      await expect.poll(() => gateway.online('eve'), { timeout: 5000 }).toBe(true);
      await gateway.push({ user: 'eve' }, 'hi', { from: 'curl test' });
      await expect.poll(() => out.split('\n').filter((l) => l.length > 0).length).toBe(2);
      const lines = out
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l));
      expect(lines[0]).toMatchObject({ kind: 'welcome', data: { user: 'eve' } });
      expect(lines[1]).toEqual({ kind: 'push', type: 'hi', data: { from: 'curl test' } });
    } finally {
      curl.kill();
    }
    const bad = await HttpPeer.open(base, { get: '/stream?token=bad' });
    await bad.until((p) => p.ended);
    expect(bad.of('kick')[0]?.data).toMatchObject({ code: 4502 });
  });

  it('keeps a silent stream open past the keepalive timeout with signs of life', async () => {
    const { gateway, base } = await setup({ keepalive: { interval: 100, timeout: 300 } });
    const res = await fetch(`${base}/stream?token=fay`, { headers: { accept: 'text/event-stream' } });
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    let text = '';
    const end = Date.now() + 800;
    while (Date.now() < end) {
      const { value, done } = await reader.read();
      if (done) break;
      text += new TextDecoder().decode(value);
    }
    await reader.cancel();
    expect(text).toContain('\n:\n\n');
    expect(text).not.toContain('"kind":"ping"');
    expect(text).not.toContain('"kind":"kick"');
    expect(gateway.stats().connections).toBeLessThanOrEqual(1);
  });
});

describe('HTTP transport: what a hostile or unlucky client does', () => {
  it('pipelined stream requests on one socket do not leak connections', async () => {
    const { gateway, base } = await setup();
    const { connect: netConnect } = await import('node:net');
    const url = new URL(base);
    const socket = netConnect({ host: url.hostname, port: Number(url.port) });
    await new Promise((r) => socket.once('connect', r));
    socket.on('error', () => {});
    const get = `GET /stream?token=pip HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n`;
    const closed = new Promise((r) => socket.once('close', r));
    socket.resume(); // read, or the end is never seen
    socket.write(get + get + get);
    // A stream pipelined behind another could never start: the server closes the socket.
    await closed;
    await expect.poll(() => gateway.connections.size, { timeout: 3000 }).toBe(0);
    // Nothing held: a stream opens as before.
    const peer = await HttpPeer.open(base, { get: '/stream?token=pip' });
    await peer.until((p) => p.of('welcome').length === 1);
    expect(gateway.connections.size).toBe(1);
    peer.drop();
  });

  it('a verify hook that throws gets 500, not a crash; maxStreams holds under concurrent slow opens', async () => {
    const { base } = await setup({
      ws: {
        port: 0,
        http: { maxStreams: 2 },
        verify: ({ headers }) => {
          if (headers['x-boom'] !== undefined) throw new Error('boom');
          return true;
        },
      },
    });
    const boom = await fetch(`${base}/stream?token=x`, { headers: { 'x-boom': '1' } });
    expect(boom.status).toBe(500);
    // Ten hellos whose bodies arrive late: at most two streams open.
    const { connect: netConnect } = await import('node:net');
    const url = new URL(base);
    const body = JSON.stringify({ kind: 'hello', data: { token: 'slow' } });
    const sockets = await Promise.all(
      Array.from({ length: 10 }, async () => {
        const s = netConnect({ host: url.hostname, port: Number(url.port) });
        s.on('error', () => {});
        await new Promise((r) => s.once('connect', r));
        s.write(`POST /http HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: ${body.length}\r\n\r\n`);
        return s;
      }),
    );
    const answers = sockets.map(
      (s) =>
        new Promise<string>((resolve) => {
          let text = '';
          s.on('data', (d: Buffer) => {
            text += d.toString();
            if (text.includes('\r\n')) resolve(text.slice(0, text.indexOf('\r\n')));
          });
        }),
    );
    for (const s of sockets) s.write(body);
    const lines = await Promise.all(answers);
    expect(lines.filter((l) => l.includes(' 200 ')).length).toBe(2);
    expect(lines.filter((l) => l.includes(' 503 ')).length).toBe(8);
    for (const s of sockets) s.destroy();
  });

  it('a one-way stream: an unknown session in Last-Event-ID acknowledges nothing; qos 1 is not re-sent on a timer; the welcome names the session to POST acks to', async () => {
    const { gateway, base } = await setup({ delivery: { redeliveryBase: 100 } });
    await gateway.push({ user: 'gus' }, 'task', { n: 1 }, { qos: 1 });
    const forged = await HttpPeer.open(base, {
      get: '/stream?token=gus',
      headers: { 'last-event-id': 'not-a-session:1000' },
    });
    await forged.until((p) => p.of('push', 'task').length === 1);
    expect(forged.of('welcome')[0]?.data).toMatchObject({ resumed: false });
    expect(forged.ids[0]).toMatch(/:0$/);
    expect(gateway.stats().qos1?.acked).toBe(0);
    // Not re-sent while the stream is open, though the redelivery base is 100 ms.
    await new Promise((r) => setTimeout(r, 700));
    expect(forged.of('push', 'task')).toHaveLength(1);
    const welcome = forged.of('welcome')[0]?.data as { httpSession: string };
    expect(welcome.httpSession).toBe(forged.session);
    const seq = forged.of('push', 'task')[0]?.seq;
    expect((await forged.send([{ kind: 'ack', seq }], base, welcome.httpSession)).status).toBe(204);
    await expect.poll(() => gateway.stats().qos1?.acked).toBe(1);
  });
});
