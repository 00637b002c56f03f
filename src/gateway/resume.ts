import { randomBytes } from 'node:crypto';
import { Journal } from '../delivery/journal.js';
import type { Target } from '../hub/member.js';
import { type Broadcast, encodeBroadcast } from '../hub/push-frames.js';
import { matchesTarget } from '../hub/target.js';
import type { Logger } from '../log/logger.js';
import type { OutFrame } from '../net/out-frame.js';
import type { SessionLog, StoredSession } from '../store/session-log.js';
import type { TimingWheel, WheelTimer } from '../timer/wheel.js';
import type { Connection } from './connection.js';
import type { HandedSession } from './types.js';

export interface ResumeOptions {
  /** How long a dropped session waits to be resumed (ms). Default 2 min. */
  window: number;
  /** qos-0 pushes remembered for replay, at most. Default 10,000. */
  historySize: number;
  /** qos-0 pushes older than this are not replayed (ms). Default: the window. */
  historyAge: number;
  /** Dropped sessions kept at most; over it the oldest is forgotten. Default 100,000 (~200 bytes each, plus labels). */
  maxSessions: number;
  /** Dropped sessions of one user kept at most; over it that user's oldest is forgotten. Default 16. */
  maxSessionsPerUser: number;
  /** Dropped sessions of one remote address kept at most; over it that address's oldest is forgotten. Default 10,000. */
  maxSessionsPerAddress: number;
  /**
   * Keep dropped sessions in the store too, where it can (SQLite, Redis): clients then resume
   * after a restart of the gateway and through any gateway of the store. Default true.
   */
  durable: boolean;
}

export interface ResumeResult {
  resumed: boolean;
  /** Every qos-0 push the session missed was still in the history (false: some were lost). */
  recovered: boolean;
  replay: OutFrame[];
}

/**
 * A dropped session. Its labels are kept by where they came from: the identity's are not kept
 * (a resumed connection gets those of its new identity, so a revoked claim stays revoked);
 * those the application added come back; those the client subscribed to come back if
 * authorizeSub allows them again.
 */
export interface SavedSession {
  id: string;
  user: string | undefined;
  /** Added by the application (conn.join, updateUserLabels). */
  labels: string[];
  /** Subscribed by the client (`sub`). */
  subscribed: string[];
  connection: string;
  /** The client's address ('' for a session handed over by another node). */
  address: string;
  /** The journal position when the connection dropped: what came after was missed. */
  journalPos: number;
  /** The journal that position is in (its epoch): in another one, what was missed is not known. */
  epoch: string;
  /** ms since the epoch, when it was saved. */
  savedAt: number;
  timer: WheelTimer | undefined;
  /** Handed over by another node as it went away: what it missed before is not known here. */
  adopted: boolean;
}

/** Sessions adopted from other nodes, at most (each is ~150 bytes). */
const MAX_ADOPTED = 500_000;

export const NOT_RESUMED: ResumeResult = { resumed: false, recovered: false, replay: [] };

/** Where a Resumes keeps sessions beyond its memory. */
export interface ResumeStore {
  log: SessionLog;
  /**
   * The store key this gateway's journal goes under when it stops cleanly, and that it takes
   * over as it starts; undefined: none (in a cluster, pushes accepted while it is down go on
   * elsewhere, so the journal would have holes).
   */
  journal: string | undefined;
  onError: (err: unknown, what: string) => void;
}

/**
 * Sessions of connections that dropped, kept for the resume window: a client that comes back in
 * time with its session id gets its labels back and the qos-0 pushes it missed (qos-1 ones wait
 * in its inbox anyway), without logging in to labels again.
 *
 * With a ResumeStore, every dropped session is also written to the store, and a resume takes it
 * from there (once, on whichever gateway of the store): it survives a restart, and moves between
 * nodes. Replay is exact where the session's journal is: on this gateway, and on a gateway that
 * took over the journal of one that stopped cleanly. Elsewhere `recovered` is false.
 */
