import { afterEach, describe, expect, it } from 'vitest';
import { connect, type PylonClient } from '../src/client/index.js';
import { type Gateway, type GatewayOptions, type Identity, PylonError } from '../src/index.js';
import { once, RawTcp, startGateway, stopAll } from './support/gateway.js';

afterEach(stopAll);

/** Test tokens read "user:label1,label2"; "bad" is refused. */
function validate(token: string | undefined): Identity | null {
  if (!token || token === 'bad') return null;
  const [user, labels] = token.split(':');
  return { user: user as string, labels: labels ? labels.split(',') : [] };
}

interface Rx {
  client: PylonClient;
  got: Array<{ type: string; data: unknown }>;
}

async function clientOf(
  url: string,
  token: string,
  codec: 'json' | 'msgpack' | 'proto' = 'json',
): Promise<Rx> {
  const client = await connect(url, { token, codec, reconnect: false });
  const got: Rx['got'] = [];
  client.on('*', (data, meta) => {
    got.push({ type: meta.type, data });
  });
  return { client, got };
}

async function threeClients(extra: GatewayOptions = {}) {
  const g = await startGateway({ validate, ...extra });
  const c1 = await clientOf(g.tcpUrl, 'u1:room_2018,version_v1');
  const c2 = await clientOf(g.wsUrl, 'u2:room_2018,version_v2', 'msgpack');
  const c3 = await clientOf(g.tcpUrl, 'u3:room_2019,version_v2', 'proto');
  return { ...g, c1, c2, c3, all: [c1, c2, c3] };
}

/** Pushes a marker afterwards to everyone, so "did not receive" is known once the marker is in. */
async function settled(g: { gateway: Gateway }, clients: Rx[]): Promise<void> {
  await g.gateway.push({ all: true }, 'marker', null);
  await expect.poll(() => clients.every((c) => c.got.some((m) => m.type === 'marker'))).toBe(true);
}

const received = (c: Rx, type: string) => c.got.filter((m) => m.type === type).map((m) => m.data);

describe('targeted pushes', () => {
  it('labels.all is an intersection: [room_2018, version_v2] reaches only the second client', async () => {
    const g = await threeClients();
    const r = await g.gateway.push({ labels: { all: ['room_2018', 'version_v2'] } }, 'news', { n: 1 });
    expect(r.targeted).toBe(1);
    await settled(g, g.all);
    expect(received(g.c1, 'news')).toEqual([]);
    expect(received(g.c2, 'news')).toEqual([{ n: 1 }]);
    expect(received(g.c3, 'news')).toEqual([]);
  });

  it('labels.any is a union that reaches each matching connection once', async () => {
    const g = await threeClients();
    const r = await g.gateway.push(
      { labels: { any: ['version_v2', 'room_2018', 'room_2019'] } },
      'news',
      'x',
    );
    expect(r.targeted).toBe(3);
    await settled(g, g.all);
    for (const c of g.all) expect(received(c, 'news')).toEqual(['x']);
  });

  it('labels.not excludes, alone or with all/any', async () => {
    const g = await threeClients();
    expect(
      (await g.gateway.push({ labels: { any: ['room_2018'], not: ['version_v1'] } }, 'a', 1)).targeted,
    ).toBe(1);
    expect((await g.gateway.push({ labels: { not: ['room_2018'] } }, 'b', 2)).targeted).toBe(1);
    expect(
      (await g.gateway.push({ labels: { all: ['version_v2'], not: ['room_2019'] } }, 'c', 3)).targeted,
    ).toBe(1);
    await settled(g, g.all);
    expect(received(g.c2, 'a')).toEqual([1]);
    expect(received(g.c3, 'b')).toEqual([2]);
    expect(received(g.c2, 'c')).toEqual([3]);
    expect(received(g.c1, 'a').length + received(g.c1, 'b').length + received(g.c1, 'c').length).toBe(0);
  });

  it('gives each connection its per-version variant, or the default', async () => {
    const g = await threeClients();
    const c4 = await clientOf(g.wsUrl, 'u4:room_2018', 'proto');
    const r = await g.gateway.push(
      { all: true },
      'upgrade',
      { shape: 'default' },
      {
        variants: { version_v1: { shape: 'A', v: 1 }, version_v2: { shape: 'B', fields: ['x', 'y'] } },
      },
    );
    expect(r.targeted).toBe(4);
    await settled(g, [...g.all, c4]);
    expect(received(g.c1, 'upgrade')).toEqual([{ shape: 'A', v: 1 }]);
    expect(received(g.c2, 'upgrade')).toEqual([{ shape: 'B', fields: ['x', 'y'] }]);
    expect(received(g.c3, 'upgrade')).toEqual([{ shape: 'B', fields: ['x', 'y'] }]);
    expect(received(c4, 'upgrade')).toEqual([{ shape: 'default' }]);
  });

  it('reaches every device of a user, a list of users, one connection, and everyone, in chunks', async () => {
    const g = await startGateway({ validate, fanoutChunk: 2 });
    const phone = await clientOf(g.tcpUrl, 'alice');
    const laptop = await clientOf(g.wsUrl, 'alice');
    const bob = await clientOf(g.tcpUrl, 'bob');
    const carol = await clientOf(g.wsUrl, 'carol', 'msgpack');
    const everyone = [phone, laptop, bob, carol];
    expect((await g.gateway.push({ user: 'alice' }, 'u', 1)).targeted).toBe(2);
    expect((await g.gateway.push({ users: ['bob', 'carol', 'bob', 'nobody'] }, 'us', 2)).targeted).toBe(2);
    expect((await g.gateway.push({ connection: bob.client.welcome!.connection }, 'c', 3)).targeted).toBe(1);
    const all = await g.gateway.push({ all: true }, 'all', 4);
    expect(all.targeted).toBe(4);
    await expect(all.done).resolves.toEqual({ delivered: 4, dropped: 0 });
    await settled(g, everyone);
    expect(received(phone, 'u')).toEqual([1]);
    expect(received(laptop, 'u')).toEqual([1]);
    expect(received(bob, 'us')).toEqual([2]);
    expect(received(carol, 'us')).toEqual([2]);
    expect(received(bob, 'c')).toEqual([3]);
    for (const c of everyone) expect(received(c, 'all')).toEqual([4]);
    expect(g.gateway.online('alice')).toBe(true);
    expect(g.gateway.online('nobody')).toBe(false);
    expect(
      g.gateway
        .connectionsOf('alice')
        .map((c) => c.transport)
        .sort(),
    ).toEqual(['tcp', 'ws']);
  });

  it('rejects malformed targets with BAD_REQUEST naming the field', async () => {
    const g = await startGateway({ validate });
    const push = (t: unknown) => g.gateway.push(t as never, 'x');
    await expect(push({ labels: { all: 'room' } })).rejects.toThrow(/target.labels.all: must be an array/);
    await expect(push({ labels: {} })).rejects.toThrow(/target.labels: needs at least one label/);
    await expect(push({ user: '' })).rejects.toThrow(/target.user/);
    await expect(push({ user: 'a', all: true })).rejects.toThrow(/exactly one/);
    await expect(push({ everyone: true })).rejects.toThrow(PylonError);
  });
});

