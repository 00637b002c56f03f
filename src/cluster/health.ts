/** Whether a backend (broker, registry) can be used right now, and why not. */
export interface Health {
  readonly up: boolean;
  /** Why it is down (the last connection error), or undefined while up. */
  readonly reason: string | undefined;
  /** Wall-clock ms of the last change. */
  readonly since: number;
  /** Called on every change, up → down and down → up (never twice in the same state). */
  onChange(listener: (up: boolean, reason: string | undefined) => void): void;
}

/** A Health whose owner sets it. */
export class HealthState implements Health {
  up: boolean;
  reason: string | undefined;
  since = Date.now();
  private readonly listeners: Array<(up: boolean, reason: string | undefined) => void> = [];

  constructor(up = true, reason?: string) {
    this.up = up;
    this.reason = up ? undefined : reason;
  }

  onChange(listener: (up: boolean, reason: string | undefined) => void): void {
    this.listeners.push(listener);
  }

  set(up: boolean, reason?: string): void {
    if (!up && reason !== undefined) this.reason = reason;
    if (up === this.up) return;
    this.up = up;
    this.since = Date.now();
    this.reason = up ? undefined : (reason ?? 'down');
    for (const l of this.listeners) l(up, this.reason);
  }
}

/** Always up: in-process backends. */
export const ALWAYS_UP: Health = new HealthState(true);
