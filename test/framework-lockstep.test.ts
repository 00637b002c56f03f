import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type PylonClient } from '../src/client/index.js';

// examples/lockstep/server.js runs from dist/ (npm test builds first).
const root = fileURLToPath(new URL('..', import.meta.url));
const built =
  existsSync(`${root}dist/framework/index.js`) && existsSync(`${root}dist/browser/pylon-client.js`);
if (!built) console.warn('test/framework-lockstep.test.ts: skipped, run `npm run build` first');

interface Step {
  frame: number;
  events: Array<{ user: string; join?: true; leave?: true }>;
  commands: Array<[string, { dx: number; dy: number }]>;
}

let server: ChildProcess | undefined;
let port = 0;
const clients: PylonClient[] = [];

beforeAll(async () => {
  if (!built) return;
  server = spawn(process.execPath, ['examples/lockstep/server.js'], {
    cwd: root,
    env: { ...process.env, PORT: '0', TCP_PORT: '0' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  port = await new Promise<number>((resolve, reject) => {
    let out = '';
    server!.stdout!.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      const m = /lockstep: http:\/\/127\.0\.0\.1:(\d+)\//.exec(out);
      if (m) resolve(Number(m[1]));
    });
    server!.once('exit', (code) => reject(new Error(`lockstep server exited (${code}): ${out}`)));
  });
});

afterAll(async () => {
  await Promise.all(clients.map((c) => c.close()));
  server?.kill('SIGTERM');
});

async function player(name: string): Promise<{ client: PylonClient; steps: Step[] }> {
  const client = await connect(`ws://127.0.0.1:${port}/ws`, { token: name, reconnect: false });
  clients.push(client);
  const steps: Step[] = [];
  client.on<Step>('lockstep.step', (s) => {
    steps.push(s);
  });
  return { client, steps };
}

async function until(pred: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error('condition not met');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe.skipIf(!built)('lockstep example', () => {
  it('serves the page, its modules and the browser SDK', async () => {
    for (const path of ['/', '/game.js', '/sim.js', '/pylon-client.js']) {
      const res = await fetch(`http://127.0.0.1:${port}${path}`);
      expect(res.status, path).toBe(200);
      await res.arrayBuffer();
    }
    expect((await fetch(`http://127.0.0.1:${port}/nope`)).status).toBe(404);
  });

  it('broadcasts a step every 100 ms with each player’s latest command; catch-up, time, replaced logins', async () => {
    const alice = await player('alice');
    const t0 = Date.now();
    const time = await alice.client.request<{ server: number; client: number }>('lockstep.time', {
      client: t0,
    });
    expect(time.client).toBe(t0);
    expect(Math.abs(time.server - Date.now())).toBeLessThan(1000);

    expect(await alice.client.request('lockstep.join', { room: 'r1' })).toMatchObject({
      room: 'r1',
      you: 'alice',
    });
    alice.client.send('lockstep.cmd', { dx: 1, dy: 0 });
    alice.client.send('lockstep.cmd', { dx: 0, dy: -5 }); // the latest of the step wins, clamped
    await until(() => alice.steps.some((s) => s.commands.length > 0));
    const moved = alice.steps.find((s) => s.commands.length > 0)!;
    expect(moved.commands).toEqual([['alice', { dx: 0, dy: -1 }]]);
    expect(alice.steps[0]!.events).toEqual([{ user: 'alice', join: true }]);
    for (let i = 1; i < alice.steps.length; i++)
      expect(alice.steps[i]!.frame).toBe(alice.steps[i - 1]!.frame + 1);

    const bob = await player('bob');
    await bob.client.request('lockstep.join', { room: 'r1' });
    const caught = await bob.client.request<{ steps: Step[] }>('lockstep.catchup', { from: 1 });
    expect(caught.steps[0]!.frame).toBe(1);
    expect(caught.steps[0]!.events).toEqual([{ user: 'alice', join: true }]);
    await until(() => bob.steps.some((s) => s.events.some((e) => e.user === 'bob' && e.join)));

    // The same name again: the older login is kicked (duplicateLogin 'replace'), the square stays.
    const closed = new Promise<{ name: string; willReconnect: boolean }>((r) => alice.client.on('close', r));
    const alice2 = await player('alice');
    expect(await closed).toMatchObject({ name: 'replaced', willReconnect: false });
    await alice2.client.request('lockstep.join', { room: 'r1' });
    const mark = bob.steps.length;
    await until(() => bob.steps.length >= mark + 3);

    await bob.client.close();
    await until(() => alice2.steps.some((s) => s.events.some((e) => e.user === 'bob' && e.leave)));
    const all = [...caught.steps, ...bob.steps, ...alice2.steps];
    expect(all.some((s) => s.events.some((e) => e.user === 'alice' && e.leave))).toBe(false);
  });
});

// The page itself, in headless Chromium (Debian's, as test/chat-e2e.test.ts uses).
const CHROMIUM = process.env.PYLON_CHROMIUM ?? '/usr/bin/chromium';

describe.skipIf(!built || !existsSync(CHROMIUM))('lockstep page in a browser', () => {
  it('two pages replay the same steps: arrow keys move a square on both', async () => {
    const { chromium } = await import('playwright-core');
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
    try {
      const open = async (name: string) => {
        const page = await browser.newPage();
        const errors: string[] = [];
        page.on('pageerror', (e) => errors.push(e.message));
        await page.goto(`http://127.0.0.1:${port}/?name=${name}&room=e2e`);
        await page.waitForFunction(() => (globalThis as { lockstep?: unknown }).lockstep !== undefined);
        return { page, errors };
      };
      type Snap = { frame: number; players: Record<string, { x: number; y: number }> };
      const snap = (p: { page: import('playwright-core').Page }) =>
        p.page.evaluate(
          () => (globalThis as unknown as { lockstep: { state: Snap } }).lockstep.state,
        ) as Promise<Snap>;
      const carol = await open('carol');
      const dave = await open('dave');
      await dave.page.waitForFunction(
        () =>
          Object.keys((globalThis as unknown as { lockstep: { state: Snap } }).lockstep.state.players)
            .length === 2,
      );
      const before = (await snap(dave)).players.carol!.x;
      await carol.page.keyboard.down('ArrowRight');
      await new Promise((r) => setTimeout(r, 600));
      await carol.page.keyboard.up('ArrowRight');
      await new Promise((r) => setTimeout(r, 400)); // a few quiet steps: positions settle
      const [a, b] = [await snap(carol), await snap(dave)];
      expect(a.players.carol!.x).toBeGreaterThan(before);
      expect(a.players).toEqual(b.players);
      expect(carol.errors).toEqual([]);
      expect(dave.errors).toEqual([]);
    } finally {
      await browser.close();
    }
  });
});
