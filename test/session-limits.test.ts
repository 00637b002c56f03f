import { connect as netConnect } from 'node:net';
import { SignJWT } from 'jose';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { devValidator, jwtValidator } from '../src/index.js';
import { frame } from '../src/protocol/framing.js';
import { RawTcp, startGateway, stopAll } from './support/gateway.js';

// What one client machine could make the gateway hold through identities, labels and saved
// sessions: each is bounded, per connection and per process, and refused with a documented code.
afterEach(stopAll);

/** hello over raw TCP; resolves with the welcome's data (or the kick's, if refused). */
async function hello(
  url: string,
  data: Record<string, unknown>,
): Promise<{ raw: RawTcp; welcome: Record<string, unknown> }> {
  const raw = await RawTcp.open(url);
  raw.sendJson({ kind: 'hello', data });
  await raw.until((r) => r.frames.length >= 1 || r.closed);
  const first = raw.json()[0] ?? {};
  return { raw, welcome: (first.data ?? {}) as Record<string, unknown> };
}

async function request(raw: RawTcp, env: Record<string, unknown>): Promise<Record<string, unknown>> {
  const before = raw.frames.length;
  raw.sendJson(env);
  await raw.until((r) =>
    r
      .json()
      .slice(before)
      .some((f) => f.kind === 'res' && f.id === env.id),
  );
  return raw
    .json()
    .slice(before)
    .find((f) => f.kind === 'res' && f.id === env.id) as Record<string, unknown>;
}

describe('identity sizes', () => {
  it('refuses a user id over 256 characters at the handshake with identity_too_long (4507)', async () => {
    const { gateway, tcpUrl, wsUrl } = await startGateway({ validate: devValidator() });
    const { raw, welcome } = await hello(tcpUrl, { token: 'x'.repeat(300) });
    expect(welcome).toMatchObject({ code: 4507, name: 'identity_too_long', reconnect: false });
    await raw.waitClosed();
    const code = await new Promise<number>((resolve) => {
      const ws = new WebSocket(`${wsUrl}?token=${'y'.repeat(1000)}`);
      ws.on('close', (c) => resolve(c));
      ws.on('error', () => {});
    });
    expect(code).toBe(4507);
    expect(gateway.stats()).toMatchObject({ connections: 0, authFailures: 2 });
    // 256 is fine.
    const ok = await hello(tcpUrl, { token: 'z'.repeat(256) });
    expect(ok.welcome.user).toBe('z'.repeat(256));
    ok.raw.destroy();
  });
});

describe('labels', () => {
  const anyRoom = (_c: unknown, label: string) => label.startsWith('room:');

  it("bounds the characters of one connection's labels", async () => {
    const { tcpUrl } = await startGateway({ authorizeSub: anyRoom, maxLabelChars: 100 });
    const { raw } = await hello(tcpUrl, {});
    const long = Array.from({ length: 4 }, (_, i) => `room:${String(i).repeat(40)}`);
    expect(await request(raw, { kind: 'sub', id: 1, data: { labels: long.slice(0, 2) } })).toMatchObject({
      data: { labels: long.slice(0, 2) },
    });
    const over = await request(raw, { kind: 'sub', id: 2, data: { labels: long.slice(2) } });
    expect(over.error).toMatchObject({ code: 'TOO_MANY_REQUESTS' });
    expect((over.error as { message: string }).message).toMatch(/at most 100 characters/);
    raw.destroy();
  });

  it('bounds the distinct labels of the process: the next new label is refused, existing ones may be joined', async () => {
    const { gateway, tcpUrl } = await startGateway({ authorizeSub: anyRoom, maxLabelsTotal: 10 });
    const a = (await hello(tcpUrl, {})).raw;
    const b = (await hello(tcpUrl, {})).raw;
    const ten = Array.from({ length: 10 }, (_, i) => `room:${i}`);
    expect((await request(a, { kind: 'sub', id: 1, data: { labels: ten } })).error).toBeUndefined();
    const eleventh = await request(b, { kind: 'sub', id: 1, data: { labels: ['room:new'] } });
    expect((eleventh.error as { message: string }).message).toMatch(/holds 10 labels, its maximum is 10/);
    expect((await request(b, { kind: 'sub', id: 2, data: { labels: ['room:3'] } })).error).toBeUndefined();
    expect(gateway.stats().labels).toBe(10);
    a.destroy();
    b.destroy();
  });
});

