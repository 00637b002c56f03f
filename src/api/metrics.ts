import { type IntervalHistogram, monitorEventLoopDelay } from 'node:perf_hooks';
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { Gateway } from '../gateway/gateway.js';
import type { GatewayStats } from '../gateway/types.js';
import type { MessageStore } from '../store/store.js';

/**
 * Prometheus metrics of a gateway, in a Registry of their own (never prom-client's global one,
 * so several gateways, or an application with metrics of its own, do not collide).
 *
 * Gauges and counters are read from gateway.stats() when scraped. The event-loop lag is measured
 * with perf_hooks.monitorEventLoopDelay and reset at each scrape: pylon_event_loop_lag_seconds
 * {stat=p50|p99|max} covers the time since the previous scrape. Store latency is a histogram
 * fed by `timeStore`; see there. Default process metrics (prom-client's) are included.
 */
export interface AdminMetrics {
  registry: Registry;
  /** Stop the event-loop monitor. */
  close(): void;
}

type Pick = (s: GatewayStats) => number;

const GAUGES: Array<[name: string, help: string, pick: Pick]> = [
  ['pylon_connections', 'Open connections.', (s) => s.connections],
  ['pylon_users', 'Users with at least one open connection.', (s) => s.users],
  ['pylon_labels', 'Labels held by at least one open connection.', (s) => s.labels],
  ['pylon_resumable_sessions', 'Dropped sessions waiting to be resumed.', (s) => s.resumable],
  [
    'pylon_fanout_backlog_ms',
    'How long the broadcasts waiting here would take to write at the current rate (ms).',
    (s) => s.fanout?.backlogMs ?? 0,
  ],
  [
    'pylon_store_up',
    '1 while the qos-1 store works, 0 when one of its calls failed in the last 30 s.',
    (s) => (s.store.ok ? 1 : 0),
  ],
];

const COUNTERS: Array<[name: string, help: string, pick: Pick]> = [
  ['pylon_messages_in_total', 'Frames received from clients.', (s) => s.messagesIn],
  ['pylon_messages_out_total', 'Frames sent to clients.', (s) => s.messagesOut],
  [
    'pylon_pushes_dropped_total',
    'qos-0 pushes dropped because a connection was over its high-water mark (backpressure).',
    (s) => s.pushesDropped,
  ],
  ['pylon_slow_consumers_total', 'Connections closed as slow consumers.', (s) => s.slowConsumers],
  [
    'pylon_pushes_refused_backlog_total',
    'Broadcasts refused because the ones waiting would take longer than fanoutMaxBacklog to write.',
    (s) => s.fanout?.refused ?? 0,
  ],
  ['pylon_auth_failures_total', 'Connections refused by the validate hook.', (s) => s.authFailures],
  ['pylon_store_errors_total', 'Calls to the qos-1 store that failed.', (s) => s.store.errors],
  ['pylon_qos1_stored_total', 'qos-1 messages stored in inboxes.', (s) => s.qos1.stored],
  ['pylon_qos1_sent_total', 'qos-1 messages sent.', (s) => s.qos1.sent],
  ['pylon_qos1_redelivered_total', 'qos-1 messages re-sent for want of an ack.', (s) => s.qos1.redelivered],
  ['pylon_qos1_acked_total', 'qos-1 messages acked.', (s) => s.qos1.acked],
  [
    'pylon_qos1_undelivered_total',
    'qos-1 messages reported undelivered (not acked within delivery.undeliveredAfter).',
    (s) => s.qos1.undelivered,
  ],
  [
    'pylon_qos1_delivered_after_notify_total',
    'qos-1 messages reported undelivered and acknowledged later.',
    (s) => s.qos1.deliveredAfterNotify,
  ],
  [
    'pylon_qos1_dead_letters_total',
    'qos-1 messages moved aside (expired, over the redelivery cap).',
    (s) => s.qos1.deadLetters,
  ],
];

