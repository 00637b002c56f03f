import { readFileSync } from 'node:fs';
import { unpack } from 'msgpackr';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { chatOptions } from '../src/cli/chat.js';
import { installEcho } from '../src/cli/echo.js';
import { devValidator } from '../src/index.js';
import { frame } from '../src/protocol/framing.js';
import { RawTcp, startGateway, stopAll } from './support/gateway.js';

// The cases where PROTOCOL.md and the server once disagreed (revision 1.1): each as the document
// now states it, against a real gateway.

afterEach(stopAll);
const raws: RawTcp[] = [];
afterEach(() => {
  for (const r of raws.splice(0)) r.destroy();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function open(tcpUrl: string, token = 'u1'): Promise<RawTcp> {
  const raw = await RawTcp.open(tcpUrl);
  raws.push(raw);
  raw.sendJson({ kind: 'hello', data: { codec: 'json', token } });
  await raw.until((r) => r.json().some((f) => f.kind === 'welcome'));
  return raw;
}

const last = (raw: RawTcp) => raw.json().at(-1) as Record<string, unknown>;

describe('PROTOCOL.md 1.1 and the server agree', () => {
  it('a req without a type is answered BAD_REQUEST and the connection stays open', async () => {
    const { tcpUrl } = await startGateway({ validate: devValidator() });
    const raw = await open(tcpUrl);
    raw.sendJson({ kind: 'req', id: 5 });
    await raw.until((r) => r.json().some((f) => f.kind === 'res'));
    expect(last(raw)).toEqual({
      kind: 'res',
      id: 5,
      error: { code: 'BAD_REQUEST', message: 'req needs a type' },
    });
    raw.sendJson({ kind: 'ping' });
    await raw.until((r) => last(r).kind === 'pong');
    expect(raw.closed).toBe(false);
    // Without an id there is nothing to answer: a protocol error.
    raw.sendJson({ kind: 'req', type: 'echo' });
    await raw.waitClosed();
    expect(last(raw)).toMatchObject({ kind: 'kick', data: { code: 4500, name: 'protocol_error' } });
  });

  it('a sub or unsub without data.labels is answered BAD_REQUEST', async () => {
    const { tcpUrl } = await startGateway({ validate: devValidator(), authorizeSub: () => true });
    const raw = await open(tcpUrl);
    raw.sendJson({ kind: 'sub', id: 1 });
    raw.sendJson({ kind: 'unsub', id: 2, data: {} });
    await raw.until((r) => r.json().filter((f) => f.kind === 'res').length === 2);
    for (const res of raw.json().filter((f) => f.kind === 'res'))
      expect(res).toMatchObject({ error: { code: 'BAD_REQUEST' } });
    expect(raw.closed).toBe(false);
  });

  it('a first TCP frame that is not JSON closes with bad_hello (4506)', async () => {
    const { tcpUrl } = await startGateway({ validate: devValidator() });
    const raw = await RawTcp.open(tcpUrl);
    raws.push(raw);
    raw.write(frame(new TextEncoder().encode('garbage!')));
    await raw.waitClosed();
    expect(raw.json()).toEqual([
      { kind: 'kick', data: expect.objectContaining({ code: 4506, name: 'bad_hello', reconnect: false }) },
    ]);
  });

  it('bye: the server closes with no kick', async () => {
    const { tcpUrl } = await startGateway({ validate: devValidator() });
    const raw = await open(tcpUrl);
    raw.sendJson({ kind: 'bye' });
    await raw.waitClosed();
    expect(raw.json().map((f) => f.kind)).toEqual(['welcome']);
  });

  it('an unsub of labels not held changes nothing and is answered with the labels, whatever the policy', async () => {
    const { tcpUrl } = await startGateway({ validate: devValidator() }); // no client labels at all
    const raw = await open(tcpUrl);
    raw.sendJson({ kind: 'unsub', id: 3, data: { labels: ['never'] } });
    await raw.until((r) => last(r).kind === 'res');
    expect(last(raw)).toEqual({ kind: 'res', id: 3, data: { labels: [] } });
  });

  it('session: a new one with every welcome; a resumed id is used up', async () => {
    const { tcpUrl } = await startGateway({ validate: devValidator() });
    const first = await open(tcpUrl, 'ann');
    const s1 = (first.json()[0] as { data: { session: string } }).data.session;
    first.destroy(); // a flash disconnect
    await sleep(100);
    const resume = async (session: string) => {
      const raw = await RawTcp.open(tcpUrl);
      raws.push(raw);
      raw.sendJson({ kind: 'hello', data: { codec: 'json', token: 'ann', session } });
      await raw.until((r) => r.json().some((f) => f.kind === 'welcome'));
      return { raw, welcome: raw.json()[0]?.data as { session: string; resumed: boolean } };
    };
    const second = await resume(s1);
    expect(second.welcome.resumed).toBe(true);
    expect(second.welcome.session).not.toBe(s1);
    second.raw.destroy();
    await sleep(100);
    const third = await resume(s1); // the used id again
    expect(third.welcome.resumed).toBe(false);
    const fourth = await resume(second.welcome.session); // the latest one does resume
    expect(fourth.welcome.resumed).toBe(true);
  });

  it('WebSocket pings alone keep a connection alive past the keepalive timeout', async () => {
    const { wsUrl } = await startGateway({
      validate: devValidator(),
      keepalive: { interval: 200, timeout: 500 },
    });
    const pinged = new WebSocket(`${wsUrl}?token=p`);
    const silent = new WebSocket(`${wsUrl}?token=s`);
    const closes = new Map<string, number>();
    for (const [name, ws] of [
      ['pinged', pinged],
      ['silent', silent],
    ] as const) {
      ws.on('close', (code) => closes.set(name, code));
      ws.on('error', () => {});
      await new Promise((r) => ws.once('open', r));
    }
    const timer = setInterval(() => pinged.ping(), 100);
    await sleep(1200);
    clearInterval(timer);
    expect(closes.get('silent')).toBe(4002);
    expect(closes.has('pinged')).toBe(false);
    pinged.terminate();
  });

  it('MessagePack: integers from 2^32 arrive as float 64, exact', async () => {
    const { gateway, wsUrl } = await startGateway({ validate: devValidator() });
    const ws = new WebSocket(`${wsUrl}?token=m&codec=msgpack`);
    const frames: Buffer[] = [];
    ws.on('message', (b: Buffer) => frames.push(b));
    await new Promise((r) => ws.once('open', r));
    await gateway.push({ user: 'm' }, 'n', { small: 2 ** 32 - 1, big: 2 ** 40 });
    await expect.poll(() => frames.length).toBe(1);
    const bytes = frames[0] as Buffer;
    const small = Buffer.from([0xce, 0xff, 0xff, 0xff, 0xff]); // uint 32
    const big = Buffer.alloc(9);
    big[0] = 0xcb; // float 64
    big.writeDoubleBE(2 ** 40, 1);
    expect(bytes.includes(small)).toBe(true);
    expect(bytes.includes(big)).toBe(true);
    expect(unpack(bytes)).toMatchObject({ data: { small: 2 ** 32 - 1, big: 2 ** 40 } });
    ws.close();
  });

  it("pylon start's policy: clients join room:<name> labels, not others (the document's examples)", async () => {
    const { tcpUrl } = await startGateway({ validate: devValidator(), ...chatOptions() });
    const raw = await open(tcpUrl);
    raw.sendJson({ kind: 'sub', id: 9, data: { labels: ['room:2018', 'room:2019'] } });
    raw.sendJson({ kind: 'unsub', id: 10, data: { labels: ['room:2019'] } });
    raw.sendJson({ kind: 'sub', id: 11, data: { labels: ['room_2018'] } });
    await raw.until((r) => r.json().filter((f) => f.kind === 'res').length === 3);
    const [a, b, c] = raw.json().filter((f) => f.kind === 'res');
    expect(a).toEqual({ kind: 'res', id: 9, data: { labels: ['room:2018', 'room:2019'] } });
    expect(b).toEqual({ kind: 'res', id: 10, data: { labels: ['room:2018'] } });
    expect(c).toMatchObject({ id: 11, error: { code: 'FORBIDDEN' } });
  });

  it("pylon start's echo.delay: answers out of order, and TOO_MANY_REQUESTS past the requests in flight", async () => {
    const { gateway, tcpUrl } = await startGateway({ validate: devValidator(), maxPendingRequests: 4 });
    installEcho(gateway);
    const raw = await open(tcpUrl);
    raw.sendJson({ kind: 'req', id: 6, type: 'echo.delay', data: { ms: -1 } });
    raw.sendJson({ kind: 'req', id: 1, type: 'echo.delay', data: { ms: 300, data: 'slow' } });
    raw.sendJson({ kind: 'req', id: 2, type: 'echo.delay', data: { ms: 0, data: 'fast' } });
    raw.sendJson({ kind: 'req', id: 3, type: 'echo.delay', data: { ms: 300 } });
    raw.sendJson({ kind: 'req', id: 4, type: 'echo.delay', data: { ms: 300 } });
    raw.sendJson({ kind: 'req', id: 5, type: 'echo.delay', data: { ms: 300 } });
    await raw.until((r) => r.json().filter((f) => f.kind === 'res').length === 6);
    const res = raw.json().filter((f) => f.kind === 'res');
    // 6 is refused at once, 5 is over the 4 in flight, 2 (no delay) overtakes 1, 3 and 4.
    expect(res.map((f) => f.id)).toEqual([6, 5, 2, 1, 3, 4]);
    expect(res[0]).toMatchObject({ id: 6, error: { code: 'BAD_REQUEST' } });
    expect(res[1]).toMatchObject({ id: 5, error: { code: 'TOO_MANY_REQUESTS' } });
    expect(res[2]).toEqual({ kind: 'res', id: 2, data: 'fast' });
    expect(res[3]).toEqual({ kind: 'res', id: 1, data: 'slow' });
  });

  it('the Protobuf schema in PROTOCOL.md is the published .proto file', () => {
    const doc = readFileSync('PROTOCOL.md', 'utf8');
    const block = /## Appendix: the Protobuf schema[\s\S]*?```proto\n([\s\S]*?)```/.exec(doc)?.[1];
    expect(block).toBe(readFileSync('proto/pylon/v1/envelope.proto', 'utf8'));
  });
});