export class Resumes {
  readonly journal: Journal;
  /** By id, oldest first (insertion order): the first is the one forgotten over maxSessions. */
  private readonly saved = new Map<string, SavedSession>();
  /** Session ids of each user, and of each remote address, oldest first. */
  private readonly byUser = new IdIndex();
  private readonly byAddress = new IdIndex();
  private adoptedCount = 0;
  /** Sessions waiting to be written to the store (one write per turn of the event loop). */
  private batch: StoredSession[] = [];
  private batchDone: Promise<void> | undefined;
  /** The write each session saved here is in, until it landed. */
  private readonly writing = new Map<string, Promise<void>>();

  constructor(
    private readonly wheel: TimingWheel,
    readonly options: ResumeOptions,
    private readonly store?: ResumeStore,
  ) {
    this.journal = new Journal({ size: options.historySize, maxAge: options.historyAge });
  }

  /** Sessions are kept in the store as well as here. */
  get durable(): boolean {
    return this.store !== undefined;
  }

  /** Takes over the journal a gateway of the same name left as it stopped cleanly (before any push). */
  async start(): Promise<void> {
    const st = this.store;
    // Pushes made before listen() started a journal of their own.
    if (st?.journal === undefined || this.journal.last !== 0) return;
    try {
      const snap = await st.log.takeState(st.journal);
      if (snap !== undefined && !this.journal.restore(snap, Date.now()))
        st.onError(new Error('not a journal snapshot'), 'resume: journal left by the last run');
    } catch (err) {
      st.onError(err, 'resume: reading the journal left by the last run');
    }
  }

  /** Writes what is waiting, then (a clean stop) leaves the journal for the next run. */
  async stop(): Promise<void> {
    const st = this.store;
    if (st === undefined) return;
    await this.batchDone;
    if (st.journal === undefined) return;
    const ttl = Math.max(this.options.window, this.options.historyAge);
    try {
      await st.log.putState(st.journal, this.journal.snapshot(Date.now()), ttl);
      this.sealed = st.journal;
    } catch (err) {
      st.onError(err, 'resume: leaving the journal for the next run');
    }
  }

  /** The state key of the journal left for the next run: a push recorded after it withdraws it. */
  private sealed: string | undefined;

  get size(): number {
    return this.saved.size;
  }

  /** A fresh session id for a connection (128 random bits: it is also a credential). */
  newId(): string {
    return randomBytes(16).toString('base64url');
  }

  /** Records a qos-0 push for sessions that resume; returns its journal position. */
  record(target: Target, push: Broadcast): number {
    if (this.sealed !== undefined && this.store !== undefined) {
      // Pushed after the journal was left: the next run must not take it as complete.
      const { log, onError } = this.store;
      log
        .takeState(this.sealed)
        .catch((err: unknown) => onError(err, 'resume: withdrawing the journal left'));
      this.sealed = undefined;
    }
    return this.journal.add(target, push, Date.now());
  }

  /** The journal position of the first push a connection was not written yet (set by the gateway). */
  unwritten: (conn: Connection) => number | undefined = () => undefined;

  /** Keep the session of a connection that dropped for a reason the client comes back from. */
  save(conn: Connection): void {
    const id = conn.session;
    if (id === undefined) return;
    this.drop(id); // saved again (a stop re-saving at a newer position)
    const { granted, subscribed } = labelsBySource(conn);
    const s: SavedSession = {
      id,
      user: conn.user,
      labels: granted,
      subscribed,
      connection: conn.id,
      address: conn.remoteAddress,
      // Replay from the first push still waiting for this connection in the fan-out, if any.
      journalPos: Math.min(this.journal.last, (this.unwritten(conn) ?? Number.POSITIVE_INFINITY) - 1),
      epoch: this.journal.epoch,
      savedAt: Date.now(),
      timer: undefined,
      adopted: false,
    };
    s.timer = this.wheel.schedule(this.options.window, forget, { resumes: this, id });
    this.keep(s);
    if (this.store) this.persist(s);
  }