/** Build the registry for `gateway`. `registry` may already hold metrics of the caller (e.g. the store histogram). */
export function createAdminMetrics(gateway: Gateway, registry = new Registry()): AdminMetrics {
  // One stats() per scrape: every collect of a scrape runs in the same synchronous pass.
  let cached: { at: number; stats: GatewayStats } | undefined;
  const stats = (): GatewayStats => {
    const now = performance.now();
    if (cached === undefined || now - cached.at > 50) cached = { at: now, stats: gateway.stats() };
    return cached.stats;
  };
  for (const [name, help, pick] of GAUGES) {
    new Gauge({
      name,
      help,
      registers: [registry],
      collect() {
        this.set(pick(stats()));
      },
    });
  }
  for (const [name, help, pick] of COUNTERS) {
    new Counter({
      name,
      help,
      registers: [registry],
      collect() {
        // The gateway keeps the running total; mirror it.
        this.reset();
        this.inc(pick(stats()));
      },
    });
  }
  const lag = monitorEventLoopDelay({ resolution: 10 });
  lag.enable();
  eventLoopGauges(registry, lag);
  collectDefaultMetrics({ register: registry });
  return {
    registry,
    close: () => lag.disable(),
  };
}

function eventLoopGauges(registry: Registry, lag: IntervalHistogram): void {
  const seconds = (ns: number) => (Number.isFinite(ns) ? ns / 1e9 : 0);
  new Gauge({
    name: 'pylon_event_loop_lag_seconds',
    help: 'Event-loop delay since the last scrape (perf_hooks.monitorEventLoopDelay), by statistic.',
    labelNames: ['stat'],
    registers: [registry],
    collect() {
      this.set({ stat: 'p50' }, seconds(lag.percentile(50)));
      this.set({ stat: 'p99' }, seconds(lag.percentile(99)));
      this.set({ stat: 'max' }, seconds(lag.max));
      lag.reset(); // a new window for the next scrape
    },
  });
}

/** The MessageStore methods timed by `timeStore`. */
export type StoreMethod =
  | 'append'
  | 'pending'
  | 'ack'
  | 'lastSeq'
  | 'bury'
  | 'expire'
  | 'deadLetters'
  | 'stats';

/**
 * A histogram of store latency, by method, registered in `registry`: pass it to `timeStore`,
 * and the same registry to startAdmin({ registry }).
 */
export function storeLatencyHistogram(registry: Registry): Histogram<'method'> {
  return new Histogram({
    name: 'pylon_store_duration_seconds',
    help: 'Latency of the qos-1 message store, by method.',
    labelNames: ['method'],
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [registry],
  });
}

/**
 * Wrap `store` so the latency of each call (successful or not) is observed in `histogram`,
 * labelled with the method name. The gateway only sees what it is given, so the caller passes
 * the wrapped store to createGateway:
 *
 * ```ts
 * const registry = new Registry();
 * const store = timeStore(SqliteStore.open('./data/pylon.db'), storeLatencyHistogram(registry));
 * const gateway = createGateway({ store, tcp: { port: 8081 } });
 * await startAdmin(gateway, { registry, keys: [process.env.PYLON_ADMIN_KEY] });
 * ```
 */
export function timeStore(store: MessageStore, histogram: Histogram<'method'>): MessageStore {
  const time = async <T>(method: StoreMethod, call: () => Promise<T>): Promise<T> => {
    const end = histogram.startTimer({ method });
    try {
      return await call();
    } finally {
      end();
    }
  };
  return {
    append: (users, message) => time('append', () => store.append(users, message)),
    pending: (user, afterSeq, limit, now) => time('pending', () => store.pending(user, afterSeq, limit, now)),
    ack: (user, uptoSeq) => time('ack', () => store.ack(user, uptoSeq)),
    lastSeq: (user) => time('lastSeq', () => store.lastSeq(user)),
    bury: (user, seq, reason, now) => time('bury', () => store.bury(user, seq, reason, now)),
    expire: (now) => time('expire', () => store.expire(now)),
    deadLetters: (limit) => time('deadLetters', () => store.deadLetters(limit)),
    stats: () => time('stats', () => store.stats()),
    close: () => store.close(),
  };
}
