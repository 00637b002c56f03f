// A throwaway Redis Cluster on loopback for bench/cluster-redis.js: `masters` redis-server
// processes (--cluster-enabled yes, no persistence, each in its own temp dir, on free ports whose
// bus port, +10000, is free too), joined with `redis-cli --cluster create … --cluster-yes`, and
// ready once every master says cluster_state:ok. `stop()` kills them and removes the dirs; it
// also runs on process exit. Every wait is bounded.
//
// `snapshot()` reads, from every master over one long-lived connection each, INFO stats,
// commandstats and cpu plus CLUSTER INFO; `diff(a, b)` turns two snapshots into what Redis did in
// between, corrected for the snapshots' own traffic (their requests, their replies, their
// INFO/CLUSTER INFO commands).
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const HOST = '127.0.0.1';
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---- hash slots (CRC16/XMODEM of the key, or of its {hash tag}) ----

const CRC = new Uint16Array(256);
for (let i = 0; i < 256; i++) {
  let c = i << 8;
  for (let j = 0; j < 8; j++) c = c & 0x8000 ? ((c << 1) ^ 0x1021) & 0xffff : (c << 1) & 0xffff;
  CRC[i] = c;
}

export function keySlot(key) {
  const s = key.indexOf('{');
  if (s >= 0) {
    const e = key.indexOf('}', s + 1);
    if (e > s + 1) key = key.slice(s + 1, e);
  }
  const b = Buffer.from(key);
  let crc = 0;
  for (const x of b) crc = ((crc << 8) & 0xffff) ^ CRC[((crc >> 8) ^ x) & 0xff];
  return crc % 16384;
}

// ---- a minimal RESP connection for the bench's own commands ----

class Conn {
  constructor(port) {
    this.port = port;
    this.buf = Buffer.alloc(0);
    this.waiters = [];
    this.bytesIn = 0; // what Redis read from us
    this.bytesOut = 0; // what Redis wrote to us
  }

  open(timeoutMs = 2000) {
    return new Promise((resolve, reject) => {
      const s = createConnection({ host: HOST, port: this.port });
      const timer = setTimeout(() => {
        s.destroy();
        reject(new Error(`redis :${this.port}: no connection within ${timeoutMs} ms`));
      }, timeoutMs);
      s.on('connect', () => {
        clearTimeout(timer);
        this.socket = s;
        resolve(this);
      });
      s.on('error', (err) => {
        clearTimeout(timer);
        reject(err);
        for (const w of this.waiters.splice(0)) w.reject(err);
      });
      s.on('data', (d) => {
        this.bytesOut += d.length;
        this.buf = this.buf.length ? Buffer.concat([this.buf, d]) : d;
        this.drain();
      });
    });
  }

  /** One reply (simple string, error, integer or bulk string) per command, in order. */
  drain() {
    while (this.waiters.length > 0) {
      const nl = this.buf.indexOf('\r\n');
      if (nl < 0) return;
      const head = this.buf.subarray(0, nl).toString();
      let value;
      let used;
      if (head[0] === '$') {
        const n = Number(head.slice(1));
        if (n < 0) {
          value = null;
          used = nl + 2;
        } else {
          if (this.buf.length < nl + 2 + n + 2) return;
          value = this.buf.subarray(nl + 2, nl + 2 + n).toString();
          used = nl + 2 + n + 2;
        }
      } else if (head[0] === '-') {
        value = new Error(head.slice(1));
        used = nl + 2;
      } else {
        value = head.slice(1);
        used = nl + 2;
      }
      this.buf = this.buf.subarray(used);
      const w = this.waiters.shift();
      clearTimeout(w.timer);
      if (value instanceof Error) w.reject(value);
      else w.resolve(value);
    }
  }

  /** Sends commands (arrays of strings) in one write; resolves with their replies. */
  send(commands, timeoutMs = 5000) {
    let text = '';
    for (const c of commands) {
      text += `*${c.length}\r\n`;
      for (const a of c) text += `$${Buffer.byteLength(a)}\r\n${a}\r\n`;
    }
    const bytes = Buffer.byteLength(text);
    this.bytesIn += bytes;
    const replies = commands.map(
      () =>
        new Promise((resolve, reject) => {
          const timer = setTimeout(
            () => reject(new Error(`redis :${this.port}: no reply within ${timeoutMs} ms`)),
            timeoutMs,
          );
          this.waiters.push({ resolve, reject, timer });
        }),
    );
    this.socket.write(text);
    return Promise.all(replies).then((r) => ({ replies: r, requestBytes: bytes }));
  }

