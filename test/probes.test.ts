import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { RawTcp } from './support/gateway.js';
import { addressesOf, adminPush, startPylon } from './support/pylon-start.js';

// Probes and drain as an orchestrator drives them: /livez and /readyz, then SIGTERM with a grace
// (unready first, still serving), then every connection moved with 4001, qos 1 losing nothing.

const dir = mkdtempSync(join(tmpdir(), 'pylon-probes-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const CLIENTS = 500;
const GRACE_S = 2;
const STOP_TIMEOUT_S = 10;

interface Peer {
  raw: RawTcp;
  user: string;
  /** ms (Date.now) when the kick frame came, and its code. */
  kickedAt?: number;
  code?: number;
}

async function hello(tcp: string, user: string): Promise<RawTcp> {
  const raw = await RawTcp.open(tcp);
  raw.sendJson({ kind: 'hello', data: { token: user } });
  await raw.until((r) => r.json().some((f) => f.kind === 'welcome'));
  return raw;
}

const status = async (url: string) => (await fetch(url)).status;

it(`SIGTERM under ${CLIENTS} clients: /readyz 503 before any connection closes, new ones still taken in the grace, all moved with 4001 in the bound, no qos-1 push lost`, async () => {
  const store = `sqlite:${join(dir, 'probes.db')}`;
  const args = [
    '--store',
    store,
    '--shutdown-grace',
    String(GRACE_S),
    '--stop-timeout',
    String(STOP_TIMEOUT_S),
  ];
  let cli = startPylon(args);
  const peers: Peer[] = [];
  try {
    const { admin, tcp } = await addressesOf(cli);
    const base = admin.replace(/\/v1$/, '');
    await cli.waitFor(/ready/);
    expect(await status(`${base}/livez`)).toBe(200);
    expect(await status(`${base}/readyz`)).toBe(200);

    for (let i = 0; i < CLIENTS; i += 50) {
      const batch = await Promise.all(
        Array.from({ length: 50 }, (_, k) =>
          hello(tcp, `u${i + k}`).then((raw) => ({ raw, user: `u${i + k}` })),
        ),
      );
      peers.push(...batch);
    }
    for (const p of peers)
      p.raw.socket.on('data', () => {
        if (p.kickedAt !== undefined) return;
        const kick = p.raw.json().find((f) => f.kind === 'kick');
        if (kick) {
          p.kickedAt = Date.now();
          p.code = (kick.data as { code: number }).code;
        }
      });

    // qos-1 pushes throughout, never acked by these clients: all must wait in the store.
    const accepted = new Map<string, Set<string>>();
    let n = 0;
    let pushing = true;
    const pusher = (async () => {
      while (pushing) {
        const user = `u${(n * 37) % CLIENTS}`;
        const text = `m${n++}`;
        const code = await adminPush(admin, { to: { user }, type: 'order', data: text, qos: 1 }).catch(
          () => 0,
        );
        if (code === 200) {
          const set = accepted.get(user) ?? new Set<string>();
          set.add(text);
          accepted.set(user, set);
        }
        await new Promise((r) => setTimeout(r, 10));
      }
    })();
    await new Promise((r) => setTimeout(r, 300));

    // Readiness watched closely from the SIGTERM on.
    let first503: number | undefined;
    let watching = true;
    const watcher = (async () => {
      while (watching) {
        const s = await status(`${base}/readyz`).catch(() => 0);
        if (s === 503 && first503 === undefined) first503 = Date.now();
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    const sigterm = Date.now();
    cli.kill('SIGTERM');
    await cli.waitFor(/not ready; serving/);
    // In the grace: still serving, and a newcomer is taken in.
    const late = await Promise.all(Array.from({ length: 20 }, (_, k) => hello(tcp, `late${k}`)));
    expect(late.every((r) => r.json()[0]?.kind === 'welcome')).toBe(true);
    const exitCode = await cli.exited;
    pushing = false;
    watching = false;
    await Promise.all([pusher, watcher]);
    expect(exitCode).toBe(0);

    const kicked = peers.filter((p) => p.kickedAt !== undefined);
    expect(kicked).toHaveLength(CLIENTS);
    expect(new Set(kicked.map((p) => p.code))).toEqual(new Set([4001]));
    const firstClose = Math.min(...kicked.map((p) => p.kickedAt as number));
    const lastClose = Math.max(...kicked.map((p) => p.kickedAt as number));
    expect(first503).toBeDefined();
    expect(first503 as number).toBeLessThan(firstClose);
    // Nobody was moved before the grace was over, everybody within grace + stop-timeout.
    expect(firstClose - sigterm).toBeGreaterThanOrEqual(GRACE_S * 1000 - 100);
    expect(lastClose - sigterm).toBeLessThan((GRACE_S + STOP_TIMEOUT_S) * 1000);
    for (const r of late) r.destroy();

    // The next run has every accepted qos-1 push waiting for its user.
    cli = startPylon(args);
    const next = await addressesOf(cli);
    let total = 0;
    for (const [user, texts] of accepted) {
      const raw = await hello(next.tcp, user);
      await raw.until((r) => r.json().filter((f) => f.kind === 'push').length >= texts.size);
      const got = new Set(
        raw
          .json()
          .filter((f) => f.kind === 'push')
          .map((f) => f.data as string),
      );
      for (const t of texts) expect(got.has(t)).toBe(true);
      total += texts.size;
      raw.destroy();
    }
    expect(total).toBeGreaterThan(50);
    console.log(
      `drain: ${CLIENTS} clients; /readyz 503 after ${(first503 as number) - sigterm} ms; closes from ${firstClose - sigterm} to ${lastClose - sigterm} ms after SIGTERM; ${total} qos-1 pushes accepted, all waiting in the next run`,
    );
  } finally {
    for (const p of peers) p.raw.destroy();
    cli.kill('SIGKILL');
    await cli.exited;
  }
}, 60_000);
