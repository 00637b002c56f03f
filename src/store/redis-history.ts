import { Packr } from 'msgpackr';
import { fnv1a, type RedisClient } from '../util/redis.js';
import {
  DEFAULT_MAX_HISTORY_BYTES,
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
 * - H histmeta:L  hash: epoch, last (the newest position), bytes (of its entries).
 * - H histids:L   sorted set: push id -> pos, for the entries kept (appends are idempotent by id).
 * And P histlabels (on a cluster P{h0}:histlabels): sorted set label -> last write (ms), to drop
 * the least recently written labels past maxLabels, and P histbytes (P{h0}:histbytes): the
 * bytes of every label's entries, to drop them past maxBytes.
 */
const SCRIPTS = {
  /** KEYS: hist histmeta histids; ARGV: id entry keep epoch -> [pos, created, bytes added] ([0, 0, 0]: a repeat) */
  pylonHistAppend: {
    numberOfKeys: 3,
    lua: `
if redis.call('ZSCORE', KEYS[3], ARGV[1]) then return {0, 0, 0} end
local created = 0
if redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('HSET', KEYS[2], 'epoch', ARGV[4], 'last', 0)
  created = 1
end
local pos = redis.call('HINCRBY', KEYS[2], 'last', 1)
local keep = tonumber(ARGV[3])
local item = pos .. ':' .. ARGV[2]
local added = #item
local len = redis.call('RPUSH', KEYS[1], item)
if len > keep then
  for _, old in ipairs(redis.call('LRANGE', KEYS[1], 0, len - keep - 1)) do added = added - #old end
  redis.call('LTRIM', KEYS[1], -keep, -1)
end
redis.call('HINCRBY', KEYS[2], 'bytes', added)
redis.call('ZADD', KEYS[3], pos, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', pos - keep)
return {pos, created, added}`,
  },
} as const;

interface Commands {
  pylonHistAppend(...args: Array<string | number | Buffer>): Promise<[number, number, number]>;
}

/** Label histories in the Redis (or Redis Cluster) of a RedisStore. */
export class RedisHistory implements HistoryLog {
  private readonly packr = new Packr({ useRecords: false });
  private readonly cmd: Commands;
  private readonly labelsKey: string;
  private readonly bytesKey: string;

  constructor(
    private readonly redis: RedisClient,
    private readonly prefix: string,
    private readonly cluster: boolean,
    private readonly maxLabels = DEFAULT_MAX_HISTORY_LABELS,
    private readonly maxBytes = DEFAULT_MAX_HISTORY_BYTES,
  ) {
    for (const [name, def] of Object.entries(SCRIPTS)) redis.defineCommand(name, def);
    this.cmd = redis as unknown as Commands;
    this.labelsKey = cluster ? `${prefix}{h0}:histlabels` : `${prefix}histlabels`;
    this.bytesKey = cluster ? `${prefix}{h0}:histbytes` : `${prefix}histbytes`;
  }

  async append(labels: readonly string[], keep: number, e: Omit<LoggedEntry, 'pos'>): Promise<void> {
    const packed = this.packr.pack({ id: e.id, type: e.type, data: e.data, at: e.at });
    const n = Math.max(1, Math.floor(keep));
    let created = 0;
    let added = 0;
    await Promise.all(
      labels.map(async (label) => {
        const h = this.of(label);
        const [, fresh, bytes] = await this.cmd.pylonHistAppend(
          `${h}hist:${label}`,
          `${h}histmeta:${label}`,
          `${h}histids:${label}`,
          e.id,
          packed,
          n,
          newEpoch(),
        );
        created += fresh;
        added += bytes;
      }),
    );
    if (labels.length > 0) await this.redis.zadd(this.labelsKey, ...labels.flatMap((l) => [e.at, l]));
    const total = added !== 0 ? await this.redis.incrby(this.bytesKey, added) : undefined;
    if (created > 0 || (total !== undefined && total > this.maxBytes)) await this.bound(total);
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

  /** Drops the least recently written labels while past maxLabels or maxBytes. */
  private async bound(total?: number): Promise<void> {
    let over = (await this.redis.zcard(this.labelsKey)) - this.maxLabels;
    let bytes = total ?? Number((await this.redis.get(this.bytesKey)) ?? 0);
    while (over > 0 || bytes > this.maxBytes) {
      const popped = await this.redis.zpopmin(this.labelsKey, 1);
      const label = popped[0];
      if (label === undefined) break;
      const h = this.of(label);
      const gone = Number((await this.redis.hget(`${h}histmeta:${label}`, 'bytes')) ?? 0);
      await this.redis.del(`${h}hist:${label}`, `${h}histmeta:${label}`, `${h}histids:${label}`);
      bytes = await this.redis.decrby(this.bytesKey, gone);
      over--;
    }
  }

  private of(label: string): string {
    return this.cluster ? `${this.prefix}{h${fnv1a(label) % 64}}:` : this.prefix;
  }
}