  close() {
    this.socket?.destroy();
  }
}

async function portFree(port) {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen(port, HOST, () => s.close(() => resolve(true)));
  });
}

/** `n` ports p with p and p + 10000 (the cluster bus) both free. */
async function freePorts(n) {
  const out = [];
  for (let tries = 0; out.length < n && tries < 500; tries++) {
    const p = 20000 + Math.floor(Math.random() * 35000);
    if (out.includes(p) || out.some((q) => Math.abs(q - p) === 10000)) continue;
    if ((await portFree(p)) && (await portFree(p + 10000))) out.push(p);
  }
  if (out.length < n) throw new Error('no free ports for the Redis Cluster');
  return out;
}

function parseInfo(text) {
  const out = { fields: {}, commands: {} };
  for (const line of text.split('\r\n')) {
    const m = /^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/.exec(line);
    if (m) {
      out.commands[m[1]] = { calls: Number(m[2]), usec: Number(m[3]) };
      continue;
    }
    const i = line.indexOf(':');
    if (i > 0 && line[0] !== '#') out.fields[line.slice(0, i)] = line.slice(i + 1);
  }
  return out;
}

/** Commands of the snapshots themselves, left out of the counts. */
const OWN = new Set(['info', 'cluster|info']);

/**
 * Commands that Pylon's clients send themselves (none of its Lua scripts calls them): their
 * commandstats time is the time Redis spent executing what was sent, scripts included, without
 * counting a script's inner commands twice and without the network I/O.
 */
const SENT = new Set([
  'evalsha',
  'eval',
  'evalsha_ro',
  'eval_ro',
  'spublish',
  'publish',
  'ssubscribe',
  'sunsubscribe',
  'subscribe',
  'unsubscribe',
  'get',
  'hmget',
  'lrange',
  'sscan',
  'quit',
  'ping',
  'cluster|slots',
  'cluster|shards',
  'cluster|nodes',
  'command',
  'client|setname',
  'readonly',
]);

/**
 * Commands of ioredis's slot-map refreshes (each Redis Cluster client, every 2 s, on a refresher
 * connection to any master): background that is not the registry's, wherever it lands.
 */
export const REFRESH = new Set([
  'cluster|slots',
  'cluster|shards',
  'cluster|nodes',
  'client|setname',
  'command',
]);

/**
 * @param {{ masters?: number, timeoutMs?: number, log?: (s: string) => void }} [o]
 */
