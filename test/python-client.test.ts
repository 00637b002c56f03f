import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { installEcho } from '../src/cli/echo.js';
import { devValidator, MemoryStore } from '../src/index.js';
import { startGateway, stopAll } from './support/gateway.js';

// The cross-language proof: examples/python-client/client.py, written from PROTOCOL.md with
// Python's standard library only, against a live gateway.
const script = fileURLToPath(new URL('../examples/python-client/client.py', import.meta.url));
const python = spawnSync('python3', ['--version'], { encoding: 'utf8' });
const hasPython = python.status === 0;
if (!hasPython) {
  console.warn('test/python-client.test.ts: skipped, python3 is not installed (CI has it)');
}

afterEach(() => stopAll());

describe.skipIf(!hasPython)(`python client (${python.stdout?.trim() || 'no python3'})`, () => {
  it.each(['json', 'proto'])(
    'hello with a token, welcome, echo, then a qos-1 push that it acks (%s codec)',
    async (codec) => {
      const store = new MemoryStore();
      const { gateway, tcpUrl } = await startGateway({ validate: devValidator(), store, ws: undefined });
      installEcho(gateway);
      const port = new URL(tcpUrl).port;
      const child = spawn(
        'python3',
        [
          script,
          '--host',
          '127.0.0.1',
          '--port',
          port,
          '--token',
          'py-user',
          '--expect-push',
          '--message',
          'héllo',
          '--codec',
          codec,
        ],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      let out = '';
      let err = '';
      child.stderr.setEncoding('utf8').on('data', (d: string) => {
        err += d;
      });
      const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
      const waiting = new Promise<void>((resolve) => {
        child.stdout.setEncoding('utf8').on('data', (d: string) => {
          out += d;
          if (out.includes('waiting for a push')) resolve();
        });
      });
      await Promise.race([waiting, exited]);
      expect(out).toMatch(
        new RegExp(`^welcome: connection \\S+ user py-user server pylon/\\S+ codec ${codec}$`, 'm'),
      );
      expect(out).toMatch(/^echo: \{"text": "h\\u00e9llo"\} in [\d.]+ ms$/m);

      const pushed = await gateway.push({ user: 'py-user' }, 'notice', { n: 1 }, { qos: 1 });
      expect(pushed.stored).toBe(1);
      expect(await exited).toBe(0);
      expect(err).toBe('');
      expect(out).toContain('push notice: {"n": 1} (qos 1)');
      expect(out).toContain('acked seq 1');
      // The store saw the ack: nothing is pending for the user any more.
      const deadline = Date.now() + 5000;
      while ((await store.pending('py-user', 0, 10, Date.now())).length > 0 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 20));
      }
      expect(await store.pending('py-user', 0, 10, Date.now())).toEqual([]);
      expect(await store.lastSeq('py-user')).toBe(1);
      expect(gateway.stats().qos1.acked).toBe(1);
    },
  );

  it('reports an error code from the server and exits non-zero when refused', async () => {
    const { tcpUrl } = await startGateway({
      ws: undefined,
      validate: () => {
        throw new Error('no');
      },
    });
    // Not spawnSync: the gateway runs in this process and must answer meanwhile.
    const child = spawn('python3', [script, '--port', new URL(tcpUrl).port, '--token', 'x'], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
    });
    const status = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    const run = { status, stderr };
    expect(run.status).toBe(1);
    expect(run.stderr).toMatch(/kicked: 4502 unauthorized/);
  });
});
