import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { connect, type PylonClient } from '../src/client/index.js';

// The operator's commands as a user runs them: `pylon start -d`, `status`, `reload` and `stop`
// from one directory holding a pylon.yaml, against a real gateway with two worker processes.
const MAIN = resolve('dist/cli/main.js');
const dir = mkdtempSync(join(tmpdir(), 'pylon-ops-'));
const clients: PylonClient[] = [];
const foreground: Array<{ kill(signal: NodeJS.Signals): boolean }> = [];

/** Runs the CLI in the test's directory, or in another with `--cwd <dir>` first. */
function pylon(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  let cwd = dir;
  if (args[0] === '--cwd') [, cwd, ...args] = args as [string, string, ...string[]];
  return new Promise((done) => {
    execFile(process.execPath, [MAIN, ...args], { cwd, timeout: 120_000 }, (error, out, err) =>
      done({ code: error ? ((error as { code?: number }).code ?? 1) : 0, out, err }),
    );
  });
}

function freePort(): Promise<number> {
  return new Promise((done) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => done(port));
    });
  });
}

/** A qos-1 push through the admin API, on a connection of its own (no keep-alive to a draining worker). */
function push(port: number, user: string, n: number): Promise<{ code: number; body: string }> {
  const body = JSON.stringify({ to: { user }, type: 'note', data: { n }, qos: 1 });
  return new Promise((done, fail) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        path: '/v1/push',
        method: 'POST',
        agent: false,
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          text += chunk;
        });
        res.on('end', () => done({ code: res.statusCode ?? 0, body: text }));
      },
    );
    req.on('error', fail);
    req.end(body);
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

afterAll(async () => {
  await Promise.all(clients.map((c) => c.close().catch(() => {})));
  for (const p of foreground) p.kill('SIGKILL');
  // Instances of the tests that failed half-way: the whole process group of each start -d.
  for (const file of [join(dir, 'pylon.pid'), join(dir, 'mem', 'pylon.pid')]) {
    if (!existsSync(file)) continue;
    try {
      process.kill(-Number(readFileSync(file, 'utf8')), 'SIGKILL');
    } catch {}
  }
  rmSync(dir, { recursive: true, force: true });
});

