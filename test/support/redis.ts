import { type ChildProcess, spawn } from 'node:child_process';
import { accessSync, constants, mkdtempSync, rmSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';

export interface TestRedis {
  url: string;
  port: number;
  /** Stops the server (SIGTERM, waits for it to exit) and removes its data directory. */
  stop(): Promise<void>;
  /**
   * Stops the server (SIGTERM; with `kill`, SIGKILL, as in a crash) and starts it again on the
   * same port and directory; the AOF keeps the data (what Redis had acknowledged is in the file:
   * it writes the AOF before replying, so only a crash of the OS could lose it).
   */
  restart(options?: { kill?: boolean }): Promise<void>;
}

/**
 * Starts a real redis-server on a free loopback port, with an append-only file in a fresh temp
 * directory (no RDB snapshots), and waits until it answers PING. `args` are added to its command
 * line (e.g. ['--replicaof', '127.0.0.1', '6379']).
 */
export async function startRedis(options: { args?: string[] } = {}): Promise<TestRedis> {
  const bin = findOnPath('redis-server');
  if (bin === undefined) {
    throw new Error(
      'redis-server is not on the PATH: install the Debian package redis-server (apt-get install redis-server)',
    );
  }
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'pylon-redis-'));
  const args = [
    '--save',
    '',
    '--appendonly',
    'yes',
    '--appendfsync',
    'everysec',
    '--dir',
    dir,
    '--bind',
    '127.0.0.1',
    '--port',
    String(port),
    ...(options.args ?? []),
  ];
  let server = await launch(bin, args, port);
  // A crashed test process must not leave servers behind.
  const onExit = () => server.child.kill('SIGKILL');
  process.on('exit', onExit);

  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    async stop() {
      process.off('exit', onExit);
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    },
    async restart(o: { kill?: boolean } = {}) {
      if (o.kill) server.child.kill('SIGKILL');
      await server.stop();
      server = await launch(bin, args, port);
    },
  };
}

export interface Running {
  child: ChildProcess;
  /** The last 4,000 characters the server wrote (stdout and stderr). */
  output(): string;
  stop(): Promise<void>;
}

export async function launch(bin: string, args: string[], port: number): Promise<Running> {
  const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const collect = (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-4000);
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  let exited = false;
  const exit = new Promise<void>((resolve) => {
    child.once('exit', () => {
      exited = true;
      resolve();
    });
  });
  child.once('error', (err) => {
    output += String(err);
  });

  const deadline = Date.now() + 10_000;
  while (!(await ping(port))) {
    if (exited || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`redis-server on port ${port} did not answer PING: ${output}`);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  return {
    child,
    output: () => output,
    async stop() {
      if (!exited) child.kill('SIGTERM');
      // A server that refuses SIGTERM (a replica writing its initial AOF answers "can't exit" and
      // stays up) would outlive the test: after 5 s it is killed.
      const late = setTimeout(() => {
        if (!exited) {
          process.stderr.write(
            `redis-server on port ${port} still running 5 s after SIGTERM: SIGKILL\n${output.slice(-600)}\n`,
          );
          child.kill('SIGKILL');
        }
      }, 5000);
      await exit;
      clearTimeout(late);
    },
  };
}

/** True if a Redis on 127.0.0.1:`port` answers PING with PONG. */
export function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = createConnection({ host: '127.0.0.1', port });
    let reply = '';
    const done = (ok: boolean) => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(1000, () => done(false));
    sock.once('error', () => done(false));
    sock.once('connect', () => sock.write('PING\r\n'));
    sock.on('data', (chunk: Buffer) => {
      reply += chunk.toString();
      if (reply.includes('\r\n')) done(reply.startsWith('+PONG'));
    });
  });
}

/** A port that was free a moment ago (listen on 0, read it, close). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

export function findOnPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir === '') continue;
    const file = join(dir, name);
    try {
      accessSync(file, constants.X_OK);
      return file;
    } catch {}
  }
  return undefined;
}
