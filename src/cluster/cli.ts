import nodeCluster from 'node:cluster';
import type { Cluster } from './cluster.js';
import { redisCluster, workerCluster } from './setup.js';
import { runPrimary, WORKER_READY } from './workers.js';

/** The `pylon start` flags that shape a cluster. */
export interface ClusterFlags {
  store: string;
  /** Whether --store (or PYLON_STORE) was given, rather than its default. */
  storeExplicit?: boolean;
  /** --redis: join the cluster of the gateways using this Redis (broker, registry, and store by default). */
  redis?: string;
  /** --redis-cluster: a single --redis URL is a seed of a Redis Cluster. */
  redisCluster?: boolean;
  /** --workers: processes on this machine. Default 1 (no workers). */
  workers?: number;
}

/** The store to open: with --redis and no explicit --store, the same Redis. */
export function clusterStore(flags: ClusterFlags): string {
  return flags.redis !== undefined && flags.storeExplicit !== true ? flags.redis : flags.store;
}

/**
 * Refuses combinations where qos 1 would silently break: workers each with their own memory
 * store, or machines each with their own SQLite file.
 */
export function checkClusterFlags(flags: ClusterFlags): void {
  const store = clusterStore(flags);
  const workers = flags.workers ?? 1;
  if (store === 'memory' && (workers > 1 || flags.redis !== undefined)) {
    throw new Error(
      `--store memory is not shared between ${flags.redis ? 'nodes' : 'workers'}; use ${flags.redis ? '--store redis://… (the default with --redis)' : 'sqlite:<path> (the default) or redis://…'}`,
    );
  }
  if (flags.redis !== undefined && store.startsWith('sqlite:')) {
    throw new Error(
      '--redis joins gateways on many machines, which cannot share a SQLite file; leave --store out (the store is then the same Redis) or give --store redis://…',
    );
  }
}

/** What the primary needs beyond the cluster flags. */
export interface SupervisorFlags extends ClusterFlags {
  /** Supervise even one worker (start -d): a reload then has a process to fork the new workers. */
  supervise?: boolean;
  /** ms; see PrimaryOptions. */
  drainTimeout?: number;
  stopTimeout?: number;
  shutdownGrace?: number;
  /** Called once every worker listens (start -d tells the launching command). */
  onReady?: () => void;
}

/**
 * With --workers N > 1 (or `supervise`) in the primary process: runs the workers (and, without
 * Redis, their broker and registry) until stopped, and returns true. Elsewhere returns false at once.
 */
export async function runAsPrimary(flags: SupervisorFlags): Promise<boolean> {
  const workers = flags.workers ?? 1;
  if ((workers <= 1 && flags.supervise !== true) || !nodeCluster.isPrimary) return false;
  checkClusterFlags(flags);
  const store = clusterStore(flags);
  // The workers of a reload check they run with what the primary was started with.
  process.env[SUPERVISOR_ENV] = JSON.stringify(supervisorSettings(flags));
  await runPrimary({
    workers,
    ipc: flags.redis === undefined,
    drainTimeout: flags.drainTimeout,
    stopTimeout: flags.stopTimeout,
    shutdownGrace: flags.shutdownGrace,
    onReady: flags.onReady,
    reloadRefused:
      store === 'memory'
        ? 'the memory store lives in the worker: its waiting qos-1 messages would be lost (use sqlite: or redis://)'
        : undefined,
  });
  process.exit(); // with process.exitCode: 1 when the first workers could not start
}

const SUPERVISOR_ENV = 'PYLON_SUPERVISOR';

/** What every worker of one primary must share: a reload cannot change them. */
function supervisorSettings(flags: ClusterFlags): Record<string, string | number | null> {
  return { store: clusterStore(flags), redis: flags.redis ?? null, workers: flags.workers ?? 1 };
}

/**
 * In a worker: throws if the store, the Redis or the number of workers differ from the primary's
 * (a reload read a changed config): two generations on different stores would strand qos-1
 * messages, so the new worker does not start and the reload is abandoned.
 */
export function checkSupervisorSettings(flags: ClusterFlags): void {
  const raw = process.env[SUPERVISOR_ENV];
  if (!nodeCluster.isWorker || raw === undefined) return;
  const was = JSON.parse(raw) as Record<string, unknown>;
  const now = supervisorSettings(flags);
  for (const key of ['store', 'redis', 'workers'] as const) {
    if (was[key] === now[key]) continue;
    const change = key === 'redis' ? '' : ` from ${was[key]} to ${now[key]}`; // a Redis URL may hold a password
    throw new Error(
      `${key} changed${change}: a reload cannot change store, redis or workers (the running workers keep theirs); use pylon restart`,
    );
  }
}

/** The cluster link for this process: Redis with --redis, the primary with --workers, else none. */
export async function openCluster(flags: ClusterFlags): Promise<Cluster | undefined> {
  checkClusterFlags(flags);
  checkSupervisorSettings(flags);
  if (flags.redis !== undefined)
    return redisCluster(flags.redis, { redisCluster: flags.redisCluster === true });
  // Every worker of a supervising primary: during a reload two generations serve side by side.
  // (Not with the memory store, which only one worker can have: its primary refuses reloads.)
  if (
    nodeCluster.isWorker &&
    process.env.PYLON_WORKER_INDEX !== undefined &&
    clusterStore(flags) !== 'memory'
  )
    return workerCluster();
  return undefined;
}

/** In a worker: tell the primary this worker is ready (it prints "ready" once all are) and return true. */
export function announceWorkerReady(): boolean {
  if (!nodeCluster.isWorker || process.send === undefined) return false;
  process.send(WORKER_READY);
  return true;
}

/** Whether this process is a worker of `pylon start --workers` (its primary handles a second signal). */
export function inWorker(): boolean {
  return nodeCluster.isWorker;
}
