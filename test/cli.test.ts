import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { connect } from '../src/client/index.js';
import { Child } from './support/process.js';

// These run the built CLI (npm test builds first), as a user would.
const children: Child[] = [];
afterEach(() => {
  for (const c of children.splice(0)) c.kill('SIGKILL');
});

const dataDir = mkdtempSync(join(tmpdir(), 'pylon-cli-'));
afterAll(() => rmSync(dataDir, { recursive: true, force: true }));
let runs = 0;

/** `pylon start` on free ports, with its own sqlite file. */
function startCli(args: string[] = [], env: Record<string, string> = {}): Child {
  const store = ['--store', `sqlite:${join(dataDir, `run-${++runs}`, 'pylon.db')}`];
  const child = new Child(
    process.execPath,
    ['dist/cli/main.js', 'start', '--ws-port', '0', '--tcp-port', '0', ...store, ...args],
    {
      PYLON_LOG_LEVEL: 'warn',
      PYLON_ADMIN_PORT: '0',
      PYLON_GRPC_PORT: '0',
      ...env,
    },
  );
  children.push(child);
  return child;
}

describe('pylon start', () => {
  it('prints where it listens, answers echo over TCP and WS, hotpot Echo, and stops cleanly on SIGTERM', async () => {
    const cli = startCli();
    const ws = (await cli.waitFor(/WebSocket on (ws:\/\/\S+)/))[1]!;
    const tcp = (await cli.waitFor(/TCP on (tcp:\/\/\S+)/))[1]!;
    await cli.waitFor(/ready/);

    const overTcp = await connect(tcp, { reconnect: false });
    await expect(overTcp.request('echo', { over: 'tcp' })).resolves.toEqual({ over: 'tcp' });
    const overWs = await connect(ws, { codec: 'msgpack', reconnect: false });
    await expect(overWs.request('echo', { over: 'ws' })).resolves.toEqual({ over: 'ws' });

    const plain = new WebSocket(ws);
    const echoed = new Promise<unknown>((resolve) => {
      plain.on('message', (d) => {
        const m = JSON.parse(d.toString());
        if (m.type === 'Echo') resolve(m.data);
      });
    });
    await new Promise((r) => plain.on('open', r));
    plain.send(JSON.stringify({ type: 'Echo', data: { Message: 'hi' } }));
    await expect(echoed).resolves.toEqual({ Message: 'hi' });

    const closed = new Promise<{ code: number }>((resolve) => overTcp.on('close', resolve));
    cli.kill('SIGTERM');
    expect(await cli.exited).toBe(0);
    // A stopped node tells its clients to come back, maybe elsewhere: reconnect_elsewhere.
    expect((await closed).code).toBe(4001);
    await cli.waitFor(/stopped/);
    plain.close();
    await overWs.close();
  });

  it('takes its settings from PYLON_* environment variables', async () => {
    const cli = new Child(process.execPath, ['dist/cli/main.js', 'start'], {
      PYLON_WS_PORT: '0',
      PYLON_TCP_PORT: '0',
      PYLON_KEEPALIVE_INTERVAL: '7',
      PYLON_KEEPALIVE_TIMEOUT: '20',
      PYLON_STORE: 'memory',
      PYLON_ADMIN_PORT: '0',
      PYLON_GRPC_PORT: '0',
      PYLON_LOG_LEVEL: 'warn',
    });
    children.push(cli);
    const tcp = (await cli.waitFor(/TCP on (tcp:\/\/\S+)/))[1]!;
    const client = await connect(tcp, { reconnect: false });
    expect(client.welcome?.heartbeat).toEqual({ interval: 7000, timeout: 20000 });
    await client.close();
  });

  it('logs text lines for a person with --log-format text (JSON lines by default off a terminal)', async () => {
    const cli = startCli(['--log-format', 'text'], { PYLON_LOG_LEVEL: 'info' });
    const tcp = (await cli.waitFor(/TCP on (tcp:\/\/\S+)/))[1]!;
    const client = await connect(tcp, { token: 'alice', reconnect: false });
    await client.close();
    await expect
      .poll(() => cli.stderr, { timeout: 5000 })
      .toMatch(
        /^\d\d:\d\d:\d\d\.\d{3} INFO {2}connect conn=\S+ user=alice transport=tcp remote=127\.0\.0\.1$/m,
      );
    expect(cli.stderr).not.toMatch(/^\{"level"/m);
    const json = startCli([], { PYLON_LOG_LEVEL: 'info' });
    const tcp2 = (await json.waitFor(/TCP on (tcp:\/\/\S+)/))[1]!;
    await (await connect(tcp2, { token: 'bob', reconnect: false })).close();
    json.kill('SIGTERM');
    await json.exited;
    expect(json.stderr).toMatch(/^\{"level":30,.*"user":"bob".*"msg":"connect"\}$/m);
    cli.kill('SIGTERM');
    await cli.exited;
  });

  it('refuses bad flags with a message naming the flag', async () => {
    const cli = startCli(['--keepalive-interval', '60', '--keepalive-timeout', '30']);
    expect(await cli.exited).not.toBe(0);
    expect(cli.stderr).toMatch(/keepalive-timeout \(30\) must not be less than keepalive-interval/);
    const bad = new Child(process.execPath, [
      'dist/cli/main.js',
      'start',
      '--tcp-port',
      'eighty',
      '--store',
      'memory',
    ]);
    children.push(bad);
    expect(await bad.exited).not.toBe(0);
    expect(bad.stderr).toMatch(/tcp-port must be an integer from 0 to 65535, got "eighty"/);
  });
});

describe('examples/echo', () => {
  it('the example client talks to the example server over TCP and WS', async () => {
    const server = new Child(process.execPath, ['examples/echo/server.js'], { TCP_PORT: '0', WS_PORT: '0' });
    children.push(server);
    const m = await server.waitFor(/(tcp:\/\/\S+) (ws:\/\/\S+)/);
    for (const url of [m[1]!, m[2]!]) {
      const client = new Child(process.execPath, ['examples/echo/client.js', url]);
      children.push(client);
      expect(await client.exited).toBe(0);
      expect(client.lines).toContain('echo: {"hello":"pylon"}');
      expect(client.lines).toContain('push Echo: {"Message":"hi"}');
      expect(client.lines).toContain('divide: BAD_REQUEST division by zero');
    }
  });
});

describe('pylon start authentication', () => {
  it('defaults to dev auth on loopback with a loud warning: the token is the user id, no token is anonymous', async () => {
    const cli = startCli();
    const tcp = (await cli.waitFor(/TCP on (tcp:\/\/\S+)/))[1]!;
    await cli.waitFor(/auth dev/);
    expect(cli.stderr).toMatch(/WARNING: --auth dev/);
    const named = await connect(tcp, { token: 'zoe', reconnect: false });
    expect(named.welcome?.user).toBe('zoe');
    const anonymous = await connect(tcp, { reconnect: false });
    expect(anonymous.welcome?.user).toBeUndefined();
    await named.close();
    await anonymous.close();
  });

  it('refuses to bind beyond loopback without --auth', async () => {
    const cli = startCli(['--host', '0.0.0.0']);
    expect(await cli.exited).not.toBe(0);
    expect(cli.stderr).toMatch(/--auth is required when binding to 0.0.0.0/);
  });

  it('--auth jwt --jwt-secret checks tokens', async () => {
    const { SignJWT } = await import('jose');
    const secret = 'cli-test-secret-0123456789';
    const cli = startCli(['--auth', 'jwt', '--jwt-secret', secret]);
    const ws = (await cli.waitFor(/WebSocket on (ws:\/\/\S+)/))[1]!;
    const token = await new SignJWT({ sub: 'jwt-user' })
      .setProtectedHeader({ alg: 'HS256' })
      .sign(new TextEncoder().encode(secret));
    const ok = await connect(ws, { token, reconnect: false });
    expect(ok.welcome?.user).toBe('jwt-user');
    await expect(connect(ws, { token: 'jwt-user', reconnect: false })).rejects.toThrow(/4502/);
    await ok.close();
  });
});

describe('pylon start storage', () => {
  it('keeps qos-1 messages in its sqlite file across a SIGKILL', async () => {
    const db = join(dataDir, 'durable', 'pylon.db');
    const first = new Child(
      process.execPath,
      ['dist/cli/main.js', 'start', '--ws-port', '0', '--tcp-port', '0', '--store', `sqlite:${db}`],
      { PYLON_LOG_LEVEL: 'warn', PYLON_ADMIN_PORT: '0', PYLON_GRPC_PORT: '0' },
    );
    children.push(first);
    await first.waitFor(/store sqlite:/);
    first.kill('SIGKILL');
    await first.exited;
    const { openStore } = await import('../src/store/index.js');
    const store = await openStore(`sqlite:${db}`);
    await store.append(['kim'], {
      id: 'm1',
      type: 'note',
      data: 'kept',
      createdAt: Date.now(),
      expiresAt: Date.now() + 60_000,
    });
    await store.close();
    const second = new Child(
      process.execPath,
      ['dist/cli/main.js', 'start', '--ws-port', '0', '--tcp-port', '0', '--store', `sqlite:${db}`],
      { PYLON_LOG_LEVEL: 'warn', PYLON_ADMIN_PORT: '0', PYLON_GRPC_PORT: '0' },
    );
    children.push(second);
    const tcp = (await second.waitFor(/TCP on (tcp:\/\/\S+)/))[1]!;
    const client = await connect(tcp, { token: 'kim', reconnect: false });
    const got = await new Promise<unknown>((resolve) => client.on('note', resolve));
    expect(got).toBe('kept');
    await client.close();
  });
});

describe('pylon start admin API', () => {
  it('serves the admin API: a push through HTTP reaches a connected client; without a key only on loopback', async () => {
    const key = 'cli-admin-key-0123456789';
    const cli = startCli(['--admin-key', key]);
    const admin = (await cli.waitFor(/admin API on (http:\/\/\S+)\/v1\//))[1]!;
    const tcp = (await cli.waitFor(/TCP on (tcp:\/\/\S+)/))[1]!;
    const client = await connect(tcp, { token: 'lee', reconnect: false });
    const got = new Promise<unknown>((resolve) => client.on('hello', resolve));
    const unauthorized = await fetch(`${admin}/v1/stats`);
    expect(unauthorized.status).toBe(401);
    const res = await fetch(`${admin}/v1/push`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ to: { user: 'lee' }, type: 'hello', data: { from: 'admin' } }),
    });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ targeted: 1 });
    await expect(got).resolves.toEqual({ from: 'admin' });
    await client.close();

    const open = startCli(['--admin-host', '0.0.0.0']);
    expect(await open.exited).not.toBe(0);
    expect(open.stderr).toMatch(/key/i);
  });
});

