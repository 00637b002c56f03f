import { afterEach, describe, expect, it } from 'vitest';
import { installEcho } from '../src/cli/echo.js';
import { connect } from '../src/client/index.js';
import { devValidator } from '../src/index.js';
import { RawTcp, startGateway, stopAll } from './support/gateway.js';

afterEach(stopAll);

async function crowd(url: string, n: number): Promise<Array<{ raw: RawTcp; at: number[] }>> {
  const out: Array<{ raw: RawTcp; at: number[] }> = [];
  for (let i = 0; i < n; i++) {
    const raw = await RawTcp.open(url);
    raw.sendJson({ kind: 'hello', data: { token: `u${i}` } });
    const at: number[] = [];
    raw.socket.on('data', () => at.push(Date.now()));
    out.push({ raw, at });
  }
  await Promise.all(out.map((c) => c.raw.until((r) => r.frames.length >= 1)));
  return out;
}

describe('flow control', () => {
  it('paces a push to its rate, answers at once, and keeps requests flowing meanwhile', async () => {
    const { gateway, tcpUrl } = await startGateway({ validate: devValidator() });
    installEcho(gateway);
    const clients = await crowd(tcpUrl, 1000);
    const probe = await connect(tcpUrl, { token: 'probe', reconnect: false });
    for (const c of clients) c.at.length = 0;

    const started = Date.now();
    const r = await gateway.push({ all: true }, 'news', 'paced', { rate: 400 });
    expect(r.targeted).toBe(1001);
    let finished = 0;
    r.done.then(() => {
      finished = Date.now();
    });
    // While the fan-out runs, a request is answered.
    await new Promise((resolve) => setTimeout(resolve, 300));
    await expect(probe.request('echo', 'alive')).resolves.toBe('alive');
    const answeredAt = Date.now();
    const result = await r.done;
    expect(result).toEqual({ delivered: 1001, dropped: 0 });
    expect(answeredAt).toBeLessThan(finished);
    await Promise.all(clients.map((c) => c.raw.until((x) => x.json().some((m) => m.type === 'news'))));
    const last = Math.max(...clients.map((c) => c.at.at(-1) ?? 0));
    // 1001 connections at 400/s: about 2.5 s from the first to the last, not all at once.
    expect(last - started).toBeGreaterThanOrEqual(2000);
    for (const c of clients) c.raw.destroy();
  }, 30_000);

  it('unpaced fan-outs keep call order on every connection: a later push never overtakes an earlier broadcast', async () => {
    // A chunk of 50: a broadcast to 300 connections takes 6 turns of the event loop.
    const { gateway, tcpUrl } = await startGateway({ validate: devValidator(), fanoutChunk: 50 });
    const clients = await crowd(tcpUrl, 300);
    const last = clients.at(-1) as { raw: RawTcp };
    const a = await gateway.push({ all: true }, 'n', 'broadcast 1');
    const b = await gateway.push({ all: true }, 'n', 'broadcast 2');
    const c = await gateway.push({ user: 'u299' }, 'n', 'to the last one'); // small, made meanwhile
    expect([a.targeted, b.targeted, c.targeted]).toEqual([300, 300, 1]);
    await Promise.all([a.done, b.done, c.done]);
    await last.raw.until((r) => r.json().filter((m) => m.kind === 'push').length === 3);
    expect(
      last.raw
        .json()
        .filter((m) => m.kind === 'push')
        .map((m) => m.data),
    ).toEqual(['broadcast 1', 'broadcast 2', 'to the last one']);
    for (const cl of clients) {
      await cl.raw.until((r) => r.json().filter((m) => m.kind === 'push').length >= 2);
      const got = cl.raw
        .json()
        .filter((m) => m.kind === 'push')
        .map((m) => m.data);
      expect(got.slice(0, 2)).toEqual(['broadcast 1', 'broadcast 2']);
    }
    for (const cl of clients) cl.raw.destroy();
  }, 30_000);

  it('a push still waiting in the fan-out when its connection drops is replayed when the session resumes', async () => {
    // A chunk of 1: a broadcast to 201 connections takes 201 turns; a push to ann waits behind it.
    const { gateway, tcpUrl } = await startGateway({ validate: devValidator(), fanoutChunk: 1 });
    const others = await crowd(tcpUrl, 200);
    const ann = await RawTcp.open(tcpUrl);
    ann.sendJson({ kind: 'hello', data: { token: 'ann' } });
    await ann.until((r) => r.json().some((m) => m.kind === 'welcome'));
    const session = (ann.json()[0] as { data: { session: string } }).data.session;
    const big = await gateway.push({ all: true }, 'n', 'broadcast');
    await gateway.push({ user: 'ann' }, 'n', 'for ann');
    ann.destroy(); // gone before the fan-out reaches her
    await big.done;
    await new Promise((r) => setTimeout(r, 100));
    const back = await RawTcp.open(tcpUrl);
    back.sendJson({ kind: 'hello', data: { token: 'ann', session } });
    await back.until((r) => r.json().filter((m) => m.kind === 'push').length >= 1);
    await new Promise((r) => setTimeout(r, 200));
    const [welcome, ...rest] = back.json();
    expect(welcome?.data).toMatchObject({ resumed: true, recovered: true });
    expect(rest.filter((m) => m.kind === 'push').map((m) => m.data)).toContain('for ann');
    back.destroy();
    for (const c of others) c.raw.destroy();
  }, 30_000);

  it('a process-wide ceiling bounds fan-outs together', async () => {
    const { gateway, tcpUrl } = await startGateway({ validate: devValidator(), fanoutCeiling: 500 });
    const clients = await crowd(tcpUrl, 400);
    const started = Date.now();
    const a = await gateway.push({ all: true }, 'a', 1);
    const b = await gateway.push({ all: true }, 'b', 2);
    await Promise.all([a.done, b.done]);
    // 800 writes under a 500/s ceiling (with a 100 ms burst): at least 1.3 s.
    expect(Date.now() - started).toBeGreaterThanOrEqual(1300);
    await Promise.all(clients.map((c) => c.raw.until((x) => x.frames.length >= 3)));
    for (const c of clients) c.raw.destroy();
  }, 30_000);

  it('refuses a bad rate', async () => {
    const { gateway } = await startGateway();
    await expect(gateway.push({ all: true }, 'x', 1, { rate: 0 })).rejects.toThrow(/rate/);
  });
});

