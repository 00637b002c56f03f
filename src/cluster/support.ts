import { hostname } from 'node:os';
import type { GatewayAddresses } from '../gateway/types.js';
import type { Logger } from '../log/logger.js';
import { PylonError } from '../protocol/errors.js';
import { MemoryStore } from '../store/memory-store.js';
import { RedisStore } from '../store/redis-store.js';
import { SqliteStore } from '../store/sqlite-store.js';
import type { MessageStore } from '../store/store.js';
import type { Reach } from './broker.js';

const RANK: Record<Reach, number> = { process: 0, machine: 1, network: 2 };

/** How far a store is shared: memory within a process, a SQLite file within a machine, Redis everywhere. */
export function storeReach(store: MessageStore): Reach | undefined {
  if (store instanceof RedisStore) return 'network';
  if (store instanceof SqliteStore) return 'machine';
  if (store instanceof MemoryStore) return 'process';
  return undefined;
}

/**
 * Refuses a store that does not reach as far as the broker: qos-1 messages stored on one node
 * must be readable by the nodes that send them. A LocalBroker (one process) accepts any store:
 * give every gateway the same instance.
 */
export function checkStoreReach(store: MessageStore, brokerReach: Reach, logger: Logger): void {
  const reach = storeReach(store);
  if (reach === undefined) {
    logger.warn({}, 'cluster: unknown message store; qos 1 needs one store shared by every node');
    return;
  }
  if (brokerReach === 'process' || RANK[reach] >= RANK[brokerReach]) return;
  const what = reach === 'process' ? 'an in-memory store (one process)' : 'a SQLite store (one machine)';
  const need = brokerReach === 'machine' ? 'a SQLite file or Redis' : 'Redis (RedisStore)';
  throw new PylonError(
    'BAD_REQUEST',
    `cluster: ${what} is not shared by the nodes of this cluster; qos 1 needs ${need} (or pass sharedStore: true if no qos 1 is used)`,
  );
}

/** The URLs clients use to reach a node. */
export function nodeUrls(
  addresses: GatewayAddresses,
  o: { address?: string; wsUrl?: string; tcpUrl?: string; wsPath?: string },
): { wsUrl?: string; tcpUrl?: string } {
  const host = (a: { address: string; family: string }) => {
    const h = o.address ?? (a.address === '0.0.0.0' || a.address === '::' ? hostname() : a.address);
    return h.includes(':') ? `[${h}]` : h;
  };
  const out: { wsUrl?: string; tcpUrl?: string } = {};
  const ws =
    o.wsUrl ??
    (addresses.ws ? `ws://${host(addresses.ws)}:${addresses.ws.port}${o.wsPath ?? '/ws'}` : undefined);
  const tcp = o.tcpUrl ?? (addresses.tcp ? `tcp://${host(addresses.tcp)}:${addresses.tcp.port}` : undefined);
  if (ws !== undefined) out.wsUrl = ws;
  if (tcp !== undefined) out.tcpUrl = tcp;
  return out;
}

/** The `max` largest labels. */
export function labelSnapshot(counts: Map<string, number>, max: number): Record<string, number> {
  let entries = [...counts];
  if (entries.length > max) entries = entries.sort((a, b) => b[1] - a[1]).slice(0, max);
  return Object.fromEntries(entries);
}

/** Calls `fn` on every item, `chunk` at a time, yielding to the event loop between chunks. */
export function forEachChunked<T>(items: T[], chunk: number, fn: (item: T) => void): void {
  let i = 0;
  const step = () => {
    const end = Math.min(items.length, i + chunk);
    for (; i < end; i++) fn(items[i] as T);
    if (i < items.length) setImmediate(step);
  };
  step();
}
