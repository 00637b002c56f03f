import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { devValidator } from '../src/index.js';
import { haveChromium, launchChromium } from './support/chromium.js';
import { startGateway, stopAll } from './support/gateway.js';

// permessage-deflate against the client people use: headless Chromium (Debian's chromium).

describe.skipIf(!haveChromium)('WebSocket compression with Chromium', () => {
  let browser: Browser;
  beforeAll(async () => {
    browser = await launchChromium();
  }, 60_000);
  afterAll(async () => {
    await browser?.close();
    await stopAll();
  });

  it('negotiates with the browser; its compressed requests are read and compressed pushes arrive whole', async () => {
    const { gateway, wsUrl } = await startGateway({
      validate: devValidator(),
      ws: {
        port: 0,
        compression: true,
        httpHandler: (_req, res) =>
          res.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><title>t</title>'),
      },
    });
    gateway.handle('echo', (d) => d);
    gateway.on('connect', (conn) => {
      conn.send('big', { text: 'pylon push '.repeat(1000) });
    });
    const page = await browser.newPage();
    await page.goto(wsUrl.replace('ws://', 'http://').replace('/ws', '/'));
    const result = await page.evaluate(async (url) => {
      const ws = new WebSocket(`${url}?token=browser`, 'pylon.v1.json');
      const frames: Array<{ kind: string; id?: number; type?: string; data?: unknown }> = [];
      ws.onmessage = (e) => frames.push(JSON.parse(e.data as string));
      await new Promise((r) => {
        ws.onopen = r;
      });
      for (let i = 1; i <= 5; i++)
        ws.send(
          JSON.stringify({
            kind: 'req',
            id: i,
            type: 'echo',
            data: { i, text: 'browser request '.repeat(200) },
          }),
        );
      const t0 = Date.now();
      while (frames.filter((f) => f.kind === 'res').length < 5 && Date.now() - t0 < 5000)
        await new Promise((r) => setTimeout(r, 20));
      return { extensions: ws.extensions, frames };
    }, wsUrl);
    expect(result.extensions).toBe(
      'permessage-deflate; server_no_context_takeover; client_max_window_bits=10',
    );
    const answers = result.frames.filter((f) => f.kind === 'res');
    expect(answers.map((f) => (f.data as { i: number }).i)).toEqual([1, 2, 3, 4, 5]);
    expect((answers[4] as { data: { text: string } }).data.text).toHaveLength(16 * 200);
    const big = result.frames.find((f) => f.type === 'big') as { data: { text: string } };
    expect(big.data.text).toHaveLength(11_000);
    await page.close();
  }, 30_000);
});
