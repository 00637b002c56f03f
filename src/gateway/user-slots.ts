import type { Bucket } from './rate-limit.js';

/** A user's slots, and itself the token bucket of their frames (one object per user). */
interface UserState extends Bucket {
  /** Connections of the user holding a slot. */
  n: number;
}

/**
 * Per-user bounds of one process: how many connections a user holds at once, and one token
 * bucket for the frames of all of them. A connection takes a slot once its identity is known
 * (the handshake) and gives it back when it is gone. One entry per user with a connection:
 * bounded by the process's connection limit.
 */
export class UserSlots {
  private readonly users = new Map<string, UserState>();

  constructor(private readonly max: number) {}

  /** A slot for one more connection of `user`, with the user's bucket; undefined when it holds `max`. */
  take(user: string): Bucket | undefined {
    let s = this.users.get(user);
    if (s === undefined) {
      s = { n: 0, tokens: -1, refilled: 0 };
      this.users.set(user, s);
    }
    if (s.n >= this.max) return undefined;
    s.n++;
    return s;
  }

  give(user: string): void {
    const s = this.users.get(user);
    if (s === undefined) return;
    if (--s.n <= 0) this.users.delete(user);
  }

  /** Users with a slot (for stats). */
  get size(): number {
    return this.users.size;
  }
}
