import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type BenchOptions,
  type BenchProgress,
  formatReport,
  progressLine,
  runBench,
} from '../src/cli/bench/index.js';
import { Child } from './support/process.js';

// The engine of `pylon bench` against a real `pylon start` (the built CLI; the client processes
// run dist/cli/bench/client-process.js, so `npm run build` comes first).
const dir = mkdtempSync(join(tmpdir(), 'pylon-bench-'));
writeFileSync(join(dir, 'none.yaml'), '# no options: the flags say it all\n');
let cli: Child;
let tcp = '';
let ws = '';
let admin = '';

beforeAll(async () => {
  cli = new Child(
    process.execPath,
    [
      'dist/cli/main.js',
      'start',
      '--ws-port',
      '0',
      '--tcp-port',
      '0',
      '--admin-port',
      '0',
      '--grpc-port',
      '-1',
      '--store',
      `sqlite:${join(dir, 'pylon.db')}`,
    ],
    { PYLON_LOG_LEVEL: 'warn' },
  );
  await cli.waitFor(/ready/, 15_000);
  tcp = (await cli.waitFor(/TCP on tcp:\/\/(\S+)/))[1]!;
  ws = (await cli.waitFor(/WebSocket on (ws:\/\/\S+)/))[1]!;
  admin = (await cli.waitFor(/admin API on (http:\/\/\S+)\/v1\//))[1]!;
}, 20_000);

afterAll(async () => {
  cli?.kill('SIGKILL');
  await cli?.exited;
  rmSync(dir, { recursive: true, force: true });
});

/** 300 connections over 2 client processes, one source address each. */
function options(workload: BenchOptions['workload'], extra: Partial<BenchOptions> = {}): BenchOptions {
  return {
    tcp,
    ws,
    transport: 'tcp',
    admin: { url: admin },
    connections: 300,
    workload,
    duration: 1.5,
    perProcess: 150,
    sourceAddresses: ['127.0.0.2', '127.0.0.3'],
    ...extra,
  };
}

function expectAllConnected(r: Awaited<ReturnType<typeof runBench>>): void {
  expect(r.clientProcesses).toBe(2);
  expect(r.connect.requested).toBe(300);
  expect(r.connect.connected).toBe(300);
  expect(r.connect.failed).toBe(0);
  expect(r.errors.connect).toBe(0);
  expect(r.errors.closed).toBe(0);
  expect(r.errors.kicked).toEqual({});
  expect(r.connect.p50).toBeGreaterThan(0);
  expect(r.connect.p50).toBeLessThanOrEqual(r.connect.max);
}

describe('pylon bench engine', () => {
  it('idle: holds 300 connections from 2 processes and reads the server memory', async () => {
    const seen: BenchProgress[] = [];
    const r = await runBench(options('idle', { duration: 1, progress: (p) => seen.push(p) }));
    expectAllConnected(r);
    expect(r.workload.messages).toBe(0);
    expect(r.server?.nodes).toBe(1);
    expect(r.server?.connections).toBe(300);
    expect(r.server?.settled).toBe(true);
    // The nodes report their process memory, so the per-connection figures are there.
    const per = r.server!.bytesPerConnection;
    expect(r.server!.rssAfter).toBeGreaterThan(0);
    expect(typeof per.rss).toBe('number');
    expect(typeof per.heap).toBe('number');
    expect(seen.some((p) => p.phase === 'running' && p.open === 300)).toBe(true);
    expect(JSON.parse(JSON.stringify(r))).toEqual(r);
    const text = formatReport(r);
    expect(text).toContain('connected 300/300');
    expect(text).toContain('failed 0');
    expect(text).toMatch(/server\s+nodes 1\s+connections 300/);
  }, 30_000);

  it('echo: closed loop over TCP, latencies ordered', async () => {
    const r = await runBench(options('echo'));
    expectAllConnected(r);
    expect(r.workload.messages).toBeGreaterThan(0);
    expect(r.workload.perSecond).toBeGreaterThan(0);
    const l = r.workload.latency;
    expect(l.p50).toBeGreaterThan(0);
    expect(l.p50).toBeLessThanOrEqual(l.p90);
    expect(l.p90).toBeLessThanOrEqual(l.p99);
    expect(l.p99).toBeLessThanOrEqual(l.max);
    expect(r.errors.timeouts).toBe(0);
    expect(r.errors.requestErrors).toBe(0);
    const text = formatReport(r);
    expect(text).toContain(`echo: ${r.workload.messages.toLocaleString('en-US')} answers`);
    expect(text).toContain(`p50 `);
  }, 30_000);

  it('echo over WebSocket with a per-connection rate cap', async () => {
    const r = await runBench(options('echo', { transport: 'ws', rate: 10, duration: 2 }));
    expectAllConnected(r);
    // 300 connections × 10/s × 2 s = 6,000 at most.
    expect(r.workload.messages).toBeGreaterThan(1000);
    expect(r.workload.messages).toBeLessThanOrEqual(6300);
  }, 30_000);

  it('broadcast: every push reaches every connection', async () => {
    const r = await runBench(options('broadcast', { rate: 2 }));
    expectAllConnected(r);
    const pushes = r.workload.pushes!;
    expect(pushes.sent).toBe(3);
    expect(pushes.accepted).toBe(3);
    expect(pushes.failed).toBe(0);
    expect(r.workload.expected).toBe(pushes.accepted * 300);
    expect(r.workload.messages).toBe(pushes.accepted * 300);
    expect(r.workload.missing).toBe(0);
    expect(r.workload.latency.p50).toBeLessThanOrEqual(r.workload.latency.max);
    expect(formatReport(r)).toContain('received 900');
  }, 30_000);

  it('qos1: every accepted push is received once, acked', async () => {
    const r = await runBench(options('qos1', { rate: 200 }));
    expectAllConnected(r);
    const pushes = r.workload.pushes!;
    expect(pushes.accepted).toBeGreaterThan(100);
    expect(pushes.failed).toBe(0);
    expect(r.workload.messages).toBe(pushes.accepted);
    expect(r.workload.duplicates).toBe(0);
    expect(r.workload.missing).toBe(0);
    expect(r.errors.admin).toBe(0);
    expect(formatReport(r)).toMatch(/missing 0\s+duplicates 0/);
  }, 30_000);

  it('skips source ports that are taken', async () => {
    // The bench binds its own source ports (from 10,000 up on each address): taken ones are skipped.
    const servers = await Promise.all(
      [10_000, 10_001].map(
        (port) =>
          new Promise<Server>((resolve, reject) => {
            const srv = createServer();
            srv.once('error', reject);
            srv.listen(port, '127.0.0.4', () => resolve(srv));
          }),
      ),
    );
    try {
      const r = await runBench(
        options('idle', { connections: 20, perProcess: 20, duration: 0, sourceAddresses: ['127.0.0.4'] }),
      );
      expect(r.clientProcesses).toBe(1);
      expect(r.connect.connected).toBe(20);
      expect(r.connect.failed).toBe(0);
    } finally {
      for (const srv of servers) srv.close();
    }
  }, 30_000);

  it('refuses targets that are not loopback, before starting anything', async () => {
    await expect(runBench({ ...options('idle'), tcp: '10.1.2.3:8081' })).rejects.toThrow(/loopback/);
    await expect(runBench({ ...options('idle'), tcp: 'example.com:8081' })).rejects.toThrow(/loopback/);
    await expect(
      runBench({ ...options('echo'), transport: 'ws', ws: 'ws://192.168.1.5:8080/ws' }),
    ).rejects.toThrow(/loopback/);
    await expect(
      runBench({ ...options('broadcast'), admin: { url: 'http://10.0.0.1:9090' } }),
    ).rejects.toThrow(/loopback/);
    await expect(runBench({ ...options('idle'), sourceAddresses: ['10.0.0.2'] })).rejects.toThrow(/loopback/);
    await expect(runBench({ ...options('qos1'), admin: undefined })).rejects.toThrow(/admin/);
  });

  it('formats a progress line', () => {
    const line = progressLine({
      phase: 'connecting',
      workload: 'idle',
      requested: 100_000,
      connected: 52_000,
      open: 52_000,
      failed: 0,
      connectPerSecond: 3100,
      elapsed: 16,
      duration: 60,
      messages: 0,
      messagesPerSecond: 0,
      expected: null,
      errors: 0,
    });
    expect(line).toBe('[#####.....] 52,000/100,000 connected  3,100/s  errors 0');
  });

  it('pylon bench (the command) finds the instance from the same flags and prints the report as JSON', async () => {
    const port = (url: string) => url.slice(url.lastIndexOf(':') + 1).replace(/\D.*$/, '');
    const child = new Child(process.execPath, [
      'dist/cli/main.js',
      'bench',
      '--config',
      join(dir, 'none.yaml'),
      '--tcp-port',
      port(tcp),
      '--ws-port',
      port(ws),
      '--admin-port',
      port(admin),
      '-n',
      '200',
      '-w',
      'echo',
      '--rate',
      '5',
      '--duration',
      '1',
      '--per-process',
      '100',
      '--source',
      '127.0.0.4,127.0.0.5',
      '--json',
    ]);
    expect(await child.exited).toBe(0);
    const r = JSON.parse(child.lines.join('\n')) as Awaited<ReturnType<typeof runBench>>;
    expect(r.clientProcesses).toBe(2);
    expect(r.connect.connected).toBe(200);
    expect(r.options.sourceAddresses).toEqual(['127.0.0.4', '127.0.0.5']);
    expect(r.workload.kind).toBe('echo');
    expect(r.workload.messages).toBeGreaterThan(0);
    expect(r.server?.connections).toBe(200);
  }, 30_000);
});
