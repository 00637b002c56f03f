import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AdminServer, startAdmin } from '../src/api/index.js';
import { type CloseEvent, connect, type PylonClient } from '../src/client/index.js';
import type { Gateway } from '../src/index.js';
import { overflowX, seriousViolations } from './support/axe.js';
import { launchChromium } from './support/chromium.js';
import { startGateway, stopAll } from './support/gateway.js';

/**
 * The admin dashboard end to end: a real gateway and admin server (with a key), the page in
 * headless Chromium, a real SDK client. PYLON_SCREENSHOT=1 also makes some traffic and writes
 * docs/dashboard.png.
 */

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const KEY = 'dashboard-e2e-key-0123456789';
const SCREENSHOT = process.env.PYLON_SCREENSHOT === '1';

let browser: Browser;
let admin: AdminServer | undefined;
const clients: PylonClient[] = [];

beforeAll(async () => {
  // The page is served from dist/web: build it from web/ (a copy, fast) so it is never stale.
  execFileSync(process.execPath, [join(root, 'scripts/build-web.mjs')], { stdio: 'ignore' });
  browser = await launchChromium();
});

afterAll(async () => {
  await browser?.close();
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await admin?.close();
  await stopAll();
});

async function until(check: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`condition not met in ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Wait until the text of `selector` matches `pattern` (a regexp source). */
async function waitText(page: Page, selector: string, pattern: string, timeout = 5000): Promise<string> {
  try {
    await page.waitForFunction(
      ([sel, re]) => new RegExp(re as string).test(document.querySelector(sel as string)?.textContent ?? ''),
      [selector, pattern],
      { timeout, polling: 50 },
    );
  } catch (err) {
    const text = await page.locator(selector).first().textContent();
    throw new Error(`${selector}: wanted /${pattern}/, has ${JSON.stringify(text)} (${String(err)})`);
  }
  return (await page.locator(selector).first().textContent()) ?? '';
}

async function client(url: string, user: string): Promise<PylonClient> {
  const c = await connect(url, { token: user, reconnect: false });
  clients.push(c);
  return c;
}

describe('admin dashboard', () => {
  it('logs in, shows live stats, looks a user up, pushes to it, changes its labels and kicks it', async () => {
    const started = Date.now();
    const { gateway, wsUrl, tcpUrl } = await startGateway({
      validate: (token) => ({ user: String(token), labels: ['e2e'] }),
    });
    admin = await startAdmin(gateway, { httpPort: 0, grpcPort: false, keys: [KEY] });
    const base = `http://127.0.0.1:${admin.http.port}`;

    // The page is served without a key; its data is not.
    const html = await fetch(`${base}/`);
    expect(html.status).toBe(200);
    expect(html.headers.get('content-type')).toMatch(/^text\/html/);
    expect(html.headers.get('content-security-policy')).toContain("default-src 'self'");
    expect((await fetch(`${base}/vendor/uPlot.esm.js`)).status).toBe(200);
    expect((await fetch(`${base}/%2e%2e/package.json`)).status).toBe(404);
    expect((await fetch(`${base}/v1/stats/stream`)).status).toBe(401);
    expect((await fetch(`${base}/v1/disconnects`)).status).toBe(401);

    const page = await browser.newPage({ viewport: { width: 1440, height: 1050 } });
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    page.on('console', (m) => {
      // 401s (the first probe without a key, the wrong key) are expected; other failed responses are caught below.
      if (m.type() === 'error' && !/status of 40[14]/.test(m.text())) errors.push(m.text());
    });
    page.on('response', (r) => {
      if (r.status() >= 400 && r.status() !== 401) errors.push(`${r.status()} ${r.url()}`);
    });
    page.on('dialog', (d) => void d.accept()); // "Kick every connection of ...?"
    await page.goto(`${base}/`);

    // Log in: a wrong key is refused, the right one opens the dashboard.
    await page.locator('#login-key').waitFor({ state: 'visible' });
    await page.fill('#login-key', 'not-the-key-0123456789');
    await page.click('#login-form button');
    await waitText(page, '#login-error', 'refused');
    await page.fill('#login-key', KEY);
    await page.click('#login-form button');
    await page.locator('#main').waitFor({ state: 'visible' });
    await waitText(page, '#live', '^live');
    await waitText(page, '#tile-connections', '^0$');
    expect(await page.evaluate(() => sessionStorage.getItem('pylon.adminKey'))).toBe(KEY);

    // A real client appears in the number and in the chart.
    const alice = await client(wsUrl, 'alice');
    const got: unknown[] = [];
    alice.on('notice', (data) => void got.push(data));
    const closed = new Promise<CloseEvent>((resolve) => alice.on('close', resolve));
    const stopTraffic = SCREENSHOT ? await traffic(gateway, tcpUrl, wsUrl) : () => {};
    await waitText(page, '#tile-connections', SCREENSHOT ? '^\\d+$' : '^1$', 4000);
    await page.waitForFunction(
      () =>
        JSON.parse((document.querySelector('#chart-connections') as HTMLElement).dataset.last ?? '[]')[0] >=
        1,
      undefined,
      { timeout: 4000 },
    );
    await waitText(page, '#nodes-body', 'uptime|\\d+s');

    // The user lookup.
    await page.fill('#lookup-user', 'alice');
    await page.click('#lookup-form button');
    await waitText(page, '#user-summary', 'alice online 1 connection$');
    await waitText(page, '#user-body', alice.welcome?.connection as string);

    // Push to the user from the page; the client gets it.
    await page.selectOption('#push-target', 'user');
    expect(await page.inputValue('#push-id')).toBe('alice'); // prefilled by the lookup
    expect(await page.inputValue('#kick-user')).toBe(''); // but never the Kick field
    await page.fill('#push-type', 'notice');
    await page.fill('#push-data', '{"from": "dashboard"}');
    await page.click('#push-form button[type=submit]');
    await waitText(page, '#push-result', 'targeted 1 connection$');
    await until(() => got.length === 1);
    expect(got[0]).toEqual({ from: 'dashboard' });

    // Add a label, then push to it (labels: all).
    await page.fill('#labels-add', 'vip');
    await page.click('#labels-form button');
    await waitText(page, '#labels-result', '\\+vip on 1 connection of alice');
    await waitText(page, '#user-body', 'vip');
    await page.selectOption('#push-target', 'labels');
    await page.fill('#push-labels-all', 'vip, e2e');
    await page.fill('#push-data', '{"to": "vip"}');
    await page.click('#push-form button[type=submit]');
    await waitText(page, '#push-result', 'targeted 1 connection$');
    await until(() => got.length === 2);
    expect(got[1]).toEqual({ to: 'vip' });
    await page.click('#labels-refresh');
    await waitText(page, '#labels-body', 'vip');

    // Kick it: the client sees 4503, the page the disconnect.
    await page.fill('#kick-user', 'alice');
    await page.fill('#kick-reason', 'dashboard e2e');
    await page.click('#kick-form button');
    await waitText(page, '#kick-result', 'kicked 1 connection of alice');
    const e = await closed;
    expect(e.code).toBe(4503);
    expect(e.name).toBe('kicked');
    await waitText(page, '#disconnects-body', 'alice.*4503.*kicked.*dashboard e2e', 4000);
    if (!SCREENSHOT) await waitText(page, '#tile-connections', '^0$', 4000);

    if (SCREENSHOT) {
      await page.fill('#lookup-user', 'user3');
      await page.click('#lookup-form button');
      await waitText(page, '#user-summary', 'user3 online');
      await page.waitForTimeout(2500);
      mkdirSync(join(root, 'docs'), { recursive: true });
      await page.screenshot({ path: join(root, 'docs', 'dashboard.png'), fullPage: true });
    }
    stopTraffic();
    expect(errors).toEqual([]);
    await page.close();
    console.log(`dashboard e2e: ${Date.now() - started} ms`);
  }, 90_000);
});

