import { afterEach, describe, expect, it } from 'vitest';
import { type AdminServer, startAdmin } from '../src/api/index.js';
import { connect, type PylonClient } from '../src/client/index.js';
import { Fanout } from '../src/hub/fanout.js';
import { Hub } from '../src/hub/hub.js';
import type { Member } from '../src/hub/member.js';
import { SWEEP_MAX_ACTIVE } from '../src/hub/sweep.js';
import { devValidator } from '../src/index.js';
import { type OutFrame, OutFrameBatch } from '../src/net/out-frame.js';
import type { Codec } from '../src/protocol/codec.js';
import { jsonCodec } from '../src/protocol/json-codec.js';
import { msgpackCodec } from '../src/protocol/msgpack-codec.js';
import { startGateway, stopAll } from './support/gateway.js';

// Broadcasts to everyone made faster than one pass over the connections takes: they ride one
// sweep (each joins where the cursor is and goes round once), and a connection gets all that
// wait for it in one write.

interface FakeMember extends Member {
  open: boolean;
  /** The data of every push it got, in order. */
  got: unknown[];
  /** Writes it was given (a batch is one). */
  writes: number;
}

function member(id: string, codec: Codec = jsonCodec): FakeMember {
  return {
    id,
    user: id,
    labels: undefined,
    codec,
    open: true,
    got: [],
    writes: 0,
    deliver(frame: OutFrame) {
      this.writes++;
      const parts = frame instanceof OutFrameBatch ? frame.parts : [frame];
      for (const p of parts) this.got.push((codec.decode(p.payload) as { data?: unknown }).data);
      return true;
    },
  };
}

const fanout = (chunk: number, onError?: (err: unknown) => void) =>
  new Fanout({ chunk, maxPaced: 10, maxBacklogMs: 1, after: () => {}, onError });

const admins: AdminServer[] = [];
const clients: PylonClient[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  await Promise.all(admins.splice(0).map((a) => a.close()));
  await stopAll();
});

