import * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { type AdminServer, loadAdminProto, startAdmin } from '../src/api/index.js';
import { connect, type PylonClient } from '../src/client/index.js';
import { startGateway, stopAll } from './support/gateway.js';

/** A label's presence and history through the admin API, over HTTP and gRPC, as the dashboard reads them. */

const KEY = 'label-views-key-0123456789';
const admins: AdminServer[] = [];
const clients: PylonClient[] = [];
const stubs: grpc.Client[] = [];

afterEach(async () => {
  for (const s of stubs.splice(0)) s.close();
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await Promise.all(admins.splice(0).map((a) => a.close()));
  await stopAll();
});

type Rpc = (
  request: object,
  metadata: grpc.Metadata,
  callback: (err: grpc.ServiceError | null, res: unknown) => void,
) => void;

async function setup() {
  const { gateway, wsUrl } = await startGateway({
    validate: (token) => {
      const [user, labels] = String(token).split(':');
      return { user: user as string, labels: labels ? labels.split(',') : [] };
    },
    presence: ['room'],
    history: [{ match: 'room', size: 3 }],
  });
  const admin = await startAdmin(gateway, { httpPort: 0, grpcPort: 0, keys: [KEY] });
  admins.push(admin);
  const base = `http://127.0.0.1:${admin.http.port}`;
  const get = async (path: string) => {
    const res = await fetch(base + path, { headers: { authorization: `Bearer ${KEY}` } });
    return { status: res.status, json: await res.json() };
  };
  const Admin = loadAdminProto();
  const stub = new Admin(`127.0.0.1:${admin.grpc?.port}`, grpc.credentials.createInsecure());
  stubs.push(stub);
  const call = <T = Record<string, unknown>>(method: string, request: object) =>
    new Promise<T>((resolve, reject) => {
      const metadata = new grpc.Metadata();
      metadata.set('authorization', `Bearer ${KEY}`);
      const rpc = (stub as unknown as Record<string, Rpc>)[method] as Rpc;
      rpc.call(stub, request, metadata, (err, res) => (err ? reject(err) : resolve(res as T)));
    });
  const join = async (token: string) => {
    // MessagePack, so that a binary push can reach them (JSON cannot carry one).
    const c = await connect(wsUrl, { token, reconnect: false, codec: 'msgpack' });
    clients.push(c);
    return c;
  };
  return { gateway, get, call, join };
}

describe('admin label views', () => {
  it('presence: each user once, sorted, limited; history: the last pushes, oldest first, binary as base64', async () => {
    const { gateway, get, call, join } = await setup();
    await join('zoe:room');
    await join('adam:room');
    await join('adam:room');
    await join('mia:lobby');

    expect((await get('/v1/labels/room/presence')).json).toEqual({
      label: 'room',
      count: 2,
      users: ['adam', 'zoe'],
    });
    expect((await get('/v1/labels/room/presence?limit=1')).json).toEqual({
      label: 'room',
      count: 2,
      users: ['adam'],
    });
    expect((await get('/v1/labels/nobody/presence')).json).toEqual({ label: 'nobody', count: 0, users: [] });
    expect(await call('GetLabelPresence', { label: 'room' })).toEqual({
      label: 'room',
      count: 2,
      users: ['adam', 'zoe'],
    });

    // A label without a history rule has none (an empty epoch).
    expect((await get('/v1/labels/lobby/history')).json).toEqual({
      label: 'lobby',
      epoch: '',
      last: 0,
      messages: [],
    });

    for (let n = 1; n <= 4; n++) await gateway.push({ labels: { all: ['room'] } }, 'say', { n });
    await gateway.push({ labels: { all: ['room'] } }, 'blob', new Uint8Array([1, 2, 3]));
    const h = (await get('/v1/labels/room/history')).json;
    // The rule keeps 3: positions 3, 4, 5 of this epoch.
    expect(h.label).toBe('room');
    expect(h.epoch).toMatch(/.+/);
    expect(h.last).toBe(5);
    expect(h.messages.map((m: { pos: number }) => m.pos)).toEqual([3, 4, 5]);
    expect(h.messages[0]).toMatchObject({ type: 'say', data: { n: 3 }, at: expect.any(Number) });
    expect(h.messages[2]).toEqual({ type: 'blob', binary: 'AQID', at: expect.any(Number), pos: 5 });
    const after = (await get('/v1/labels/room/history?since=4&limit=10')).json;
    expect(after.messages.map((m: { pos: number }) => m.pos)).toEqual([5]);
    expect(
      (await get('/v1/labels/room/history?limit=1')).json.messages.map((m: { pos: number }) => m.pos),
    ).toEqual([5]);

    const g = await call<{ epoch: string; last: number; messages: Array<Record<string, unknown>> }>(
      'GetLabelHistory',
      { label: 'room', limit: 2 },
    );
    expect(g.epoch).toBe(h.epoch);
    expect(g.last).toBe(5);
    expect(g.messages).toHaveLength(2);
    expect(g.messages[0]).toMatchObject({ type: 'say', data_json: '{"n":4}', pos: 4 });
    expect(g.messages[1]).toMatchObject({ type: 'blob', data_json: '', pos: 5 });
    expect(Array.from(g.messages[1]?.binary as Uint8Array)).toEqual([1, 2, 3]);
  });

  it('bad queries are refused by name', async () => {
    const { get, call } = await setup();
    const refused = async (path: string, message: string) => {
      const r = await get(path);
      expect(r.status, path).toBe(400);
      expect(r.json.error.message).toBe(message);
    };
    await refused('/v1/labels/room/history?since=-1', 'since: must be a position (an integer, 0 or more)');
    await refused('/v1/labels/room/history?since=x', 'since: must be a position (an integer, 0 or more)');
    await refused('/v1/labels/room/history?limit=0', 'limit: must be an integer from 1 to 1000');
    await refused('/v1/labels/room/presence?limit=1001', 'limit: must be an integer from 1 to 1000');
    await refused(`/v1/labels/${'x'.repeat(257)}/presence`, 'label: at most 256 characters');
    await expect(call('GetLabelPresence', {})).rejects.toMatchObject({
      code: grpc.status.INVALID_ARGUMENT,
      details: 'label: must be a non-empty string',
    });
  });
});
