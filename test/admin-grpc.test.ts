import * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { type AdminServer, loadAdminProto, startAdmin } from '../src/api/index.js';
import { connect, type PylonClient } from '../src/client/index.js';
import { startGateway, stopAll } from './support/gateway.js';

const KEY = 'test-admin-key-0123456789';
const admins: AdminServer[] = [];
const clients: PylonClient[] = [];
const stubs: grpc.Client[] = [];

afterEach(async () => {
  for (const s of stubs.splice(0)) s.close();
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await Promise.all(admins.splice(0).map((a) => a.close()));
  await stopAll();
});

const validate = (token: unknown) => {
  const [user, labels] = String(token).split(':');
  return { user: user as string, labels: labels ? labels.split(',') : [] };
};

type Rpc = (
  request: object,
  metadata: grpc.Metadata,
  callback: (err: grpc.ServiceError | null, res: unknown) => void,
) => void;

/** A grpc-js client of pylon.v1.Admin loaded from the same .proto; `call` resolves the answer or the error. */
async function setup() {
  const { gateway, tcpUrl, wsUrl } = await startGateway({ validate });
  const admin = await startAdmin(gateway, { httpPort: 0, grpcPort: 0, keys: [KEY] });
  admins.push(admin);
  const Admin = loadAdminProto();
  const stub = new Admin(`127.0.0.1:${admin.grpc?.port}`, grpc.credentials.createInsecure());
  stubs.push(stub);
  const call = <T = Record<string, unknown>>(
    method: string,
    request: object = {},
    key: string | null = KEY,
  ) =>
    new Promise<T>((resolve, reject) => {
      const metadata = new grpc.Metadata();
      if (key !== null) metadata.set('authorization', `Bearer ${key}`);
      const rpc = (stub as unknown as Record<string, Rpc>)[method] as Rpc;
      rpc.call(stub, request, metadata, (err, res) => (err ? reject(err) : resolve(res as T)));
    });
  return { gateway, tcpUrl, wsUrl, admin, call };
}

interface Got {
  type: string;
  data: unknown;
  qos: number;
  seq: number | undefined;
}

async function client(url: string, token: string): Promise<{ c: PylonClient; got: Got[] }> {
  const c = await connect(url, { token, reconnect: false });
  clients.push(c);
  const got: Got[] = [];
  c.on('*', (data, meta) => {
    got.push({ type: meta.type, data, qos: meta.qos, seq: meta.seq });
  });
  return { c, got };
}

