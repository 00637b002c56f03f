import { afterEach, describe, expect, it } from 'vitest';
import { connect, type PylonClient } from '../src/client/index.js';
import { devValidator } from '../src/index.js';
import { startGateway, stopAll } from './support/gateway.js';

afterEach(stopAll);

function events(c: PylonClient) {
  const seen: string[] = [];
  c.on<{ label: string; user: string }>('presence.join', (e) => {
    seen.push(`+${e.user}@${e.label}`);
  });
  c.on<{ label: string; user: string }>('presence.leave', (e) => {
    seen.push(`-${e.user}@${e.label}`);
  });
  return seen;
}

describe('presence', () => {
  it('announces the first join and the last leave of a user to the label’s members, on labels that have it', async () => {
    const { gateway, tcpUrl, wsUrl } = await startGateway({
      validate: devValidator(),
      authorizeSub: () => true,
      presence: /^room_/,
    });
    const ann = await connect(tcpUrl, { token: 'ann', reconnect: false });
    const seen = events(ann);
    await ann.subscribe(['room_1', 'quiet']);
    const bob1 = await connect(wsUrl, { token: 'bob', reconnect: false });
    await bob1.subscribe(['room_1', 'quiet']);
    const bob2 = await connect(tcpUrl, { token: 'bob', reconnect: false });
    await bob2.subscribe(['room_1']); // bob is already there: no second join
    await expect.poll(() => seen).toEqual(['+bob@room_1']);
    await expect(ann.presence('room_1')).resolves.toEqual({
      label: 'room_1',
      count: 2,
      users: ['ann', 'bob'],
    });
    await bob1.close(); // bob is still there through bob2
    await bob2.unsubscribe(['room_1']);
    await expect.poll(() => seen).toEqual(['+bob@room_1', '-bob@room_1']);
    await expect(ann.presence('room_1')).resolves.toMatchObject({ count: 1, users: ['ann'] });
    expect(gateway.presence.of('quiet').count).toBe(1);
  });

  it('lets only members (or what authorizeSub allows to read) see presence and history', async () => {
    const { tcpUrl } = await startGateway({
      validate: devValidator(),
      authorizeSub: (_c, label, action) => action !== 'read' || label === 'lobby',
      history: [{ match: 'room_*', size: 10 }],
    });
    const out = await connect(tcpUrl, { token: 'outsider', reconnect: false });
    await expect(out.presence('room_9')).rejects.toMatchObject({ code: 'FORBIDDEN' });
    await expect(out.history('room_9')).rejects.toMatchObject({ code: 'FORBIDDEN' });
    await expect(out.presence('lobby')).resolves.toMatchObject({ count: 0 });
  });
});

describe('history', () => {
  it('keeps the last N pushes of labels matching a rule, readable on join', async () => {
    const { gateway, tcpUrl } = await startGateway({
      validate: devValidator(),
      authorizeSub: () => true,
      history: [{ match: 'room_*', size: 3 }],
    });
    for (let i = 1; i <= 5; i++) await gateway.push({ labels: { all: ['room_1'] } }, 'chat', { i });
    await gateway.push({ labels: { any: ['other'] } }, 'chat', { i: 'not kept' });
    await gateway.push({ labels: { all: ['room_1'] } }, 'chat', { i: 6 }, { qos: 1 });
    const late = await connect(tcpUrl, { token: 'late', reconnect: false });
    await late.subscribe(['room_1']);
    const h = await late.history('room_1');
    expect(h.messages.map((m) => m.data)).toEqual([{ i: 4 }, { i: 5 }, { i: 6 }]);
    expect(h.messages.every((m) => m.type === 'chat' && m.at <= Date.now())).toBe(true);
    await expect(late.history('room_1', 1)).resolves.toMatchObject({ messages: [{ data: { i: 6 } }] });
    await expect(late.history('room_1', 0)).rejects.toMatchObject({ code: 'BAD_REQUEST' });
    expect((await gateway.history.read('other', 10)).messages).toEqual([]);
  });
});