describe('admin dashboard, other cases', () => {
  it('streams one JSON sample per second as Server-Sent Events, with the key in the header', async () => {
    const { gateway } = await startGateway();
    const server = await startAdmin(gateway, { httpPort: 0, grpcPort: false, keys: [KEY] });
    try {
      const base = `http://127.0.0.1:${server.http.port}`;
      expect((await fetch(`${base}/v1/stats/stream?key=${KEY}`)).status).toBe(401); // never in the URL
      const abort = new AbortController();
      const res = await fetch(`${base}/v1/stats/stream`, {
        headers: { authorization: `Bearer ${KEY}` },
        signal: abort.signal,
      });
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
      const reader = (res.body as ReadableStream<Uint8Array>).getReader();
      const decoder = new TextDecoder();
      let text = '';
      const t0 = Date.now();
      while ((text.match(/\n\n/g) ?? []).length < 2) {
        const { value, done } = await reader.read();
        if (done) throw new Error(`the stream ended: ${text}`);
        text += decoder.decode(value, { stream: true });
      }
      expect(Date.now() - t0).toBeGreaterThan(700); // the first at once, the next a second later
      abort.abort();
      const events = text.split('\n\n').filter(Boolean);
      expect(events[0]).toMatch(/^data: \{/);
      const sample = JSON.parse((events[1] as string).slice(6));
      expect(sample).toMatchObject({
        t: expect.any(Number),
        stats: { connections: 0, nodes: [expect.objectContaining({ node: expect.any(String) })] },
        rates: { messagesIn: 0, messagesOut: 0, pushesDropped: 0, redelivered: 0 },
        lag: { p50: expect.any(Number), p99: expect.any(Number), max: expect.any(Number) },
        disconnects: [],
      });
    } finally {
      await server.close();
    }
  });

  it("a new stream's first sample brings the last minutes, so the charts of a page opened (or reloaded) later are not empty", async () => {
    const { gateway, wsUrl } = await startGateway({ validate: (token) => ({ user: String(token) }) });
    const server = await startAdmin(gateway, { httpPort: 0, grpcPort: false });
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    try {
      await client(wsUrl, 'hist');
      // Nobody watches for 4 s: the server samples anyway.
      await new Promise((r) => setTimeout(r, 4200));
      const base = `http://127.0.0.1:${server.http.port}`;
      const abort = new AbortController();
      const res = await fetch(`${base}/v1/stats/stream`, { signal: abort.signal });
      const reader = (res.body as ReadableStream<Uint8Array>).getReader();
      let text = '';
      while (!text.includes('\n\n')) text += new TextDecoder().decode((await reader.read()).value);
      abort.abort();
      const first = JSON.parse(text.slice(6, text.indexOf('\n\n')));
      expect(first.history.length).toBeGreaterThanOrEqual(3);
      expect(first.history.at(-1)).toMatchObject({
        stats: { connections: 1, users: 1 },
        rates: expect.any(Object),
      });
      // The page draws them at once: more points than its own samples could give it in the time.
      await page.goto(`${base}/`);
      await page.locator('#main').waitFor({ state: 'visible' });
      await page.waitForFunction(
        () => Number((document.querySelector('#chart-connections') as HTMLElement).dataset.points) >= 3,
        undefined,
        { timeout: 900 },
      );
      await page.reload();
      await page.waitForFunction(
        () => Number((document.querySelector('#chart-connections') as HTMLElement).dataset.points) >= 4,
        undefined,
        { timeout: 900 },
      );
      // A few seconds of points: the time axis labels each second once at most (no repeats).
      const ticks = await page.evaluate(() =>
        [...document.querySelectorAll<HTMLElement>('[id^=chart-]')].map((c) => c.dataset.ticks ?? ''),
      );
      expect(ticks).toHaveLength(4);
      for (const t of ticks) {
        const labels = t.split('|');
        expect(labels.length, t).toBeGreaterThanOrEqual(2);
        expect(new Set(labels).size, t).toBe(labels.length);
      }
    } finally {
      await page.close();
      await server.close();
    }
  });

  it('lists connections filtered by user, label and transport, and kicks one', async () => {
    const { gateway, wsUrl, tcpUrl } = await startGateway({ validate: (token) => ({ user: String(token) }) });
    const server = await startAdmin(gateway, { httpPort: 0, grpcPort: false });
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.on('dialog', (d) => void d.accept()); // "Kick connection …?"
    try {
      const carol = [await client(wsUrl, 'carol'), await client(tcpUrl, 'carol')];
      for (let i = 0; i < 3; i++) await client(tcpUrl, `other${i}`);
      gateway.connectionsOf('carol')[0]?.join('room:vip');
      await page.goto(`http://127.0.0.1:${server.http.port}/`);
      await page.locator('#main').waitFor({ state: 'visible' });
      await page.click('#conns-form button[type=submit]');
      await waitText(page, '#conns-result', '^5 shown$');
      await page.fill('#conns-user', 'carol');
      await page.click('#conns-form button[type=submit]');
      await waitText(page, '#conns-result', '^2 shown$');
      expect(await page.locator('#conns-body tr').count()).toBe(2);
      await page.selectOption('#conns-transport', 'tcp');
      await page.click('#conns-form button[type=submit]');
      await waitText(page, '#conns-result', '^1 shown$');
      expect(await page.locator('#conns-body tr td').nth(2).textContent()).toBe('tcp');
      await page.selectOption('#conns-transport', '');
      await page.fill('#conns-user', '');
      await page.fill('#conns-label', 'room:vip');
      await page.click('#conns-form button[type=submit]');
      // The transport filter before also showed one row: wait for this answer's row, not the count.
      await expect.poll(() => page.locator('#conns-body tr td').nth(5).textContent()).toBe('room:vip');
      await waitText(page, '#conns-result', '^1 shown$');
      // Kick that one: its client is told 4503, the list no longer has it.
      const closed = new Promise<number>((resolve) => carol[0]?.on('close', (e) => resolve(e.code)));
      await page.click('#conns-body button[data-kick]');
      expect(await closed).toBe(4503);
      await waitText(page, '#conns-body', 'no open connection matches');
      expect(gateway.connectionsOf('carol')).toHaveLength(1);
      // The filters are labelled inputs (found by their label, as a screen reader names them).
      expect(await page.getByLabel('Address').count()).toBe(1);
    } finally {
      await page.close();
      await server.close();
    }
  });

  it('a label of the top list opens its view: members on this node, and a push to it from the form', async () => {
    const { gateway, wsUrl } = await startGateway({
      validate: (token) => ({ user: String(token), labels: ['news'] }),
      presence: ['news'],
      history: [{ match: 'news', size: 10 }],
    });
    const server = await startAdmin(gateway, { httpPort: 0, grpcPort: false });
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    try {
      const readers = [await client(wsUrl, 'rita'), await client(wsUrl, 'rolf'), await client(wsUrl, 'rita')];
      const got: unknown[] = [];
      for (const r of readers) r.on('flash', (d) => void got.push(d));
      await gateway.push({ labels: { all: ['news'] } }, 'headline', { title: '<b>Rates</b> hold' });
      await gateway.push({ labels: { all: ['news'] } }, 'headline', { title: 'Second' });
      await page.goto(`http://127.0.0.1:${server.http.port}/`);
      await page.locator('#main').waitFor({ state: 'visible' });
      await page.click('#labels-refresh');
      await page.click('#labels-body button[data-label="news"]');
      await waitText(page, '#label-view-note', '^3 connections on this node$');
      expect(await page.locator('#label-view-body tr').count()).toBe(3);
      expect((await page.locator('#label-view-body').textContent()) ?? '').toMatch(/rita/);
      // Presence counts a user once; the history shows the last pushes, newest first, as text.
      await waitText(page, '#label-view-presence', '^2 users present on this node: rita, rolf$');
      const history = page.locator('#label-view-history tr');
      expect(await history.count()).toBe(2);
      expect(await history.nth(0).locator('td').nth(0).textContent()).toBe('2');
      expect(await history.nth(1).locator('td').nth(3).textContent()).toBe('{"title":"<b>Rates</b> hold"}');
      expect(await page.locator('#label-view-history b').count()).toBe(0);
      await page.click('#label-view-push');
      expect(await page.inputValue('#push-target')).toBe('labels');
      expect(await page.inputValue('#push-labels-all')).toBe('news');
      await page.fill('#push-type', 'flash');
      await page.fill('#push-data', '{"n": 1}');
      await page.click('#push-form button[type=submit]');
      await until(() => got.length === 3);
      // The nodes table shows the process's memory.
      await waitText(page, '#nodes-body', 'MiB');
    } finally {
      await page.close();
      await server.close();
    }
  });

  it('a live tail of a label and of a user shows their pushes and what the user sends; off unless enabled; 16 at once', async () => {
    const { gateway, wsUrl } = await startGateway({
      validate: (token) => ({ user: String(token), labels: ['desk'] }),
    });
    gateway.handle('note', () => {});
    const server = await startAdmin(gateway, { httpPort: 0, grpcPort: false, tail: true });
    const off = await startAdmin(gateway, { httpPort: 0, grpcPort: false });
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    try {
      const tina = await client(wsUrl, 'tina');
      await page.goto(`http://127.0.0.1:${server.http.port}/`);
      await page.locator('#main').waitFor({ state: 'visible' });
      await page.selectOption('#tail-kind', 'label');
      await page.fill('#tail-name', 'desk');
      await page.click('#tail-start');
      await waitText(page, '#tail-result', '^tailing label desk$');
      await gateway.push({ labels: { all: ['desk'] } }, 'ticket', { id: 7 });
      await waitText(page, '#tail-log', 'push ticket \\(qos 0\\) to labels all desk');
      expect((await page.locator('#tail-log').textContent()) ?? '').toContain('{"id":7}');
      await page.selectOption('#tail-kind', 'user');
      await page.fill('#tail-name', 'tina');
      await page.click('#tail-start');
      await waitText(page, '#tail-result', '^tailing user tina$');
      tina.send('note', { text: 'hello' });
      await waitText(page, '#tail-log', 'msg note from tina');
      await page.click('#tail-stop');
      await waitText(page, '#tail-result', '^stopped$');
      // Off unless enabled: the page says how to turn it on.
      await page.goto(`http://127.0.0.1:${off.http.port}/`);
      await page.locator('#main').waitFor({ state: 'visible' });
      await page.fill('#tail-name', 'tina');
      await page.click('#tail-start');
      await waitText(page, '#tail-result', 'the live tail is off on this server');
      // 16 taps per process: the 17th is refused with 429.
      const aborts = Array.from({ length: 16 }, () => new AbortController());
      const base = `http://127.0.0.1:${server.http.port}/v1/tail?user=x`;
      await Promise.all(aborts.map((a) => fetch(base, { signal: a.signal })));
      expect((await fetch(base)).status).toBe(429);
      for (const a of aborts) a.abort();
      expect((await fetch(`http://127.0.0.1:${server.http.port}/v1/tail`)).status).toBe(400);
    } finally {
      await page.close();
      await server.close();
      await off.close();
    }
  });

  it('at 1280 and at 390 px wide: no horizontal scroll, no serious or critical accessibility violation', async () => {
    const { gateway, wsUrl } = await startGateway({
      validate: (token) => ({ user: String(token), labels: ['a11y'] }),
      history: [{ match: 'a11y', size: 5 }],
    });
    const server = await startAdmin(gateway, { httpPort: 0, grpcPort: false, keys: [KEY] });
    await client(wsUrl, 'dora');
    await gateway.push({ labels: { all: ['a11y'] } }, 'wide', { text: 'w'.repeat(400) });
    for (const width of [1280, 390]) {
      const context = await browser.newContext({ viewport: { width, height: 844 }, bypassCSP: true });
      const page = await context.newPage();
      try {
        await page.goto(`http://127.0.0.1:${server.http.port}/`);
        await page.locator('#login-key').waitFor({ state: 'visible' });
        expect(await seriousViolations(page), `login at ${width}`).toEqual([]);
        await page.fill('#login-key', 'not-the-key-0123456789');
        await page.click('#login-form button');
        await waitText(page, '#login-error', 'refused');
        expect(await page.getAttribute('#login-error', 'role')).toBe('alert');
        await page.fill('#login-key', KEY);
        await page.click('#login-form button');
        await waitText(page, '#tile-connections', '^1$');
        await page.fill('#lookup-user', 'dora');
        await page.click('#lookup-form button');
        await page.click('#conns-form button[type=submit]');
        await waitText(page, '#conns-result', '^1 shown$');
        // The label view too, with a long history entry.
        await page.click('#labels-refresh');
        await page.click('#labels-body button[data-label="a11y"]');
        await waitText(page, '#label-view-history', 'wide');
        expect(await overflowX(page), `overflow at ${width}`).toBe(0);
        expect(await seriousViolations(page), `dashboard at ${width}`).toEqual([]);
      } finally {
        await context.close();
      }
    }
    await server.close();
  });

  it('works without a login when the admin server has no keys (loopback)', async () => {
    const { gateway, wsUrl } = await startGateway({ validate: (token) => ({ user: String(token) }) });
    const server = await startAdmin(gateway, { httpPort: 0, grpcPort: false });
    const page = await browser.newPage();
    try {
      await page.goto(`http://127.0.0.1:${server.http.port}/`);
      await page.locator('#main').waitFor({ state: 'visible' });
      expect(await page.locator('#login').isHidden()).toBe(true);
      expect(await page.locator('#logout').isHidden()).toBe(true);
      await client(wsUrl, 'bob');
      await waitText(page, '#tile-connections', '^1$', 4000);
    } finally {
      await page.close();
      await server.close();
    }
  });
});

/**
 * Screenshot mode only: clients connecting over ~10 s with labels, requests and label pushes
 * going on until the returned function is called, and a couple of normal disconnects.
 */
async function traffic(gateway: Gateway, tcpUrl: string, wsUrl: string): Promise<() => void> {
  gateway.handle('echo', (data) => data);
  const users: PylonClient[] = [];
  let load = 4;
  const timer = setInterval(() => {
    for (const c of users) for (let k = 0; k < load; k++) c.request('echo', { k }).catch(() => {});
    gateway.push({ labels: { any: ['room_1', 'room_2'], not: ['muted'] } }, 'news', { load }).catch(() => {});
  }, 100);
  for (let i = 0; i < 24; i++) {
    users.push(await client(i % 2 ? tcpUrl : wsUrl, `user${i}`));
    gateway.updateUserLabels(`user${i}`, { add: [`room_${i % 4}`, i % 3 ? 'version_v2' : 'version_v1'] });
    if (i % 8 === 7) gateway.updateUserLabels(`user${i}`, { add: ['muted'] });
    load = 2 + (i % 7);
    await new Promise((r) => setTimeout(r, 400));
  }
  for (const c of users.splice(20, 2)) await c.close(); // a couple of normal disconnects
  return () => clearInterval(timer);
}
