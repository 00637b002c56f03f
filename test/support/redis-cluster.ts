import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { findOnPath, launch, type Running } from './redis.js';

const run = promisify(execFile);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface TestRedisCluster {
  /** The masters' URLs, comma-separated: what --redis takes for a Redis Cluster. */
  spec: string;
  /** The masters' URLs at the start. */
  urls: string[];
  /** Every server, masters and replicas. */
  nodes: Array<{ port: number; url: string }>;
  /** Ports of the current masters that are running and own slots, ascending. */
  masterPorts(): Promise<number[]>;
  /**
   * SIGKILLs a master (the lowest port by default), waits until one of its replicas owns its
   * slots and every running node says cluster_state:ok. Returns the killed port.
   */
  killMaster(port?: number): Promise<number>;
  /**
   * Starts a killed server again with its own files. A master that was failed over comes back
   * as a replica of the node that took over: resolves once it is one with its link up and the
   * cluster is ok.
   */
  restartNode(port: number): Promise<void>;
  stop(): Promise<void>;
}

/** One line of CLUSTER NODES. */
interface NodeLine {
  port: number;
  id: string;
  flags: string[];
  masterId: string;
  slots: string[];
}

function parseNodes(text: string): NodeLine[] {
  return text
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => {
      const f = l.trim().split(' ');
      return {
        id: f[0] as string,
        port: Number(/:(\d+)@/.exec(f[1] ?? '')?.[1]),
        flags: (f[2] ?? '').split(','),
        masterId: f[3] as string,
        slots: f.slice(8),
      };
    });
}

/** True if nothing listens on 127.0.0.1:`port` (we could bind it). */
function bindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

/**
 * A port for a cluster node: it and its cluster bus port (+10000) free. Both are picked below the
 * kernel's ephemeral range (32768 on Linux), where the OS does not hand out ports by itself to
 * outgoing connections or to listeners on port 0: node ports 10000-21999, bus ports 20000-31999.
 */
async function freeNodePort(taken: number[]): Promise<number> {
  for (let i = 0; i < 200; i++) {
    const p = 10_000 + Math.floor(Math.random() * 12_000);
    if (taken.includes(p) || taken.includes(p + 10_000) || taken.includes(p - 10_000)) continue;
    if ((await bindable(p)) && (await bindable(p + 10_000))) return p;
  }
  throw new Error('no free port pair (p, p + 10000) found for a Redis Cluster node');
}

/**
 * A real Redis Cluster on loopback: `masters` masters with `replicas` replicas each, every
 * server on a free port (its bus port free too) with its own directory (append-only file, no
 * snapshots, its own nodes.conf), a 1 s node timeout (fast failover), created with
 * `redis-cli --cluster create`. Ready once every node says cluster_state:ok with all 16384 slots;
 * if that does not happen within 20 s, every server is killed and the error carries their output.
 * Servers are also killed when the test process exits.
 */
