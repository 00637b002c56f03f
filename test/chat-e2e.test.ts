import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolvePath } from '../src/cli/static.js';
import { connect } from '../src/client/index.js';
import { overflowX, seriousViolations } from './support/axe.js';
import { haveChromium, launchChromium } from './support/chromium.js';
import { noWsProxy } from './support/no-ws-proxy.js';
import { Child } from './support/process.js';

// The chat example end to end: the built CLI serves the page and the SDK, headless Chromium
// runs it (npm test builds first). Debian's chromium (.ci/run installs it).
/** PYLON_SCREENSHOT=1 rewrites docs/chat.png. */
const SCREENSHOT = process.env.PYLON_SCREENSHOT === '1';

let cli: Child;
let pageUrl: string;
let wsUrl: string;

beforeAll(async () => {
  cli = new Child(
    process.execPath,
    [
      'dist/cli/main.js',
      'start',
      '--ws-port',
      '0',
      '--tcp-port',
      '0',
      '--store',
      'memory',
      '--keepalive-interval',
      '1',
      '--keepalive-timeout',
      '3',
    ],
    { PYLON_LOG_LEVEL: 'warn', PYLON_ADMIN_PORT: '-1', PYLON_GRPC_PORT: '-1' },
  );
  pageUrl = (await cli.waitFor(/chat on (http:\/\/\S+)/))[1]!;
  wsUrl = (await cli.waitFor(/WebSocket on (ws:\/\/\S+)/))[1]!;
  await cli.waitFor(/ready/);
});

afterAll(async () => {
  if (!cli) return;
  cli.kill('SIGTERM');
  const timer = setTimeout(() => cli.kill('SIGKILL'), 5000);
  await cli.exited;
  clearTimeout(timer);
});

/** A GET (or other method) with the path sent exactly as given (fetch would normalize it). */
function raw(
  path: string,
  method = 'GET',
): Promise<{ status: number; type: string | undefined; cache: string | undefined; body: string }> {
  const base = new URL(pageUrl);
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: base.hostname, port: base.port, path, method }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        body += c;
      });
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          type: res.headers['content-type'],
          cache: res.headers['cache-control'],
          body,
        }),
      );
    });
    req.on('error', reject);
    req.end();
  });
}

