import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { type AlertingLogger, alertingLogger } from '../src/api/alerts.js';
import type { Logger } from '../src/index.js';

// biome-ignore lint/suspicious/noExplicitAny: JSON bodies checked field by field
type Body = any;

const servers = new Set<Server>();
const loggers = new Set<AlertingLogger>();

afterEach(async () => {
  await Promise.all([...loggers].map((l) => l.close()));
  loggers.clear();
  for (const s of servers) {
    s.closeAllConnections();
    s.close();
  }
  servers.clear();
});

/** An alert webhook on a free port; `status` 0 never answers. */
async function webhook(status = 200) {
  const bodies: Body[] = [];
  const server = createServer((req, res: ServerResponse) => {
    let raw = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => {
      raw += c;
    });
    req.on('end', () => {
      bodies.push(JSON.parse(raw));
      if (status !== 0) res.writeHead(status).end();
    });
  });
  servers.add(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`, bodies };
}

function captureLogger() {
  const lines: Array<{ level: string; obj: object; msg: string | undefined }> = [];
  const at = (level: string) => (obj: object, msg?: string) => {
    lines.push({ level, obj, msg });
  };
  const logger: Logger = { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
  return { logger, lines };
}

function wrap(base: Logger, options: Parameters<typeof alertingLogger>[1]): AlertingLogger {
  const l = alertingLogger(base, options);
  loggers.add(l);
  return l;
}

async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`condition not met in ${ms} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('alertingLogger', () => {
  it('passes everything to the base logger and posts warn and error, not debug or info', async () => {
    const hook = await webhook();
    const { logger: base, lines } = captureLogger();
    const log = wrap(base, { url: hook.url });
    const err = new Error('disk full');
    log.debug({ a: 1 }, 'debug line');
    log.info({ a: 2 }, 'info line');
    log.warn({ conn: 'c1', buffered: 99 }, 'slow consumer');
    log.error({ err, conn: 'c2', type: 'order' }, 'handler failed');
    expect(lines.map((l) => [l.level, l.msg])).toEqual([
      ['debug', 'debug line'],
      ['info', 'info line'],
      ['warn', 'slow consumer'],
      ['error', 'handler failed'],
    ]);
    expect(lines[3]?.obj).toEqual({ err, conn: 'c2', type: 'order' }); // the base gets the object as is
    await until(() => log.stats().sent === 2);
    expect(hook.bodies.length).toBe(2);
    const [warn, error] = [...hook.bodies].sort((a: Body, b: Body) => (a.level < b.level ? 1 : -1));
    expect(warn).toMatchObject({
      level: 'warn',
      msg: 'slow consumer',
      conn: 'c1',
      buffered: 99,
      source: 'pylon',
    });
    expect(error).toMatchObject({ level: 'error', msg: 'handler failed', conn: 'c2', type: 'order' });
    expect(error.err).toMatchObject({ type: 'Error', message: 'disk full' });
    expect(error.err.stack).toContain('disk full');
    expect(error.text).toContain('handler failed');
    expect(error.text).toContain('disk full');
    expect(Number.isNaN(Date.parse(error.time))).toBe(false);
    expect(log.stats()).toMatchObject({ sent: 2, failed: 0, suppressed: 0, inFlight: 0 });
  });

  it('posts only errors with minLevel "error"', async () => {
    const hook = await webhook();
    const log = wrap(captureLogger().logger, { url: hook.url, minLevel: 'error' });
    log.warn({}, 'just a warning');
    log.error({}, 'a real error');
    await until(() => log.stats().sent === 1);
    await log.close();
    expect(hook.bodies.map((b: Body) => b.msg)).toEqual(['a real error']);
  });

  it('rate-limits with a token bucket and reports the suppressed count with the next alert', async () => {
    const hook = await webhook();
    let now = 0;
    const log = wrap(captureLogger().logger, { url: hook.url, perMinute: 2, now: () => now });
    for (let i = 0; i < 5; i++) log.error({ i }, `boom ${i}`);
    expect(log.stats()).toMatchObject({ suppressed: 3, pending: 3 });
    await until(() => log.stats().sent === 2);
    expect(hook.bodies.map((b: Body) => b.i).sort()).toEqual([0, 1]);
    expect(hook.bodies.every((b: Body) => b.suppressed === undefined)).toBe(true);

    now += 20_000; // 2 per minute: not yet a whole token back
    log.error({ i: 5 }, 'boom 5');
    expect(log.stats()).toMatchObject({ suppressed: 4, pending: 4 });
    now += 10_000; // 30 s in all: one token
    log.error({ i: 6 }, 'boom 6');
    expect(log.stats()).toMatchObject({ suppressed: 4, pending: 0 });
    await until(() => log.stats().sent === 3);
    expect(hook.bodies[2]).toMatchObject({ i: 6, suppressed: 4 });
    expect(hook.bodies[2].text).toContain('+4 suppressed');
  });

  it('never throws or waits on a dead, failing or hanging endpoint', async () => {
    const gone = await webhook();
    const refused = gone.url;
    for (const s of servers) {
      s.closeAllConnections();
      await new Promise((r) => s.close(r));
    }
    const failing = await webhook(500);
    const hanging = await webhook(0);
    for (const url of [refused, failing.url, hanging.url]) {
      const { logger: base, lines } = captureLogger();
      const log = wrap(base, { url, timeoutMs: 200 });
      const t = performance.now();
      for (let i = 0; i < 3; i++) {
        expect(() => log.error({ err: new Error('x'), i }, 'error')).not.toThrow();
        expect(() => log.warn({ big: 10n }, 'a bigint')).not.toThrow();
      }
      expect(performance.now() - t).toBeLessThan(1000); // the calls returned at once (generous bound)
      await log.close();
      expect(log.stats()).toMatchObject({ sent: 0, failed: 6, inFlight: 0 });
      const failures = lines.filter((l) => l.msg === 'alert webhook failed');
      expect(failures.length).toBe(1); // said once, through the base logger
      log.error({}, 'after close');
      expect(log.stats().inFlight).toBe(0);
    }
  });

  it('keeps fields it cannot serialize out of the alert instead of throwing', async () => {
    const hook = await webhook();
    const log = wrap(captureLogger().logger, { url: hook.url });
    const cyclic: Record<string, unknown> = { name: 'loop' };
    cyclic.self = cyclic;
    expect(() => log.error({ cyclic, n: 1n }, 'odd fields')).not.toThrow();
    await until(() => log.stats().sent === 1);
    expect(hook.bodies[0]).toMatchObject({
      msg: 'odd fields',
      fieldsError: 'fields could not be serialized',
    });
  });
});
