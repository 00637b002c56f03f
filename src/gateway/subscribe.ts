import type { DisconnectName } from '../protocol/disconnect.js';
import type { Envelope } from '../protocol/envelope.js';
import { PylonError } from '../protocol/errors.js';
import type { Connection } from './connection.js';
import { type DispatchHost, reply } from './dispatch.js';
import { checkLabel, checkRoom, type LabelLimits, type LabelTotals, rememberSubscribed } from './labels.js';
import type { RateLimitOptions } from './options.js';
import { takeToken } from './rate-limit.js';

export interface SubscribeHost extends DispatchHost {
  readonly subscriptions: {
    authorizeSub:
      | ((connection: Connection, label: string, action: 'sub' | 'unsub') => boolean | Promise<boolean>)
      | undefined;
    labels: LabelLimits;
    rateLimit: RateLimitOptions | undefined;
  };
  readonly labelTotals: LabelTotals;
  /** The gateway clock's now (monotonic ms). */
  now(): number;
  /** A `sub` succeeded and was answered: what follows it (an MQTT client's retained messages). */
  subscribed?(conn: Connection, labels: readonly string[]): void;
  disconnect(conn: Connection, name: DisconnectName, reason?: string): void;
}

/**
 * A client's `sub`/`unsub`: join or leave the labels if the authorizeSub hook allows every one
 * of them (all or nothing), answered by a `res` with the connection's labels after the change.
 */
export function subscribe(host: SubscribeHost, conn: Connection, env: Envelope): void {
  const id = env.id;
  if (id === undefined) {
    host.disconnect(conn, 'protocol_error', `${env.kind} needs an id`);
    return;
  }
  const action = env.kind as 'sub' | 'unsub';
  const limit = host.subscriptions.rateLimit;
  if (limit !== undefined) {
    conn.subBucket ??= { tokens: -1, refilled: 0 };
    if (!takeToken(conn.subBucket, limit, Math.floor(host.now()))) {
      reply(
        host,
        conn,
        id,
        undefined,
        new PylonError('TOO_MANY_REQUESTS', `more than ${limit.rate} label changes/s`),
      );
      return;
    }
  }
  const { authorizeSub, labels: limits } = host.subscriptions;
  const maxLabels = limits.perConnection;
  const labels = (env.data as { labels?: unknown } | undefined)?.labels;
  if (!Array.isArray(labels) || labels.length === 0 || labels.length > maxLabels) {
    reply(
      host,
      conn,
      id,
      undefined,
      new PylonError('BAD_REQUEST', `data.labels: must be a list of 1 to ${maxLabels} labels`),
    );
    return;
  }
  for (const l of labels) {
    try {
      checkLabel(l);
    } catch (err) {
      reply(host, conn, id, undefined, err);
      return;
    }
  }
  // Leaving a label the connection does not hold changes nothing: not asked of the policy.
  const wanted = action === 'unsub' ? (labels as string[]).filter((l) => conn.has(l)) : (labels as string[]);
  if (wanted.length === 0) {
    reply(host, conn, id, { labels: conn.labels ? [...conn.labels] : [] }, undefined);
    return;
  }
  if (authorizeSub === undefined) {
    reply(
      host,
      conn,
      id,
      undefined,
      new PylonError('FORBIDDEN', 'this gateway does not allow clients to choose labels'),
    );
    return;
  }
  Promise.all(wanted.map(async (l) => [l, await authorizeSub(conn, l, action)] as const)).then(
    (answers) => {
      const refused = answers.find(([, ok]) => ok !== true);
      if (refused) {
        reply(
          host,
          conn,
          id,
          undefined,
          new PylonError('FORBIDDEN', `not allowed to ${action} "${refused[0]}"`),
        );
        return;
      }
      // All or nothing: refuse before joining any if the new labels would pass the limit.
      if (action === 'sub') {
        try {
          checkRoom(
            limits,
            host.labelTotals,
            conn.labels,
            answers.map(([l]) => l),
          );
        } catch (err) {
          reply(host, conn, id, undefined, err);
          return;
        }
      }
      try {
        for (const [l] of answers) {
          if (action === 'sub') {
            conn.join(l);
            if (conn.has(l)) rememberSubscribed(conn, l);
          } else conn.leave(l);
        }
        reply(host, conn, id, { labels: conn.labels ? [...conn.labels] : [] }, undefined);
        if (action === 'sub') host.subscribed?.(conn, wanted);
      } catch (err) {
        reply(host, conn, id, undefined, err);
      }
    },
    (err: unknown) => reply(host, conn, id, undefined, err),
  );
}
