import { parseRedisSpec } from '../util/redis.js';
import { MemoryStore } from './memory-store.js';
import { RedisStore, type RedisStoreOptions } from './redis-store.js';
import { SqliteStore, type SqliteStoreOptions } from './sqlite-store.js';
import type { MessageStore, StoreOptions } from './store.js';

export {
  DEFAULT_DEDUPE_WINDOW,
  DEFAULT_MAX_DEAD_LETTERS,
  DEFAULT_MAX_PER_USER,
  MemoryStore,
} from './memory-store.js';
export { RedisStore, type RedisStoreOptions } from './redis-store.js';
export type { SessionLog, StoredSession } from './session-log.js';
export { SqliteStore, type SqliteStoreOptions } from './sqlite-store.js';
export type {
  DeadLetter,
  DeadReason,
  MessageStore,
  NewMessage,
  StoredMessage,
  StoreOptions,
  StoreStats,
} from './store.js';

const FORMS =
  '"memory", "sqlite:<path>" (e.g. sqlite:./data/pylon.db), "redis://host:port[/db]", or the comma-separated seeds of a Redis Cluster "redis://a:7000,redis://b:7001"';

/**
 * Opens the store named by `spec`: `memory`, `sqlite:<path>` (the file and its directory are
 * created if missing), a Redis URL `redis://host:port[/db]` (also `rediss://`, and
 * `redis://:password@host:port`), or the comma-separated seeds of a Redis Cluster
 * (`redis://a:7000,redis://b:7001`; `cluster: true` makes a single URL a seed). Errors name the
 * file or the Redis host and say what to do.
 */
export async function openStore(
  spec: string,
  options: StoreOptions &
    Pick<SqliteStoreOptions, 'integrityCheck'> &
    Pick<
      RedisStoreOptions,
      'cluster' | 'buckets' | 'prefix' | 'waitReplicas' | 'waitTimeout' | 'commandTimeout'
    > = {},
): Promise<MessageStore> {
  if (spec === 'memory') return new MemoryStore(options);
  if (spec.startsWith('sqlite:')) {
    const path = spec.slice('sqlite:'.length);
    if (path === '') throw new Error(`store "${spec}": no path after "sqlite:"; use ${FORMS}`);
    return SqliteStore.open(path, options);
  }
  if (spec.startsWith('redis://') || spec.startsWith('rediss://')) {
    try {
      parseRedisSpec(spec, options.cluster);
    } catch (err) {
      throw new Error(`store: ${(err as Error).message}; use ${FORMS}`, { cause: err });
    }
    return RedisStore.connect(spec, options);
  }
  throw new Error(`unknown store "${spec}": use ${FORMS}`);
}
