import { afterEach, describe, expect, it } from 'vitest';
import { devValidator } from '../src/index.js';
import { RawTcp, startGateway, stopAll } from './support/gateway.js';

// Presence is announced to every member of a label: one client must not be able to multiply
// that work, and many joining at once must cost O(N) announcements, not O(N²).
afterEach(stopAll);

const options = {
  validate: devValidator(),
  authorizeSub: () => true,
  presence: /^room:/,
  rateLimit: false as const,
  userRateLimit: false as const,
};

async function member(url: string, user: string, label: string): Promise<RawTcp> {
  const raw = await RawTcp.open(url);
  raw.sendJson({ kind: 'hello', data: { token: user } });
  raw.sendJson({ kind: 'sub', id: 1, data: { labels: [label] } });
  await raw.until((r) => r.json().some((f) => f.kind === 'res' && f.id === 1));
  return raw;
}

const presenceOf = (raw: RawTcp) =>
  raw.json().filter((f) => f.kind === 'push' && String(f.type).startsWith('presence.'));

describe('presence under attack', () => {
  it('a client flapping sub/unsub is rate-limited and its flaps are coalesced away', async () => {
    const { tcpUrl } = await startGateway(options);
    const witness = await member(tcpUrl, 'witness', 'room:a');
    const flapper = await member(tcpUrl, 'flapper', 'room:b');
    await new Promise((r) => setTimeout(r, 300)); // let the joins above be announced
    const before = presenceOf(witness).length;
    for (let i = 0; i < 100; i++) {
      flapper.sendJson({ kind: 'sub', id: 10 + 2 * i, data: { labels: ['room:a'] } });
      flapper.sendJson({ kind: 'unsub', id: 11 + 2 * i, data: { labels: ['room:a'] } });
    }
    await flapper.until(
      (r) => r.json().filter((f) => f.kind === 'res' && (f.id as number) >= 10).length === 200,
    );
    const answers = flapper.json().filter((f) => f.kind === 'res' && (f.id as number) >= 10);
    const limited = answers.filter(
      (f) => (f.error as { code?: string } | undefined)?.code === 'TOO_MANY_REQUESTS',
    );
    expect(limited.length).toBeGreaterThanOrEqual(140); // burst 50 of 200
    await new Promise((r) => setTimeout(r, 400));
    // Each sub was undone by its unsub within the window: at most one join and one leave leak out.
    expect(presenceOf(witness).length - before).toBeLessThanOrEqual(2);
    witness.destroy();
    flapper.destroy();
  });

  it('N members joining at once cost O(N) announcements, each listing who joined', async () => {
    const { gateway, tcpUrl } = await startGateway(options);
    const n = 300;
    const members = await Promise.all(
      Array.from({ length: n }, (_, i) => member(tcpUrl, `u${i}`, 'room:big')),
    );
    await new Promise((r) => setTimeout(r, 500));
    const received = members.map((m) => presenceOf(m));
    const total = received.reduce((sum, r) => sum + r.length, 0);
    // One by one, member i would be told of every later join: n²/2 = 45,000 announcements.
    expect(total).toBeLessThanOrEqual(10 * n);
    // The first member heard of every user who joined after it (batches list them all).
    const heard = new Set<string>(['u0']);
    for (const r of received[0]!) {
      expect(r.type).toBe('presence.join');
      for (const u of (r.data as { users: string[] }).users) heard.add(u);
    }
    expect(heard.size).toBe(n);
    expect(gateway.presence.of('room:big').count).toBe(n);
    for (const m of members) m.destroy();
  });
});
