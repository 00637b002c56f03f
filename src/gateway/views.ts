import type { Hub } from '../hub/hub.js';
import { PylonError } from '../protocol/errors.js';
import type { Connection } from './connection.js';
import type { ConnectionInfo, LabelPage, UserInfo } from './types.js';

/** What an operator sees of the hub: users, labels and their members, a page at a time. */

export function userInfo(hub: Hub<Connection>, user: string): UserInfo {
  const connections = hub.ofUser(user).map(describeConnection);
  return { user, online: connections.length > 0, connections };
}

/** Labels in name order with their counts (`after`: the last label of the previous page). */
export function labelsPage(
  hub: Hub<Connection>,
  page: { after?: string; limit?: number },
): { labels: Array<{ label: string; count: number }>; next?: string } {
  const limit = clampLimit(page.limit);
  const names = [...hub.labelCounts().keys()].sort();
  const start = page.after === undefined ? 0 : upperBound(names, page.after);
  const slice = names.slice(start, start + limit);
  const labels = slice.map((label) => ({ label, count: hub.ofLabel(label).size }));
  const next = start + limit < names.length ? slice.at(-1) : undefined;
  return next === undefined ? { labels } : { labels, next };
}

/** One label: its count and a page of its connections, in connection-id order. */
export function labelMembers(
  hub: Hub<Connection>,
  label: string,
  page: { after?: string; limit?: number },
): LabelPage {
  const limit = clampLimit(page.limit);
  const members = [...hub.ofLabel(label)].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const ids = members.map((m) => m.id);
  const start = page.after === undefined ? 0 : upperBound(ids, page.after);
  const slice = members.slice(start, start + limit).map((m) => ({ connection: m.id, user: m.user }));
  const result: LabelPage = { label, count: members.length, members: slice };
  if (start + limit < members.length) result.next = slice.at(-1)?.connection;
  return result;
}

export function describeConnection(c: Connection): ConnectionInfo {
  const info: ConnectionInfo = {
    id: c.id,
    transport: c.transport,
    remoteAddress: c.remoteAddress,
    labels: c.labels ? [...c.labels] : [],
    connectedAt: new Date(c.connectedAt).toISOString(),
  };
  if (c.user !== undefined) info.user = c.user;
  if (c.device !== undefined) info.device = c.device;
  if (c.version !== undefined) info.version = c.version;
  return info;
}

function clampLimit(limit: number | undefined): number {
  if (limit === undefined) return 100;
  if (!Number.isInteger(limit) || limit < 1 || limit > 1000) {
    throw new PylonError('BAD_REQUEST', 'limit: must be an integer from 1 to 1000');
  }
  return limit;
}

/** Index of the first name greater than `after` in sorted `names`. */
function upperBound(names: string[], after: string): number {
  let lo = 0;
  let hi = names.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((names[mid] as string) <= after) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
