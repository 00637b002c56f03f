import type { Hub } from '../hub/hub.js';
import type { Connection } from './connection.js';

/**
 * Every connection of a gateway by id, as one read-only map: the open ones are the hub's
 * members, and only those not open yet (handshake, authentication) or closed before they
 * opened have an entry here. One table entry per open connection instead of two (~50 bytes).
 */
export class ConnectionIndex implements ReadonlyMap<string, Connection> {
  /** Connections not in the hub: from accept until they open, or until they finish if they never do. */
  private readonly opening = new Map<string, Connection>();

  constructor(private readonly hub: Hub<Connection>) {}

  /** A new connection (not open yet). */
  add(conn: Connection): void {
    this.opening.set(conn.id, conn);
  }

  /** The connection opened: the hub holds it now (call after hub.add). */
  opened(conn: Connection): void {
    this.opening.delete(conn.id);
  }

  /** The connection finished (whether it opened or not). */
  delete(conn: Connection): void {
    if (this.opening.get(conn.id) === conn) this.opening.delete(conn.id);
  }

  get size(): number {
    return this.opening.size + this.hub.size;
  }

  get(id: string): Connection | undefined {
    return this.hub.get(id) ?? this.opening.get(id);
  }

  has(id: string): boolean {
    return this.get(id) !== undefined;
  }

  *values(): MapIterator<Connection> {
    yield* this.opening.values();
    yield* this.hub.all();
  }

  *keys(): MapIterator<string> {
    for (const c of this.values()) yield c.id;
  }

  *entries(): MapIterator<[string, Connection]> {
    for (const c of this.values()) yield [c.id, c];
  }

  [Symbol.iterator](): MapIterator<[string, Connection]> {
    return this.entries();
  }

  forEach(
    fn: (value: Connection, key: string, map: ReadonlyMap<string, Connection>) => void,
    thisArg?: unknown,
  ): void {
    for (const c of this.values()) fn.call(thisArg, c, c.id, this);
  }
}
