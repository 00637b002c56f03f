/**
 * A rule that refuses connections, until `until` (ms since the epoch):
 * - `ban`: every connection of `user`;
 * - `jti`: connections that authenticated with the token whose id is `jti`;
 * - `before`: connections of `user` whose token was issued before `before` (a token without an
 *   issue time is not concerned: its validator must report `token.issuedAt`).
 */
export type Denial =
  | { kind: 'ban'; user: string; until: number; reason?: string; at: number }
  | { kind: 'jti'; jti: string; until: number; reason?: string; at: number }
  | { kind: 'before'; user: string; before: number; until: number; reason?: string; at: number };

/** The one key of a rule: a later rule of the same key replaces it. */
export function denialKey(d: Denial): string {
  return d.kind === 'jti' ? `jti:${d.jti}` : `${d.kind}:${d.user}`;
}

/**
 * `d` over the rule of its key already there: a later "issued before" never brings back tokens
 * an earlier one revoked (the later time and the later end of the two are kept); other kinds replace.
 */
export function mergeDenials(old: Denial | undefined, d: Denial): Denial {
  if (d.kind !== 'before' || old?.kind !== 'before') return d;
  return { ...d, before: Math.max(d.before, old.before), until: Math.max(d.until, old.until) };
}

/** Reads a rule off the wire or the store; undefined for anything else. */
export function parseDenial(v: unknown): Denial | undefined {
  if (typeof v !== 'object' || v === null) return undefined;
  const d = v as Record<string, unknown>;
  if (typeof d.until !== 'number' || typeof d.at !== 'number') return undefined;
  if (d.reason !== undefined && typeof d.reason !== 'string') return undefined;
  if (d.kind === 'ban' && typeof d.user === 'string') return d as Denial;
  if (d.kind === 'jti' && typeof d.jti === 'string') return d as Denial;
  if (d.kind === 'before' && typeof d.user === 'string' && typeof d.before === 'number') return d as Denial;
  return undefined;
}

/**
 * Bans and token revocations in a durable store (SQLite, Redis), so that every gateway of the
 * store refuses the same users and tokens, a gateway that starts later or restarts included.
 * Gateways keep them in memory (src/gateway/denials.ts) and read them here at start and when
 * `version` says another gateway changed them. Bounded by the gateway's limit on rules (a put
 * over it is refused before it gets here) and by each rule's end (ended rules are deleted).
 */
export interface DenialLog {
  /** Keep `d` until it ends (a rule of the same key is replaced). */
  put(d: Denial): Promise<void>;
  /** Forget the rule of `key` (an unban). */
  remove(key: string): Promise<void>;
  /** Every rule still in force. */
  list(): Promise<Denial[]>;
  /** Changes with every put and remove (one cheap read, to know when to list again). */
  version(): Promise<string>;
}

export function encodeDenial(d: Denial): string {
  return JSON.stringify(d);
}

export function decodeDenial(text: string): Denial | undefined {
  try {
    return parseDenial(JSON.parse(text));
  } catch {
    return undefined;
  }
}
