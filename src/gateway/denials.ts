import { PylonError } from '../protocol/errors.js';
import { type Denial, denialKey, mergeDenials } from '../store/denial-log.js';

export { type Denial, denialKey, parseDenial } from '../store/denial-log.js';

/** What a validator knows of the token a connection authenticated with (ms since the epoch). */
export interface TokenInfo {
  /** The token's id (JWT `jti`): revocable by id. */
  id?: string;
  /** When it was issued (JWT `iat`): revocable by "issued before" per user. */
  issuedAt?: number;
  /** When it expires (JWT `exp`). */
  expiresAt?: number;
}

/** Rules a process keeps at most (each ~200 bytes). Over it a new rule is refused, never an old one dropped. */
export const DEFAULT_MAX_DENIALS = 100_000;

/** Why a connection is refused: the disconnect name and the reason it is told. */
export interface Refusal {
  name: 'banned' | 'token_revoked' | 'token_expired';
  reason: string;
}

/**
 * The bans and token revocations in force, in memory: checked at every handshake (a resume
 * included, it authenticates again) with at most three map lookups, and against the open
 * connections when a rule is added. Bounded: at most `max` rules, ended ones swept.
 */
export class Denials {
  private readonly rules = new Map<string, Denial>();

  constructor(
    private readonly max = DEFAULT_MAX_DENIALS,
    private readonly now: () => number = Date.now,
  ) {}

  get size(): number {
    return this.rules.size;
  }

  /** Adds (or replaces) a rule; TOO_MANY_REQUESTS when `max` rules are in force. */
  add(d: Denial): void {
    const key = denialKey(d);
    if (!this.rules.has(key) && this.rules.size >= this.max) {
      this.sweep();
      if (this.rules.size >= this.max)
        throw new PylonError('TOO_MANY_REQUESTS', `${this.max} bans and revocations in force already`);
    }
    this.rules.set(key, d);
  }

  remove(key: string): boolean {
    return this.rules.delete(key);
  }

  get(key: string): Denial | undefined {
    return this.rules.get(key);
  }

  /**
   * `d` combined with the rule of its key in force: a later "issued before" never brings back
   * tokens an earlier one revoked (the later of the two times, the later of the two ends).
   */
  merge(d: Denial): Denial {
    return mergeDenials(this.live(denialKey(d)), d);
  }

  /** Every rule in force replaced by `list` (read back from the store). */
  replace(list: readonly Denial[]): void {
    this.rules.clear();
    const now = this.now();
    for (const d of list) if (d.until > now && this.rules.size < this.max) this.rules.set(denialKey(d), d);
  }

  /** Whether this very rule (same key, same time of making) is in force here. */
  known(d: Denial): boolean {
    return this.rules.get(denialKey(d))?.at === d.at;
  }

  /** The ban of `user`, if one is in force. */
  ban(user: string): Extract<Denial, { kind: 'ban' }> | undefined {
    const d = this.live(`ban:${user}`);
    return d?.kind === 'ban' ? d : undefined;
  }

  /** Why a connection of `user` with `token` is refused, or undefined. */
  check(user: string | undefined, token: TokenInfo | undefined): Refusal | undefined {
    if (this.rules.size === 0) return undefined;
    if (user !== undefined) {
      const ban = this.live(`ban:${user}`);
      if (ban !== undefined) return refusalOf(ban);
      const before = this.live(`before:${user}`);
      if (before?.kind === 'before' && token?.issuedAt !== undefined && token.issuedAt < before.before) {
        return refusalOf(before);
      }
    }
    if (token?.id !== undefined) {
      const jti = this.live(`jti:${token.id}`);
      if (jti !== undefined) return refusalOf(jti);
    }
    return undefined;
  }

  /** Drops the rules that ended. */
  sweep(): void {
    const now = this.now();
    for (const [key, d] of this.rules) if (d.until <= now) this.rules.delete(key);
  }

  private live(key: string): Denial | undefined {
    const d = this.rules.get(key);
    if (d === undefined) return undefined;
    if (d.until > this.now()) return d;
    this.rules.delete(key);
    return undefined;
  }
}

/** What a connection that `d` refuses is told: `banned until <ISO time>[: reason]`, or `token revoked …`. */
export function refusalOf(d: Denial): Refusal {
  const name = d.kind === 'ban' ? 'banned' : 'token_revoked';
  const what = d.kind === 'ban' ? 'banned' : 'token revoked';
  const until = new Date(d.until).toISOString();
  return { name, reason: d.reason ? `${what} until ${until}: ${d.reason}` : `${what} until ${until}` };
}

/** Does `d` refuse a connection of `user` with `token` (the open connections a new rule closes)? */
export function denies(d: Denial, user: string | undefined, token: TokenInfo | undefined): boolean {
  switch (d.kind) {
    case 'ban':
      return user === d.user;
    case 'before':
      return user === d.user && token?.issuedAt !== undefined && token.issuedAt < d.before;
    case 'jti':
      return token?.id === d.jti;
  }
}
