import type { LabelQuery, Member, Target } from './member.js';
import { matchesLabels } from './target.js';

export interface HubStats {
  connections: number;
  users: number;
  labels: number;
}

/**
 * Who is connected: user -> connections, label -> connections. Lookup by user and join/leave
 * of a label are O(1); selecting by labels is O(size of the smallest `all` label) or
 * O(sum of the `any` labels' sizes). Members carry their own label sets; the hub keeps the
 * reverse index in step through join/leave.
 */
export class Hub<M extends Member = Member> {
  private readonly members = new Map<string, M>();
  /** One member, or an array when the user has several connections: most users have one, and a Set each would cost ~200 bytes. */
  private readonly byUser = new Map<string, M | M[]>();
  private readonly byLabel = new Map<string, LabelSet<M>>();
  /** Connection-label pairs indexed. */
  memberships = 0;
  /**
   * Members ever added. `members` keeps insertion order, so the members added since a count was
   * read are among the last (now − then) of `all()`: what a broadcast sweep appends.
   */
  adds = 0;
  /**
   * Told when a label gets its first member here (`present` true) and when its last member
   * leaves (false): what a cluster adapter routes label pushes by. One listener.
   */
  onLabel: ((label: string, present: boolean) => void) | undefined;

  get size(): number {
    return this.members.size;
  }

  /** Distinct labels held by at least one member. */
  get distinct(): number {
    return this.byLabel.size;
  }

  /**
   * The hub's own string for `label` when some member holds it, else `label`: members that keep
   * it share one string instead of one each (labels arrive as fresh strings from every token).
   */
  readonly intern = (label: string): string => this.byLabel.get(label)?.label ?? label;

  /** Whether some member holds `label`. */
  hasLabel(label: string): boolean {
    return this.byLabel.has(label);
  }

  add(m: M): void {
    // A member under an id already held goes to the end (a Map keeps a replaced key's place).
    if (this.members.has(m.id)) this.members.delete(m.id);
    this.members.set(m.id, m);
    this.adds++;
    if (m.user !== undefined) {
      const cur = this.byUser.get(m.user);
      if (cur === undefined) this.byUser.set(m.user, m);
      else if (Array.isArray(cur)) cur.push(m);
      else this.byUser.set(m.user, [cur, m]);
    }
    if (m.labels) for (const label of m.labels) this.addTo(label, m);
  }

  remove(m: M): void {
    if (this.members.get(m.id) !== m) return;
    this.members.delete(m.id);
    if (m.user !== undefined) {
      const cur = this.byUser.get(m.user);
      if (cur === m) this.byUser.delete(m.user);
      else if (Array.isArray(cur)) {
        const rest = cur.filter((x) => x !== m);
        this.byUser.set(m.user, rest.length === 1 ? (rest[0] as M) : rest);
      }
    }
    if (m.labels) for (const label of m.labels) this.removeFrom(label, m);
  }

  has(m: M): boolean {
    return this.members.get(m.id) === m;
  }

  get(id: string): M | undefined {
    return this.members.get(id);
  }

  /** Index `m` under `label`. The caller has added the label to the member's own set. */
  indexLabel(m: M, label: string): void {
    if (this.has(m)) this.addTo(label, m);
  }

  /** Drop `m` from `label`'s index. */
  unindexLabel(m: M, label: string): void {
    if (this.has(m)) this.removeFrom(label, m);
  }

  /** The connections of `user` (empty when offline). A fresh array for the caller: O(devices of the user). */
  ofUser(user: string): M[] {
    const cur = this.byUser.get(user);
    if (cur === undefined) return [];
    return Array.isArray(cur) ? cur.slice() : [cur];
  }

  /** How many connections `user` has. */
  countUser(user: string): number {
    const cur = this.byUser.get(user);
    return cur === undefined ? 0 : Array.isArray(cur) ? cur.length : 1;
  }

  /** The connections that have `label`. */
  ofLabel(label: string): ReadonlySet<M> {
    return this.byLabel.get(label) ?? EMPTY;
  }

  /** How many connections each label has. */
  labelCounts(): Map<string, number> {
    const out = new Map<string, number>();
    for (const [label, set] of this.byLabel) out.set(label, set.size);
    return out;
  }

  stats(): HubStats {
    return { connections: this.members.size, users: this.byUser.size, labels: this.byLabel.size };
  }

  all(): IterableIterator<M> {
    return this.members.values();
  }

  /** The members a target selects, each once. */
  select(target: Target): M[] {
    if ('user' in target) return this.ofUser(target.user);
    if ('users' in target) {
      const out: M[] = [];
      // A connection has one user, so distinct users give distinct connections; repeated ids are skipped.
      const seen = target.users.length > 1 ? new Set<string>() : undefined;
      for (const u of target.users) {
        if (seen) {
          if (seen.has(u)) continue;
          seen.add(u);
        }
        for (const m of this.ofUser(u)) out.push(m);
      }
      return out;
    }
    if ('connection' in target) {
      const m = this.members.get(target.connection);
      return m ? [m] : [];
    }
    if ('all' in target) return [...this.members.values()];
    return this.selectLabels(target.labels);
  }

  private addTo(label: string, m: M): void {
    let set = this.byLabel.get(label);
    if (set === undefined) {
      set = new LabelSet<M>(label);
      this.byLabel.set(label, set);
      this.onLabel?.(label, true);
    }
    const before = set.size;
    set.add(m);
    this.memberships += set.size - before;
  }

  private removeFrom(label: string, m: M): void {
    const set = this.byLabel.get(label);
    if (set === undefined || !set.delete(m)) return;
    this.memberships--;
    if (set.size === 0) {
      this.byLabel.delete(label);
      this.onLabel?.(label, false);
    }
  }

  private selectLabels(q: LabelQuery): M[] {
    const all = q.all ?? [];
    const any = q.any ?? [];
    const out: M[] = [];
    if (all.length > 0) {
      // Walk the smallest `all` set; the rules are checked on each member's own label set.
      let smallest: ReadonlySet<M> | undefined;
      for (const label of all) {
        const set = this.byLabel.get(label);
        if (set === undefined) return out;
        if (smallest === undefined || set.size < smallest.size) smallest = set;
      }
      for (const m of smallest as ReadonlySet<M>)
        if (matchesLabels(q, m.labels as readonly string[])) out.push(m);
      return out;
    }
    if (any.length > 0) {
      // Union without a seen-set: a member is taken from the first `any` label it has.
      for (let i = 0; i < any.length; i++) {
        const set = this.byLabel.get(any[i] as string);
        if (set === undefined) continue;
        for (const m of set) {
          const labels = m.labels as readonly string[];
          if (!hasAnyBefore(labels, any, i) && matchesLabels(q, labels)) out.push(m);
        }
      }
      return out;
    }
    for (const m of this.members.values()) if (matchesLabels(q, m.labels ?? NONE)) out.push(m);
    return out;
  }
}

/** A label's members, knowing the label (its name is the string members share). */
class LabelSet<M> extends Set<M> {
  constructor(readonly label: string) {
    super();
  }
}

const EMPTY: ReadonlySet<never> = new Set<never>();
const NONE: readonly string[] = [];

function hasAnyBefore(labels: readonly string[], wanted: string[], end: number): boolean {
  for (let i = 0; i < end; i++) if (labels.includes(wanted[i] as string)) return true;
  return false;
}