describe('operator views', () => {
  it('describes a user, pages labels and their members, and changes a user’s labels everywhere', async () => {
    const { gateway, tcpUrl, wsUrl } = await startGateway({
      validate: (t) => ({
        user: (t as string).split(':')[0],
        labels: (t as string).split(':')[1]?.split(',') ?? [],
      }),
    });
    await connect(tcpUrl, { token: 'ann:b,a', reconnect: false });
    await connect(wsUrl, { token: 'ann:c', reconnect: false });
    await connect(wsUrl, { token: 'bo:a', reconnect: false });
    const ann = gateway.userInfo('ann');
    expect(ann.online).toBe(true);
    expect(ann.connections.map((c) => [c.transport, c.labels])).toEqual([
      ['tcp', ['b', 'a']],
      ['ws', ['c']],
    ]);
    expect(Date.parse(ann.connections[0]!.connectedAt)).toBeLessThanOrEqual(Date.now());
    expect(gateway.userInfo('nobody')).toEqual({ user: 'nobody', online: false, connections: [] });

    expect(gateway.labels({ limit: 2 })).toEqual({
      labels: [
        { label: 'a', count: 2 },
        { label: 'b', count: 1 },
      ],
      next: 'b',
    });
    expect(gateway.labels({ after: 'b', limit: 2 })).toEqual({ labels: [{ label: 'c', count: 1 }] });
    const page = gateway.labelMembers('a', { limit: 1 });
    expect(page.count).toBe(2);
    expect(page.members).toHaveLength(1);
    const rest = gateway.labelMembers('a', { after: page.next });
    expect([...page.members, ...rest.members].map((m) => m.user).sort()).toEqual(['ann', 'bo']);

    expect(gateway.updateUserLabels('ann', { add: ['vip'], remove: ['a'] })).toBe(2);
    expect(gateway.labelCounts().get('vip')).toBe(2);
    expect(gateway.labelCounts().get('a')).toBe(1);
    expect(() => gateway.labels({ limit: 0 })).toThrow(/limit/);
  });
});
