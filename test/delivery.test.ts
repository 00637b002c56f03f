import { afterEach, describe, expect, it } from 'vitest';
import { connect, type PylonClient } from '../src/client/index.js';
import { devValidator, FakeClock, type GatewayOptions } from '../src/index.js';
import { RawTcp, startGateway, stopAll } from './support/gateway.js';

afterEach(stopAll);

const base: GatewayOptions = { validate: devValidator(), authorizeSub: () => true };

function collect(client: PylonClient, type = 'msg') {
  const got: Array<{ data: unknown; seq: number | undefined }> = [];
  client.on(type, (data, meta) => {
    got.push({ data, seq: meta.seq });
  });
  return got;
}

describe('qos 1', () => {
  it('stores, sends with increasing seq, and the handler sees each message once; acks empty the inbox', async () => {
    const { gateway, tcpUrl } = await startGateway(base);
    const client = await connect(tcpUrl, { token: 'alice', reconnect: false });
    const got = collect(client);
    for (let i = 1; i <= 20; i++) {
      const r = await gateway.push({ user: 'alice' }, 'msg', { i }, { qos: 1 });
      expect(r).toMatchObject({ targeted: 1, stored: 1 });
    }
    await expect.poll(() => got.length).toBe(20);
    expect(got.map((g) => (g.data as { i: number }).i)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    const seqs = got.map((g) => g.seq as number);
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    expect(new Set(seqs).size).toBe(20);
    await expect.poll(() => gateway.stats().qos1.acked).toBe(20);
    expect(await gateway.store.pending('alice', 0, 100, Date.now())).toEqual([]);
  });

  it('keeps messages for an offline user and delivers them in order when the user connects', async () => {
    const { gateway, wsUrl } = await startGateway({ ...base, delivery: { window: 4 } });
    for (let i = 1; i <= 25; i++) {
      const r = await gateway.push({ user: 'bob' }, 'msg', i, { qos: 1 });
      expect(r).toMatchObject({ targeted: 0, stored: 1 });
    }
    const client = await connect(wsUrl, { token: 'bob', reconnect: false });
    const got = collect(client);
    await expect.poll(() => got.length).toBe(25);
    expect(got.map((g) => g.data)).toEqual(Array.from({ length: 25 }, (_, i) => i + 1));
  });

  it('reaches the users of a label push, each with its own seq', async () => {
    const { gateway, tcpUrl } = await startGateway(base);
    const a = await connect(tcpUrl, { token: 'a', reconnect: false });
    const b = await connect(tcpUrl, { token: 'b', reconnect: false });
    await a.subscribe(['room']);
    await b.subscribe(['room']);
    const ga = collect(a);
    const gb = collect(b);
    await gateway.push({ user: 'a' }, 'msg', 'only a', { qos: 1 });
    const r = await gateway.push({ labels: { all: ['room'] } }, 'msg', 'room news', { qos: 1 });
    expect(r).toMatchObject({ targeted: 2, stored: 2 });
    await expect.poll(() => ga.length + gb.length).toBe(3);
    expect(ga).toEqual([
      { data: 'only a', seq: 1 },
      { data: 'room news', seq: 2 },
    ]);
    expect(gb).toEqual([{ data: 'room news', seq: 1 }]);
  });

  it('re-sends until acked, then moves a never-acked message aside at the cap and goes on', async () => {
    const { gateway, tcpUrl } = await startGateway({
      ...base,
      delivery: { redeliveryBase: 40, redeliveryMax: 40, redeliveryCap: 3 },
    });
    const raw = await RawTcp.open(tcpUrl);
    raw.sendJson({ kind: 'hello', data: { token: 'mute' } });
    await raw.until((r) => r.frames.length === 1);
    await gateway.push({ user: 'mute' }, 'msg', 'first', { qos: 1 });
    await gateway.push({ user: 'mute' }, 'msg', 'second', { qos: 1 });
    // Never acked: each is sent once, then re-sent 3 times, then buried.
    await expect.poll(() => gateway.stats().qos1.deadLetters, { timeout: 5000 }).toBe(2);
    const pushes = raw.json().filter((m) => m.kind === 'push');
    const firsts = pushes.filter((m) => m.seq === 1).length;
    expect(firsts).toBe(4);
    expect(pushes.every((m) => m.qos === 1)).toBe(true);
    const dead = await gateway.store.deadLetters(10);
    expect(dead.map((d) => [d.seq, d.reason])).toEqual([
      [2, 'redelivery_cap'],
      [1, 'redelivery_cap'],
    ]);
    // Acking a seq never sent is ignored; acking what was sent stops the re-sends.
    raw.sendJson({ kind: 'ack', seq: 999 });
    await gateway.push({ user: 'mute' }, 'msg', 'third', { qos: 1 });
    await raw.until((r) => r.json().some((m) => m.seq === 3));
    raw.sendJson({ kind: 'ack', seq: 3 });
    await expect.poll(() => gateway.stats().qos1.acked).toBe(1);
    const countThird = () => raw.json().filter((m) => m.seq === 3).length;
    const before = countThird();
    await new Promise((r) => setTimeout(r, 200));
    expect(countThird()).toBe(before);
    raw.destroy();
  });

  it('the SDK runs the handler once per message even when the server re-sends while it works', async () => {
    const { gateway, wsUrl } = await startGateway({
      ...base,
      delivery: { redeliveryBase: 30, redeliveryMax: 30 },
    });
    const client = await connect(wsUrl, { token: 'slow', reconnect: false });
    const runs: number[] = [];
    client.on<number>('msg', async (n) => {
      runs.push(n);
      await new Promise((r) => setTimeout(r, 150));
    });
    for (let n = 1; n <= 3; n++) await gateway.push({ user: 'slow' }, 'msg', n, { qos: 1 });
    await expect.poll(() => gateway.stats().qos1.acked, { timeout: 5000 }).toBe(3);
    expect(gateway.stats().qos1.redelivered).toBeGreaterThan(0);
    expect(runs).toEqual([1, 2, 3]);
  });

  it('a handler that throws had its run: the error is reported and the push acked, the next ones go on', async () => {
    const { gateway, tcpUrl } = await startGateway(base);
    const client = await connect(tcpUrl, { token: 'oops', reconnect: false });
    const errors: string[] = [];
    client.on('error', (e) => errors.push(e.message));
    const runs: number[] = [];
    client.on<number>('msg', (n) => {
      runs.push(n);
      if (n === 2) throw new Error('bad message 2');
    });
    for (let n = 1; n <= 3; n++) await gateway.push({ user: 'oops' }, 'msg', n, { qos: 1 });
    await expect.poll(() => gateway.stats().qos1.acked).toBe(3);
    expect(runs).toEqual([1, 2, 3]);
    expect(errors).toEqual(['bad message 2']);
  });

  it('drops expired messages instead of delivering them', async () => {
    const { gateway, tcpUrl } = await startGateway({ ...base, delivery: { expireEvery: 20 } });
    await gateway.push({ user: 'late' }, 'msg', 'stale', { qos: 1, ttl: 30 });
    await gateway.push({ user: 'late' }, 'msg', 'fresh', { qos: 1, ttl: 60_000 });
    await expect.poll(() => gateway.stats().qos1.deadLetters).toBe(1);
    const client = await connect(tcpUrl, { token: 'late', reconnect: false });
    const got = collect(client);
    await expect.poll(() => got.map((g) => g.data)).toEqual(['fresh']);
  });

  it('refuses qos 1 with variants, and a bad ttl', async () => {
    const { gateway } = await startGateway(base);
    await expect(gateway.push({ all: true }, 'x', 1, { qos: 1, variants: { a: 1 } })).rejects.toThrow(
      /variants/,
    );
    await expect(gateway.push({ user: 'u' }, 'x', 1, { qos: 1, ttl: -1 })).rejects.toThrow(/ttl/);
  });
});

describe('resume after a flash disconnect', () => {
  it('gets its labels back and the qos-0 and qos-1 pushes it missed, without subscribing again', async () => {
    const { gateway, tcpUrl } = await startGateway(base);
    // The client's clock is fake: it reconnects only when the test moves time on.
    const clock = new FakeClock();
    const client = await connect(tcpUrl, { token: 'carol', clock, reconnect: { base: 200, max: 200 } });
    await client.subscribe(['room_7']);
    const got = collect(client, 'news');
    const reconnected = new Promise<{ resumed?: boolean; recovered?: boolean }>((r) =>
      client.on('reconnected', r),
    );
    const before = client.welcome?.session;
    expect(before).toBeTypeOf('string');
    // The network drops the link: no kick, no close frame.
    gateway.connectionsOf('carol')[0]!.link.destroy();
    await expect.poll(() => gateway.online('carol')).toBe(false);
    await gateway.push({ labels: { all: ['room_7'] } }, 'news', 'missed qos 0');
    await gateway.push({ user: 'carol' }, 'news', 'missed qos 1', { qos: 1 });
    await gateway.push({ labels: { all: ['room_8'] } }, 'news', 'not for carol');
    clock.advance(1000);
    const welcome = await reconnected;
    expect(welcome).toMatchObject({ resumed: true, recovered: true });
    expect(client.welcome?.session).not.toBe(before);
    expect(gateway.connectionsOf('carol')[0]?.labels).toEqual(['room_7']);
    await expect.poll(() => got.map((g) => g.data).sort()).toEqual(['missed qos 0', 'missed qos 1']);
    await gateway.push({ labels: { all: ['room_7'] } }, 'news', 'after');
    await expect.poll(() => got.length).toBe(3);
  });

  it('stores a qos-1 label push for a user whose link dropped a moment ago (its session still holds the label)', async () => {
    const { gateway, tcpUrl } = await startGateway(base);
    const clock = new FakeClock();
    const client = await connect(tcpUrl, { token: 'fay', clock, reconnect: { base: 200, max: 200 } });
    await client.subscribe(['room_3']);
    const got = collect(client, 'news');
    gateway.connectionsOf('fay')[0]!.link.destroy();
    await expect.poll(() => gateway.stats().resumable).toBe(1);
    const r = await gateway.push({ labels: { all: ['room_3'] } }, 'news', 'while away', { qos: 1 });
    expect(r).toMatchObject({ targeted: 0, stored: 1 });
    clock.advance(1000);
    await expect.poll(() => got.map((g) => g.data)).toEqual(['while away']);
  });

  it('does not resume after the window, for another user, or after a kick', async () => {
    const { gateway, tcpUrl } = await startGateway({ ...base, resume: { window: 100 } });
    const first = await RawTcp.open(tcpUrl);
    first.sendJson({ kind: 'hello', data: { token: 'dan' } });
    await first.until((r) => r.frames.length === 1);
    const session = (first.json()[0]!.data as { session: string }).session;
    first.destroy();
    await expect.poll(() => gateway.stats().resumable).toBe(1);

    const thief = await RawTcp.open(tcpUrl);
    thief.sendJson({ kind: 'hello', data: { token: 'eve', session } });
    await thief.until((r) => r.frames.length === 1);
    expect(thief.json()[0]).toMatchObject({ kind: 'welcome', data: { user: 'eve', resumed: false } });

    await expect.poll(() => gateway.stats().resumable).toBe(0); // the window passed
    const late = await RawTcp.open(tcpUrl);
    late.sendJson({ kind: 'hello', data: { token: 'dan', session } });
    await late.until((r) => r.frames.length === 1);
    expect(late.json()[0]).toMatchObject({ kind: 'welcome', data: { user: 'dan', resumed: false } });
    gateway.kick({ user: 'dan' });
    await late.waitClosed();
    expect(gateway.stats().resumable).toBe(0);
    thief.destroy();
  });
});
