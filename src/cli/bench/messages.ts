// The small JSON messages the bench coordinator and its client processes exchange over the IPC
// channel of child_process.fork.
import type { HistogramJson } from './histogram.js';

export type Workload = 'idle' | 'echo' | 'broadcast' | 'qos1';

/**
 * A run of consecutive connections of one client process that bind the same source address, and
 * the source ports they may use: [portFrom, portTo), a window no other run on that address shares.
 * Choosing the port avoids the kernel's search for a free one, which grows with every port taken
 * (binding 15,000 sockets to one address with port 0 took 17 s of system time here; 0.4 s with ports given).
 */
export interface SourceRun {
  /** Loopback source address to bind, or null to let the system choose (address and port). */
  address: string | null;
  count: number;
  portFrom: number;
  portTo: number;
}

/** What a client process is told to do (parent → child, `start`). */
export interface ChildConfig {
  /** This process's number, the `<process>` of user ids `bench-<process>-<i>`. */
  process: number;
  transport: 'tcp' | 'ws';
  host: string;
  port: number;
  /** WebSocket URL without the token (transport 'ws'). */
  wsUrl: string | null;
  /** Connections this process opens. */
  count: number;
  sources: SourceRun[];
  /** New connections per second for this process; 0: as fast as `maxInFlight` allows. */
  connectRate: number;
  /** Connects (dial to welcome) in flight at once. */
  maxInFlight: number;
  /** A connection without its welcome after this many ms has failed. */
  connectTimeoutMs: number;
  /** Connections not started by this many ms after `start` are counted as failed. */
  phaseTimeoutMs: number;
}

/** Parent → child. */
export type ToChild =
  | { type: 'start'; config: ChildConfig }
  | {
      type: 'run';
      workload: Workload;
      durationMs: number;
      /** Echo: requests per second per connection (0: closed loop). */
      rate: number;
      payload: number;
      /** Wall time (ms since the epoch) the workload started: pushes stamped earlier are stale. */
      since: number;
      /** Echo: a request unanswered this long counts as a timeout and is re-sent. */
      requestTimeoutMs: number;
    }
  | { type: 'stop' }
  | { type: 'close' };

/** Counters a client process reports every 500 ms and at the end. */
export interface ChildCounters {
  /** Connections that completed the handshake. */
  connected: number;
  /** Connections open now. */
  open: number;
  /** Connections that never completed the handshake. */
  failed: number;
  /** Failed connects by reason (error code, `kick <code>`, `timeout`, ...). */
  reasons: Record<string, number>;
  /** Connections lost after their welcome (kicked ones included). */
  closed: number;
  /** Kick frames received after the welcome, by disconnect code. */
  kicked: Record<string, number>;
  /** Echo answers, or bench pushes received, counted for the workload. */
  messages: number;
  /** qos 1: pushes whose seq was not above the last one on the connection. */
  duplicates: number;
  /** Bench pushes stamped before this run's workload started (an earlier run's leftovers). */
  stale: number;
  /** Echo requests unanswered within the request timeout. */
  timeouts: number;
  /** Echo answers that carried an error. */
  requestErrors: number;
  /** qos 1: acks sent. */
  acks: number;
}

/** Every counter at zero. */
export function emptyCounters(): ChildCounters {
  return {
    connected: 0,
    open: 0,
    failed: 0,
    reasons: {},
    closed: 0,
    kicked: {},
    messages: 0,
    duplicates: 0,
    stale: 0,
    timeouts: 0,
    requestErrors: 0,
    acks: 0,
  };
}

/** Child → parent. */
export type FromChild =
  | { type: 'ready'; pid: number }
  | { type: 'progress'; counters: ChildCounters }
  | {
      type: 'connected';
      counters: ChildCounters;
      /** Indexes `i` of the users whose connection failed (at most 10,000 listed). */
      failedIndexes: number[];
      seconds: number;
    }
  | { type: 'stopped'; counters: ChildCounters; connectHist: HistogramJson; workHist: HistogramJson }
  | { type: 'closed' }
  | { type: 'fatal'; message: string };