export async function startRedisCluster(o = {}) {
  const masters = o.masters ?? 3;
  const deadline = Date.now() + (o.timeoutMs ?? 60_000);
  const log = o.log ?? (() => {});
  const ports = await freePorts(masters);
  const dirs = [];
  const procs = [];
  let stopped = false;
  const stop = () => {
    if (stopped) return;
    stopped = true;
    for (const c of conns) c.close();
    for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  };
  const conns = [];
  process.on('exit', stop);
  try {
    for (const port of ports) {
      const dir = mkdtempSync(join(tmpdir(), `pylon-bench-redis-${port}-`));
      dirs.push(dir);
      const child = spawn(
        'redis-server',
        [
          '--port',
          String(port),
          '--bind',
          HOST,
          '--protected-mode',
          'no',
          '--cluster-enabled',
          'yes',
          '--cluster-config-file',
          join(dir, 'nodes.conf'),
          '--cluster-node-timeout',
          '5000',
          '--dir',
          dir,
          '--save',
          '',
          '--appendonly',
          'no',
          '--logfile',
          join(dir, 'redis.log'),
          '--daemonize',
          'no',
        ],
        { stdio: 'ignore' },
      );
      child.on('error', () => {});
      procs.push(child);
    }
    for (const port of ports) {
      for (;;) {
        try {
          conns.push(await new Conn(port).open(500));
          break;
        } catch {
          if (Date.now() > deadline) throw new Error(`redis-server :${port} did not start`);
          await sleep(50);
        }
      }
    }
    const create = spawnSync(
      'redis-cli',
      [
        '--cluster',
        'create',
        ...ports.map((p) => `${HOST}:${p}`),
        '--cluster-replicas',
        '0',
        '--cluster-yes',
      ],
      { encoding: 'utf8', timeout: Math.max(1000, deadline - Date.now()) },
    );
    if (create.status !== 0)
      throw new Error(`redis-cli --cluster create failed: ${create.stdout}${create.stderr}`);
    for (;;) {
      const infos = await Promise.all(conns.map((c) => c.send([['CLUSTER', 'INFO']])));
      const ok = infos.every(({ replies: [t] }) => {
        const f = parseInfo(t).fields;
        return (
          f.cluster_state === 'ok' &&
          f.cluster_slots_ok === '16384' &&
          Number(f.cluster_known_nodes) === masters
        );
      });
      if (ok) break;
      if (Date.now() > deadline) throw new Error('the Redis Cluster did not reach cluster_state:ok');
      await sleep(100);
    }
    // Slot ranges per master (port).
    const ranges = [];
    const nodes = spawnSync('redis-cli', ['-p', String(ports[0]), 'CLUSTER', 'NODES'], { encoding: 'utf8' });
    for (const line of nodes.stdout.trim().split('\n')) {
      const f = line.split(' ');
      const port = Number(f[1].split(':')[1].split('@')[0]);
      for (const r of f.slice(8)) {
        const [a, b] = r.split('-').map(Number);
        ranges.push({ from: a, to: b ?? a, port });
      }
    }
    const ownerOf = (slot) => ranges.find((r) => slot >= r.from && slot <= r.to)?.port;
    // Check this file's slot function against Redis's.
    for (const k of ['pylon:cluster:{nodes}:nodes', 'pylon:cluster:{u17}:online', 'abc', 'x{b17}:seq:u']) {
      const {
        replies: [s],
      } = await conns[0].send([['CLUSTER', 'KEYSLOT', k]]);
      if (Number(s) !== keySlot(k)) throw new Error(`keySlot("${k}") = ${keySlot(k)}, Redis says ${s}`);
    }
    log(`redis cluster up: ${ports.map((p) => `${HOST}:${p}`).join(' ')}`);

    const snapshot = async () => {
      const out = [];
      for (const c of conns) {
        const outBefore = c.bytesOut;
        const {
          replies: [info, cinfo],
          requestBytes,
        } = await c.send([
          ['INFO', 'stats', 'commandstats', 'cpu', 'memory'],
          ['CLUSTER', 'INFO'],
        ]);
        const i = parseInfo(info);
        const ci = parseInfo(cinfo);
        out.push({
          port: c.port,
          commands: i.commands,
          netIn: Number(i.fields.total_net_input_bytes),
          netOut: Number(i.fields.total_net_output_bytes),
          cpuSec: Number(i.fields.used_cpu_user) + Number(i.fields.used_cpu_sys),
          usedMemory: Number(i.fields.used_memory),
          busSent: Number(ci.fields.cluster_stats_messages_sent),
          busPublishSent:
            Number(ci.fields.cluster_stats_messages_publish_sent ?? 0) +
            Number(ci.fields.cluster_stats_messages_publishshard_sent ?? 0),
          requestBytes,
          replyBytes: c.bytesOut - outBefore,
        });
      }
      return { at: performance.now(), masters: out };
    };
    return {
      ports,
      seeds: ports.map((p) => `redis://${HOST}:${p}`).join(','),
      pids: procs.map((p) => p.pid),
      ownerOf,
      slotOf: keySlot,
      snapshot,
      stop,
    };
  } catch (err) {
    stop();
    throw err;
  }
}

/**
 * What each master did between snapshots a and b: commands (by name, without the snapshots'
 * own), µs executing the commands sent (commandstats of SENT), bytes in + out (without the
 * snapshots' requests and replies), process CPU µs (used_cpu_user + used_cpu_sys), bus messages.
 */
export function diff(a, b) {
  const masters = b.masters.map((m1, i) => {
    const m0 = a.masters[i];
    const byCommand = {};
    let commands = 0;
    let usec = 0;
    for (const [name, c] of Object.entries(m1.commands)) {
      if (OWN.has(name)) continue;
      const calls = c.calls - (m0.commands[name]?.calls ?? 0);
      const us = c.usec - (m0.commands[name]?.usec ?? 0);
      if (calls === 0) continue;
      byCommand[name] = calls;
      commands += calls;
      if (SENT.has(name)) usec += us;
    }
    // b's request is counted in b (read before INFO ran), a's reply only from b on.
    const netIn = m1.netIn - m0.netIn - m1.requestBytes;
    const netOut = m1.netOut - m0.netOut - m0.replyBytes;
    return {
      port: m1.port,
      commands,
      byCommand,
      execUs: usec,
      bytes: netIn + netOut,
      netIn,
      netOut,
      cpuUs: (m1.cpuSec - m0.cpuSec) * 1e6,
      memory: m1.usedMemory - m0.usedMemory,
      bus: m1.busSent - m0.busSent,
      busPublish: m1.busPublishSent - m0.busPublishSent,
    };
  });
  return { ms: b.at - a.at, masters };
}
