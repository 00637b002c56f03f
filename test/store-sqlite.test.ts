import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { SqliteStore } from '../src/store/sqlite-store.js';
import type { MessageStore } from '../src/store/store.js';
import { describeMessageStore } from './conformance/message-store.js';

describeMessageStore('sqlite', async (options) => {
  const dir = mkdtempSync(join(tmpdir(), 'pylon-sqlite-'));
  const path = join(dir, 'nested', 'dir', 'pylon.db'); // the store creates the directories
  let store: MessageStore = SqliteStore.open(path, options);
  return {
    store,
    async reopen() {
      await store.close();
      store = SqliteStore.open(path, options);
      return store;
    },
    async cleanup() {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
});

// The workers of `pylon start --workers N` (and, during a reload, two generations of them) share
// one SQLite file. Each write must wait its turn (busy_timeout), never fail on a lock.
describe('SqliteStore shared by several processes', () => {
  it('4 processes appending, acking and expiring on one file at once: no write fails, every seq once', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pylon-sqlite-shared-'));
    const path = join(dir, 'shared.db');
    const store = resolve('dist/store/sqlite-store.js');
    // Each writer appends 300 messages (ids its own) to 5 shared users in batches, acks and
    // expires between them, and prints the seqs it got.
    const writer = `
      const { SqliteStore } = await import(${JSON.stringify(store)});
      const s = SqliteStore.open(${JSON.stringify(path)}, { integrityCheck: false });
      const w = process.argv[1];
      const users = ['a', 'b', 'c', 'd', 'e'];
      const got = [];
      for (let i = 0; i < 300; i++) {
        const seqs = await s.append(users, { id: w + '-' + i, type: 't', data: i, createdAt: 1, expiresAt: i % 7 === 0 ? 2 : 9e15 });
        got.push(seqs);
        if (i % 10 === 0) await s.ack(users[i % 5], seqs[i % 5] - 20);
        if (i % 25 === 0) await s.expire(3);
      }
      await s.close();
      process.stdout.write(JSON.stringify(got));
    `;
    try {
      const runs = await Promise.all(
        ['w0', 'w1', 'w2', 'w3'].map(
          (w) =>
            new Promise<{ code: number | null; out: string; err: string }>((done) => {
              const child = spawn(process.execPath, ['--input-type=module', '-e', writer, w], {
                stdio: ['ignore', 'pipe', 'pipe'],
              });
              let out = '';
              let err = '';
              child.stdout.on('data', (c: Buffer) => {
                out += c;
              });
              child.stderr.on('data', (c: Buffer) => {
                err += c;
              });
              child.on('exit', (code) => done({ code, out, err }));
            }),
        ),
      );
      for (const r of runs) expect(r.err).toBe('');
      for (const r of runs) expect(r.code).toBe(0);
      // Every user got 1,200 seqs, 1..1200, each from exactly one append.
      const all = runs.map((r) => JSON.parse(r.out) as number[][]);
      for (let u = 0; u < 5; u++) {
        const seqs = all.flatMap((got) => got.map((seqs) => seqs[u] as number)).sort((x, y) => x - y);
        expect(seqs).toEqual(Array.from({ length: 1200 }, (_, i) => i + 1));
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});

// Appends and acks of one event-loop turn share one transaction (group commit).
describe('SqliteStore group commit', () => {
  it('writes of one turn commit together; one that fails fails alone, the others are stored', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pylon-sqlite-group-'));
    const path = join(dir, 'group.db');
    let store = SqliteStore.open(path);
    try {
      const now = Date.now();
      const msg = (id: string, data: unknown) => ({
        id,
        type: 't',
        data,
        createdAt: now,
        expiresAt: now + 60_000,
      });
      // 50 appends and a bad one (a BigInt has no JSON form) in the same turn.
      const calls = Array.from({ length: 50 }, (_, i) => store.append([`u${i % 5}`], msg(`m${i}`, { i })));
      const bad = store.append(['u0'], msg('bad', 10n));
      const seqs = await Promise.all(calls);
      await expect(bad).rejects.toThrow(/BigInt/);
      expect(seqs.map(([s]) => s)).toEqual(Array.from({ length: 50 }, (_, i) => Math.floor(i / 5) + 1));
      // The inbox counter is written once per transaction: the rolled-back one's count is not kept.
      expect(await store.stats()).toEqual({ messages: 50, deadLetters: 0 });
      // An ack and an append of the same turn, then reopened: what resolved is in the file.
      await Promise.all([store.ack('u1', 4), store.append(['u1'], msg('late', 1))]);
      await store.close();
      store = SqliteStore.open(path);
      const u0 = await store.pending('u0', 0, 100, Date.now());
      expect(u0.map((m) => m.id)).toEqual(Array.from({ length: 10 }, (_, k) => `m${k * 5}`));
      const u1 = await store.pending('u1', 0, 100, Date.now());
      expect(u1.map((m) => m.seq)).toEqual([5, 6, 7, 8, 9, 10, 11]);
      expect(u1.at(-1)?.id).toBe('late');
      expect(await store.stats()).toEqual({ messages: 47, deadLetters: 0 });
    } finally {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('SqliteStore recent ids', () => {
  it('a user keeps fewer than dedupeWindow + 32 remembered ids, and a file of an earlier version loses its seq index', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pylon-sqlite-ids-'));
    const path = join(dir, 'ids.db');
    // A file as an earlier version left it: recent_ids indexed by (user, seq).
    const old = new Database(path);
    old.exec(`CREATE TABLE recent_ids (user TEXT NOT NULL, id TEXT NOT NULL, seq INTEGER NOT NULL,
      PRIMARY KEY (user, id)) WITHOUT ROWID; CREATE INDEX recent_ids_seq ON recent_ids (user, seq);`);
    old.close();
    const store = SqliteStore.open(path, { dedupeWindow: 10 });
    const peek = new Database(path, { readonly: true });
    try {
      const rows = () =>
        (peek.prepare("SELECT count(*) AS n FROM recent_ids WHERE user = 'a'").get() as { n: number }).n;
      const msg = (i: number) => ({ id: `m${i}`, type: 't', data: i, createdAt: 1, expiresAt: 9e15 });
      let most = 0;
      for (let i = 1; i <= 300; i++) {
        await store.append(['a'], msg(i));
        most = Math.max(most, rows());
      }
      expect(most).toBeLessThan(10 + 32);
      expect(most).toBeGreaterThanOrEqual(10);
      // Past the window an id is new again, although its row may still be there.
      expect(await store.append(['a'], msg(289))).toEqual([301]);
      expect(await store.append(['a'], msg(300))).toEqual([300]);
      const indexes = peek
        .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'recent_ids'")
        .all();
      expect(indexes).toEqual([]);
    } finally {
      peek.close();
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