describe('authentication', () => {
  it('refuses a bad token with unauthorized (4502) and never registers the connection', async () => {
    const g = await startGateway({ validate });
    let connects = 0;
    g.gateway.on('connect', () => connects++);
    await expect(connect(g.wsUrl, { token: 'bad', reconnect: false })).rejects.toThrow(/4502/);
    await expect(connect(g.tcpUrl, { token: 'bad', reconnect: false })).rejects.toThrow(/4502/);
    const raw = await RawTcp.open(g.tcpUrl);
    raw.sendJson({ kind: 'hello', data: { token: 'bad' } });
    raw.sendJson({ kind: 'req', id: 1, type: 'echo' });
    await raw.waitClosed();
    expect(raw.json()).toEqual([
      { kind: 'kick', data: { code: 4502, name: 'unauthorized', reason: 'token refused', reconnect: false } },
    ]);
    expect(connects).toBe(0);
    expect(g.gateway.stats()).toMatchObject({ connections: 0, users: 0, authFailures: 3 });
  });

  it('takes the token from ?token=, Authorization: Bearer, or the hello, and reports it in welcome', async () => {
    const g = await startGateway({ validate });
    const viaQuery = await connect(`${g.wsUrl}?token=q:lab`, { reconnect: false });
    const viaHeader = await connect(g.wsUrl, { headers: { authorization: 'Bearer h' }, reconnect: false });
    const viaHello = await connect(g.tcpUrl, { token: 't', reconnect: false });
    expect(viaQuery.welcome).toMatchObject({ user: 'q', labels: ['lab'] });
    expect(viaHeader.welcome?.user).toBe('h');
    expect(viaHello.welcome?.user).toBe('t');
    expect(g.gateway.stats()).toMatchObject({ connections: 3, users: 3 });
  });

  it('runs an async validate hook while the client pipelines requests, and answers them in order after', async () => {
    const g = await startGateway({
      validate: async (token) => {
        await new Promise((r) => setTimeout(r, 50));
        return { user: token as string };
      },
    });
    g.gateway.handle('who', (_d, ctx) => ctx.connection.user);
    const raw = await RawTcp.open(g.tcpUrl);
    raw.sendJson({ kind: 'hello', data: { token: 'slowpoke' } });
    for (let id = 1; id <= 3; id++) raw.sendJson({ kind: 'req', id, type: 'who' });
    await raw.until((r) => r.frames.length >= 4);
    const [welcome, ...answers] = raw.json();
    expect(welcome).toMatchObject({ kind: 'welcome', data: { user: 'slowpoke' } });
    expect(answers).toEqual([1, 2, 3].map((id) => ({ kind: 'res', id, data: 'slowpoke' })));
    raw.destroy();
  });

  it('kicks the older login of the same user with replaced (4504) when that policy is on', async () => {
    const g = await startGateway({ validate, duplicateLogin: 'replace' });
    const older = await connect(g.tcpUrl, { token: 'dave' });
    const closed = once<{ code: number; name: string; willReconnect: boolean }>((r) => older.on('close', r));
    const newer = await connect(g.wsUrl, { token: 'dave', reconnect: false });
    await expect(closed).resolves.toMatchObject({ code: 4504, name: 'replaced', willReconnect: false });
    expect(g.gateway.connectionsOf('dave').map((c) => c.id)).toEqual([newer.welcome?.connection]);
  });

  it('keeps both logins by default (multi-device)', async () => {
    const g = await startGateway({ validate });
    await connect(g.tcpUrl, { token: 'erin', reconnect: false });
    await connect(g.wsUrl, { token: 'erin', reconnect: false });
    expect(g.gateway.connectionsOf('erin')).toHaveLength(2);
  });
});

