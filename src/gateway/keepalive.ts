import type { Connection } from './connection.js';

/**
 * The one timer callback of every connection (module-level: no closure per connection).
 * While the handshake (hello, then the validate hook) runs it is the handshake deadline;
 * afterwards it checks for life:
 * - idle < interval: sleep until the connection has been idle for one interval;
 * - interval <= idle < timeout: send a ping and check again after min(interval, time left);
 * - idle >= timeout: close with keepalive_timeout.
 * Received frames only update `lastRecv`; they never touch the timer, so busy connections
 * cost one wheel entry and one check per interval.
 */
export function onConnectionTimer(conn: Connection): void {
  const host = conn.owner;
  if (conn.state === 'handshake' || conn.state === 'auth') {
    host.handshakeExpired(conn);
    return;
  }
  if (conn.state !== 'open') return;
  const ka = host.keepalive;
  if (ka === undefined) return;
  if (conn.oneWay !== undefined) {
    // A one-way stream cannot answer: it gets a sign of life each interval, and a reader that
    // is gone shows as a write error or as a buffer over its cap (slow_consumer).
    conn.link.heartbeat?.();
    conn.timer?.reschedule(ka.interval);
    return;
  }
  const idle = host.now() - conn.lastRecv;
  if (idle >= ka.timeout) {
    host.keepaliveExpired(conn, idle);
    return;
  }
  if (idle >= ka.interval) {
    conn.write({ kind: 'ping' });
    conn.timer?.reschedule(Math.min(ka.interval, ka.timeout - idle));
    return;
  }
  conn.timer?.reschedule(ka.interval - idle);
}
