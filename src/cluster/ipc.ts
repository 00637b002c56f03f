import type { Worker } from 'node:cluster';
import type { Broker, Reach } from './broker.js';
import { type Health, HealthState } from './health.js';
import { type ClusterMessage, decodeMessage, encodeMessage } from './messages.js';
import type {
  ClusterStats,
  LiveNode,
  LocalRegistry,
  NodeInfo,
  NodeLoad,
  OnlineChange,
  Registry,
} from './registry.js';

/*
 * `pylon start --workers N` without Redis: the workers of one machine talk through the primary
 * process over the IPC channel node:cluster gives them (process.send). The primary relays broker
 * messages to the workers subscribed to their channel and holds the registry (a LocalRegistry);
 * workers reach it with small request/response calls. The channel is set up with
 * `serialization: 'advanced'` (structured clone), so message bytes travel as they are.
 */

type ToPrimary =
  | { pylon: 'bus-sub'; channels: string[] }
  | { pylon: 'bus-unsub'; channels: string[] }
  | { pylon: 'bus-pub'; channel: string; bytes: Uint8Array }
  | { pylon: 'reg'; id: number; op: RegistryOp; args: unknown[] };

type ToWorker =
  | { pylon: 'bus-msg'; channel: string; bytes: Uint8Array }
  | { pylon: 'reg-res'; id: number; ok: true; result: unknown }
  | { pylon: 'reg-res'; id: number; ok: false; error: string };

type RegistryOp =
  | 'join'
  | 'heartbeat'
  | 'leave'
  | 'setOnline'
  | 'nodesOf'
  | 'locate'
  | 'lastNodeOf'
  | 'usersOn'
  | 'nodes'
  | 'stats'
  | 'claim'
  | 'settle'
  | 'release';

interface Channel {
  send?: (message: unknown, callback?: (err: Error | null) => void) => boolean;
  connected?: boolean;
  on(event: 'message', fn: (m: unknown) => void): unknown;
  on(event: 'disconnect', fn: () => void): unknown;
  off(event: 'message', fn: (m: unknown) => void): unknown;
}

function isPylon(m: unknown): m is { pylon: string } {
  return typeof m === 'object' && m !== null && typeof (m as { pylon?: unknown }).pylon === 'string';
}

function sendTo(channel: Channel, message: ToPrimary): Promise<void> {
  return new Promise((resolve, reject) => {
    if (channel.send === undefined || channel.connected === false) {
      reject(new Error('ipc: not connected to the primary process'));
      return;
    }
    channel.send(message, (err) => (err ? reject(err) : resolve()));
  });
}

/** The channel to the primary, shared by the worker's broker and registry. */
class PrimaryLink {
  readonly health = new HealthState(true);
  private readonly handlers = new Map<string, (bytes: Uint8Array) => void>();
  private readonly calls = new Map<
    number,
    { resolve(v: unknown): void; reject(e: Error): void; timer: NodeJS.Timeout }
  >();
  private nextId = 0;
  private readonly onMessage = (m: unknown) => this.receive(m);

  constructor(readonly channel: Channel) {
    if (channel.send === undefined) throw new Error('ipc: this process has no IPC channel (not a worker)');
    channel.on('message', this.onMessage);
    channel.on('disconnect', () => {
      this.health.set(false, 'ipc: the primary process is gone');
      for (const [, c] of this.calls) c.reject(new Error('ipc: the primary process is gone'));
      this.calls.clear();
    });
  }

  subscribe(channels: string[], fn: (bytes: Uint8Array) => void): Promise<void> {
    for (const c of channels) this.handlers.set(c, fn);
    return sendTo(this.channel, { pylon: 'bus-sub', channels });
  }

  unsubscribe(channels: string[]): Promise<void> {
    for (const c of channels) this.handlers.delete(c);
    return sendTo(this.channel, { pylon: 'bus-unsub', channels });
  }

  publish(channel: string, bytes: Uint8Array): Promise<void> {
    return sendTo(this.channel, { pylon: 'bus-pub', channel, bytes });
  }

  call(op: RegistryOp, args: unknown[], timeoutMs = 5000): Promise<unknown> {
    const id = ++this.nextId;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.calls.delete(id);
        reject(new Error(`ipc: registry ${op} got no answer in ${timeoutMs} ms`));
      }, timeoutMs);
      timer.unref();
      this.calls.set(id, { resolve, reject, timer });
      sendTo(this.channel, { pylon: 'reg', id, op, args }).catch((err: Error) => {
        clearTimeout(timer);
        this.calls.delete(id);
        reject(err);
      });
    });
  }

  close(): void {
    this.handlers.clear();
    this.channel.off('message', this.onMessage);
  }

  private receive(m: unknown): void {
    if (!isPylon(m)) return;
    const msg = m as ToWorker;
    if (msg.pylon === 'bus-msg') {
      try {
        this.handlers.get(msg.channel)?.(toBytes(msg.bytes));
      } catch {
        // Not a cluster message: dropped (at most once), as RedisBroker does.
      }
    } else if (msg.pylon === 'reg-res') {
      const c = this.calls.get(msg.id);
      if (c === undefined) return;
      this.calls.delete(msg.id);
      clearTimeout(c.timer);
      if (msg.ok) c.resolve(msg.result);
      else c.reject(new Error(msg.error));
    }
  }
}

/** JSON serialization turns a Buffer into {type, data}; advanced keeps it. Accept both. */
function toBytes(v: unknown): Uint8Array {
  if (v instanceof Uint8Array) return v;
  const o = v as { type?: string; data?: number[] };
  return Uint8Array.from(o.data ?? []);
}

