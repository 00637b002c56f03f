import { PylonError } from '../protocol/errors.js';
import type { LabelQuery, Target } from './member.js';

const MAX_LIST = 10_000;

function bad(field: string, message: string): never {
  throw new PylonError('BAD_REQUEST', `${field}: ${message}`);
}

function stringList(field: string, value: unknown): string[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) bad(field, 'must be an array of strings');
  if (value.length > MAX_LIST) bad(field, `at most ${MAX_LIST} entries`);
  for (let i = 0; i < value.length; i++) {
    const v = value[i];
    if (typeof v !== 'string' || v.length === 0) bad(`${field}[${i}]`, 'must be a non-empty string');
  }
  return value as string[];
}

/**
 * Checks a target that came from outside (admin API, library callers in JavaScript) and returns
 * it in canonical form, or throws PylonError BAD_REQUEST naming the field.
 */
export function parseTarget(value: unknown, field = 'to'): Target {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    bad(field, 'must be one of {user}, {users}, {connection}, {labels}, {all: true}');
  }
  const t = value as Record<string, unknown>;
  const keys = Object.keys(t);
  if (keys.length !== 1)
    bad(
      field,
      `must have exactly one of user, users, connection, labels, all; got ${keys.join(', ') || 'none'}`,
    );
  if ('user' in t) {
    if (typeof t.user !== 'string' || t.user.length === 0) bad(`${field}.user`, 'must be a non-empty string');
    return { user: t.user };
  }
  if ('users' in t) {
    const users = stringList(`${field}.users`, t.users);
    return { users };
  }
  if ('connection' in t) {
    if (typeof t.connection !== 'string' || t.connection.length === 0)
      bad(`${field}.connection`, 'must be a non-empty string');
    return { connection: t.connection };
  }
  if ('all' in t) {
    if (t.all !== true) bad(`${field}.all`, 'must be true');
    return { all: true };
  }
  if ('labels' in t) {
    const q = t.labels;
    if (typeof q !== 'object' || q === null || Array.isArray(q))
      bad(`${field}.labels`, 'must be an object {all, any, not}');
    const r = q as Record<string, unknown>;
    for (const k of Object.keys(r)) {
      if (k !== 'all' && k !== 'any' && k !== 'not')
        bad(`${field}.labels.${k}`, 'unknown key (use all, any, not)');
    }
    const labels: LabelQuery = {
      all: stringList(`${field}.labels.all`, r.all),
      any: stringList(`${field}.labels.any`, r.any),
      not: stringList(`${field}.labels.not`, r.not),
    };
    if (labels.all?.length === 0 && labels.any?.length === 0 && labels.not?.length === 0) {
      bad(`${field}.labels`, 'needs at least one label in all, any or not');
    }
    return { labels };
  }
  return bad(field, `unknown key "${keys[0]}"`);
}

/**
 * The label rules, for one member's labels: every `all`, at least one `any` (when given), no
 * `not`. Hub.select walks its index and keeps the members this accepts; nothing else decides.
 */
export function matchesLabels(q: LabelQuery, labels: readonly string[]): boolean {
  if (q.all) for (const l of q.all) if (!labels.includes(l)) return false;
  if (q.any && q.any.length > 0 && !q.any.some((l) => labels.includes(l))) return false;
  if (q.not) for (const l of q.not) if (labels.includes(l)) return false;
  return true;
}

/**
 * Would `target` select a connection of `user` with `labels` and id `connection`? Hub.select's
 * rules for one connection (used to replay missed pushes to a resumed session).
 */
export function matchesTarget(
  target: Target,
  user: string | undefined,
  labels: readonly string[],
  connection: string,
): boolean {
  if ('user' in target) return user !== undefined && target.user === user;
  if ('users' in target) return user !== undefined && target.users.includes(user);
  if ('connection' in target) return target.connection === connection;
  if ('all' in target) return true;
  return matchesLabels(target.labels, labels);
}
