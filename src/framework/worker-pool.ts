import { availableParallelism } from 'node:os';
import { isAbsolute, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { type ResourceLimits, Worker } from 'node:worker_threads';
import { PylonError } from '../protocol/errors.js';

/**
 * A fixed set of worker threads for CPU-heavy work (hotpot's SlowCall), with a bounded queue.
 * Functions cannot cross threads, so work is named: a module (absolute path or file: URL; a
 * relative path is resolved from the working directory) and an export of it, which each worker
 * imports once. The module must be JavaScript Node can load. Arguments and results are
 * structured-cloned. Idle workers do not keep the process alive.
 */

/** `{ module, name }`, or "module#name" as a string or URL (name defaults to "default"). */
export type Work = { module: string | URL; name?: string } | string | URL;

export interface WorkerPoolOptions {
  /** Worker threads. Default: available parallelism − 1 (at least 1). */
  size?: number;
  /** Jobs waiting for a worker; more are refused with TOO_MANY_REQUESTS. Default 1024. */
  maxQueue?: number;
  /** Per-worker heap limits (a worker over them dies; its job fails, the worker is replaced). */
  resourceLimits?: ResourceLimits;
}

interface Job {
  id: number;
  module: string;
  name: string;
  arg: unknown;
  resolve(value: unknown): void;
  reject(err: Error): void;
}

interface Slot {
  worker: Worker;
  job: Job | undefined;
}

// Runs in each worker: import the named export once, call it, post the result or the error.
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const cache = new Map();
parentPort.on('message', async (job) => {
  try {
    const key = job.module + '#' + job.name;
    let fn = cache.get(key);
    if (fn === undefined) {
      const mod = await import(job.module);
      fn = mod[job.name];
      if (typeof fn !== 'function') throw new TypeError(job.name + ' is not a function exported by ' + job.module);
      cache.set(key, fn);
    }
    const result = await fn(job.arg);
    parentPort.postMessage({ id: job.id, ok: true, result });
  } catch (err) {
    const e = err instanceof Error ? err : new Error(String(err));
    parentPort.postMessage({ id: job.id, ok: false, error: { name: e.name, message: e.message, stack: e.stack, code: e.code } });
  }
});
`;

export class WorkerPool {
  readonly size: number;
  readonly maxQueue: number;
  private readonly slots: Slot[] = [];
  private readonly idle: Slot[] = [];
  private queue: Job[] = [];
  private nextId = 0;
  private closed = false;
  /** Jobs finished, failed, refused (queue full), and workers that died. */
  readonly counters = { done: 0, failed: 0, refused: 0, died: 0 };

  constructor(private readonly options: WorkerPoolOptions = {}) {
    this.size = options.size ?? Math.max(1, availableParallelism() - 1);
    this.maxQueue = options.maxQueue ?? 1024;
    if (!Number.isInteger(this.size) || this.size < 1)
      throw new RangeError(`pool size must be >= 1, got ${this.size}`);
  }

  /** Jobs waiting for a worker. */
  get queued(): number {
    return this.queue.length;
  }

  /** Jobs running now. */
  get busy(): number {
    return this.slots.length - this.idle.length;
  }

  /** Runs `work(arg)` on a worker; resolves with its (awaited) result. */
  run<R = unknown>(work: Work, arg?: unknown): Promise<R> {
    return new Promise<R>((res, rej) => {
      if (this.closed) {
        rej(new PylonError('UNAVAILABLE', 'worker pool is closed'));
        return;
      }
      const { module, name } = resolveWork(work);
      const job: Job = {
        id: ++this.nextId,
        module,
        name,
        arg,
        resolve: res as (v: unknown) => void,
        reject: rej,
      };
      const slot = this.idle.pop() ?? (this.slots.length < this.size ? this.spawn() : undefined);
      if (slot !== undefined) this.start(slot, job);
      else if (this.queue.length >= this.maxQueue) {
        this.counters.refused++;
        rej(new PylonError('TOO_MANY_REQUESTS', `worker pool queue is full (${this.maxQueue} jobs)`));
      } else this.queue.push(job);
    });
  }

  /** Refuses queued jobs (UNAVAILABLE) and terminates the workers; running jobs fail. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const gone = new PylonError('UNAVAILABLE', 'worker pool closed');
    for (const job of this.queue) job.reject(gone);
    this.queue = [];
    const slots = this.slots.splice(0);
    this.idle.length = 0;
    for (const s of slots) s.job?.reject(gone);
    await Promise.all(slots.map((s) => s.worker.terminate()));
  }

  private spawn(): Slot {
    const worker = new Worker(WORKER_SOURCE, {
      eval: true,
      ...(this.options.resourceLimits ? { resourceLimits: this.options.resourceLimits } : {}),
    });
    const slot: Slot = { worker, job: undefined };
    worker.on('message', (msg: Answer) => this.answered(slot, msg));
    worker.on('error', (err) => this.died(slot, err));
    worker.on('exit', (code) => this.died(slot, new Error(`worker exited with code ${code}`)));
    worker.unref();
    this.slots.push(slot);
    return slot;
  }

  private start(slot: Slot, job: Job): void {
    slot.job = job;
    slot.worker.ref();
    slot.worker.postMessage({ id: job.id, module: job.module, name: job.name, arg: job.arg });
  }

  private answered(slot: Slot, msg: Answer): void {
    const job = slot.job;
    if (job === undefined || job.id !== msg.id) return;
    slot.job = undefined;
    if (msg.ok) {
      this.counters.done++;
      job.resolve(msg.result);
    } else {
      this.counters.failed++;
      job.reject(remoteError(msg.error));
    }
    this.next(slot);
  }

  private next(slot: Slot): void {
    const job = this.queue.shift();
    if (job !== undefined) this.start(slot, job);
    else {
      slot.worker.unref();
      this.idle.push(slot);
    }
  }

  /** A worker crashed or exited: fail its job, replace it, go on with the queue. */
  private died(slot: Slot, err: Error): void {
    const i = this.slots.indexOf(slot);
    if (i < 0) return; // already handled (error then exit), or closing
    this.slots.splice(i, 1);
    const j = this.idle.indexOf(slot);
    if (j >= 0) this.idle.splice(j, 1);
    this.counters.died++;
    const job = slot.job;
    slot.job = undefined;
    if (job !== undefined) {
      this.counters.failed++;
      job.reject(new PylonError('INTERNAL', `worker died: ${err.message}`, { cause: err }));
    }
    void slot.worker.terminate();
    if (!this.closed && this.queue.length > 0) this.next(this.spawn());
  }
}

type Answer =
  | { id: number; ok: true; result: unknown }
  | { id: number; ok: false; error: { name: string; message: string; stack?: string; code?: unknown } };

function remoteError(e: { name: string; message: string; stack?: string; code?: unknown }): Error {
  const err =
    typeof e.code === 'string'
      ? new PylonError(e.code, e.message)
      : Object.assign(new Error(e.message), { name: e.name });
  if (e.stack) err.stack = e.stack;
  return err;
}

/** The worker-side specifier and export name of `work`. */
export function resolveWork(work: Work): { module: string; name: string } {
  let module: string | URL;
  let name: string;
  if (work instanceof URL) {
    const url = new URL(work);
    name = url.hash.length > 1 ? decodeURIComponent(url.hash.slice(1)) : 'default';
    url.hash = '';
    return { module: url.href, name };
  }
  if (typeof work === 'string') {
    const hash = work.lastIndexOf('#');
    module = hash > 0 ? work.slice(0, hash) : work;
    name = hash > 0 ? work.slice(hash + 1) : 'default';
  } else {
    module = work.module;
    name = work.name ?? 'default';
  }
  if (module instanceof URL) return { module: module.href, name };
  if (/^(file|data):/.test(module)) return { module, name };
  return { module: pathToFileURL(isAbsolute(module) ? module : resolve(module)).href, name };
}

let shared: WorkerPool | undefined;

/** The process's default pool (created on first use), used by groups that were given none. */
export function sharedPool(): WorkerPool {
  shared ??= new WorkerPool();
  return shared;
}