  /**
   * A clean stop: the sessions of the open connections go to the store before they are told to
   * reconnect (a client back at once on another gateway finds its session there). Their
   * connections then save nothing more as they close.
   */
  async saveOpen(conns: Iterable<Connection>): Promise<void> {
    if (this.store === undefined) return;
    const open = [...conns].filter((c) => c.state === 'open' && c.session !== undefined);
    // Saved again (same ids, newer positions) while pushes came in during the write: a few tries.
    for (let tries = 0; tries < 3; tries++) {
      const last = this.journal.last;
      for (const c of open) this.save(c);
      await this.batchDone;
      if (this.journal.last === last) break;
    }
    for (const c of open) c.session = undefined;
  }

  /** Queues `s` for the store; one write a turn of the event loop carries every session queued. */
  private persist(s: SavedSession): void {
    const st = this.store as ResumeStore;
    this.batch.push({
      id: s.id,
      user: s.user,
      labels: s.labels,
      subscribed: s.subscribed,
      connection: s.connection,
      epoch: s.epoch,
      pos: s.journalPos,
      at: s.savedAt,
    });
    if (this.batch.length === 1) {
      const prev = this.batchDone ?? Promise.resolve();
      const done = new Promise<void>((resolve) => setImmediate(resolve))
        .then(() => prev)
        .then(() => {
          const batch = this.batch;
          this.batch = [];
          return st.log.save(batch, this.options.window).finally(() => {
            for (const x of batch) if (this.writing.get(x.id) === done) this.writing.delete(x.id);
          });
        })
        .catch((err: unknown) => st.onError(err, 'resume: saving sessions'));
      this.batchDone = done;
    }
    this.writing.set(s.id, this.batchDone as Promise<void>);
  }

  /** Adds a session within the bounds: the user's oldest, the address's oldest, then the oldest of all make room. */
  private keep(s: SavedSession): void {
    if (s.user !== undefined) {
      const ids = this.byUser.ids(s.user);
      for (let i = 0; ids.length - i >= this.options.maxSessionsPerUser; i++) this.evict(ids[i] as string);
      this.byUser.add(s.user, s.id);
    }
    if (s.address !== '') {
      const ids = this.byAddress.ids(s.address);
      for (let i = 0; ids.length - i >= this.options.maxSessionsPerAddress; i++) this.evict(ids[i] as string);
      this.byAddress.add(s.address, s.id);
    }
    while (this.saved.size >= this.options.maxSessions) {
      const oldest = this.saved.keys().next().value as string;
      this.evict(oldest);
    }
    this.saved.set(s.id, s);
  }

