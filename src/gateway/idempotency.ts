import { randomUUID } from 'node:crypto';
import { PylonError } from '../protocol/errors.js';
import type { IdempotencyKeys } from './cluster-link.js';
import type { PushResult } from './types.js';

/** Longest idempotency key, in characters. */
export const MAX_KEY_LENGTH = 256;
/** How long a key is remembered by default: 24 hours (ms). */
export const DEFAULT_KEY_WINDOW = 24 * 3600_000;

/**
 * Idempotency keys in this process: at most `maxKeys` (least recently claimed out first), each
 * for its window. A gateway without a cluster uses these; a cluster shares its registry's.
 */
export class MemoryKeys implements IdempotencyKeys {
  private readonly keys = new Map<string, { value: string; until: number }>();

  constructor(
    private readonly maxKeys = 100_000,
    private readonly now: () => number = Date.now,
  ) {}

  get size(): number {
    return this.keys.size;
  }

  async claim(key: string, value: string, ttlMs: number): Promise<string | undefined> {
    const now = this.now();
    const had = this.keys.get(key);
    if (had !== undefined && had.until >= now) return had.value;
    this.keys.delete(key);
    while (this.keys.size >= this.maxKeys) {
      const oldest = this.keys.keys().next().value as string;
      this.keys.delete(oldest);
    }
    this.keys.set(key, { value, until: now + ttlMs });
    return undefined;
  }

  async settle(key: string, value: string, ttlMs: number): Promise<void> {
    if (this.keys.has(key)) this.keys.set(key, { value, until: this.now() + ttlMs });
  }

  async release(key: string): Promise<void> {
    this.keys.delete(key);
  }
}

/** What a key holds: the first push's outcome (or its id while it runs). */
interface Outcome {
  id: string;
  targeted?: number;
  stored?: number;
}

/**
 * Runs `push` once per `key` within `windowMs` across every node sharing `keys`: a repeat gets
 * the first push's id, targeted and stored, with `duplicate: true`. A qos-0 push that fails
 * releases its key, so that a retry goes through. A qos-1 push that fails keeps its key
 * unsettled: it may have been stored all the same (a store that could not confirm a write, e.g.
 * WAIT short of replicas during a failover, rejects although the write was applied), so a retry
 * must reuse its message id. A qos-1 repeat that finds the key claimed but not settled (the
 * first is still running, or failed) runs the push again under the first one's id: the store
 * appends an id once per user, so nothing is stored twice and nothing claimed is lost. A qos-0
 * repeat in that state is answered as a duplicate (its id, targeted 0).
 */
export async function pushOnce(
  keys: IdempotencyKeys,
  key: string,
  windowMs: number,
  qos: 0 | 1,
  push: (id: string) => Promise<PushResult>,
): Promise<PushResult> {
  if (typeof key !== 'string' || key.length === 0 || key.length > MAX_KEY_LENGTH)
    throw new PylonError('BAD_REQUEST', `idempotencyKey: must be 1 to ${MAX_KEY_LENGTH} characters`);
  const id = randomUUID();
  const k = `push:${key}`;
  const prior = await keys.claim(k, JSON.stringify({ id } satisfies Outcome), windowMs);
  if (prior !== undefined) {
    const o = JSON.parse(prior) as Outcome;
    if (o.targeted === undefined && qos === 1) return settle(keys, k, windowMs, qos, () => push(o.id));
    const r: PushResult = {
      id: o.id,
      targeted: o.targeted ?? 0,
      duplicate: true,
      done: Promise.resolve({ delivered: 0, dropped: 0 }),
    };
    if (o.stored !== undefined) r.stored = o.stored;
    return r;
  }
  return settle(keys, k, windowMs, qos, () => push(id));
}

/** Runs the push; records its outcome under `k`, or, for qos 0, releases `k` if it failed. */
async function settle(
  keys: IdempotencyKeys,
  k: string,
  windowMs: number,
  qos: 0 | 1,
  push: () => Promise<PushResult>,
): Promise<PushResult> {
  let result: PushResult;
  try {
    result = await push();
  } catch (err) {
    // qos 0 stored nothing; a refusal of the push itself (bad input, not allowed) stored nothing either.
    if (qos === 0 || refusedOutright(err)) await keys.release(k).catch(() => {});
    throw err;
  }
  const outcome: Outcome = { id: result.id, targeted: result.targeted };
  if (result.stored !== undefined) outcome.stored = result.stored;
  await keys.settle(k, JSON.stringify(outcome), windowMs).catch(() => {});
  return result;
}

/** A push refused before anything was stored: its key may be used again. */
function refusedOutright(err: unknown): boolean {
  return err instanceof PylonError && (err.code === 'BAD_REQUEST' || err.code === 'FORBIDDEN');
}
