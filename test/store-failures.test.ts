import { createHash } from 'node:crypto';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { connect, type PylonClient } from '../src/client/index.js';
import { SqliteStore } from '../src/store/index.js';
import { Child } from './support/process.js';

// An operator's mistakes with the store: the gateway says what is wrong, names the file, exits
// non-zero, and never writes to a damaged file.
const dir = mkdtempSync(join(tmpdir(), 'pylon-store-failures-'));
const children: Child[] = [];
const clients: PylonClient[] = [];
afterEach(() => {
  for (const c of clients.splice(0)) c.close();
  for (const c of children.splice(0)) c.kill('SIGKILL');
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function start(args: string[]): Child {
  const child = new Child(
    process.execPath,
    ['dist/cli/main.js', 'start', '--ws-port', '0', '--tcp-port', '0', '--grpc-port', '-1', ...args],
    { PYLON_LOG_LEVEL: 'warn', PYLON_ADMIN_PORT: '0' },
  );
  children.push(child);
  return child;
}

/** A store file holding 6,000 messages, then 32 KiB of its middle overwritten. */
async function damagedStore(name: string): Promise<string> {
  const path = join(dir, name, 'pylon.db');
  const store = SqliteStore.open(path);
  const users = Array.from({ length: 6000 }, (_, i) => `u${i}`);
  const now = Date.now();
  await store.append(users, {
    id: 'm1',
    type: 'note',
    data: { text: 'hello '.repeat(20) },
    createdAt: now,
    expiresAt: now + 86_400_000,
  });
  await store.close();
  const size = statSync(path).size;
  const fd = openSync(path, 'r+');
  const junk = Buffer.alloc(8 * 4096, 0x5a);
  writeSync(fd, junk, 0, junk.length, Math.floor(size / 2 / 4096) * 4096);
  closeSync(fd);
  return path;
}

const sha = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');

describe('store start-up errors', () => {
  it('a directory that cannot be created: the error names it and the process exits 1 at once', async () => {
    const cli = start(['--store', 'sqlite:/proc/nonexistent/x.db']);
    const code = await cli.exited;
    expect(code).toBe(1);
    expect(cli.stderr).toMatch(
      /sqlite store \/proc\/nonexistent\/x\.db: cannot create directory \/proc\/nonexistent/,
    );
  });

  it('a path that is a directory: named, exit 1', async () => {
    const cli = start(['--store', `sqlite:${dir}`]);
    expect(await cli.exited).toBe(1);
    expect(cli.stderr).toContain(`sqlite store ${dir}`);
  });

  it('a Redis store nobody answers at: named by host, exit 1', async () => {
    const cli = start(['--store', 'redis://127.0.0.1:1']);
    expect(await cli.exited).toBe(1);
    expect(cli.stderr).toMatch(/redis store at 127\.0\.0\.1:1: cannot connect/);
  });
});

describe('a damaged SQLite file', () => {
  it('is refused at start with its name and what to do, and left as it was', async () => {
    const path = await damagedStore('refused');
    const before = sha(path);
    expect(() => SqliteStore.open(path)).toThrow(/failed its integrity check/);
    const cli = start(['--store', `sqlite:${path}`]);
    expect(await cli.exited).toBe(1);
    expect(cli.stderr).toContain(`sqlite store ${path} failed its integrity check`);
    expect(cli.stderr).toMatch(/restore it from a backup/);
    expect(sha(path)).toBe(before);
  });

  it('with --no-store-check it starts, and /healthz and the metrics say the store is failing', async () => {
    const path = await damagedStore('unchecked');
    const cli = start(['--store', `sqlite:${path}`, '--no-store-check']);
    const ws = (await cli.waitFor(/WebSocket on (ws:\/\/\S+)/))[1]!;
    const admin = (await cli.waitFor(/admin API on (http:\/\/\S+)\/v1\//))[1]!;
    await cli.waitFor(/ready/);
    expect((await fetch(`${admin}/healthz`)).status).toBe(200);
    // Users whose inbox lies in the damaged pages: reading it fails.
    for (const u of ['u2900', 'u3000', 'u3100'])
      clients.push(await connect(`${ws}?token=${u}`, { reconnect: false }));
    let health = await fetch(`${admin}/healthz`);
    for (let i = 0; i < 50 && health.status === 200; i++) {
      await new Promise((r) => setTimeout(r, 100));
      health = await fetch(`${admin}/healthz`);
    }
    expect(health.status).toBe(503);
    expect(((await health.json()) as { error: { message: string } }).error.message).toMatch(
      /^store failing: database disk image is malformed/,
    );
    const metrics = await (await fetch(`${admin}/metrics`)).text();
    expect(metrics).toMatch(/^pylon_store_up 0$/m);
    expect(metrics).toMatch(/^pylon_store_errors_total [1-9]/m);
  });
});
