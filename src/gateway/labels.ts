import { PylonError } from '../protocol/errors.js';

/** Longest label, in characters. */
export const MAX_LABEL = 256;

/**
 * What labels may cost. Per connection: how many and how many characters in all (identity
 * labels, client `sub`s and the application's joins together). Process-wide: distinct labels
 * and connection-label memberships, so ten thousand connections cannot each invent 128 labels
 * (each distinct label costs a Set in the hub, ~250 bytes; each membership ~50 bytes).
 */
export interface LabelLimits {
  /** Labels one connection may have. Default 128 (Centrifugo's channel limit per client). */
  perConnection: number;
  /** Characters (UTF-16 code units) of one connection's labels together. Default 4096. */
  chars: number;
  /** Distinct labels the process holds. Default 250,000. */
  distinct: number;
  /** Connection-label pairs the process holds. Default 5,000,000. */
  memberships: number;
}

export const DEFAULT_LABEL_LIMITS: LabelLimits = {
  perConnection: 128,
  chars: 4096,
  distinct: 250_000,
  memberships: 5_000_000,
};

/** What the process holds now (the hub's counts). */
export interface LabelTotals {
  readonly distinct: number;
  readonly memberships: number;
  hasLabel(label: string): boolean;
}

/** A label is a non-empty string of at most 256 characters. */
export function checkLabel(label: unknown): string {
  if (typeof label !== 'string' || label.length === 0 || label.length > MAX_LABEL) {
    throw new PylonError('BAD_REQUEST', `a label must be a string of 1 to ${MAX_LABEL} characters`);
  }
  return label;
}

/**
 * Throws PylonError TOO_MANY_REQUESTS, saying which limit, if a connection holding `current`
 * may not add `adding` (those it already has are free) after dropping `removing`.
 * `counts` is undefined for a connection not yet in the hub (then only its own limits apply).
 */
export function checkRoom(
  limits: LabelLimits,
  counts: LabelTotals | undefined,
  current: readonly string[] | undefined,
  adding: Iterable<string>,
  removing?: ReadonlySet<string>,
): void {
  let n = 0;
  let chars = 0;
  for (const l of current ?? []) {
    if (removing?.has(l)) continue;
    n++;
    chars += l.length;
  }
  let fresh = 0;
  let distinct = 0;
  const seen = new Set<string>();
  for (const l of adding) {
    if (seen.has(l) || (current?.includes(l) && !removing?.has(l))) continue;
    seen.add(l);
    n++;
    chars += l.length;
    fresh++;
    if (counts !== undefined && !counts.hasLabel(l)) distinct++;
  }
  if (n > limits.perConnection) throw tooMany(`a connection may have at most ${limits.perConnection} labels`);
  if (chars > limits.chars)
    throw tooMany(`a connection's labels may have at most ${limits.chars} characters in all`);
  if (counts === undefined) return;
  if (counts.distinct + distinct > limits.distinct)
    throw tooMany(`the gateway holds ${counts.distinct} labels, its maximum is ${limits.distinct}`);
  if (counts.memberships + fresh > limits.memberships)
    throw tooMany(
      `the gateway holds ${counts.memberships} label memberships, its maximum is ${limits.memberships}`,
    );
}

function tooMany(message: string): PylonError {
  return new PylonError('TOO_MANY_REQUESTS', message);
}

/** Remembers `label` as one the client subscribed to (on resume it must pass authorizeSub again). */
export function rememberSubscribed(conn: { subscribed: string[] | undefined }, label: string): void {
  if (conn.subscribed === undefined) conn.subscribed = [label];
  else if (!conn.subscribed.includes(label)) conn.subscribed.push(label);
}