describe('broadcast sweeps', () => {
  it('a broadcast made while one is written joins its pass: each member gets each once, in order, several in one write', async () => {
    const hub = new Hub<FakeMember>();
    const ms = Array.from({ length: 50 }, (_, i) => member(`m${i}`));
    for (const m of ms) hub.add(m);
    const f = fanout(10);
    const everyone = () => [...hub.all()];
    // The first chunk (m0–m9) is written at once; the other two join at m10.
    const first = f.deliver(everyone(), { type: 'b', data: 1 }, undefined, undefined, hub.adds);
    expect(ms[9]?.got).toEqual([1]);
    expect(ms[10]?.got).toEqual([]);
    // Joining waits for nothing: admitted although the backlog is over its 1 ms bound.
    expect(() => f.admit(50, true)).not.toThrow();
    const later = [2, 3].map((n) =>
      f.deliver(everyone(), { type: 'b', data: n }, undefined, undefined, hub.adds),
    );
    for (const r of [first, ...later]) expect(await r.done).toEqual({ delivered: 50, dropped: 0 });
    for (const m of ms) expect(m.got).toEqual([1, 2, 3]);
    // m10–m49 got 1, 2, 3 in one write; m0–m9 got 1, then 2 and 3 in one write.
    expect(ms[10]?.writes).toBe(1);
    expect(ms[0]?.writes).toBe(2);
    expect(ms.reduce((n, m) => n + m.writes, 0)).toBe(60); // not 150
    expect(f.backlog()).toEqual({ queued: 0, ms: 0 });
  });

  it('a connection that joined the hub after a broadcast gets only the later ones; a closed one gets nothing more', async () => {
    const hub = new Hub<FakeMember>();
    const ms = Array.from({ length: 30 }, (_, i) => member(`m${i}`));
    for (const m of ms) hub.add(m);
    const f = fanout(10);
    const everyone = () => [...hub.all()];
    const a = f.deliver(everyone(), { type: 'b', data: 'a' }, undefined, undefined, hub.adds);
    const late = [member('late1'), member('late2')];
    for (const m of late) hub.add(m);
    const gone = ms[20] as FakeMember;
    gone.open = false;
    hub.remove(gone);
    const b = f.deliver(everyone(), { type: 'b', data: 'b' }, undefined, undefined, hub.adds);
    const late3 = member('late3');
    hub.add(late3);
    const c = f.deliver(everyone(), { type: 'b', data: 'c' }, undefined, undefined, hub.adds);
    expect(await a.done).toEqual({ delivered: 29, dropped: 0 });
    expect(await b.done).toEqual({ delivered: 31, dropped: 0 });
    expect(await c.done).toEqual({ delivered: 32, dropped: 0 });
    for (const m of ms) expect(m.got).toEqual(m === gone ? [] : ['a', 'b', 'c']);
    for (const m of late) expect(m.got).toEqual(['b', 'c']);
    expect(late3.got).toEqual(['c']);
  });

  it('unwrittenFrom names the first broadcast that has not reached a member yet', async () => {
    const ms = Array.from({ length: 30 }, (_, i) => member(`m${i}`));
    const f = fanout(10);
    const a = f.deliver(ms, { type: 'b', data: 1 }, undefined, 101, 30);
    const b = f.deliver(ms, { type: 'b', data: 2 }, undefined, 102, 30); // joins at m10
    expect(f.unwrittenFrom(ms[0] as Member)).toBe(102); // has 1, waits for 2
    expect(f.unwrittenFrom(ms[15] as Member)).toBe(101); // waits for both
    await a.done;
    // The cursor is past m10 again: m0–m9 still wait for 2, the rest have everything.
    expect(f.unwrittenFrom(ms[15] as Member)).toBeUndefined();
    await b.done;
    expect(f.unwrittenFrom(ms[0] as Member)).toBeUndefined();
  });

  it(`a sweep carries at most ${SWEEP_MAX_ACTIVE} broadcasts; the next starts a sweep behind it, still in order everywhere`, async () => {
    const ms = Array.from({ length: 20 }, (_, i) => member(`m${i}`));
    const f = fanout(5);
    const n = SWEEP_MAX_ACTIVE + 3;
    const push = (i: number) => f.deliver(ms, { type: 'b', data: i }, undefined, undefined, 20);
    const rs = Array.from({ length: SWEEP_MAX_ACTIVE }, (_, i) => push(i));
    // The sweep is full: one more to everyone is subject to the backlog bound again.
    expect(() => f.admit(20, true)).toThrow(/^the broadcasts waiting here would take/);
    for (let i = SWEEP_MAX_ACTIVE; i < n; i++) rs.push(push(i));
    expect(() => f.admit(20, true)).not.toThrow(); // the second sweep takes joiners
    for (const r of rs) expect((await r.done).delivered).toBe(20);
    const all = Array.from({ length: n }, (_, i) => i);
    for (const m of ms) expect(m.got).toEqual(all);
  });

  it('members whose codec cannot carry a push are skipped and counted as dropped, in sweeps and in label runs', async () => {
    const errors: unknown[] = [];
    const f = fanout(4, (err) => errors.push(err));
    const ms = Array.from({ length: 12 }, (_, i) => member(`m${i}`, i % 2 === 0 ? msgpackCodec : jsonCodec));
    const bytes = new Uint8Array([1, 2, 3]);
    const sweep = f.deliver(ms, { type: 'b', data: bytes }, undefined, undefined, 12);
    const text = f.deliver(ms, { type: 'b', data: 'text' }, undefined, undefined, 12);
    expect(await sweep.done).toEqual({ delivered: 6, dropped: 6 });
    expect(await text.done).toEqual({ delivered: 12, dropped: 0 });
    // A label push (no `adds`): a run, skipping the same way instead of stopping at the first JSON member.
    const run = f.deliver(ms, { type: 'b', data: bytes });
    expect(await run.done).toEqual({ delivered: 6, dropped: 6 });
    for (const [i, m] of ms.entries()) expect(m.got).toEqual(i % 2 === 0 ? [bytes, 'text', bytes] : ['text']);
    expect(errors.map((e) => (e as Error).message)).toEqual([
      'binary data needs the msgpack or proto codec',
      'binary data needs the msgpack or proto codec',
    ]);
  });

  it('through the admin API: broadcasts to everyone sent faster than they are written are all accepted and arrive once each, in one order', async () => {
    const { gateway, tcpUrl } = await startGateway({
      validate: devValidator(),
      fanoutChunk: 10,
      fanoutMaxBacklog: 1,
    });
    const admin = await startAdmin(gateway, { httpPort: 0, grpcPort: false });
    admins.push(admin);
    const got: number[][] = [];
    for (let i = 0; i < 60; i++) {
      const c = await connect(tcpUrl, { token: `u${i}`, reconnect: false });
      clients.push(c);
      const mine: number[] = [];
      got.push(mine);
      c.on('b', (d) => void mine.push(d as number));
    }
    const out = gateway.stats().messagesOut;
    const statuses = await Promise.all(
      Array.from({ length: 30 }, (_, n) =>
        fetch(`http://127.0.0.1:${admin.http.port}/v1/push`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ to: { all: true }, type: 'b', data: n }),
        }).then((r) => r.status),
      ),
    );
    expect(statuses).toEqual(Array(30).fill(200));
    await expect.poll(() => got.every((g) => g.length === 30)).toBe(true);
    const order = got[0] as number[];
    expect([...order].sort((a, b) => a - b)).toEqual(Array.from({ length: 30 }, (_, i) => i));
    for (const g of got) expect(g).toEqual(order);
    // Each push to each connection is counted once, batched or not.
    expect(gateway.stats().messagesOut - out).toBe(30 * 60);
    expect(gateway.stats().fanout.refused).toBe(0);
  });
});