describe('pylon start serves the chat page', () => {
  it('prints the chat URL and serves the page, its files and the browser SDK with their types, no-cache', async () => {
    expect(pageUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
    const page = await raw('/');
    expect(page.status).toBe(200);
    expect(page.type).toBe('text/html; charset=utf-8');
    expect(page.cache).toBe('no-cache');
    expect(page.body).toContain('<script type="module" src="chat.js">');
    expect((await raw('/?name=alice')).status).toBe(200);
    const js = await raw('/chat.js');
    expect([js.status, js.type]).toEqual([200, 'text/javascript; charset=utf-8']);
    expect(js.body).toContain("from '/pylon-client.js'");
    const css = await raw('/style.css');
    expect([css.status, css.type]).toEqual([200, 'text/css; charset=utf-8']);
    const sdk = await raw('/pylon-client.js');
    expect([sdk.status, sdk.type, sdk.cache]).toEqual([200, 'text/javascript; charset=utf-8', 'no-cache']);
    expect(sdk.body).toMatch(/export\s*\{/);
    const head = await raw('/', 'HEAD');
    expect([head.status, head.body]).toEqual([200, '']);
    expect((await raw('/', 'POST')).status).toBe(405);
    expect((await raw('/nothing-here.js')).status).toBe(404);
  });

  it('does not serve anything outside examples/chat', async () => {
    const attempts = [
      '/../package.json',
      '/../../package.json',
      '/..%2fpackage.json',
      '/..%2f..%2fpackage.json',
      '/%2e%2e/package.json',
      '/%2e%2e%2f%2e%2e%2fpackage.json',
      '/..%5c..%5cpackage.json',
      '/....//....//package.json',
      '/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd',
      '/..%2f..%2f..%2f..%2f..%2f..%2fetc%2fpasswd',
      '/chat.js%00.html',
      '/%E0%A4%A',
      '/dist/browser/pylon-client.js',
      '/examples/chat/index.html',
      '//etc/passwd',
    ];
    for (const path of attempts) {
      const res = await raw(path);
      expect({ path, status: res.status }).toEqual({ path, status: 404 });
      expect(res.body).not.toContain('"name": "pylon"');
      expect(res.body).not.toContain('root:');
    }
    // A URL's own dot segments stop at its root: these are the page.
    for (const path of ['/.', '/..', '/../', '/%2e%2e']) {
      const res = await raw(path);
      expect({ path, status: res.status, type: res.type }).toEqual({
        path,
        status: 200,
        type: 'text/html; charset=utf-8',
      });
    }
    // The same check without a server: every path that resolves stays inside the folder.
    const dir = '/pkg/examples/chat';
    const sdk = '/pkg/dist/browser/pylon-client.js';
    expect(resolvePath('/', dir, sdk)).toBe(join(dir, 'index.html'));
    expect(resolvePath('/pylon-client.js', dir, sdk)).toBe(sdk);
    expect(resolvePath('/sub/../style.css', dir, sdk)).toBe(join(dir, 'style.css'));
    for (const path of attempts) {
      const file = resolvePath(path, dir, sdk);
      if (file !== undefined) expect(file.startsWith(`${dir}/`)).toBe(true);
    }
    expect(resolvePath('/..%2f..%2fpackage.json', dir, sdk)).toBeUndefined();
  });
});

describe('chat.send', () => {
  it('answers {id, at} to a member, and refuses anonymous users, outsiders and bad input', async () => {
    const zed = await connect(wsUrl, { token: 'zed', reconnect: false });
    const anon = await connect(wsUrl, { reconnect: false });
    try {
      await expect(zed.subscribe(['admins'])).rejects.toMatchObject({ code: 'FORBIDDEN' });
      await expect(zed.subscribe(['room:Bad Name'])).rejects.toMatchObject({ code: 'FORBIDDEN' });
      await expect(zed.request('chat.send', { room: 'lobby', text: 'hi' })).rejects.toMatchObject({
        code: 'FORBIDDEN',
      });
      expect(await zed.subscribe(['room:lobby'])).toEqual(['room:lobby']);
      const got = new Promise<unknown>((resolve) => zed.on('chat.message', resolve));
      const res = await zed.request<{ id: string; at: number }>('chat.send', { room: 'lobby', text: 'hi' });
      expect(res).toEqual({ id: expect.any(String), at: expect.any(Number) });
      expect(await got).toEqual({ id: res.id, room: 'lobby', user: 'zed', text: 'hi', at: res.at });
      for (const bad of [
        { room: 'lobby', text: '' },
        { room: 'lobby', text: '   ' },
        { room: 'lobby', text: 'x'.repeat(2001) },
        { room: 'Lobby', text: 'hi' },
        { room: 'x'.repeat(33), text: 'hi' },
        { room: 'lobby' },
        'hi',
      ]) {
        await expect(zed.request('chat.send', bad)).rejects.toMatchObject({ code: 'BAD_REQUEST' });
      }
      await zed.request('chat.send', { room: 'lobby', text: 'é'.repeat(2000) });
      await anon.subscribe(['room:lobby']);
      await expect(anon.request('chat.send', { room: 'lobby', text: 'hi' })).rejects.toMatchObject({
        code: 'UNAUTHORIZED',
      });
      expect((await anon.history('room:lobby')).messages.map((m) => m.type)).toEqual([
        'chat.message',
        'chat.message',
      ]);
    } finally {
      await zed.close();
      await anon.close();
    }
  });
});

describe('one-way streams from pylon start', () => {
  it('curl -N reads a room as JSON lines: the chat messages (qos 1) come with their seq', async () => {
    const base = pageUrl.replace(/\/$/, '');
    const curl = spawn('curl', ['-sN', `${base}/stream?token=watcher&labels=room:curl`]);
    let out = '';
    curl.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    const speaker = await connect(wsUrl, { token: 'speaker', reconnect: false });
    try {
      await speaker.subscribe(['room:curl']);
      const lines = () =>
        out
          .split('\n')
          .filter((l) => l.length > 0)
          .map(
            (l) => JSON.parse(l) as { kind: string; type?: string; data?: { text?: string }; seq?: number },
          );
      await expect.poll(() => lines().filter((l) => l.kind === 'res').length, { timeout: 5000 }).toBe(1);
      await speaker.request('chat.send', { room: 'curl', text: 'read by curl' });
      await expect.poll(() => lines().filter((l) => l.type === 'chat.message').length).toBe(1);
      const got = lines();
      expect(got[0]).toMatchObject({ kind: 'welcome', data: { user: 'watcher' } });
      expect(got[1]).toEqual({ kind: 'res', id: 0, data: { labels: ['room:curl'] } });
      const msg = got.find((l) => l.type === 'chat.message');
      expect(msg).toMatchObject({ kind: 'push', data: { text: 'read by curl', user: 'speaker' }, qos: 1 });
      expect(msg?.seq).toBeGreaterThan(0);
    } finally {
      curl.kill();
      await speaker.close();
    }
  });
});

interface Shown {
  id: string | undefined;
  user: string;
  text: string;
  status: string;
  via: string;
}

describe.skipIf(!haveChromium && !process.env.CI)('the chat page in headless Chromium', () => {
  let browser: Browser;
  const contexts: BrowserContext[] = [];

  beforeAll(async () => {
    browser = await launchChromium();
  }, 60_000);

  afterAll(async () => {
    for (const c of contexts) await c.close().catch(() => {});
    await browser?.close();
  });

  const pageErrors: string[] = [];
  /** When each page's WebSockets opened and closed (ms since the epoch). */
  const sockets = new Map<string, Array<{ opened: number; closed: number | undefined }>>();

  /** A user in its own browser context: opens the page, picks a name, lands in #general. */
  async function open(name: string, url = pageUrl): Promise<{ context: BrowserContext; page: Page }> {
    const context = await browser.newContext({ viewport: { width: 760, height: 560 } });
    contexts.push(context);
    const page = await context.newPage();
    page.on('pageerror', (err) => pageErrors.push(`${name}: ${err.message}`));
    const mine: Array<{ opened: number; closed: number | undefined }> = [];
    sockets.set(name, mine);
    page.on('websocket', (ws) => {
      const s = { opened: Date.now(), closed: undefined as number | undefined };
      mine.push(s);
      ws.on('close', () => {
        s.closed = Date.now();
      });
    });
    await page.goto(url);
    await page.fill('#name', name);
    await page.press('#name', 'Enter');
    await page.waitForSelector('#status[data-status="connected"]');
    await page.waitForSelector(`#online li[data-user="${name}"]`);
    await page.waitForSelector('.room.active[data-room="general"]');
    return { context, page };
  }

  async function say(page: Page, text: string): Promise<void> {
    await page.fill('#text', text);
    await page.press('#text', 'Enter');
  }

  it('on a phone (390x844): no horizontal scroll, rooms in a drawer, room names explained, a long emoji and a two-line message whole, no serious accessibility violation', async () => {
    const context = await browser.newContext({ viewport: { width: 390, height: 844 }, bypassCSP: true });
    contexts.push(context);
    const page = await context.newPage();
    page.on('pageerror', (err) => pageErrors.push(`phone: ${err.message}`));
    await page.goto(pageUrl);
    expect(await seriousViolations(page)).toEqual([]);
    await page.fill('#name', 'phoebe');
    await page.press('#name', 'Enter');
    await page.waitForSelector('#status[data-status="connected"]');
    expect(await overflowX(page)).toBe(0);
    expect(await seriousViolations(page)).toEqual([]);
    // The rooms are a drawer: closed (off screen and out of the tab order), then open with its button.
    expect(await page.locator('#sidebar').isVisible()).toBe(false);
    await page.click('#drawer');
    expect(await page.getAttribute('#drawer', 'aria-expanded')).toBe('true');
    await expect.poll(async () => (await page.locator('#sidebar').boundingBox())?.x).toBe(0);
    expect(await page.locator('#sidebar').isVisible()).toBe(true);
    // The focus moved into it.
    await expect
      .poll(() => page.evaluate(() => document.activeElement?.closest('#sidebar') !== null))
      .toBe(true);
    // A name the pattern refuses says what is allowed; "Dev-Ops" is fine (rooms are lower case).
    await page.fill('#join-name', 'bad name!');
    await page.press('#join-name', 'Enter');
    expect(await page.$eval('#join-name', (e) => (e as HTMLInputElement).validationMessage)).toBe(
      'Room names: letters, digits, - and _ (up to 32 characters).',
    );
    await page.fill('#join-name', 'Dev-Ops');
    await page.press('#join-name', 'Enter');
    await page.waitForSelector('.room.active[data-room="dev-ops"]');
    // The leave button is there for touch and keyboard, not only on hover.
    await page.focus('.room[data-room="general"] .room-link');
    await page.keyboard.press('Tab');
    expect(await page.evaluate(() => document.activeElement?.getAttribute('aria-label'))).toBe(
      'leave #general',
    );
    expect(await page.$eval('.room[data-room="general"] .leave', (e) => getComputedStyle(e).opacity)).toBe(
      '1',
    );
    // Choosing a room closes the drawer.
    await page.click('.room[data-room="dev-ops"] .room-link');
    expect(await page.getAttribute('#drawer', 'aria-expanded')).toBe('false');
    // 1,500 emoji (3,000 UTF-16 units) and a two-line text arrive whole.
    const emoji = '🙂'.repeat(1500);
    await say(page, emoji);
    await page.waitForFunction(
      (n) =>
        [...document.querySelectorAll('.bubble .text')].some((b) => [...(b.textContent ?? '')].length === n),
      1500,
    );
    await page.fill('#text', 'line one');
    await page.press('#text', 'Shift+Enter');
    await page.type('#text', 'line two');
    await page.press('#text', 'Enter');
    await page.waitForFunction(() =>
      [...document.querySelectorAll('.bubble .text')].some((b) => b.textContent === 'line one\nline two'),
    );
    expect(await overflowX(page)).toBe(0);
    expect(await seriousViolations(page)).toEqual([]);
  });

  /** The messages of #general as the page holds them. */
  function shown(page: Page): Promise<Shown[]> {
    return page.evaluate(() => {
      const chat = (
        window as unknown as { pylonChat: { state: { rooms: Map<string, { messages: Shown[] }> } } }
      ).pylonChat;
      return (chat.state.rooms.get('general')?.messages ?? []).map((m) => ({
        id: m.id,
        user: m.user,
        text: m.text,
        status: m.status,
        via: m.via,
      }));
    });
  }

  const message = (page: Page, user: string, text: string) =>
    page.locator(`.message[data-user="${user}"]`, { hasText: text });

  it('two users chat, one drops off the network and comes back to what he missed, a third sees the history', async () => {
    const t0 = Date.now();
    const timings: Record<string, number> = {};
    const mark = (name: string) => {
      timings[name] = Date.now() - t0;
    };

    const alice = await open('alice');
    const bob = await open('bob');
    mark('both in #general');
    await alice.page.waitForSelector('#online li[data-user="bob"]');
    await bob.page.waitForSelector('#online li[data-user="alice"]');
    mark('each sees the other online');

    await say(alice.page, 'Hi Bob! The gateway is up.');
    await message(bob.page, 'alice', 'Hi Bob! The gateway is up.').waitFor();
    await message(alice.page, 'alice', 'Hi Bob! The gateway is up.')
      .locator('.tick', { hasText: '✓' })
      .waitFor();
    mark('alice -> bob, tick');
    await say(bob.page, 'Hi Alice, I can see it.');
    await message(alice.page, 'bob', 'Hi Alice, I can see it.').waitFor();
    await message(bob.page, 'bob', 'Hi Alice, I can see it.').locator('.tick', { hasText: '✓' }).waitFor();
    mark('bob -> alice, tick');

    // Bob's network goes away. Chromium keeps the WebSocket open but nothing passes; the
    // server's keepalive (1 s / 3 s) drops him, and his page says it is offline.
    const bobSocket = sockets.get('bob')![0]!;
    await bob.context.setOffline(true);
    await bob.page.waitForSelector('#status[data-status="offline"]', { timeout: 15_000 });
    mark('bob offline (page)');
    await alice.page.waitForSelector('#online li[data-user="bob"]', { state: 'detached', timeout: 20_000 });
    mark('server dropped bob (alice sees him leave)');

    const missed = ['Did you get the release notes?', 'They are in docs/ now.'];
    for (const text of missed) await say(alice.page, text);
    for (const text of missed) {
      await message(alice.page, 'alice', text).locator('.tick', { hasText: '✓' }).waitFor();
    }
    mark('alice sent two while bob was away');
    expect((await shown(bob.page)).map((m) => m.text)).not.toContain(missed[0]);

    const closedWhileOffline = bobSocket.closed !== undefined;
    await bob.context.setOffline(false);
    await bob.page.waitForSelector('#status[data-status="resumed"]', { timeout: 30_000 });
    mark('bob resumed');
    for (const text of missed) await message(bob.page, 'alice', text).waitFor({ timeout: 20_000 });
    mark('bob got what he missed');
    await alice.page.waitForSelector('#online li[data-user="bob"]');
    // Give a duplicate every chance to show up before counting.
    await bob.page.waitForTimeout(1500);
    const bobSees = await shown(bob.page);
    expect(bobSees.map((m) => m.text)).toEqual([
      'Hi Bob! The gateway is up.',
      'Hi Alice, I can see it.',
      ...missed,
    ]);
    expect(bobSees.slice(2).map((m) => m.via)).toEqual(['push', 'push']); // qos 1, from his inbox
    expect(new Set(bobSees.map((m) => m.id)).size).toBe(bobSees.length);
    await expect(message(bob.page, 'alice', missed[0]!).count()).resolves.toBe(1);
    await expect(message(bob.page, 'alice', missed[1]!).count()).resolves.toBe(1);

    await say(bob.page, 'Got both after reconnecting.');
    await message(alice.page, 'bob', 'Got both after reconnecting.').waitFor();
    await message(bob.page, 'bob', 'Got both after reconnecting.')
      .locator('.tick', { hasText: '✓' })
      .waitFor();
    mark('bob -> alice after resume');

    // A third user joins later and sees the room's history.
    const carol = await open('carol');
    const all = [
      'Hi Bob! The gateway is up.',
      'Hi Alice, I can see it.',
      ...missed,
      'Got both after reconnecting.',
    ];
    await message(carol.page, 'bob', 'Got both after reconnecting.').waitFor();
    const carolSees = await shown(carol.page);
    expect(carolSees.map((m) => m.text)).toEqual(all);
    expect(carolSees.every((m) => m.via === 'history')).toBe(true);
    await alice.page.waitForSelector('#online li[data-user="carol"]');
    await bob.page.waitForSelector('#online li[data-user="carol"]');
    mark('carol sees the history');

    // Other rooms: join from the form, unread counts, leave.
    await alice.page.fill('#join-name', 'random');
    await alice.page.press('#join-name', 'Enter');
    await alice.page.waitForSelector('.room.active[data-room="random"]');
    await alice.page.waitForSelector('#room-title:text("# random")');
    await alice.page.click('.room[data-room="general"] .room-link');
    await alice.page.waitForSelector('.room.active[data-room="general"]');
    await bob.page.fill('#join-name', 'random');
    await bob.page.press('#join-name', 'Enter');
    await bob.page.waitForSelector('.room.active[data-room="random"]');
    await bob.page.waitForSelector('#online li[data-user="alice"]');
    await say(bob.page, 'Anyone in random?');
    await alice.page.waitForSelector('.room[data-room="random"] .unread:text("1")');
    await bob.page.hover('.room[data-room="random"]');
    await bob.page.click('.room[data-room="random"] .leave');
    await bob.page.waitForSelector('.room[data-room="random"]', { state: 'detached' });
    await bob.page.waitForSelector('.room.active[data-room="general"]');
    await alice.page.waitForFunction(() => {
      const chat = (
        window as unknown as { pylonChat: { state: { rooms: Map<string, { online: Set<string> }> } } }
      ).pylonChat;
      return chat.state.rooms.get('random')?.online.has('bob') === false;
    });
    mark('rooms: join, unread, leave');

    expect(pageErrors).toEqual([]);
    // The first socket, the reconnect attempts made while offline (the SDK notices the dead link
    // at its heartbeat timeout and retries with backoff), and the one that resumed.
    expect(sockets.get('bob')!.length).toBeGreaterThanOrEqual(2);
    if (SCREENSHOT) await sideBySide(alice.page, bob.page, 'docs/chat.png');
    console.log(
      `chat e2e (ms from start): ${JSON.stringify(timings)}; ` +
        `Chromium closed bob's WebSocket while offline: ${closedWhileOffline}`,
    );
  }, 120_000);

  it('a browser EventSource reads a room from GET /stream and resumes from its last event id', async () => {
    const context = await browser.newContext();
    contexts.push(context);
    const page = await context.newPage();
    page.on('pageerror', (err) => pageErrors.push(`eventsource: ${err.message}`));
    await page.goto(pageUrl);
    await page.evaluate(() => {
      const w = window as unknown as { got: Array<{ id: string; data: unknown }>; es: EventSource };
      w.got = [];
      w.es = new EventSource('/stream?token=reader&labels=room:es');
      w.es.onmessage = (e) => w.got.push({ id: e.lastEventId, data: JSON.parse(e.data) });
    });
    const got = () =>
      page.evaluate(
        () =>
          (
            window as unknown as {
              got: Array<{ id: string; data: { kind: string; type?: string; data?: { text: string } } }>;
            }
          ).got,
      );
    await expect.poll(async () => (await got()).length, { timeout: 5000 }).toBe(2);
    const speaker = await connect(wsUrl, { token: 'es-speaker', reconnect: false });
    try {
      await speaker.subscribe(['room:es']);
      await speaker.request('chat.send', { room: 'es', text: 'one' });
      await expect
        .poll(async () => (await got()).filter((g) => g.data.type === 'chat.message').length)
        .toBe(1);
      const [welcome] = await got();
      expect(welcome?.data.kind).toBe('welcome');
      const first = (await got()).at(-1);
      expect(first?.id).toMatch(/^.+:[1-9]\d*$/);
      await page.evaluate(() => (window as unknown as { es: EventSource }).es.close());
      await speaker.request('chat.send', { room: 'es', text: 'two' });
      // A new EventSource with the last id (what EventSource itself sends when it reconnects).
      await page.evaluate((last) => {
        const w = window as unknown as { got: Array<{ id: string; data: unknown }>; es: EventSource };
        w.got = [];
        w.es = new EventSource(`/stream?token=reader&labels=room:es&lastEventId=${encodeURIComponent(last)}`);
        w.es.onmessage = (e) => w.got.push({ id: e.lastEventId, data: JSON.parse(e.data) });
      }, first?.id as string);
      await expect
        .poll(async () => (await got()).filter((g) => g.data.type === 'chat.message').length)
        .toBe(1);
      await page.waitForTimeout(500);
      const again = (await got()).filter((g) => g.data.type === 'chat.message').map((g) => g.data.data?.text);
      // "one" was acknowledged by the position; only "two" comes.
      expect(again).toEqual(['two']);
      expect((await got())[0]?.data).toMatchObject({ kind: 'welcome', data: { resumed: true } });
    } finally {
      await page.evaluate(() => (window as unknown as { es: EventSource }).es.close());
      await speaker.close();
    }
  });

  it('with WebSocket blocked by a proxy the page goes on over HTTP: two users chat, one drops off the network and resumes, nothing lost or doubled', async () => {
    const proxy = await noWsProxy(pageUrl);
    try {
      const url = pageUrl.replace(new URL(pageUrl).host, proxy.url);
      const dan = await open('dan', url);
      const eve = await open('eve', url);
      expect(proxy.upgrades).toBeGreaterThanOrEqual(2);
      const transport = (page: Page) =>
        page.evaluate(
          () =>
            (window as unknown as { pylonChat: { client: { transport: string } } }).pylonChat.client
              .transport,
        );
      expect(await transport(dan.page)).toBe('http');
      expect(await transport(eve.page)).toBe('http');
      await dan.page.waitForSelector('#online li[data-user="eve"]');
      await say(dan.page, 'Over HTTP, Eve?');
      await message(eve.page, 'dan', 'Over HTTP, Eve?').waitFor();
      await say(eve.page, 'Loud and clear.');
      await message(dan.page, 'eve', 'Loud and clear.').waitFor();
      await message(eve.page, 'eve', 'Loud and clear.').locator('.tick', { hasText: '✓' }).waitFor();

      await eve.context.setOffline(true);
      await eve.page.waitForSelector('#status[data-status="offline"]', { timeout: 15_000 });
      await dan.page.waitForSelector('#online li[data-user="eve"]', { state: 'detached', timeout: 20_000 });
      const missed = ['Eve went away.', 'Two while she was gone.'];
      for (const text of missed) await say(dan.page, text);
      for (const text of missed)
        await message(dan.page, 'dan', text).locator('.tick', { hasText: '✓' }).waitFor();
      await eve.context.setOffline(false);
      await eve.page.waitForSelector('#status[data-status="resumed"]', { timeout: 30_000 });
      for (const text of missed) await message(eve.page, 'dan', text).waitFor({ timeout: 20_000 });
      await eve.page.waitForTimeout(1500);
      const mine = ['Over HTTP, Eve?', 'Loud and clear.', ...missed];
      const eveSees = (await shown(eve.page)).filter((m) => mine.includes(m.text));
      expect(eveSees.map((m) => m.text)).toEqual(mine);
      expect(new Set(eveSees.map((m) => m.id)).size).toBe(eveSees.length);
      expect(await transport(eve.page)).toBe('http');
      // No WebSocket ever opened through the proxy: every upgrade was refused.
      expect(sockets.get('eve')?.every((s) => s.closed !== undefined)).toBe(true);
      expect(pageErrors).toEqual([]);
    } finally {
      await proxy.close();
    }
  }, 120_000);

  it('a restart: a message typed while the server is down arrives once after it is back, each page lists itself; a kick stops the page', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pylon-chat-restart-'));
    const ports = { ws: await freePort(), tcp: await freePort(), admin: await freePort() };
    const start = () =>
      new Child(
        process.execPath,
        [
          'dist/cli/main.js',
          'start',
          '--ws-port',
          String(ports.ws),
          '--tcp-port',
          String(ports.tcp),
          '--admin-port',
          String(ports.admin),
          '--grpc-port',
          '-1',
          '--store',
          `sqlite:${join(dir, 'pylon.db')}`,
          '--keepalive-interval',
          '1',
          '--keepalive-timeout',
          '3',
        ],
        { PYLON_LOG_LEVEL: 'warn' },
      );
    let server = start();
    try {
      const url = (await server.waitFor(/chat on (http:\/\/\S+)/))[1]!;
      await server.waitFor(/ready/);
      const cat = await open('cat', url);
      const dan = await open('dan', url);
      await cat.page.waitForSelector('#online li[data-user="dan"]');

      // Down: cat types a message meanwhile (shown as sending).
      server.kill('SIGKILL');
      await server.exited;
      await cat.page.waitForSelector('#status[data-status="reconnecting"]');
      await say(cat.page, 'typed while the server was down');
      await message(cat.page, 'cat', 'typed while the server was down').locator('.tick.pending').waitFor();

      // Back (a new process: new sessions, the pages join #general again first).
      server = start();
      await server.waitFor(/ready/);
      await message(dan.page, 'cat', 'typed while the server was down').waitFor({ timeout: 30_000 });
      await message(cat.page, 'cat', 'typed while the server was down')
        .locator('.tick', { hasText: '✓' })
        .waitFor({ timeout: 30_000 });
      for (const p of [cat.page, dan.page]) {
        await p.waitForSelector('#online li[data-user="cat"]', { timeout: 15_000 });
        await p.waitForSelector('#online li[data-user="dan"]', { timeout: 15_000 });
      }
      await new Promise((r) => setTimeout(r, 500));
      const danSees = (await shown(dan.page)).filter((m) => m.text === 'typed while the server was down');
      expect(danSees).toHaveLength(1); // once
      expect(
        (await shown(cat.page)).filter((m) => m.text === 'typed while the server was down'),
      ).toHaveLength(1);

      // A kick: the page says why, stops the composer and offers to sign in again.
      const res = await fetch(`http://127.0.0.1:${ports.admin}/v1/kick`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ user: 'dan', reason: 'spam' }),
      });
      expect(res.status).toBe(200);
      await dan.page.waitForSelector('#closed:not([hidden])');
      expect(await dan.page.textContent('#closed')).toMatch(/removed from the chat: spam \(kicked\)/);
      expect(await dan.page.isDisabled('#text')).toBe(true);
      expect(await dan.page.isDisabled('#send')).toBe(true);
      await dan.page.click('#sign-in-again');
      await dan.page.waitForSelector('#login:not([hidden])');
    } finally {
      server.kill('SIGKILL');
      await server.exited;
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);

  /** Screenshots of two pages, side by side in one picture. */
  async function sideBySide(left: Page, right: Page, path: string): Promise<void> {
    for (const p of [left, right]) await p.mouse.move(700, 300); // no hover effects
    const shots = await Promise.all([left.screenshot(), right.screenshot()]);
    const context = await browser.newContext({ viewport: { width: 1580, height: 600 } });
    contexts.push(context);
    const page = await context.newPage();
    const img = (b: Buffer) => `<img src="data:image/png;base64,${b.toString('base64')}">`;
    await page.setContent(
      `<body style="margin:0;padding:20px;background:#d9dde6;display:flex;gap:20px">
        <style>img{border-radius:8px;box-shadow:0 4px 18px rgb(0 0 0 / .18)}</style>
        ${img(shots[0])}${img(shots[1])}</body>`,
    );
    mkdirSync('docs', { recursive: true });
    await page.screenshot({ path });
  }
});

function freePort(): Promise<number> {
  return new Promise((done) => {
    const srv = createServer().listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => done(port));
    });
  });
}
