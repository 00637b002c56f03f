import type { Hub } from '../hub/hub.js';
import { trustSet } from '../net/proxy.js';
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

/** Which connections `GET /v1/connections` lists: all of them match, each given field narrows. */
export interface ConnectionFilter {
  user?: string;
  label?: string;
  transport?: string;
  /** An IP address or a CIDR range ("10.0.0.0/8"). */
  address?: string;
}

/**
 * A page of the open connections the filter selects, in the order they were accepted (`after`:
 * the last connection id of the previous page). A user or a label is read from the hub's index;
 * other filters look at every connection (O(connections) per page).
 */
export function connectionsPage(
  all: ReadonlyMap<string, Connection>,
  hub: Hub<Connection>,
  filter: ConnectionFilter,
  page: { after?: string; limit?: number },
): { connections: ConnectionInfo[]; next?: string } {
  const limit = clampLimit(page.limit);
  const after = page.after === undefined ? -1 : seqOf(page.after);
  if (Number.isNaN(after)) throw new PylonError('BAD_REQUEST', 'after: not a connection id of this node');
  let address: { has(a: string): boolean } | undefined;
  if (filter.address !== undefined) {
    try {
      address = trustSet([filter.address]);
    } catch {
      throw new PylonError('BAD_REQUEST', 'address: must be an IP address or a CIDR range');
    }
  }
  let candidates: Iterable<Connection>;
  if (filter.user !== undefined) candidates = bySeq(hub.ofUser(filter.user));
  else if (filter.label !== undefined) candidates = bySeq(hub.ofLabel(filter.label));
  else candidates = all.values(); // a Map keeps insertion order: the order of the ids
  const out: ConnectionInfo[] = [];
  let more = false;
  for (const c of candidates) {
    if (c.state !== 'open' || seqOf(c.id) <= after) continue;
    if (filter.user !== undefined && c.user !== filter.user) continue;
    if (filter.label !== undefined && !c.labels?.includes(filter.label)) continue;
    if (filter.transport !== undefined && c.transport !== filter.transport) continue;
    if (address !== undefined && !address.has(c.remoteAddress)) continue;
    if (out.length === limit) {
      more = true;
      break;
    }
    out.push(describeConnection(c));
  }
  return more ? { connections: out, next: out.at(-1)?.id as string } : { connections: out };
}

/** The counter in a connection id (`<node>-<base 36>`); NaN for anything else. */
function seqOf(id: string): number {
  const i = id.lastIndexOf('-');
  const tail = id.slice(i + 1);
  return i > 0 && /^[0-9a-z]{1,10}$/.test(tail) ? Number.parseInt(tail, 36) : Number.NaN;
}

function bySeq(conns: Iterable<Connection>): Connection[] {
  return [...conns].sort((a, b) => seqOf(a.id) - seqOf(b.id));
}

export function describeConnection(c: Connection): ConnectionInfo {
  const info: ConnectionInfo = {
    id: c.id,
    transport: c.transport,
    codec: c.codec.name,
    remoteAddress: c.remoteAddress,
    labels: c.labels ? [...c.labels] : [],
    connectedAt: new Date(c.connectedAt).toISOString(),
    buffered: c.link.buffered,
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
