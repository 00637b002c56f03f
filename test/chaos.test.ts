import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { connect, type PylonClient } from '../src/client/index.js';
import { Child } from './support/process.js';

const USERS = 200;
const PER_USER = 100; // 20,000 qos-1 pushes in all
const DROP_EVERY_MS = 20;

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

const dir = mkdtempSync(join(tmpdir(), 'pylon-chaos-'));
const children: Child[] = [];
afterAll(() => {
  for (const c of children) c.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

describe('chaos: qos 1 with the sqlite store, random client drops and two SIGKILLs of the gateway', () => {
  it('delivers every accepted message to its handler exactly once, in order per user', async () => {
    const port = await freePort();
    const env = { PORT: String(port), DB: join(dir, 'chaos.db') };
    const start = async () => {
      const child = new Child(process.execPath, ['test/support/chaos-server.mjs'], env);
      children.push(child);
      await child.waitFor(/ready/);
      return child;
    };
    let server = await start();
    const url = `tcp://127.0.0.1:${port}`;
    const reconnect = { base: 20, max: 300 };

    // Per user: what its handler saw, in order.
    const seen: number[][] = Array.from({ length: USERS }, () => []);
    const clients: PylonClient[] = [];
    for (let u = 0; u < USERS; u++) {
      const c = await connect(url, { token: `u${u}`, reconnect });
      c.on<{ n: number }>('m', ({ n }) => {
        seen[u]!.push(n);
      });
      clients.push(c);
    }
    const pusher = await connect(url, { token: 'pusher', reconnect, requestTimeout: 5000 });

    const accepted: Array<Set<number>> = Array.from({ length: USERS }, () => new Set());
    const unknown: Array<Set<number>> = Array.from({ length: USERS }, () => new Set());
    let acceptedCount = 0;
    let kills = 0;
    let drops = 0;
    const killAt = [Math.floor((USERS * PER_USER) / 3), Math.floor((2 * USERS * PER_USER) / 3)];
    let restarting: Promise<void> | undefined;

    const dropper = setInterval(() => {
      const c = clients[Math.floor(Math.random() * USERS)]!;
      if (c.connected) {
        drops++;
        c.request('chaos.drop', undefined, { timeout: 1000 }).catch(() => {});
      }
    }, DROP_EVERY_MS);

    // One sequential producer per user: n = 1..PER_USER. A push whose answer never came may or
    // may not have been stored; it is not retried (a retry would be a second message).
    await Promise.all(
      Array.from({ length: USERS }, async (_, u) => {
        for (let n = 1; n <= PER_USER; n++) {
          if (restarting) await restarting;
          try {
            await pusher.request('chaos.push', { user: `u${u}`, n });
            accepted[u]!.add(n);
            acceptedCount++;
          } catch {
            unknown[u]!.add(n);
          }
          if (kills < killAt.length && acceptedCount >= (killAt[kills] as number) && !restarting) {
            kills++;
            restarting = (async () => {
              server.kill('SIGKILL');
              await server.exited;
              server = await start();
              restarting = undefined;
            })();
          }
        }
      }),
    );
    clearInterval(dropper);

    const delivered = () =>
      seen.reduce((sum, list, u) => sum + list.filter((n) => accepted[u]!.has(n)).length, 0);
    await expect.poll(delivered, { timeout: 60_000, interval: 250 }).toBe(acceptedCount);

    let unknownArrived = 0;
    for (let u = 0; u < USERS; u++) {
      const list = seen[u]!;
      // Exactly once, in order: strictly increasing n.
      for (let i = 1; i < list.length; i++)
        expect(list[i]!, `user u${u} order`).toBeGreaterThan(list[i - 1]!);
      for (const n of list) {
        expect(accepted[u]!.has(n) || unknown[u]!.has(n), `user u${u} got n=${n} that was never pushed`).toBe(
          true,
        );
        if (unknown[u]!.has(n)) unknownArrived++;
      }
    }
    const unknownCount = unknown.reduce((s, set) => s + set.size, 0);
    console.log(
      `chaos: ${USERS} clients, ${USERS * PER_USER} pushes: ${acceptedCount} accepted, all delivered exactly once ` +
        `in order; ${unknownCount} unanswered (${unknownArrived} of them arrived, once); ${kills} SIGKILLs, ${drops} client drops`,
    );
    expect(kills).toBe(2);
    expect(acceptedCount).toBeGreaterThan(USERS * PER_USER * 0.9);
    await Promise.all([...clients, pusher].map((c) => c.close()));
  }, 180_000);
});
