import { MemoryStore } from '../src/store/memory-store.js';
import { describeMessageStore } from './conformance/message-store.js';

describeMessageStore('memory', async (options) => {
  const store = new MemoryStore(options);
  return { store, cleanup: () => store.close() };
});