  /** The sessions dropped here and not yet resumed (to hand to other nodes). */
  own(): HandedSession[] {
    const out: HandedSession[] = [];
    for (const s of this.saved.values())
      if (!s.adopted) out.push({ id: s.id, user: s.user, labels: s.labels, subscribed: s.subscribed });
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
        subscribed: [...(h.subscribed ?? [])],
        connection: '',
        address: '',
        journalPos: this.journal.last,
        epoch: this.journal.epoch,
        savedAt: Date.now(),
        timer: undefined,
        adopted: true,
      };
      s.timer = this.wheel.schedule(this.options.window, forget, { resumes: this, id: h.id });
      this.keep(s);
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
      if (
        !s.adopted &&
        s.user !== undefined &&
        matchesTarget(target, s.user, [...s.labels, ...s.subscribed], s.connection)
      )
        users.push(s.user);
    }
    return users;
  }

  /** Forget a session pushed out by the bounds, in the store too. */
  private evict(id: string): void {
    const st = this.store;
    if (st !== undefined && this.saved.get(id)?.adopted === false) {
      const written = this.writing.get(id) ?? Promise.resolve();
      written
        .then(() => st.log.remove([id]))
        .catch((err: unknown) => st.onError(err, 'resume: removing a session'));
    }
    this.drop(id);
  }

  /** @internal Forget a session here (resumed, expired, or pushed out by the bounds). */
  drop(id: string): void {
    const s = this.saved.get(id);
    if (s === undefined) return;
    if (s.adopted) this.adoptedCount--;
    s.timer?.cancel();
    this.saved.delete(id);
    if (s.user !== undefined) this.byUser.remove(s.user, id);
    if (s.address !== '') this.byAddress.remove(s.address, id);
  }

  /**
   * Takes session `id` for a connection of `user`: only the same user (or, for anonymous
   * sessions, the holder of the id) may. The caller gives the labels back, then asks `replay`.
   */
  take(id: string, user: string | undefined): SavedSession | undefined | Promise<SavedSession | undefined> {
    if (this.store !== undefined) return this.takeStored(id, user, this.store);
    const s = this.saved.get(id);
    if (s === undefined || s.user !== user) return undefined;
    this.drop(id);
    return s;
  }

  /**
   * With a store, the store's copy decides (one resume of a session, whichever gateway it
   * reaches); the copy here stands in only when the store cannot be read.
   */
  private async takeStored(
    id: string,
    user: string | undefined,
    st: ResumeStore,
  ): Promise<SavedSession | undefined> {
    await this.writing.get(id);
    let stored: StoredSession | undefined;
    let failed = false;
    try {
      stored = await st.log.take(id);
    } catch (err) {
      st.onError(err, 'resume: reading a session');
      failed = true;
    }
    const local = this.saved.get(id);
    if (stored !== undefined && stored.user !== user) {
      // Not this user's: it stays for its owner.
      st.log
        .save([stored], this.options.window)
        .catch((err: unknown) => st.onError(err, 'resume: saving sessions'));
      return undefined;
    }
    if (local !== undefined && local.user === user) this.drop(id);
    if (stored === undefined) return failed && local?.user === user ? local : undefined;
    return {
      id,
      user: stored.user,
      labels: stored.labels,
      subscribed: stored.subscribed,
      connection: stored.connection,
      address: '',
      journalPos: stored.pos,
      epoch: stored.epoch,
      savedAt: stored.at,
      timer: undefined,
      adopted: false,
    };
  }

  /** The qos-0 pushes session `s` missed that `conn` (with its labels now) would have got, encoded for it. */
  replay(s: SavedSession, conn: Connection): ResumeResult {
    const labels: readonly string[] = conn.labels ?? [];
    const same = s.epoch === this.journal.epoch;
    // Another journal's positions do not compare: what this one recorded after the save, then.
    const { entries, complete } = this.journal.since(same ? s.journalPos : 0, Date.now());
    const replay: OutFrame[] = [];
    for (const e of entries) {
      if ((same || e.at > s.savedAt) && matchesTarget(e.target, s.user, labels, s.connection))
        replay.push(encodeBroadcast(conn.codec, labels, e.push));
    }
    return { resumed: true, recovered: complete && !s.adopted && same, replay };
  }

  close(): void {
    for (const s of this.saved.values()) s.timer?.cancel();
    this.saved.clear();
    this.byUser.clear();
    this.byAddress.clear();
    this.adoptedCount = 0;
  }
}

function forget(arg: { resumes: Resumes; id: string }): void {
  arg.resumes.drop(arg.id);
}

/** A connection's labels apart from its identity's: those the application added, and those the client subscribed to. */
export function labelsBySource(conn: Connection): { granted: string[]; subscribed: string[] } {
  const granted: string[] = [];
  const subscribed: string[] = [];
  for (const l of conn.labels ?? []) {
    if (conn.subscribed?.includes(l)) subscribed.push(l);
    else if (!conn.identityLabels?.includes(l)) granted.push(l);
  }
  return { granted, subscribed };
}

/**
 * Resume the session `conn` asked for (its hello's `session`), and give it a new session id:
 * the labels the application had added come back, those the client had subscribed to come back
 * if authorizeSub allows them again (the identity's are the new identity's), then the qos-0
 * pushes it missed are encoded for it. A promise when authorizeSub must be asked.
 */
