import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { connect, type PylonClient } from '../src/client/index.js';
import { Child } from './support/process.js';

// `pylon start --workers 2` (the built CLI) with no Redis: the workers share the ports and reach
// each other through the primary process.
const dir = mkdtempSync(join(tmpdir(), 'pylon-workers-'));
const children: Child[] = [];
const clients: PylonClient[] = [];
afterAll(async () => {
  await Promise.all(clients.map((c) => c.close().catch(() => {})));
  for (const c of children) c.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

describe('pylon start --workers 2 (no Redis)', () => {
  it('delivers admin pushes to clients on either worker; stats show each worker', async () => {
    const cli = new Child(
      process.execPath,
      [
        'dist/cli/main.js',
        'start',
        '--workers',
        '2',
        '--ws-port',
        '0',
        '--tcp-port',
        '0',
        '--admin-port',
        '0',
        '--grpc-port',
        '-1',
        '--store',
        `sqlite:${join(dir, 'pylon.db')}`,
      ],
      { PYLON_LOG_LEVEL: 'warn' },
    );
    children.push(cli);
    await cli.waitFor(/ready \(2 workers/, 20_000);
    const tcp = (await cli.waitFor(/TCP on (tcp:\/\/\S+)/))[1]!;
    const admin = (await cli.waitFor(/admin API on (http:\/\/\S+)\/v1\//))[1]!;
    const api = async (path: string, body?: unknown) => {
      const res = await fetch(`${admin}${path}`, {
        method: body === undefined ? 'GET' : 'POST',
        headers: body === undefined ? {} : { 'content-type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      expect(res.status, path).toBe(200);
      return (await res.json()) as Record<string, unknown>;
    };

    // Connect until both workers hold clients (connection ids start with the worker's node id).
    const got = new Map<string, unknown[]>();
    const prefixes = new Set<string>();
    for (let i = 0; i < 20 && (prefixes.size < 2 || i < 6); i++) {
      const user = `w${i}`;
      const c = await connect(tcp, { token: user, reconnect: false });
      clients.push(c);
      prefixes.add(String(c.welcome?.connection).split('-')[0] as string);
      const list: unknown[] = [];
      got.set(user, list);
      c.on('note', (data) => {
        list.push(data);
      });
    }
    expect(prefixes.size).toBe(2);
    const users = [...got.keys()];

    // Each worker reports itself; the registry (held by the primary) sees every user.
    await expect
      .poll(async () => ((await api('/v1/stats')).cluster as { online: number }).online)
      .toBe(users.length);
    const stats = await api('/v1/stats');
    expect((stats.nodes as Array<{ id: string }>).map((n) => n.id).sort()).toEqual([...prefixes].sort());

    // To everyone, and to each user (whichever worker answers the admin request, half the users
    // are on the other one), qos 0 and qos 1.
    await api('/v1/push', { to: { all: true }, type: 'note', data: 'all' });
    for (const u of users) await api('/v1/push', { to: { user: u }, type: 'note', data: `to ${u}` });
    for (const u of users) await api('/v1/push', { to: { user: u }, type: 'note', data: `q1 ${u}`, qos: 1 });
    await expect.poll(() => users.every((u) => got.get(u)?.length === 3)).toBe(true);
    for (const u of users) expect(got.get(u)).toEqual(['all', `to ${u}`, `q1 ${u}`]);

    const dispatch = await api('/v1/dispatch?user=w0');
    expect((dispatch.nodes as Array<{ tcpUrl: string }>)[0]?.tcpUrl).toBe(tcp);

    cli.kill('SIGTERM');
    expect(await cli.exited).toBe(0);
    await cli.waitFor(/stopped/);
  }, 40_000);
});