describe('pylon start -d, status, reload, stop', () => {
  it('reloads under 1,000 clients: none refused, every qos-1 push once; stops cleanly', async () => {
    const [ws, tcp, admin] = [await freePort(), await freePort(), await freePort()];
    writeFileSync(
      join(dir, 'pylon.yaml'),
      [
        `ws-port: ${ws}`,
        `tcp-port: ${tcp}`,
        `admin-port: ${admin}`,
        'grpc-port: -1',
        'workers: 2',
        'drain-timeout: 3',
        'log-level: warn',
        'store: sqlite:./data/pylon.db',
      ].join('\n'),
    );

    const started = await pylon('start', '-d');
    expect(started.err).toBe('');
    expect(started.code).toBe(0);
    const pid = Number(/pid (\d+)/.exec(started.out)?.[1]);
    expect(readFileSync(join(dir, 'pylon.pid'), 'utf8').trim()).toBe(String(pid));
    // A second start from the same directory is refused while the first runs.
    const again = await pylon('start', '-d');
    expect(again.code).toBe(1);
    expect(again.err).toMatch(new RegExp(`already running: pid ${pid}`));

    // status: one row per worker, both serving, generation 1 (the other worker's row comes with its heartbeat).
    let status = { code: 1, out: '', err: '' };
    for (let i = 0; i < 40 && !/(serving[\s\S]*){2}/.test(status.out); i++) {
      await sleep(250);
      status = await pylon('status');
    }
    expect(status.code).toBe(0);
    expect(status.out).toMatch(new RegExp(`running, pid ${pid}`));
    expect(status.out).toMatch(
      /node\s+pid\s+gen\s+state\s+uptime\s+conns\s+users\s+in\/s\s+out\/s\s+rss\s+heap\s+lag p99/,
    );
    expect(status.out.match(/\s1\s+serving\s/g)).toHaveLength(2);

    // 1,000 clients, each a user, counting the qos-1 pushes they get by number.
    const url = `tcp://127.0.0.1:${tcp}`;
    const got = new Map<string, number[]>();
    const closeCodes = new Map<number, number>();
    let resumed = 0;
    for (let i = 0; i < 1000; i += 50) {
      await Promise.all(
        Array.from({ length: 50 }, async (_, k) => {
          const user = `u${i + k}`;
          const list: number[] = [];
          got.set(user, list);
          const c = await connect(url, { token: user, reconnect: { base: 50, max: 1000 } });
          c.on('note', (data: { n: number }) => {
            list.push(data.n);
          });
          c.on('close', (e: { code: number }) => closeCodes.set(e.code, (closeCodes.get(e.code) ?? 0) + 1));
          c.on('reconnected', (w: { resumed?: boolean }) => {
            if (w.resumed === true) resumed++;
          });
          clients.push(c);
        }),
      );
    }
    const users = [...got.keys()];
    // A hundred of them are in a room: after the move to a new worker (a new session there), the
    // SDK asks for its labels again.
    let inRoom = 0;
    for (const c of clients.slice(0, 100)) {
      await c.subscribe(['room:ops']);
      c.on('room', () => {
        inRoom++;
      });
    }

    // Throughout the reload: new clients keep connecting, and qos-1 pushes keep going out.
    let running = true;
    const refused: string[] = [];
    let newcomers = 0;
    const joining = (async () => {
      for (let i = 0; running; i++) {
        try {
          const c = await connect(url, { token: `new${i}`, reconnect: false });
          newcomers++;
          await c.close();
        } catch (err) {
          refused.push((err as Error).message);
        }
        await sleep(20);
      }
    })();
    const sent = new Map<number, string>();
    const failedPushes: string[] = [];
    const pushing = (async () => {
      for (let n = 0; running; n++) {
        const user = users[n % users.length] as string;
        try {
          const { code, body } = await push(admin, user, n);
          if (code === 200) sent.set(n, user);
          else failedPushes.push(`${n}: ${code} ${body}`);
        } catch (err) {
          failedPushes.push(`${n}: ${(err as Error).message}`);
        }
        await sleep(5);
      }
    })();

    await sleep(500);
    const reload = await pylon('reload');
    expect(reload.err).toBe('');
    expect(reload.code).toBe(0);
    expect(reload.out).toMatch(/reloaded: generation 2/);
    // The old workers drain for 3 s, then tell their clients to reconnect; keep going past that.
    await sleep(5000);
    running = false;
    await Promise.all([joining, pushing]);

    // Every client is connected again (to a new worker), and every accepted push arrived once.
    await expect.poll(() => clients.filter((c) => c.connected).length, { timeout: 20_000 }).toBe(1000);
    await expect
      .poll(() => [...sent].filter(([n, user]) => !got.get(user)?.includes(n)).length, { timeout: 20_000 })
      .toBe(0);
    const duplicates = [...got.values()].reduce((sum, list) => sum + list.length - new Set(list).size, 0);
    expect(duplicates).toBe(0);
    expect(refused).toEqual([]);
    // A failed push: its answer, and what the workers logged about it.
    const logged = () =>
      readFileSync(join(dir, 'pylon.log'), 'utf8')
        .split('\n')
        .filter((line) => /"level":(50|60)|error/i.test(line))
        .slice(-10)
        .join('\n');
    expect(failedPushes, failedPushes.length > 0 ? logged() : '').toEqual([]);
    expect(newcomers).toBeGreaterThan(50);
    expect(sent.size).toBeGreaterThan(200);
    // The old workers handed their sessions over: every moved client resumed its session.
    expect(resumed).toBe(closeCodes.get(4001));
    // The old workers' clients were moved with reconnect_elsewhere (4001), not dropped.
    expect(closeCodes.get(4001) ?? 0).toBeGreaterThan(0);
    expect([...closeCodes.keys()].filter((c) => c !== 4001)).toEqual([]);

    const roomPush = JSON.stringify({ to: { labels: { any: ['room:ops'] } }, type: 'room', data: {} });
    await expect
      .poll(async () => {
        inRoom = 0;
        const res = await fetch(`http://127.0.0.1:${admin}/v1/push`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: roomPush,
        });
        expect(res.status).toBe(200);
        await sleep(300);
        return inRoom;
      })
      .toBe(100);
    console.log(
      `reload: ${sent.size} qos-1 pushes accepted, all delivered once; ${newcomers} new clients connected, 0 refused; ${closeCodes.get(4001)} clients moved with 4001, ${resumed} of them resumed their session`,
    );

    // Only the new generation is left.
    for (let i = 0; i < 40; i++) {
      status = await pylon('status');
      if (
        !/\s1\s+(serving|draining)\s/.test(status.out) &&
        (status.out.match(/\s2\s+serving\s/g) ?? []).length === 2
      )
        break;
      await sleep(250);
    }
    expect(status.out.match(/\s2\s+serving\s/g)).toHaveLength(2);
    expect(status.out).not.toMatch(/\s1\s+(serving|draining)\s/);
    expect(status.out).toMatch(/1,000 connection\(s\)/);

    // A typo in the config: the new workers refuse to start, the reload is abandoned and the
    // running generation keeps serving. (The reload command itself reads a good copy.)
    const good = readFileSync(join(dir, 'pylon.yaml'), 'utf8');
    writeFileSync(join(dir, 'good.yaml'), good);
    writeFileSync(join(dir, 'pylon.yaml'), good.replace('log-level: warn', 'log-level: loud'));
    const failed = await pylon('reload', '--config', 'good.yaml');
    expect(failed.code).toBe(1);
    expect(failed.err).toMatch(
      /reload failed: new worker \d exited \(1\) before it listened; generation 2 keeps serving/,
    );
    expect(readFileSync(join(dir, 'pylon.log'), 'utf8')).toMatch(
      /log-level must be one of debug, info, warn, error, silent, got "loud"/,
    );
    // Nor may a reload move the workers to another store (qos-1 messages would be stranded).
    writeFileSync(join(dir, 'pylon.yaml'), good.replace('./data/pylon.db', './data/other.db'));
    const moved = await pylon('reload', '--config', 'good.yaml');
    expect(moved.code).toBe(1);
    expect(moved.err).toMatch(/reload failed: new worker \d exited \(1\) before it listened/);
    // The worker's last words reach the log file a moment after the primary reported its exit.
    await expect
      .poll(() => readFileSync(join(dir, 'pylon.log'), 'utf8'), { timeout: 5000 })
      .toMatch(
        /store changed from sqlite:\.\/data\/pylon\.db to sqlite:\.\/data\/other\.db: a reload cannot change store/,
      );
    writeFileSync(join(dir, 'pylon.yaml'), good);
    status = await pylon('status');
    expect(status.out.match(/\s2\s+serving\s/g)).toHaveLength(2);
    expect(clients.filter((c) => c.connected).length).toBe(1000);

    // stop: clients are told to reconnect elsewhere, the process and its pid file are gone.
    const before = closeCodes.get(4001) ?? 0;
    const stopped = await pylon('stop');
    expect(stopped.code).toBe(0);
    expect(stopped.out).toMatch(/stopped/);
    expect(existsSync(join(dir, 'pylon.pid'))).toBe(false);
    expect(() => process.kill(pid, 0)).toThrow();
    await expect.poll(() => (closeCodes.get(4001) ?? 0) - before, { timeout: 10_000 }).toBe(1000);
    const after = await pylon('status');
    expect(after.code).toBe(3);
    expect(after.out).toMatch(/not running/);
    expect((await pylon('stop')).out).toMatch(/not running/);
    await Promise.all(clients.map((c) => c.close()));
  }, 120_000);

  it('a foreground start with --pid-file: stop finds it, reload says it needs a supervisor', async () => {
    const [ws, tcp, admin] = [await freePort(), await freePort(), await freePort()];
    const flags = [
      '--config',
      'none.yaml',
      '--ws-port',
      String(ws),
      '--tcp-port',
      String(tcp),
      '--admin-port',
      String(admin),
      '--grpc-port',
      '-1',
      '--store',
      'memory',
      '--pid-file',
      'fg.pid',
    ];
    writeFileSync(join(dir, 'none.yaml'), '# nothing\n');
    const fg = execFile(process.execPath, [MAIN, 'start', ...flags], { cwd: dir });
    foreground.push(fg);
    let out = '';
    fg.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
    });
    const exited = new Promise<number | null>((r) => fg.on('exit', r));
    await expect.poll(() => out, { timeout: 10_000 }).toMatch(/ready/);
    expect(readFileSync(join(dir, 'fg.pid'), 'utf8').trim()).toBe(String(fg.pid));
    const client = await connect(`tcp://127.0.0.1:${tcp}`, { token: 'fg', reconnect: false });
    const closed = new Promise<{ code: number }>((r) => client.on('close', r));

    const reload = await pylon('reload', ...flags);
    expect(reload.code).toBe(1);
    expect(reload.err).toMatch(/one process, no supervisor/);
    expect(client.connected).toBe(true);

    const stopped = await pylon('stop', ...flags);
    expect(stopped.code).toBe(0);
    expect(await exited).toBe(0);
    expect((await closed).code).toBe(4001);
    expect(existsSync(join(dir, 'fg.pid'))).toBe(false);
  }, 60_000);

  it('start -d: a worker killed is started again; the memory store runs but refuses a reload; a port in use fails at once', async () => {
    const mem = join(dir, 'mem');
    mkdirSync(mem);
    const [ws, tcp, admin] = [await freePort(), await freePort(), await freePort()];
    writeFileSync(
      join(mem, 'pylon.yaml'),
      `ws-port: ${ws}\ntcp-port: ${tcp}\nadmin-port: ${admin}\ngrpc-port: -1\nstore: memory\nlog-level: warn\n`,
    );
    const inMem = (...args: string[]) => pylon('--cwd', mem, ...args);
    expect((await inMem('start', '-d')).code).toBe(0);
    const row = async () => {
      const s = JSON.parse((await inMem('status', '--json')).out) as {
        nodes: Array<{ process?: { pid: number } }>;
      };
      return s.nodes[0]?.process?.pid;
    };
    const worker = await row();
    expect(worker).toBeGreaterThan(0);
    process.kill(worker as number, 'SIGKILL');
    // The primary stays up and starts the worker again (the new one answers status).
    await expect
      .poll(
        async () => {
          const pid = await row();
          return pid !== undefined && pid !== worker;
        },
        { timeout: 15_000, interval: 250 },
      )
      .toBe(true);
    const client = await connect(`tcp://127.0.0.1:${tcp}`, { token: 'm', reconnect: false });
    await client.close();

    const reload = await inMem('reload');
    expect(reload.code).toBe(1);
    expect(reload.err).toMatch(/reload refused: the memory store lives in the worker/);

    // A second instance on the same ports (another directory, so another pid file): its worker
    // cannot listen, and start -d says so at once with the end of its log.
    const other = join(dir, 'other');
    mkdirSync(other);
    writeFileSync(join(other, 'pylon.yaml'), readFileSync(join(mem, 'pylon.yaml')));
    const t0 = Date.now();
    const clash = await pylon('--cwd', other, 'start', '-d');
    expect(clash.code).toBe(1);
    expect(clash.err).toMatch(/the background process exited \(1\)/);
    expect(clash.err).toMatch(/EADDRINUSE/);
    expect(Date.now() - t0).toBeLessThan(20_000);
    expect(existsSync(join(other, 'pylon.pid'))).toBe(false);

    expect((await inMem('stop')).out).toMatch(/stopped/);
  }, 60_000);
});
