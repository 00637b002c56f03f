import { Packr } from 'msgpackr';
import { fnv1a, type RedisClient } from '../util/redis.js';
import {
  DEFAULT_MAX_HISTORY_LABELS,
  type HistoryLog,
  type LoggedEntry,
  type LoggedHistory,
  newEpoch,
} from './history-log.js';

/*
 * Layout, per label L under its prefix H (the store's prefix P on a standalone Redis; on a Redis
 * Cluster P{h<fnv1a(L) % 64>}:, so one label's keys share a slot):
 * - H hist:L      list: the newest entries, oldest first; each "<pos>:" then the msgpack of
 *                 {id, type, data, at}.
 * - H histmeta:L  hash: epoch, last (the newest position).
 * - H histids:L   sorted set: push id -> pos, for the entries kept (appends are idempotent by id).
 * And P histlabels (on a cluster P{h0}:histlabels): sorted set label -> last write (ms), to drop
 * the least recently written labels past maxLabels.
 */
const SCRIPTS = {
  /** KEYS: hist histmeta histids; ARGV: id entry keep epoch -> [pos, created] ([0, 0]: a repeat) */
  pylonHistAppend: {
    numberOfKeys: 3,
    lua: `
if redis.call('ZSCORE', KEYS[3], ARGV[1]) then return {0, 0} end
local created = 0
if redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('HSET', KEYS[2], 'epoch', ARGV[4], 'last', 0)
  created = 1
end
local pos = redis.call('HINCRBY', KEYS[2], 'last', 1)
local keep = tonumber(ARGV[3])
redis.call('RPUSH', KEYS[1], pos .. ':' .. ARGV[2])
redis.call('LTRIM', KEYS[1], -keep, -1)
redis.call('ZADD', KEYS[3], pos, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', pos - keep)
return {pos, created}`,
  },
} as const;

interface Commands {
  pylonHistAppend(...args: Array<string | number | Buffer>): Promise<[number, number]>;
}

/** Label histories in the Redis (or Redis Cluster) of a RedisStore. */
export class RedisHistory implements HistoryLog {
  private readonly packr = new Packr({ useRecords: false });
  private readonly cmd: Commands;
  private readonly labelsKey: string;

  constructor(
    private readonly redis: RedisClient,
    private readonly prefix: string,
    private readonly cluster: boolean,
    private readonly maxLabels = DEFAULT_MAX_HISTORY_LABELS,
  ) {
    for (const [name, def] of Object.entries(SCRIPTS)) redis.defineCommand(name, def);
    this.cmd = redis as unknown as Commands;
    this.labelsKey = cluster ? `${prefix}{h0}:histlabels` : `${prefix}histlabels`;
  }

  async append(labels: readonly string[], keep: number, e: Omit<LoggedEntry, 'pos'>): Promise<void> {
    const packed = this.packr.pack({ id: e.id, type: e.type, data: e.data, at: e.at });
    const n = Math.max(1, Math.floor(keep));
    let created = 0;
    await Promise.all(
      labels.map(async (label) => {
        const h = this.of(label);
        const [, fresh] = await this.cmd.pylonHistAppend(
          `${h}hist:${label}`,
          `${h}histmeta:${label}`,
          `${h}histids:${label}`,
          e.id,
          packed,
          n,
          newEpoch(),
        );
        created += fresh;
      }),
    );
    if (labels.length > 0) await this.redis.zadd(this.labelsKey, ...labels.flatMap((l) => [e.at, l]));
    if (created > 0) await this.bound();
  }

  async read(label: string, limit: number, since: number): Promise<LoggedHistory> {
    const h = this.of(label);
    const [meta, list] = await Promise.all([
      this.redis.hmget(`${h}histmeta:${label}`, 'epoch', 'last'),
      this.redis.lrangeBuffer(`${h}hist:${label}`, 0, -1),
    ]);
    const epoch = meta[0];
    if (epoch === null || epoch === undefined) return { epoch: '', entries: [], last: 0 };
    const entries: LoggedEntry[] = [];
    for (const raw of list) {
      const colon = raw.indexOf(0x3a);
      const pos = Number(raw.subarray(0, colon).toString());
      if (pos <= since) continue;
      const m = this.packr.unpack(raw.subarray(colon + 1)) as Omit<LoggedEntry, 'pos'>;
      // msgpackr gives a Buffer for bin: hand out a plain Uint8Array, as the other stores do.
      const data = Buffer.isBuffer(m.data) ? new Uint8Array(m.data) : m.data;
      entries.push({ pos, id: m.id, type: m.type, data, at: m.at });
    }
    return { epoch, entries: entries.slice(-Math.floor(limit)), last: Number(meta[1] ?? 0) };
  }

  /** Drops the least recently written labels past maxLabels. */
  private async bound(): Promise<void> {
    const over = (await this.redis.zcard(this.labelsKey)) - this.maxLabels;
    if (over <= 0) return;
    const popped = await this.redis.zpopmin(this.labelsKey, over);
    for (let i = 0; i < popped.length; i += 2) {
      const label = popped[i] as string;
      const h = this.of(label);
      await this.redis.del(`${h}hist:${label}`, `${h}histmeta:${label}`, `${h}histids:${label}`);
    }
  }

  private of(label: string): string {
    return this.cluster ? `${this.prefix}{h${fnv1a(label) % 64}}:` : this.prefix;
  }
}
