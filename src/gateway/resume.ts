import { randomBytes } from 'node:crypto';
import { Journal } from '../delivery/journal.js';
import { type Broadcast, encodeBroadcast } from '../hub/fanout.js';
import type { Target } from '../hub/member.js';
import { matchesTarget } from '../hub/target.js';
import type { TimingWheel, WheelTimer } from '../timer/wheel.js';
import type { OutFrame } from '../transport/out-frame.js';
import type { Connection } from './connection.js';

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
}

const NOT_RESUMED: ResumeResult = { resumed: false, recovered: false, replay: [] };

/**
 * Sessions of connections that dropped, kept for the resume window: a client that comes back in
 * time with its session id gets its labels back and the qos-0 pushes it missed (qos-1 ones wait
 * in its inbox anyway), without logging in to labels again.
 */
export class Resumes {
  readonly journal: Journal;
  private readonly saved = new Map<string, SavedSession>();

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
    };
    s.timer = this.wheel.schedule(this.options.window, forget, { resumes: this, id });
    this.saved.set(id, s);
  }

  /**
   * The users of sessions waiting to be resumed that `target` would select: a qos-1 push to a
   * label is stored for them too, so a user whose link just dropped does not miss it.
   */
  usersMatching(target: Target): string[] {
    const users: string[] = [];
    for (const s of this.saved.values()) {
      if (s.user !== undefined && matchesTarget(target, s.user, s.labels, s.connection)) users.push(s.user);
    }
    return users;
  }

  /** @internal */
  drop(id: string): void {
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
    this.saved.delete(id);
    s.timer?.cancel();
    for (const label of s.labels) conn.join(label);
    const labels: readonly string[] = conn.labels ?? [];
    const { entries, complete } = this.journal.since(s.journalPos, Date.now());
    const replay: OutFrame[] = [];
    for (const e of entries) {
      if (matchesTarget(e.target, s.user, labels, s.connection))
        replay.push(encodeBroadcast(conn.codec, labels, e.push));
    }
    return { resumed: true, recovered: complete, replay };
  }

  close(): void {
    for (const s of this.saved.values()) s.timer?.cancel();
    this.saved.clear();
  }
}

function forget(arg: { resumes: Resumes; id: string }): void {
  arg.resumes.drop(arg.id);
}
