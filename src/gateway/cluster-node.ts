import type { EventEmitter } from 'node:events';
import type { Delivery } from '../delivery/delivery.js';
import type { Hub } from '../hub/hub.js';
import type { Logger } from '../log/logger.js';
import type { TimerScope } from '../timer/scope.js';
import type { WheelTimer } from '../timer/wheel.js';
import type { ClusterNode, Operation } from './cluster-link.js';
import type { Connection } from './connection.js';
import type { GatewayAddresses, GatewayEvents, GatewayStats, HandedSession } from './types.js';

/** What the adapter reads of the gateway's core (which implements it). */
export interface NodeHost {
  readonly nodeId: string;
  readonly startedAt: number;
  readonly logger: Logger;
  readonly delivery: Delivery;
  readonly addresses: GatewayAddresses;
  readonly draining: boolean;
  readonly hub: Hub<Connection>;
  readonly connections: ReadonlyMap<string, Connection>;
  readonly events: EventEmitter<GatewayEvents>;
  readonly timers: TimerScope;
  stats(): GatewayStats;
  run(op: Operation): Promise<void>;
  adoptSessions(sessions: readonly HandedSession[]): void;
}

/** The narrow view of the gateway its cluster gets (not the class: src/cluster never imports it). */
export function clusterNodeOf(core: NodeHost): ClusterNode {
  return {
    nodeId: core.nodeId,
    startedAt: core.startedAt,
    logger: core.logger,
    store: core.delivery.store,
    addresses: core.addresses,
    get draining() {
      return core.draining;
    },
    stats: () => core.stats(),
    labelCounts: () => core.hub.labelCounts(),
    online: (user) => core.hub.countUser(user) > 0,
    localUsers: () => {
      const users = new Set<string>();
      for (const c of core.connections.values())
        if (c.state === 'open' && c.user !== undefined) users.add(c.user);
      return users;
    },
    watchUsers: (listener) => {
      const onEvent = (conn: Connection) => {
        if (conn.user !== undefined) listener(conn.user);
      };
      core.events.on('connect', onEvent);
      core.events.on('disconnect', onEvent);
      return () => {
        core.events.off('connect', onEvent);
        core.events.off('disconnect', onEvent);
      };
    },
    after: (ms, fn): WheelTimer => core.timers.after(ms, fn),
    every: (ms, fn): WheelTimer => core.timers.every(ms, fn),
    watchLabels: (listener) => {
      if (core.hub.onLabel !== undefined) throw new Error('cluster: labels are watched already');
      core.hub.onLabel = listener;
      return () => {
        core.hub.onLabel = undefined;
      };
    },
    run: (op) => core.run(op),
    adoptSessions: (sessions) => core.adoptSessions(sessions),
    notify: (user, trace) => {
      if (trace !== undefined) core.delivery.spans?.remember(trace.push, trace.traceparent);
      core.delivery.notify(user);
    },
  };
}
