import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { findOnPath, freePort, launch, type Running } from './redis.js';

const run = promisify(execFile);

export interface TestRedisCluster {
  /** The masters' URLs, comma-separated: what --redis takes for a Redis Cluster. */
  spec: string;
  urls: string[];
  /** Every server, masters and replicas. */
  nodes: Array<{ port: number; url: string }>;
  /** Ports of the current masters. */
  masterPorts(): Promise<number[]>;
  /** SIGKILLs a master (the first by default), waits until a replica took over and the cluster is ok. */
  killMaster(port?: number): Promise<number>;
  stop(): Promise<void>;
}

/**
 * A real Redis Cluster on loopback: `masters` masters with `replicas` replicas each, every
 * server on a free port with its own directory (append-only file, no snapshots), a 1 s node
 * timeout (fast failover), created with redis-cli --cluster create. Servers are killed when
 * the test process exits.
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
  while (ports.length < count) {
    const p = await freePort();
    if (!ports.includes(p)) ports.push(p);
  }
  const servers = new Map<number, Running>();
  const onExit = () => {
    for (const s of servers.values()) s.child.kill('SIGKILL');
  };
  process.on('exit', onExit);
  await Promise.all(
    ports.map(async (port) => {
      const d = join(dir, String(port));
      const args = [
        '--port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--cluster-enabled',
        'yes',
        '--cluster-config-file',
        join(dir, `nodes-${port}.conf`),
        '--cluster-node-timeout',
        '1000',
        // A replica takes over however long ago it last heard from its master (an idle master
        // pings its replicas only every 10 s, which would otherwise count as stale data).
        '--cluster-replica-validity-factor',
        '0',
        '--appendonly',
        'yes',
        '--appendfilename',
        `appendonly-${port}.aof`,
        '--appenddirname',
        `aof-${port}`,
        '--save',
        '',
        '--dir',
        dir,
      ];
      void d;
      servers.set(port, await launch(bin, args, port));
    }),
  );
  const redisCli = (port: number, ...args: string[]) =>
    run(cli, ['-h', '127.0.0.1', '-p', String(port), ...args], { timeout: 10_000 }).then((r) => r.stdout);
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
    { timeout: 30_000 },
  );
  const okAll = async (alive: number[]) => {
    const deadline = Date.now() + 20_000;
    for (;;) {
      const infos = await Promise.all(alive.map((p) => redisCli(p, 'cluster', 'info').catch(() => '')));
      if (infos.every((i) => i.includes('cluster_state:ok') && i.includes('cluster_slots_ok:16384'))) return;
      if (Date.now() > deadline) throw new Error(`redis cluster not ok within 20 s:\n${infos.join('\n')}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  await okAll(ports);
  const masterPorts = async (): Promise<number[]> => {
    const alive = [...servers.keys()];
    const out = await redisCli(alive[0] as number, 'cluster', 'nodes');
    return out
      .split('\n')
      .filter((l) => / master /.test(` ${l.split(' ')[2]?.replace(/,/g, ' ')} `) && !l.includes('fail'))
      .map((l) => Number(/:(\d+)@/.exec(l)?.[1]))
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
      if (s === undefined) throw new Error(`no server on ${victim}`);
      s.child.kill('SIGKILL');
      await s.stop();
      servers.delete(victim);
      // Until a replica owns the victim's slots and every node says the cluster is ok again.
      const deadline = Date.now() + 30_000;
      for (;;) {
        const alive = [...servers.keys()];
        const out = await redisCli(alive[0] as number, 'cluster', 'nodes').catch(() => '');
        const victimLine = out.split('\n').find((l) => l.includes(`:${victim}@`)) ?? '';
        const promoted =
          !/ master /.test(` ${victimLine.split(' ')[2]?.replace(/,/g, ' ') ?? ''} `) ||
          /fail/.test(victimLine.split(' ')[2] ?? '');
        const victimSlots = victimLine.split(' ').slice(8).join(' ').trim();
        if (promoted && victimSlots === '') {
          await okAll(alive);
          return victim;
        }
        if (Date.now() > deadline)
          throw new Error(`no replica took over from ${victim} within 30 s:\n${out}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    },
    async stop() {
      process.off('exit', onExit);
      await Promise.all([...servers.values()].map((s) => s.stop()));
      servers.clear();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
