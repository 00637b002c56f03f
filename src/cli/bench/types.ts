// The public types of `pylon bench`'s engine (re-exported by index.ts).
import type { Workload } from './messages.js';

export type { Workload } from './messages.js';

export interface BenchOptions {
  /** `host:port` of the gateway's TCP listener (e.g. `127.0.0.1:8081`). */
  tcp: string;
  /** `ws://host:port/ws` (used when transport is 'ws'). */
  ws?: string;
  transport: 'tcp' | 'ws';
  /** Admin API (pushes and `/v1/stats`), e.g. `{ url: 'http://127.0.0.1:9090' }`. */
  admin?: { url: string; key?: string };
  /** Connections to open. */
  connections: number;
  /** New connections per second overall; 0 or undefined: as fast as a bounded number of connects in flight per process allows. */
  connectRate?: number;
  workload: Workload;
  /** Seconds the workload runs once every connection is open (or failed). */
  duration: number;
  /** broadcast: pushes/s (default 1); qos1: pushes/s (default 100); echo: requests/s per connection (default: closed loop). */
  rate?: number;
  /** Bytes of payload in echo requests and pushes (default 64). */
  payload?: number;
  /** Connections per client process (default 15,000; at most 19,500). */
  perProcess?: number;
  /** Loopback source addresses to bind (default for an IPv4 loopback target: 127.0.0.2, … at 10,000 connections each). */
  sourceAddresses?: string[];
  /** Called about every 500 ms. */
  progress?: (p: BenchProgress) => void;
  log?: (line: string) => void;
  /** Aborts the run: children are killed and runBench rejects. */
  signal?: AbortSignal;
}

export type BenchPhase = 'starting' | 'connecting' | 'settling' | 'running' | 'draining' | 'closing';

export interface BenchProgress {
  phase: BenchPhase;
  workload: Workload;
  /** Connections asked for. */
  requested: number;
  /** Connections that completed their handshake. */
  connected: number;
  /** Connections open now. */
  open: number;
  /** Connections that never completed their handshake. */
  failed: number;
  /** Handshakes completed per second over the last interval. */
  connectPerSecond: number;
  /** Seconds since the phase began. */
  elapsed: number;
  /** The workload's duration in seconds. */
  duration: number;
  /** Echo answers or pushes received in the workload so far. */
  messages: number;
  messagesPerSecond: number;
  /** Deliveries the drain waits for (broadcast, qos1), else null. */
  expected: number | null;
  /** Failed connects, lost connections, request timeouts and errors, failed admin calls. */
  errors: number;
}

/** Latency quantiles in milliseconds. */
export interface BenchLatency {
  p50: number;
  p90: number;
  p99: number;
  max: number;
  mean: number;
}

export interface BenchReport {
  /** The options as run (functions left out, the admin key masked, source addresses resolved). */
  options: {
    tcp: string;
    ws: string | null;
    transport: 'tcp' | 'ws';
    admin: { url: string; key: string | null } | null;
    connections: number;
    connectRate: number;
    workload: Workload;
    duration: number;
    rate: number | null;
    payload: number;
    perProcess: number;
    sourceAddresses: string[];
  };
  connect: {
    requested: number;
    connected: number;
    failed: number;
    /** From the first dial to the last connection done (open or failed). */
    seconds: number;
    /** connected / seconds. */
    perSecond: number;
    /** Dial to welcome, ms. */
    p50: number;
    p90: number;
    p99: number;
    max: number;
    mean: number;
  };
  workload: {
    kind: Workload;
    /** From the start of the workload to the end of its drain. */
    seconds: number;
    /** Echo answers, or pushes received (broadcast: deliveries; qos1: distinct pushes). */
    messages: number;
    perSecond: number;
    /** Echo: request to answer; pushes: admin call to receipt. ms. */
    latency: BenchLatency;
    /** broadcast, qos1: the admin pushes (qos1 counts one per user). */
    pushes: { sent: number; accepted: number; failed: number; behind: number } | null;
    /** broadcast: accepted pushes × open connections; qos1: messages stored; else null. */
    expected: number | null;
    /** qos1: pushes received again on a connection (seq not above the last one). */
    duplicates: number;
    /** broadcast, qos1: expected − messages (never below 0); else null. */
    missing: number | null;
    /** Bench pushes stamped before this workload (left in inboxes by an earlier run): acked, not counted. */
    stale: number;
  };
  errors: {
    /** Connections that never completed the handshake. */
    connect: number;
    /** Failed connects by reason. */
    connectReasons: Record<string, number>;
    /** Connections lost after their welcome (kicked ones included). */
    closed: number;
    /** Kicks received after the welcome, by disconnect code. */
    kicked: Record<string, number>;
    /** Echo requests unanswered within 10 s. */
    timeouts: number;
    /** Echo answers carrying an error (e.g. TOO_MANY_REQUESTS). */
    requestErrors: number;
    /** Failed admin API calls (pushes). */
    admin: number;
  };
  /** The gateway as `/v1/stats` reports it (null without `admin`). Memory figures are null when the nodes do not report `process`. */
  server: {
    nodes: number | null;
    /** Connections the nodes report once settled. */
    connections: number | null;
    /** The nodes' counts reached the expected total before memory was read. */
    settled: boolean;
    rssBefore: number | null;
    rssAfter: number | null;
    heapBefore: number | null;
    heapAfter: number | null;
    /** After the workload (no settling). */
    rssEnd: number | null;
    heapEnd: number | null;
    bytesPerConnection: { rss: number | null; heap: number | null };
    note: string | null;
  } | null;
  clientProcesses: number;
  /** ISO time. */
  startedAt: string;
  /** The whole run. */
  seconds: number;
}