export function resumeSession(
  resumes: Resumes | undefined,
  conn: Connection,
  authorize: ((conn: Connection, label: string, action: 'sub') => boolean | Promise<boolean>) | undefined,
  rejoin: (label: string, subscribed: boolean) => void,
): ResumeResult | Promise<ResumeResult> {
  if (resumes === undefined) return NOT_RESUMED;
  const asked = conn.resumeFrom;
  conn.resumeFrom = undefined;
  conn.session = resumes.newId();
  if (asked === undefined) return NOT_RESUMED;
  const taken = resumes.take(asked, conn.user);
  if (taken instanceof Promise)
    return taken.then((s) => (s === undefined ? NOT_RESUMED : restore(resumes, s, conn, authorize, rejoin)));
  if (taken === undefined) return NOT_RESUMED;
  return restore(resumes, taken, conn, authorize, rejoin);
}

function restore(
  resumes: Resumes,
  s: SavedSession,
  conn: Connection,
  authorize: ((conn: Connection, label: string, action: 'sub') => boolean | Promise<boolean>) | undefined,
  rejoin: (label: string, subscribed: boolean) => void,
): ResumeResult | Promise<ResumeResult> {
  for (const l of s.labels) rejoin(l, false);
  if (s.subscribed.length === 0 || authorize === undefined) return resumes.replay(s, conn);
  return Promise.all(
    s.subscribed.map(async (l) => [l, (await authorize(conn, l, 'sub')) === true] as const),
  ).then((answers) => {
    for (const [l, ok] of answers) if (ok) rejoin(l, true);
    return resumes.replay(s, conn);
  });
}

/**
 * This node is going away while the service stays: its sessions (dropped ones waiting, and
 * those of its open connections) go to the other nodes, so clients resume there. Waits at most
 * 2 s for the cluster, then 100 ms for the other nodes to take them in.
 */
export async function handOffSessions(
  cluster: { handOffSessions?(sessions: HandedSession[]): Promise<void> } | undefined,
  resumes: Resumes | undefined,
  connections: Iterable<Connection>,
  logger: Logger,
): Promise<void> {
  // Sessions in the store need no handing over: any gateway of the store takes them from there.
  if (cluster?.handOffSessions === undefined || resumes === undefined || resumes.durable) return;
  const sessions = resumes.own();
  for (const c of connections) {
    if (c.state === 'open' && c.session !== undefined) {
      const { granted, subscribed } = labelsBySource(c);
      sessions.push({ id: c.session, user: c.user, labels: granted, subscribed });
    }
  }
  if (sessions.length === 0) return;
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      cluster.handOffSessions(sessions),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error('no answer in 2 s')), 2000);
      }),
    ]);
    await new Promise((resolve) => setTimeout(resolve, 100));
  } catch (err) {
    logger.warn({ err, sessions: sessions.length }, 'sessions not handed to the other nodes');
  } finally {
    clearTimeout(timer);
  }
}

/** key -> ids, oldest first; one id is kept without an array (most users have one session). */
class IdIndex {
  private readonly map = new Map<string, string | string[]>();

  ids(key: string): string[] {
    const v = this.map.get(key);
    return v === undefined ? [] : typeof v === 'string' ? [v] : v.slice();
  }

  add(key: string, id: string): void {
    const v = this.map.get(key);
    if (v === undefined) this.map.set(key, id);
    else if (typeof v === 'string') this.map.set(key, [v, id]);
    else v.push(id);
  }

  remove(key: string, id: string): void {
    const v = this.map.get(key);
    if (v === id) this.map.delete(key);
    else if (Array.isArray(v)) {
      const rest = v.filter((x) => x !== id);
      if (rest.length === 0) this.map.delete(key);
      else this.map.set(key, rest.length === 1 ? (rest[0] as string) : rest);
    }
  }

  clear(): void {
    this.map.clear();
  }
}
