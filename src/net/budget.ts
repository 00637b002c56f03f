import { wheelFor } from '../timer/shared.js';
import type { WheelTimer } from '../timer/wheel.js';
import { LinkError } from './link.js';

/**
 * What every link of the process may make it hold, together: bytes of frames not yet whole
 * (inbound) and bytes written and not yet taken by the kernel (outbound). One client with ten
 * thousand connections can stay under every per-connection limit; these bound the sum. Over a
 * budget the links holding the most are closed (ties: the newest first) until the sum is back
 * under 90 % of it.
 */
export interface BudgetLimits {
  /** Bytes of unfinished frames held by all links of the process. Default 64 MiB. */
  maxPartialBytes: number;
  /** A frame (a WebSocket message) started must be whole within this long, ms. Default 15 s. */
  frameTimeout: number;
  /** Bytes queued for writing on all links of the process. Default 512 MiB. */
  maxOutboundBytes: number;
}

export const DEFAULT_BUDGET_LIMITS: BudgetLimits = {
  maxPartialBytes: 64 * 1024 * 1024,
  frameTimeout: 15_000,
  maxOutboundBytes: 512 * 1024 * 1024,
};

/** A link as the budgets see it (SocketLink and its kind implement it). */
export interface Holder {
  /** Accept order: larger is newer. */
  readonly seq: number;
  /** Bytes counted in the inbound budget. */
  inHeld: number;
  /** Clock ms when the unfinished frame began (0: none). */
  frameSince: number;
  /** Bytes counted in the outbound budget. */
  outHeld: number;
  /** Reading is paused by the sink: what is held waits on purpose (no frame deadline). */
  readonly paused: boolean;
  /** What is queued for writing now. */
  readonly buffered: number;
  /** Close the link for breaking a budget. */
  fail(err: LinkError): void;
}

const SWEEP_EVERY = 1000;
/** Outbound recounts (reading every holder's real buffer) happen at most this often, ms. */
const RECOUNT_EVERY = 100;

class Budgets {
  limits: BudgetLimits = { ...DEFAULT_BUDGET_LIMITS };
  inbound = 0;
  outbound = 0;
  /** Links closed for a budget since the start. */
  shed = { partial: 0, frameTimeout: 0, outbound: 0 };
  private readonly inHolders = new Set<Holder>();
  private readonly outHolders = new Set<Holder>();
  private sweeper: WheelTimer | undefined;
  private lastRecount = -Infinity;
  private recheck: WheelTimer | undefined;
  private readonly wheel = wheelFor();

  /** `h` now holds `bytes` of unfinished frames; `progressed`: a whole packet came since the last call. */
  setInbound(h: Holder, bytes: number, progressed: boolean): void {
    const was = h.inHeld;
    if (bytes === was && !(progressed && bytes > 0)) return;
    this.inbound += bytes - was;
    h.inHeld = bytes;
    if (bytes === 0) {
      h.frameSince = 0;
      this.inHolders.delete(h);
      return;
    }
    if (was === 0 || progressed) h.frameSince = this.wheel.now();
    this.inHolders.add(h);
    this.sweeper ??= this.wheel.every(SWEEP_EVERY, sweep, this);
    if (this.inbound > this.limits.maxPartialBytes) this.shedInbound();
  }

  /** `h` now has `bytes` queued for writing. */
  setOutbound(h: Holder, bytes: number): void {
    const was = h.outHeld;
    if (bytes === was) return;
    this.outbound += bytes - was;
    h.outHeld = bytes;
    if (bytes === 0) this.outHolders.delete(h);
    else this.outHolders.add(h);
    if (this.outbound > this.limits.maxOutboundBytes) this.shedOutbound();
  }

  /** `h` is gone: it holds nothing any more. */
  release(h: Holder): void {
    this.setInbound(h, 0, false);
    this.setOutbound(h, 0);
  }

  stats(): { partialBytes: number; partialLinks: number; outboundBytes: number; outboundLinks: number } {
    return {
      partialBytes: this.inbound,
      partialLinks: this.inHolders.size,
      outboundBytes: this.outbound,
      outboundLinks: this.outHolders.size,
    };
  }

  /** @internal Frames past their deadline. */
  sweep(): void {
    if (this.inHolders.size === 0) {
      this.sweeper?.cancel();
      this.sweeper = undefined;
      return;
    }
    const cutoff = this.wheel.now() - this.limits.frameTimeout;
    for (const h of [...this.inHolders]) {
      if (h.paused || h.frameSince === 0 || h.frameSince > cutoff) continue;
      this.shed.frameTimeout++;
      h.fail(
        new LinkError('frame_timeout', `a frame was not finished within ${this.limits.frameTimeout} ms`),
      );
      this.setInbound(h, 0, false);
    }
  }

  private shedInbound(): void {
    const target = this.limits.maxPartialBytes * 0.9;
    const order = [...this.inHolders].sort((a, b) => b.inHeld - a.inHeld || b.seq - a.seq);
    for (const h of order) {
      if (this.inbound <= target) break;
      this.shed.partial++;
      h.fail(
        new LinkError(
          'buffers_full',
          `unfinished frames of all connections are over ${this.limits.maxPartialBytes} bytes; this one held ${h.inHeld}`,
        ),
      );
      this.setInbound(h, 0, false);
    }
  }

  private shedOutbound(): void {
    const now = this.wheel.now();
    if (now - this.lastRecount < RECOUNT_EVERY) {
      // Checked a moment ago: look again once the interval has passed (writes may stop meanwhile).
      this.recheck ??= this.wheel.after(RECOUNT_EVERY - (now - this.lastRecount), () => {
        this.recheck = undefined;
        if (this.outbound > this.limits.maxOutboundBytes) this.shedOutbound();
      });
      return;
    }
    this.lastRecount = now;
    // The counts are read at each write and each drain, so some are stale (a buffer the kernel
    // took without a drain event): read every one before closing anybody.
    for (const h of [...this.outHolders]) this.setOutboundQuiet(h, h.buffered);
    if (this.outbound <= this.limits.maxOutboundBytes) return;
    const target = this.limits.maxOutboundBytes * 0.9;
    const order = [...this.outHolders].sort((a, b) => b.outHeld - a.outHeld || b.seq - a.seq);
    for (const h of order) {
      if (this.outbound <= target) break;
      this.shed.outbound++;
      h.fail(
        new LinkError(
          'slow_consumer',
          `outgoing buffers of all connections are over ${this.limits.maxOutboundBytes} bytes; this one held ${h.outHeld}`,
        ),
      );
      this.setOutboundQuiet(h, 0);
    }
  }

  private setOutboundQuiet(h: Holder, bytes: number): void {
    this.outbound += bytes - h.outHeld;
    h.outHeld = bytes;
    if (bytes === 0) this.outHolders.delete(h);
  }
}

function sweep(b: Budgets): void {
  b.sweep();
}

/** The budgets of the process (one for all listeners of both faces). */
export const budgets = new Budgets();

/**
 * Sets the process-wide limits (a gateway or framework server does, from its options, when it
 * starts listening: the last one started decides). Values left out keep theirs.
 */
export function setBudgetLimits(limits: Partial<BudgetLimits>): void {
  budgets.limits = { ...budgets.limits, ...definedOnly(limits) };
}

function definedOnly(o: Partial<BudgetLimits>): Partial<BudgetLimits> {
  const out: Partial<BudgetLimits> = {};
  for (const k of Object.keys(o) as Array<keyof BudgetLimits>) if (o[k] !== undefined) out[k] = o[k];
  return out;
}
