import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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