describe('saved sessions', () => {
  it('keeps at most maxSessions dropped sessions, and at most maxSessionsPerUser of one user', async () => {
    const { gateway, tcpUrl } = await startGateway({
      validate: devValidator(),
      resume: { maxSessions: 50, maxSessionsPerUser: 4 },
    });
    // connect, hello, reset: each cycle leaves a session waiting for resume.
    for (let i = 0; i < 120; i++) {
      const { raw } = await hello(tcpUrl, { token: `user-${i}` });
      raw.destroy();
    }
    await expect.poll(() => gateway.stats().connections).toBe(0);
    expect(gateway.stats().resumable).toBe(50);
    const sessions: string[] = [];
    for (let i = 0; i < 10; i++) {
      const { raw, welcome } = await hello(tcpUrl, { token: 'same' });
      sessions.push(welcome.session as string);
      raw.destroy();
    }
    await expect.poll(() => gateway.stats().connections).toBe(0);
    expect(gateway.stats().resumable).toBe(50);
    // The oldest of the user's sessions were forgotten, the newest resumes.
    const old = await hello(tcpUrl, { token: 'same', session: sessions[0] });
    expect(old.welcome.resumed).toBe(false);
    const recent = await hello(tcpUrl, { token: 'same', session: sessions[9] });
    expect(recent.welcome.resumed).toBe(true);
    old.raw.destroy();
    recent.raw.destroy();
  });
});

describe('saved sessions per address', () => {
  it('keeps at most maxSessionsPerAddress of one remote address; another address has its own', async () => {
    const { gateway, tcpUrl } = await startGateway({
      validate: devValidator(),
      resume: { maxSessionsPerAddress: 5 },
    });
    const port = Number(new URL(tcpUrl).port);
    const cycle = (token: string, localAddress: string) =>
      new Promise<void>((resolve) => {
        const s = netConnect({ port, host: '127.0.0.1', localAddress }, () => {
          s.write(frame(new TextEncoder().encode(JSON.stringify({ kind: 'hello', data: { token } }))));
        });
        s.on('data', () => {
          s.destroy();
          resolve();
        });
        s.on('error', () => {});
      });
    for (let i = 0; i < 20; i++) await cycle(`a${i}`, '127.0.0.1');
    for (let i = 0; i < 3; i++) await cycle(`b${i}`, '127.0.0.2');
    await expect.poll(() => gateway.stats().connections).toBe(0);
    expect(gateway.stats().resumable).toBe(8);
  });
});

describe('resume and labels', () => {
  const SECRET = 'a-test-secret-of-enough-length';
  const jwt = (claims: Record<string, unknown>) =>
    new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).sign(new TextEncoder().encode(SECRET));

  it('takes the identity labels from the new token: a revoked label does not come back', async () => {
    let allowRooms = true;
    const { gateway, tcpUrl } = await startGateway({
      validate: await jwtValidator({ secret: SECRET }),
      authorizeSub: (_c, label) => allowRooms && label.startsWith('room:'),
    });
    const first = await hello(tcpUrl, { token: await jwt({ sub: 'u1', labels: ['vip', 'version_v2'] }) });
    expect(first.welcome.labels).toEqual(['vip', 'version_v2']);
    expect(
      (await request(first.raw, { kind: 'sub', id: 1, data: { labels: ['room:a'] } })).error,
    ).toBeUndefined();
    gateway.updateUserLabels('u1', { add: ['granted'] });
    first.raw.destroy();
    await expect.poll(() => gateway.stats().resumable).toBe(1);

    const session = first.welcome.session as string;
    const second = await hello(tcpUrl, { token: await jwt({ sub: 'u1', labels: ['version_v2'] }), session });
    expect(second.welcome.resumed).toBe(true);
    // The new identity's labels, the application's label, the client's room: not vip.
    expect(second.welcome.labels).toEqual(['version_v2', 'granted', 'room:a']);
    expect((await gateway.push({ labels: { all: ['vip'] } }, 'secret')).targeted).toBe(0);

    // The client's room must pass authorizeSub again.
    second.raw.destroy();
    await expect.poll(() => gateway.stats().resumable).toBe(1);
    allowRooms = false;
    const third = await hello(tcpUrl, {
      token: await jwt({ sub: 'u1', labels: ['version_v2'] }),
      session: second.welcome.session,
    });
    expect(third.welcome.resumed).toBe(true);
    expect(third.welcome.labels).toEqual(['version_v2', 'granted']);
    third.raw.destroy();
  });
});
