import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterEach, expect, test } from 'vitest';
import { RpcClient } from '../src/rpc/index.js';
import { Child } from './support/process.js';

// A gateway in a process of its own (the built one in dist/, as `npm test` builds first), so the
// test can stop it with SIGSTOP: its sockets stay open but nothing answers, not even pings.
const SERVER = `
import { createGateway, createLogger } from ${JSON.stringify(pathToFileURL(resolve('dist/index.js')).href)};
const gateway = createGateway({ tcp: { port: 0, host: '127.0.0.1' }, logger: createLogger('silent'), rateLimit: false });
gateway.handle('echo', (data) => data);
const addr = await gateway.listen();
console.log('port ' + addr.tcp.port);
`;

const children: Child[] = [];
const clients: RpcClient[] = [];
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  for (const c of children.splice(0)) {
    c.kill('SIGCONT');
    c.kill('SIGKILL');
    await c.exited;
  }
});

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

test('a stopped server process: calls time out, dead connections are replaced, calls succeed once it is back', async () => {
  const server = new Child(process.execPath, ['--input-type=module', '-e', SERVER]);
  children.push(server);
  const port = Number((await server.waitFor(/^port (\d+)$/))[1]);
  const client = new RpcClient({
    url: `tcp://127.0.0.1:${port}`,
    connections: 2,
    timeout: 300,
    heartbeat: 100,
    heartbeatTimeout: 400,
    connectTimeout: 300,
    redial: { base: 50, max: 200 },
    backoff: { base: 50, max: 100 },
  });
  clients.push(client);
  await client.start();
  expect(await client.call('echo', 'before')).toBe('before');

  server.kill('SIGSTOP');
  const during = await Promise.allSettled([client.call('echo', 1), client.call('echo', 2)]);
  for (const r of during) {
    expect(r.status).toBe('rejected');
    expect(['TIMEOUT', 'UNAVAILABLE']).toContain((r as PromiseRejectedResult).reason.code);
  }
  // The heartbeat finds both links silent; redials reach the kernel's backlog but get no welcome.
  await sleep(1000);
  const stopped = client.stats().pool;
  expect(stopped.replaced).toBeGreaterThanOrEqual(2);
  expect(stopped.dialFailures).toBeGreaterThanOrEqual(1);
  expect(stopped.size).toBeLessThanOrEqual(2);

  server.kill('SIGCONT');
  const deadline = Date.now() + 8000;
  let answer: unknown;
  while (answer === undefined) {
    if (Date.now() > deadline) throw new Error(`no recovery: ${JSON.stringify(client.stats())}`);
    answer = await client.call('echo', 'after', { idempotent: true, retries: 3 }).catch(() => undefined);
  }
  expect(answer).toBe('after');
  const results = await Promise.all(Array.from({ length: 100 }, (_, i) => client.call('echo', i)));
  expect(results).toEqual(Array.from({ length: 100 }, (_, i) => i));
  expect(client.stats().pool.open).toBe(2);
}, 30_000);