async function until(check: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`condition not met in ${ms} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const types = (got: Got[]) => got.map((g) => g.type);

describe('admin gRPC API', () => {
  it('pushes to every kind of target, with variants and qos 1', async () => {
    const { tcpUrl, wsUrl, call } = await setup();
    const ann = await client(tcpUrl, 'ann:room1,v1');
    const bo = await client(wsUrl, 'bo:room1,room2,v2');
    const cy = await client(tcpUrl, 'cy:room2,muted');

    expect(await call('Push', { to: { user: 'ann' }, type: 'one', data_json: '{"n":1}' })).toEqual({
      id: expect.any(String),
      targeted: 1,
    });
    expect(
      await call('Push', { to: { users: { users: ['bo', 'cy'] } }, type: 'two', data_json: '2' }),
    ).toMatchObject({
      targeted: 2,
    });
    expect(await call('Push', { to: { connection: bo.c.welcome?.connection }, type: 'conn' })).toMatchObject({
      targeted: 1,
    });
    expect(await call('Push', { to: { labels: { all: ['room1', 'room2'] } }, type: 'all' })).toMatchObject({
      targeted: 1,
    });
    expect(
      await call('Push', { to: { labels: { any: ['room1', 'room2'], not: ['muted'] } }, type: 'any' }),
    ).toMatchObject({ targeted: 2 });
    expect(await call('Push', { to: { labels: { not: ['room1'] } }, type: 'not' })).toMatchObject({
      targeted: 1,
    });
    const news = await call('Push', {
      to: { all: true },
      type: 'news',
      data_json: '"plain"',
      variants_json: { v1: '{"old":true}', v2: '{"new":true}' },
      rate: 1000,
    });
    expect(news).toMatchObject({ targeted: 3 });

    await until(() => ann.got.length >= 3 && bo.got.length >= 5 && cy.got.length >= 3);
    expect(types(ann.got)).toEqual(['one', 'any', 'news']);
    expect(types(bo.got)).toEqual(['two', 'conn', 'all', 'any', 'news']);
    expect(types(cy.got)).toEqual(['two', 'not', 'news']);
    expect(ann.got[0]?.data).toEqual({ n: 1 });
    expect(bo.got[0]?.data).toBe(2);
    expect(bo.got[1]?.data).toBeUndefined();
    expect(ann.got.at(-1)?.data).toEqual({ old: true });
    expect(bo.got.at(-1)?.data).toEqual({ new: true });
    expect(cy.got.at(-1)?.data).toBe('plain');

    const stored = await call('Push', {
      to: { user: 'dora' },
      type: 'order',
      data_json: '{"id":7}',
      qos: 1,
      ttl: 60000,
    });
    expect(stored).toEqual({ id: expect.any(String), targeted: 0, stored: 1 });
    const dora = await client(tcpUrl, 'dora:');
    await until(() => dora.got.length === 1);
    expect(dora.got[0]).toMatchObject({ type: 'order', data: { id: 7 }, qos: 1, seq: 1 });
  });

  it('stats, users, labels and kick', async () => {
    const { tcpUrl, wsUrl, call } = await setup();
    await client(tcpUrl, 'ann:a,b');
    await client(wsUrl, 'ann:c');
    const bo = await client(tcpUrl, 'bo:a');

    const stats = await call<Record<string, unknown> & { nodes: Array<Record<string, unknown>> }>('Stats');
    expect(stats).toMatchObject({ connections: 3, users: 2, labels: 3, node: expect.any(String) });
    expect(stats.messages_in).toBeGreaterThan(0);
    expect(stats.uptime).toBeGreaterThan(0);
    expect(stats.nodes).toHaveLength(1);
    expect(stats.nodes[0]).toMatchObject({ node: stats.node, connections: 3 });

    const user = await call<{ online: boolean; connections: Array<Record<string, unknown>> }>('GetUser', {
      user: 'ann',
    });
    expect(user.online).toBe(true);
    expect(user.connections.map((c) => [c.transport, c.labels])).toEqual([
      ['tcp', ['a', 'b']],
      ['ws', ['c']],
    ]);
    expect(user.connections[0]).toMatchObject({
      user: 'ann',
      remote_address: expect.any(String),
      connected_at: expect.any(String),
    });
    // No connections: an absent repeated field (proto3 default).
    expect(await call('GetUser', { user: 'nobody' })).toEqual({ user: 'nobody', online: false });

    expect(await call('UpdateUserLabels', { user: 'ann', add: ['vip'], remove: ['a'] })).toEqual({
      connections: 2,
    });
    expect(await call('ListLabels', { limit: 2 })).toEqual({
      labels: [
        { label: 'a', count: 1 },
        { label: 'b', count: 1 },
      ],
      next: 'b',
    });
    const rest = await call<{ labels: Array<{ label: string }> }>('ListLabels', { after: 'b' });
    expect(rest.labels.map((l) => l.label)).toEqual(['c', 'vip']);
    const vip = await call<{ count: number; members: unknown[]; next?: string }>('GetLabel', {
      label: 'vip',
      limit: 1,
    });
    expect(vip).toMatchObject({ label: 'vip', count: 2, members: [{ user: 'ann' }] });
    const more = await call<{ members: unknown[] }>('GetLabel', { label: 'vip', after: vip.next });
    expect(more.members).toHaveLength(1);

    const closed = new Promise<number>((resolve) => bo.c.on('close', (e) => resolve(e.code)));
    expect(await call('Kick', { user: 'bo', reason: 'bye' })).toEqual({ kicked: 1 });
    expect(await closed).toBe(4503);
    expect(await call('Kick', { connection: 'nope' })).toEqual({ kicked: 0 });
  });

  it('bans, revocations and the connection list', async () => {
    const { tcpUrl, call } = await setup();
    const eve = await client(tcpUrl, 'eve:a');
    await client(tcpUrl, 'fay:a');
    const list = await call<{ node: string; connections: Array<Record<string, unknown>> }>(
      'ListConnections',
      {
        label: 'a',
        limit: 10,
      },
    );
    expect(list.connections.map((c) => c.user)).toEqual(['eve', 'fay']);
    expect(list.connections[0]).toMatchObject({ transport: 'tcp', codec: 'json' });
    expect(
      (await call<{ connections: unknown[] }>('ListConnections', { user: 'fay' })).connections,
    ).toHaveLength(1);

    const closed = new Promise<number>((resolve) => eve.c.on('close', (e) => resolve(e.code)));
    const ban = await call<{ kicked: number; until: string }>('BanUser', {
      user: 'eve',
      duration: 60_000,
      reason: 'spam',
    });
    expect(ban.kicked).toBe(1);
    expect(await closed).toBe(4508);
    expect(await call('GetUser', { user: 'eve' })).toMatchObject({
      banned: { reason: 'spam', until: ban.until },
    });
    expect(await call('UnbanUser', { user: 'eve' })).toEqual({ user: 'eve', unbanned: true });
    expect(await call('RevokeToken', { jti: 'j-1' })).toMatchObject({ jti: 'j-1' });
    expect(await call('RevokeToken', { user: 'fay', issued_before: '2026-01-01T00:00:00Z' })).toMatchObject({
      user: 'fay',
      issued_before: '2026-01-01T00:00:00.000Z',
    });
    await expect(call('BanUser', { user: 'eve', duration: -5 })).rejects.toMatchObject({
      code: grpc.status.INVALID_ARGUMENT,
      details: expect.stringMatching(/^duration:/),
    });
  });

  it('UNAUTHENTICATED without a valid key; INVALID_ARGUMENT naming the field', async () => {
    const { call } = await setup();
    await expect(call('Stats', {}, null)).rejects.toMatchObject({ code: grpc.status.UNAUTHENTICATED });
    await expect(call('Stats', {}, 'not-the-key-at-all-000')).rejects.toMatchObject({
      code: grpc.status.UNAUTHENTICATED,
    });
    const invalid = async (method: string, request: object, details: string | RegExp) => {
      const err = await call(method, request).then(
        () => undefined,
        (e: grpc.ServiceError) => e,
      );
      expect(err?.code).toBe(grpc.status.INVALID_ARGUMENT);
      expect(err?.details).toMatch(details);
    };
    await invalid('Push', { type: 'x' }, /^to: must be one of/);
    await invalid('Push', { to: { labels: {} }, type: 'x' }, 'to.labels: needs at least one label');
    await invalid(
      'Push',
      { to: { labels: { all: ['a', ''] } }, type: 'x' },
      'to.labels.all[1]: must be a non-empty string',
    );
    await invalid('Push', { to: { all: false }, type: 'x' }, 'to.all: must be true');
    await invalid('Push', { to: { all: true } }, 'type: must be a non-empty string');
    await invalid('Push', { to: { all: true }, type: 'x', data_json: '{nope' }, 'data_json: invalid JSON');
    await invalid(
      'Push',
      { to: { all: true }, type: 'x', variants_json: { v1: '[' } },
      'variants_json.v1: invalid JSON',
    );
    await invalid('Push', { to: { all: true }, type: 'x', qos: 3 }, 'qos: must be 0 or 1');
    await invalid('Kick', {}, 'body: needs exactly one of user, connection');
    await invalid('GetUser', {}, 'user: must be a non-empty string');
    await invalid('UpdateUserLabels', { user: 'a', add: [''] }, /^add\[0\]: /);
    await invalid('ListLabels', { limit: 5000 }, 'limit: must be an integer from 1 to 1000');
    await invalid('GetLabel', {}, 'label: must be a non-empty string');
  });
});