describe('labels from the application and the client', () => {
  it('refuses sub without an authorizeSub hook, and with a hook that says no', async () => {
    const g = await startGateway({ validate });
    const c = await connect(g.tcpUrl, { token: 'frank', reconnect: false });
    await expect(c.subscribe(['room_1'])).rejects.toMatchObject({ code: 'FORBIDDEN' });
    const g2 = await startGateway({ validate, authorizeSub: (_c, label) => !label.startsWith('secret') });
    const c2 = await connect(g2.wsUrl, { token: 'gina', reconnect: false });
    await expect(c2.subscribe(['room_1', 'secret_room'])).rejects.toMatchObject({
      code: 'FORBIDDEN',
      message: 'not allowed to sub "secret_room"',
    });
    expect(g2.gateway.labelCounts().get('room_1')).toBeUndefined();
    await expect(c2.subscribe(['room_1', 'room_2'])).resolves.toEqual(['room_1', 'room_2']);
    const got = once<unknown>((r) => c2.on('hello', r));
    expect((await g2.gateway.push({ labels: { all: ['room_2'] } }, 'hello', 'room 2')).targeted).toBe(1);
    await expect(got).resolves.toBe('room 2');
    await expect(c2.unsubscribe(['room_1'])).resolves.toEqual(['room_2']);
    expect(g2.gateway.labelCounts()).toEqual(new Map([['room_2', 1]]));
  });

  it('lets handlers join and leave labels, and counts them in stats', async () => {
    const g = await startGateway({ validate });
    g.gateway.handle<string>('join', (room, ctx) => ctx.connection.join(room));
    g.gateway.handle<string>('leave', (room, ctx) => ctx.connection.leave(room));
    const a = await connect(g.tcpUrl, { token: 'ann', reconnect: false });
    const b = await connect(g.wsUrl, { token: 'ben', reconnect: false });
    await a.request('join', 'lobby');
    await b.request('join', 'lobby');
    await b.request('join', 'kitchen');
    expect(Object.fromEntries(g.gateway.labelCounts())).toEqual({ lobby: 2, kitchen: 1 });
    expect(g.gateway.stats()).toMatchObject({ connections: 2, users: 2, labels: 2 });
    await b.request('leave', 'kitchen');
    await b.close();
    await expect.poll(() => Object.fromEntries(g.gateway.labelCounts())).toEqual({ lobby: 1 });
  });

  it('kick(user) closes every connection of the user with kicked (4503)', async () => {
    const g = await startGateway({ validate });
    const a = await connect(g.tcpUrl, { token: 'hal' });
    const b = await connect(g.wsUrl, { token: 'hal' });
    const closes = Promise.all([a, b].map((c) => once<{ code: number }>((r) => c.on('close', r))));
    expect(g.gateway.kick({ user: 'hal' }, 'policy')).toBe(2);
    const [ea, eb] = await closes;
    expect(ea).toMatchObject({ code: 4503, reason: 'policy' });
    expect(eb).toMatchObject({ code: 4503, reason: 'policy' });
    expect(g.gateway.online('hal')).toBe(false);
  });
});

describe('a validate hook that never answers', () => {
  it('closes the connection at the handshake timeout, on TCP and WebSocket', async () => {
    const g = await startGateway({ validate: () => new Promise(() => {}), handshakeTimeout: 200 });
    await expect(connect(g.wsUrl, { token: 't', reconnect: false })).rejects.toThrow(/4003/);
    await expect(connect(g.tcpUrl, { token: 't', reconnect: false })).rejects.toThrow(/4003/);
    expect(g.gateway.connections.size).toBe(0);
  });
});