let shared: PrimaryLink | undefined;
function link(channel: Channel): PrimaryLink {
  if (channel === (process as unknown as Channel)) {
    shared ??= new PrimaryLink(channel);
    return shared;
  }
  return new PrimaryLink(channel);
}

/** A worker's broker: messages go through the primary process (`servePrimary`). At most once. */
export class IpcBroker implements Broker {
  readonly reach: Reach = 'machine';
  private readonly link: PrimaryLink;

  constructor(channel: Channel = process as unknown as Channel) {
    this.link = link(channel);
  }

  get health(): Health {
    return this.link.health;
  }

  publish(channel: string, msg: ClusterMessage): Promise<void> {
    return this.link.publish(channel, encodeMessage(msg));
  }

  subscribe(channels: string | readonly string[], onMessage: (m: ClusterMessage) => void): Promise<void> {
    const list = typeof channels === 'string' ? [channels] : [...channels];
    return this.link.subscribe(list, (bytes) => onMessage(decodeMessage(bytes)));
  }

  unsubscribe(channels: readonly string[]): Promise<void> {
    return this.link.unsubscribe([...channels]);
  }

  async close(): Promise<void> {}
}

/** A worker's registry: the primary holds it (a LocalRegistry); calls go over IPC. */
export class IpcRegistry implements Registry {
  private readonly link: PrimaryLink;

  constructor(channel: Channel = process as unknown as Channel) {
    this.link = link(channel);
  }

  get health(): Health {
    return this.link.health;
  }

  async join(node: NodeInfo, ttlMs: number): Promise<void> {
    await this.link.call('join', [node, ttlMs]);
  }
  async heartbeat(node: string, load: NodeLoad): Promise<boolean> {
    return (await this.link.call('heartbeat', [node, load])) as boolean;
  }
  async leave(node: string): Promise<void> {
    await this.link.call('leave', [node]);
  }
  async setOnline(node: string, changes: readonly OnlineChange[], connections?: number): Promise<void> {
    await this.link.call('setOnline', [node, changes, connections]);
  }
  async nodesOf(user: string): Promise<string[]> {
    return (await this.link.call('nodesOf', [user])) as string[];
  }
  async locate(users: readonly string[]): Promise<Map<string, string[]>> {
    return new Map((await this.link.call('locate', [users])) as Array<[string, string[]]>);
  }
  async lastNodeOf(user: string): Promise<string | undefined> {
    return ((await this.link.call('lastNodeOf', [user])) as string | null) ?? undefined;
  }
  async usersOn(node: string): Promise<string[]> {
    return (await this.link.call('usersOn', [node])) as string[];
  }
  async nodes(): Promise<LiveNode[]> {
    return (await this.link.call('nodes', [])) as LiveNode[];
  }
  async stats(): Promise<ClusterStats> {
    return (await this.link.call('stats', [])) as ClusterStats;
  }
  async claim(key: string, value: string, ttlMs: number): Promise<string | undefined> {
    return ((await this.link.call('claim', [key, value, ttlMs])) as string | null) ?? undefined;
  }
  async settle(key: string, value: string, ttlMs: number): Promise<void> {
    await this.link.call('settle', [key, value, ttlMs]);
  }
  async release(key: string): Promise<void> {
    await this.link.call('release', [key]);
  }
  async close(): Promise<void> {}
}

/**
 * The primary's side: relays broker messages between workers and answers registry calls from
 * `registry`. Call `add(worker)` for each forked worker; a worker that exits leaves the registry
 * at once (its TTL would do it too).
 */
export function servePrimary(registry: LocalRegistry): { add(worker: Worker): void } {
  const subs = new Map<Worker, Set<string>>();
  const nodes = new Map<Worker, Set<string>>();
  const send = (w: Worker, m: ToWorker) => {
    if (w.isConnected()) w.send(m, undefined, () => {});
  };
  const answer = async (w: Worker, id: number, op: RegistryOp, args: unknown[]) => {
    try {
      if (op === 'join') nodes.get(w)?.add((args[0] as NodeInfo).id);
      const fn = registry[op] as (...a: unknown[]) => Promise<unknown>;
      let result = await fn.apply(registry, args);
      if (result instanceof Map) result = [...result];
      send(w, { pylon: 'reg-res', id, ok: true, result: result ?? null });
    } catch (err) {
      send(w, { pylon: 'reg-res', id, ok: false, error: err instanceof Error ? err.message : String(err) });
    }
  };
  return {
    add(w: Worker) {
      subs.set(w, new Set());
      nodes.set(w, new Set());
      w.on('message', (m: unknown) => {
        if (!isPylon(m)) return;
        const msg = m as ToPrimary;
        if (msg.pylon === 'bus-sub') for (const c of msg.channels) subs.get(w)?.add(c);
        else if (msg.pylon === 'bus-unsub') for (const c of msg.channels) subs.get(w)?.delete(c);
        else if (msg.pylon === 'bus-pub') {
          for (const [other, channels] of subs) {
            if (channels.has(msg.channel))
              send(other, { pylon: 'bus-msg', channel: msg.channel, bytes: msg.bytes });
          }
        } else if (msg.pylon === 'reg') void answer(w, msg.id, msg.op, msg.args);
      });
      w.on('exit', () => {
        for (const id of nodes.get(w) ?? []) void registry.leave(id);
        subs.delete(w);
        nodes.delete(w);
      });
    },
  };
}