/** The business's webhook endpoint: an HTTP server on a free port collecting the JSON bodies posted to it. */
async function businessHook<T>() {
  const { createServer } = await import('node:http');
  const events: T[] = [];
  const hook = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => {
      body += c;
    });
    req.on('end', () => {
      events.push(JSON.parse(body) as T);
      res.end();
    });
  });
  await new Promise<void>((r) => hook.listen(0, '127.0.0.1', r));
  return { events, hook, url: `http://127.0.0.1:${(hook.address() as { port: number }).port}` };
}

describe('pylon start webhooks', () => {
  it('posts connect and disconnect events to the business', async () => {
    const { events, url, hook } = await businessHook<{ event: string; user: string | null }>();
    const cli = startCli([
      '--webhook-connect',
      `${url}/connect`,
      '--webhook-disconnect',
      `${url}/disconnect`,
    ]);
    const tcp = (await cli.waitFor(/TCP on (tcp:\/\/\S+)/))[1]!;
    const client = await connect(tcp, { token: 'hooked', reconnect: false });
    await client.close();
    await expect
      .poll(() => events.map((e) => `${e.event}:${e.user}`))
      .toEqual(['connect:hooked', 'disconnect:hooked']);
    hook.close();
  });

  it('posts a qos-1 push to an offline user as undelivered after --undelivered-after, then delivered', async () => {
    const { events, url, hook } = await businessHook<{
      event: string;
      user: string;
      type: string;
      data?: unknown;
    }>();
    const cli = startCli(['--webhook-undelivered', `${url}/push`, '--undelivered-after', '1']);
    const admin = (await cli.waitFor(/admin API on (http:\/\/\S+)\/v1\//))[1]!;
    const tcp = (await cli.waitFor(/TCP on (tcp:\/\/\S+)/))[1]!;
    const res = await fetch(`${admin}/v1/push`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ to: { user: 'away' }, type: 'order', data: { n: 7 }, qos: 1 }),
    });
    expect(res.status).toBe(200);
    await expect.poll(() => events.length, { timeout: 5000 }).toBe(1);
    expect(events[0]).toMatchObject({ event: 'undelivered', user: 'away', type: 'order', data: { n: 7 } });
    const client = await connect(tcp, { token: 'away', reconnect: false });
    await expect
      .poll(() => events.map((e) => e.event), { timeout: 5000 })
      .toEqual(['undelivered', 'delivered']);
    await client.close();
    hook.close();
  });
});
