import { randomBytes } from 'node:crypto';
import { Journal } from '../delivery/journal.js';
import { type Broadcast, encodeBroadcast } from '../hub/fanout.js';
import type { Target } from '../hub/member.js';
import { matchesTarget } from '../hub/target.js';
import type { TimingWheel, WheelTimer } from '../timer/wheel.js';
import type { OutFrame } from '../transport/out-frame.js';
import type { Connection } from './connection.js';
import type { HandedSession } from './types.js';

export interface ResumeOptions {
  /** How long a dropped session waits to be resumed (ms). Default 2 min. */
  window: number;
  /** qos-0 pushes remembered for replay, at most. Default 10,000. */
  historySize: number;
  /** qos-0 pushes older than this are not replayed (ms). Default: the window. */
  historyAge: number;
}

export interface ResumeResult {
  resumed: boolean;
  /** Every qos-0 push the session missed was still in the history (false: some were lost). */
  recovered: boolean;
  replay: OutFrame[];
}

interface SavedSession {
  id: string;
  user: string | undefined;
  labels: string[];
  connection: string;
  /** The journal position when the connection dropped: what came after was missed. */
  journalPos: number;
  timer: WheelTimer | undefined;
  /** Handed over by another node as it went away: what it missed before is not known here. */
  adopted: boolean;
}

/** Sessions adopted from other nodes, at most (each is ~150 bytes). */
const MAX_ADOPTED = 500_000;

const NOT_RESUMED: ResumeResult = { resumed: false, recovered: false, replay: [] };

/**
 * Sessions of connections that dropped, kept for the resume window: a client that comes back in
 * time with its session id gets its labels back and the qos-0 pushes it missed (qos-1 ones wait
 * in its inbox anyway), without logging in to labels again.
 */
export class Resumes {
  readonly journal: Journal;
  private readonly saved = new Map<string, SavedSession>();
  private adoptedCount = 0;

  constructor(
    private readonly wheel: TimingWheel,
    readonly options: ResumeOptions,
  ) {
    this.journal = new Journal({ size: options.historySize, maxAge: options.historyAge });
  }

  get size(): number {
    return this.saved.size;
  }

  /** A fresh session id for a connection (128 random bits: it is also a credential). */
  newId(): string {
    return randomBytes(16).toString('base64url');
  }

  record(target: Target, push: Broadcast): void {
    this.journal.add(target, push, Date.now());
  }

  /** Keep the session of a connection that dropped for a reason the client comes back from. */
  save(conn: Connection): void {
    const id = conn.session;
    if (id === undefined) return;
    const s: SavedSession = {
      id,
      user: conn.user,
      labels: conn.labels ? [...conn.labels] : [],
      connection: conn.id,
      journalPos: this.journal.last,
      timer: undefined,
      adopted: false,
    };
    s.timer = this.wheel.schedule(this.options.window, forget, { resumes: this, id });
    this.saved.set(id, s);
  }

  /** The sessions dropped here and not yet resumed (to hand to other nodes). */
  own(): HandedSession[] {
    const out: HandedSession[] = [];
    for (const s of this.saved.values())
      if (!s.adopted) out.push({ id: s.id, user: s.user, labels: s.labels });
    return out;
  }

  /**
   * Sessions another node handed over as it went away: resumable here for the window. The
   * qos-0 pushes recorded here from now on are replayed to them; earlier ones are not known
   * (`recovered: false`). Returns how many were taken (over MAX_ADOPTED the rest are not).
   */
  adopt(sessions: readonly HandedSession[]): number {
    let n = 0;
    for (const h of sessions) {
      if (this.saved.has(h.id) || this.adoptedCount >= MAX_ADOPTED) continue;
      const s: SavedSession = {
        id: h.id,
        user: h.user ?? undefined,
        labels: [...h.labels],
        connection: '',
        journalPos: this.journal.last,
        timer: undefined,
        adopted: true,
      };
      s.timer = this.wheel.schedule(this.options.window, forget, { resumes: this, id: h.id });
      this.saved.set(h.id, s);
      this.adoptedCount++;
      n++;
    }
    return n;
  }

  /**
   * The users of sessions waiting to be resumed that `target` would select: a qos-1 push to a
   * label is stored for them too, so a user whose link just dropped does not miss it.
   */
  usersMatching(target: Target): string[] {
    const users: string[] = [];
    for (const s of this.saved.values()) {
      // Not adopted ones: the node that handed them over stored for them, or will not be asked.
      if (!s.adopted && s.user !== undefined && matchesTarget(target, s.user, s.labels, s.connection))
        users.push(s.user);
    }
    return users;
  }

  /** @internal */
  drop(id: string): void {
    const s = this.saved.get(id);
    if (s?.adopted) this.adoptedCount--;
    this.saved.delete(id);
  }

  /**
   * `conn` asked to resume session `id`. Only the same user (or, for anonymous sessions, the
   * holder of the id) may take it; the labels come back and the missed qos-0 pushes are encoded
   * for `conn` to replay after its welcome.
   */
  take(id: string, conn: Connection): ResumeResult {
    const s = this.saved.get(id);
    if (s === undefined || s.user !== conn.user) return NOT_RESUMED;
    this.drop(id);
    s.timer?.cancel();
    for (const label of s.labels) conn.join(label);
    const labels: readonly string[] = conn.labels ?? [];
    const { entries, complete } = this.journal.since(s.journalPos, Date.now());
    const replay: OutFrame[] = [];
    for (const e of entries) {
      if (matchesTarget(e.target, s.user, labels, s.connection))
        replay.push(encodeBroadcast(conn.codec, labels, e.push));
    }
    return { resumed: true, recovered: complete && !s.adopted, replay };
  }

  close(): void {
    for (const s of this.saved.values()) s.timer?.cancel();
    this.saved.clear();
    this.adoptedCount = 0;
  }
}

function forget(arg: { resumes: Resumes; id: string }): void {
  arg.resumes.drop(arg.id);
}
