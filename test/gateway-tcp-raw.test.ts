import { afterEach, describe, expect, it } from 'vitest';
import { installEcho } from '../src/cli/echo.js';
import { frame } from '../src/protocol/framing.js';
import { RawTcp, startGateway, stopAll } from './support/gateway.js';

afterEach(stopAll);

const enc = new TextEncoder();
const jsonFrame = (v: unknown) => frame(enc.encode(JSON.stringify(v)));

async function echoGateway(options = {}) {
  const g = await startGateway(options);
  installEcho(g.gateway);
  return g;
}

describe('TCP with hand-made frames', () => {
  it('says welcome to hello and answers a request', async () => {
    const { tcpUrl } = await echoGateway();
    const raw = await RawTcp.open(tcpUrl);
    raw.sendJson({ kind: 'hello', data: { codec: 'json' } });
    raw.sendJson({ kind: 'req', id: 7, type: 'echo', data: { x: 1 } });
    await raw.until((r) => r.frames.length >= 2);
    const [welcome, res] = raw.json();
    expect(welcome).toMatchObject({
      kind: 'welcome',
      data: { codec: 'json', heartbeat: { interval: 30000, timeout: 75000 } },
    });
    expect(res).toEqual({ kind: 'res', id: 7, data: { x: 1 } });
    raw.destroy();
  });

  it('reassembles frames split across writes, byte by byte', async () => {
    const { tcpUrl } = await echoGateway();
    const raw = await RawTcp.open(tcpUrl);
    const bytes = Buffer.concat([
      jsonFrame({ kind: 'hello' }),
      jsonFrame({ kind: 'req', id: 1, type: 'echo', data: 'split' }),
    ]);
    for (let i = 0; i < bytes.length; i++) {
      raw.write(bytes.subarray(i, i + 1));
      if (i % 7 === 0) await new Promise((r) => setImmediate(r));
    }
    await raw.until((r) => r.frames.length >= 2);
    expect(raw.json()[1]).toEqual({ kind: 'res', id: 1, data: 'split' });
    raw.destroy();
  });

  it('handles several frames in one write, in order', async () => {
    const { tcpUrl } = await echoGateway();
    const raw = await RawTcp.open(tcpUrl);
    const frames = [jsonFrame({ kind: 'hello' })];
    for (let id = 1; id <= 100; id++) frames.push(jsonFrame({ kind: 'req', id, type: 'echo', data: id }));
    raw.write(Buffer.concat(frames));
    await raw.until((r) => r.frames.length >= 101);
    const ids = raw
      .json()
      .slice(1)
      .map((m) => m.id);
    expect(ids).toEqual(Array.from({ length: 100 }, (_, i) => i + 1));
    raw.destroy();
  });

  it('closes with frame_too_large (4501) on an over-size length, before the body arrives', async () => {
    const { tcpUrl, gateway } = await echoGateway({ maxFrame: 1024 });
    const raw = await RawTcp.open(tcpUrl);
    raw.sendJson({ kind: 'hello' });
    await raw.until((r) => r.frames.length >= 1);
    const disconnect = new Promise<number>((resolve) =>
      gateway.on('disconnect', (_c, info) => resolve(info.code)),
    );
    const header = Buffer.alloc(4);
    header.writeUInt32BE(1025);
    raw.write(header);
    await raw.waitClosed();
    expect(raw.json().at(-1)).toMatchObject({
      kind: 'kick',
      data: { code: 4501, name: 'frame_too_large', reconnect: false },
    });
    expect(await disconnect).toBe(4501);
  });

  it('closes with protocol_error (4500) on garbage bytes, and other clients are unaffected', async () => {
    const { tcpUrl } = await echoGateway();
    const good = await RawTcp.open(tcpUrl);
    good.sendJson({ kind: 'hello' });
    const bad = await RawTcp.open(tcpUrl);
    bad.sendJson({ kind: 'hello' });
    await bad.until((r) => r.frames.length >= 1);
    bad.write(frame(Buffer.from([0xff, 0x00, 0x13, 0x37, 0x7b])));
    await bad.waitClosed();
    expect(bad.json().at(-1)).toMatchObject({ kind: 'kick', data: { code: 4500, name: 'protocol_error' } });
    good.sendJson({ kind: 'req', id: 1, type: 'echo', data: 'still here' });
    await good.until((r) => r.frames.length >= 2);
    expect(good.json()[1]).toEqual({ kind: 'res', id: 1, data: 'still here' });
    good.destroy();
  });

  it('closes with protocol_error when a well-formed frame breaks an envelope rule', async () => {
    const { tcpUrl } = await echoGateway();
    const raw = await RawTcp.open(tcpUrl);
    raw.sendJson({ kind: 'hello' });
    raw.sendJson({ kind: 'req', type: 'echo' }); // no id
    await raw.waitClosed();
    const kick = raw.json().at(-1) as { data: { code: number; reason: string } };
    expect(kick.data.code).toBe(4500);
    expect(kick.data.reason).toMatch(/id/);
  });

  it('closes with bad_hello (4506) when the first frame is not hello, or names an unknown codec', async () => {
    const { tcpUrl } = await echoGateway();
    const a = await RawTcp.open(tcpUrl);
    a.sendJson({ kind: 'req', id: 1, type: 'echo' });
    await a.waitClosed();
    expect(a.json().at(-1)).toMatchObject({ kind: 'kick', data: { code: 4506 } });
    const b = await RawTcp.open(tcpUrl);
    b.sendJson({ kind: 'hello', data: { codec: 'xml' } });
    await b.waitClosed();
    expect(b.json().at(-1)).toMatchObject({
      kind: 'kick',
      data: { code: 4506, reason: 'unknown codec "xml"' },
    });
  });

  it('switches to the codec named in hello for every later frame', async () => {
    const { tcpUrl } = await echoGateway();
    const { codecs } = await import('../src/protocol/index.js');
    const raw = await RawTcp.open(tcpUrl);
    raw.sendJson({ kind: 'hello', data: { codec: 'msgpack' } });
    raw.write(frame(codecs.msgpack.encode({ kind: 'req', id: 3, type: 'echo', data: [1, 2] })));
    await raw.until((r) => r.frames.length >= 2);
    const [welcome, res] = raw.frames.map((f) => codecs.msgpack.decode(f));
    expect(welcome?.kind).toBe('welcome');
    expect(res).toEqual({ kind: 'res', id: 3, data: [1, 2] });
    raw.destroy();
  });

  it('closes a connection that never says hello (handshake_timeout, 4003)', async () => {
    const { tcpUrl } = await echoGateway({ handshakeTimeout: 200 });
    const raw = await RawTcp.open(tcpUrl);
    await raw.waitClosed(3000);
    expect(raw.json().at(-1)).toMatchObject({
      kind: 'kick',
      data: { code: 4003, name: 'handshake_timeout' },
    });
  });

  it('answers ping with pong and closes on bye', async () => {
    const { tcpUrl, gateway } = await echoGateway();
    const raw = await RawTcp.open(tcpUrl);
    const disconnect = new Promise<string>((resolve) =>
      gateway.on('disconnect', (_c, info) => resolve(info.name)),
    );
    raw.sendJson({ kind: 'hello' });
    raw.sendJson({ kind: 'ping', data: 'x' });
    await raw.until((r) => r.frames.length >= 2);
    expect(raw.json()[1]).toEqual({ kind: 'pong', data: 'x' });
    raw.sendJson({ kind: 'bye' });
    await raw.waitClosed();
    expect(await disconnect).toBe('normal');
  });
});