export async function startRedisCluster(
  o: { masters?: number; replicas?: number } = {},
): Promise<TestRedisCluster> {
  const masters = o.masters ?? 3;
  const replicas = o.replicas ?? 0;
  const bin = findOnPath('redis-server');
  const cli = findOnPath('redis-cli');
  if (bin === undefined || cli === undefined)
    throw new Error('redis-server and redis-cli are needed: apt-get install redis-server');
  const dir = mkdtempSync(join(tmpdir(), 'pylon-redis-cluster-'));
  const count = masters * (1 + replicas);
  const ports: number[] = [];
  while (ports.length < count) ports.push(await freeNodePort(ports));

  const servers = new Map<number, Running>();
  const outputs = new Map<number, () => string>();
  const onExit = () => {
    for (const s of servers.values()) s.child.kill('SIGKILL');
  };
  process.on('exit', onExit);
  const argsOf = (port: number) => {
    const d = join(dir, String(port));
    mkdirSync(d, { recursive: true });
    return [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--dir',
      d,
      '--cluster-enabled',
      'yes',
      '--cluster-config-file',
      join(d, 'nodes.conf'),
      '--cluster-node-timeout',
      '1000',
      // A replica takes over however long ago it last heard from its master (an idle master
      // pings its replicas only every 10 s, which would otherwise count as stale data).
      '--cluster-replica-validity-factor',
      '0',
      '--appendonly',
      'yes',
      '--save',
      '',
      // A master serves a replica's full sync at once (the default waits 5 s for more replicas).
      '--repl-diskless-sync-delay',
      '0',
    ];
  };
  const start = async (port: number) => {
    const s = await launch(bin, argsOf(port), port);
    servers.set(port, s);
    outputs.set(port, s.output);
  };
  const logs = () =>
    [...outputs].map(([port, out]) => `--- redis-server ${port} ---\n${out().slice(-1500)}`).join('\n');
  const stopAll = async () => {
    process.off('exit', onExit);
    await Promise.all([...servers.values()].map((s) => s.stop()));
    servers.clear();
    rmSync(dir, { recursive: true, force: true });
  };
  const redisCli = (port: number, ...args: string[]) =>
    run(cli, ['-h', '127.0.0.1', '-p', String(port), ...args], { timeout: 5000 }).then((r) => r.stdout);
  const nodesSeenBy = async (port: number) => parseNodes(await redisCli(port, 'cluster', 'nodes'));

  /** Until every running node says the cluster is ok with every slot assigned and served. */
  const allOk = async (what: string, ms = 20_000) => {
    const deadline = Date.now() + ms;
    let infos: string[] = [];
    for (;;) {
      infos = await Promise.all(
        [...servers.keys()].map((p) => redisCli(p, 'cluster', 'info').catch((e) => String(e))),
      );
      if (infos.every((i) => i.includes('cluster_state:ok') && i.includes('cluster_slots_ok:16384'))) return;
      if (Date.now() > deadline)
        throw new Error(
          `redis cluster: ${what} not ok within ${ms / 1000} s:\n${infos.join('\n')}\n${logs()}`,
        );
      await sleep(100);
    }
  };

  try {
    await Promise.all(ports.map(start));
    try {
      await run(
        cli,
        [
          '--cluster',
          'create',
          ...ports.map((p) => `127.0.0.1:${p}`),
          '--cluster-replicas',
          String(replicas),
          '--cluster-yes',
        ],
        { timeout: 20_000 },
      );
    } catch (err) {
      const e = err as Error & { stdout?: string; stderr?: string };
      throw new Error(`redis-cli --cluster create failed: ${e.message}\n${e.stdout ?? ''}${e.stderr ?? ''}`);
    }
    await allOk('after create');
    if (replicas > 0) {
      // Until every replica is known as one and has synced with its master (a WAIT or a
      // failover needs that).
      const deadline = Date.now() + 20_000;
      for (;;) {
        const nodes = await nodesSeenBy(ports[0] as number);
        const slaves = nodes.filter((n) => n.flags.includes('slave') && n.masterId !== '-');
        const infos = await Promise.all(
          slaves.map((n) => redisCli(n.port, 'info', 'replication').catch(() => '')),
        );
        if (slaves.length === masters * replicas && infos.every((i) => i.includes('master_link_status:up')))
          break;
        if (Date.now() > deadline)
          throw new Error(`redis cluster: replicas not in sync within 20 s\n${infos.join('\n')}\n${logs()}`);
        await sleep(100);
      }
    }
  } catch (err) {
    await stopAll();
    throw err;
  }

  const masterPorts = async (): Promise<number[]> => {
    const nodes = await nodesSeenBy([...servers.keys()][0] as number);
    return nodes
      .filter((n) => n.flags.includes('master') && !n.flags.includes('fail') && n.slots.length > 0)
      .map((n) => n.port)
      .filter((p) => servers.has(p))
      .sort((a, b) => a - b);
  };
  const first = (await masterPorts()).map((p) => `redis://127.0.0.1:${p}`);
  return {
    spec: first.join(','),
    urls: first,
    nodes: ports.map((port) => ({ port, url: `redis://127.0.0.1:${port}` })),
    masterPorts,
    async killMaster(port?: number) {
      const victim = port ?? ((await masterPorts())[0] as number);
      const s = servers.get(victim);
      if (s === undefined) throw new Error(`redis cluster: no server running on ${victim}`);
      const before = await nodesSeenBy(victim);
      const me = before.find((n) => n.port === victim);
      if (me === undefined || !me.flags.includes('master'))
        throw new Error(`redis cluster: ${victim} is not a master`);
      const heirs = before.filter((n) => n.masterId === me.id).map((n) => n.port);
      if (heirs.length === 0) throw new Error(`redis cluster: master ${victim} has no replica to take over`);
      s.child.kill('SIGKILL');
      await s.stop();
      servers.delete(victim);
      // Until one of its replicas is a master owning slots, and every running node is ok again.
      const deadline = Date.now() + 20_000;
      for (;;) {
        const nodes = await nodesSeenBy(heirs[0] as number).catch(() => [] as NodeLine[]);
        const promoted = nodes.some(
          (n) => heirs.includes(n.port) && n.flags.includes('master') && n.slots.length > 0,
        );
        if (promoted) {
          await allOk(`after the failover of ${victim}`);
          return victim;
        }
        if (Date.now() > deadline)
          throw new Error(`redis cluster: no replica took over from ${victim} within 20 s\n${logs()}`);
        await sleep(50);
      }
    },
    async restartNode(port: number) {
      if (servers.has(port)) throw new Error(`redis cluster: ${port} is running`);
      if (!ports.includes(port)) throw new Error(`redis cluster: ${port} is not one of its nodes`);
      await start(port);
      const deadline = Date.now() + 20_000;
      for (;;) {
        const info = await redisCli(port, 'info', 'replication').catch(() => '');
        const nodes = await nodesSeenBy(port).catch(() => [] as NodeLine[]);
        const me = nodes.find((n) => n.flags.includes('myself'));
        const master = me?.flags.includes('master') === true && (me?.slots.length ?? 0) > 0;
        if (master || (info.includes('role:slave') && info.includes('master_link_status:up'))) break;
        if (Date.now() > deadline)
          throw new Error(`redis cluster: ${port} did not rejoin within 20 s:\n${info}\n${logs()}`);
        await sleep(50);
      }
      await allOk(`after ${port} restarted`);
    },
    stop: stopAll,
  };
}
