import { randomUUID } from 'node:crypto';
import type { Delivery } from '../delivery/delivery.js';
import type { Broadcast, Fanout } from '../hub/fanout.js';
import type { Hub } from '../hub/hub.js';
import type { Target } from '../hub/member.js';
import { parseTarget } from '../hub/target.js';
import { dataDepth, MAX_DATA_DEPTH } from '../protocol/depth.js';
import { PylonError } from '../protocol/errors.js';
import type { Connection } from './connection.js';
import type { History } from './history.js';
import type { Resumes } from './resume.js';
import type { PushOptions, PushResult } from './types.js';

/** Longest a qos-1 message may wait for its ack: 30 days (ms). */
export const MAX_TTL = 30 * 86_400_000;
/** The pace of a paced push, in connections per second. */
export const MIN_RATE = 1;
export const MAX_RATE = 10_000_000;

/** What a push goes through. */
export interface Pushing {
  hub: Hub<Connection>;
  fanout: Fanout;
  delivery: Delivery;
  resumes: Resumes | undefined;
  history: History;
}

/**
 * gateway.push: checks its input (BAD_REQUEST naming the field), then
 * - qos 0: selects the connections, records the push for resumed sessions, fans it out;
 * - qos 1: resolves the target to users and hands them to delivery (store, then send).
 */
export async function pushTo(
  p: Pushing,
  target: Target,
  type: string,
  data: unknown,
  options: PushOptions,
  /** The push's id: given when another node accepted it (a qos-1 message is stored under it, once per user). */
  id: string = randomUUID(),
  /** False on the nodes that run a push another node accepted (a shared history is written once, there). */
  accepted = true,
): Promise<PushResult> {
  const t = parseTarget(target, 'target');
  if (typeof type !== 'string' || type.length === 0)
    throw new PylonError('BAD_REQUEST', 'type: must be a non-empty string');
  const qos = options.qos ?? 0;
  if (qos !== 0 && qos !== 1) throw new PylonError('BAD_REQUEST', 'qos: must be 0 or 1');
  checkData(data, 'data');
  if (
    options.ttl !== undefined &&
    !(Number.isFinite(options.ttl) && options.ttl >= 1 && options.ttl <= MAX_TTL)
  ) {
    throw new PylonError('BAD_REQUEST', `ttl: must be from 1 to ${MAX_TTL} ms (30 days)`);
  }
  if (options.rate !== undefined && !(options.rate >= MIN_RATE && options.rate <= MAX_RATE)) {
    throw new PylonError(
      'BAD_REQUEST',
      `rate: must be from ${MIN_RATE} to ${MAX_RATE} connections per second`,
    );
  }
  // The labels' history, once the push is accepted: in memory on every node that runs it; in a
  // shared store (SQLite, Redis) only on the node that accepted it.
  const record = () => {
    if (p.history.enabled && 'labels' in t && (accepted || !p.history.shared))
      p.history.record(
        [...(t.labels.all ?? []), ...(t.labels.any ?? [])],
        { type, data, at: Date.now() },
        id,
      );
  };
  if (qos === 1) {
    if (options.variants !== undefined) throw new PylonError('BAD_REQUEST', 'variants: only for qos 0');
    const users = usersOf(p.hub, t, p.resumes);
    let targeted = 0;
    for (const u of users) targeted += p.hub.countUser(u);
    await p.delivery.push(users, { id, type, data }, options.ttl);
    record();
    return { id, targeted, stored: users.length, done: Promise.resolve({ delivered: targeted, dropped: 0 }) };
  }
  let variants: Map<string, unknown> | undefined;
  if (options.variants !== undefined) {
    if (typeof options.variants !== 'object' || options.variants === null) {
      throw new PylonError('BAD_REQUEST', 'variants: must be an object of label -> data');
    }
    variants = new Map(Object.entries(options.variants));
    for (const [label, v] of variants) checkData(v, `variants.${label}`);
  }
  const push: Broadcast =
    'labels' in t
      ? { type, data, variants, topics: [...(t.labels.all ?? []), ...(t.labels.any ?? [])] }
      : { type, data, variants };
  const members = p.hub.select(t);
  // Backpressure where the push is accepted (a node running another's push must run it), before
  // anything records it: a refused push is not replayed to resumed sessions either.
  const everyone = 'all' in t;
  if (accepted && options.rate === undefined) p.fanout.admit(members.length, everyone);
  const pos = p.resumes?.record(t, push);
  const result = p.fanout.deliver(members, push, options.rate, pos, everyone ? p.hub.adds : undefined);
  record();
  return { id, targeted: result.targeted, done: result.done };
}

/** The distinct users a qos-1 push to `t` is for (user targets include offline users; label targets, dropped sessions). */
function usersOf(hub: Hub<Connection>, t: Target, resumes: Resumes | undefined): string[] {
  if ('user' in t) return [t.user];
  if ('users' in t) return [...new Set(t.users)];
  const users = new Set<string>();
  for (const m of hub.select(t)) if (m.user !== undefined) users.add(m.user);
  // Users whose link dropped a moment ago still belong to their labels until the resume window ends.
  if (resumes) for (const u of resumes.usersMatching(t)) users.add(u);
  return [...users];
}

/** A payload every codec can encode: nested at most MAX_DATA_DEPTH deep (encoders recurse). */
function checkData(data: unknown, field: string): void {
  if (dataDepth(data) < 0) {
    throw new PylonError('BAD_REQUEST', `${field}: nested deeper than ${MAX_DATA_DEPTH} levels`);
  }
}
