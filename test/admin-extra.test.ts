import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { AdminService } from '../src/api/admin-service.js';
import { type AdminServer, startAdmin, storeLatencyHistogram, timeStore } from '../src/api/index.js';
import { ApiKeys, bearerToken, isLoopback } from '../src/api/keys.js';
import { adminRoutes } from '../src/api/routes.js';
import { connect, type PylonClient } from '../src/client/index.js';
import { MemoryStore } from '../src/index.js';
import { startGateway, stopAll } from './support/gateway.js';

const KEY = 'test-admin-key-0123456789';
const admins: AdminServer[] = [];
const clients: PylonClient[] = [];

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await Promise.all(admins.splice(0).map((a) => a.close()));
  await stopAll();
});

const validate = (token: unknown) => {
  if (token === 'reject') return null;
  const [user, labels] = String(token).split(':');
  return { user: user as string, labels: labels ? labels.split(',') : [] };
};

async function setup(options: Parameters<typeof startAdmin>[1] = {}, gatewayOptions = {}) {
  const { gateway, tcpUrl, wsUrl } = await startGateway({ validate, ...gatewayOptions });
  const admin = await startAdmin(gateway, { httpPort: 0, grpcPort: false, keys: [KEY], ...options });
  admins.push(admin);
  const base = `http://127.0.0.1:${admin.http.port}`;
  const auth = { authorization: `Bearer ${KEY}` };
  const get = (path: string, method = 'GET') => fetch(base + path, { method, headers: auth });
  return { gateway, tcpUrl, wsUrl, admin, base, get };
}

async function client(url: string, token: string): Promise<PylonClient> {
  const c = await connect(url, { token, reconnect: false });
  clients.push(c);
  return c;
}

/** The value of one sample line of a Prometheus text exposition. */
function sample(text: string, name: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? undefined : Number(line.slice(name.length + 1));
}

describe('admin metrics', () => {
  it('exposes gauges and counters from the gateway, event-loop lag, process metrics and store latency', async () => {
    const registry = new Registry();
    const store = timeStore(new MemoryStore(), storeLatencyHistogram(registry));
    const { tcpUrl, wsUrl, admin, get } = await setup({ registry }, { store });
    expect(admin.metrics).toBe(registry);
    await client(tcpUrl, 'ann:a,b');
    await client(wsUrl, 'ann:c');
    await client(tcpUrl, 'bo:a');
    await expect(connect(tcpUrl, { token: 'reject', reconnect: false })).rejects.toThrow();
    const pushed = await fetch(`http://127.0.0.1:${admin.http.port}/v1/push`, {
      method: 'POST',
      headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ to: { user: 'zed' }, type: 'x', qos: 1 }),
    });
    expect(pushed.status).toBe(200);

    const res = await get('/metrics');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
    const text = await res.text();
    expect(sample(text, 'pylon_connections')).toBe(3);
    expect(sample(text, 'pylon_users')).toBe(2);
    expect(sample(text, 'pylon_labels')).toBe(3);
    expect(sample(text, 'pylon_auth_failures_total')).toBe(1);
    expect(sample(text, 'pylon_messages_in_total')).toBeGreaterThanOrEqual(3);
    expect(sample(text, 'pylon_messages_out_total')).toBeGreaterThanOrEqual(3);
    expect(sample(text, 'pylon_qos1_stored_total')).toBe(1);
    for (const name of [
      'pylon_pushes_dropped_total',
      'pylon_slow_consumers_total',
      'pylon_qos1_sent_total',
      'pylon_qos1_redelivered_total',
      'pylon_qos1_acked_total',
      'pylon_qos1_dead_letters_total',
      'pylon_resumable_sessions',
    ]) {
      expect(sample(text, name), name).toBe(0);
    }
    expect(text).toMatch(/^# TYPE pylon_messages_in_total counter$/m);
    expect(text).toMatch(/^# TYPE pylon_connections gauge$/m);
    for (const stat of ['p50', 'p99', 'max']) {
      expect(sample(text, `pylon_event_loop_lag_seconds{stat="${stat}"}`)).toBeGreaterThanOrEqual(0);
    }
    expect(sample(text, 'process_cpu_user_seconds_total')).toBeGreaterThan(0);
    expect(text).toContain('nodejs_heap_size_used_bytes');
    expect(sample(text, 'pylon_store_duration_seconds_count{method="append"}')).toBe(1);
    expect(text).toContain('pylon_store_duration_seconds_bucket{le="0.0001",method="append"}');

    // Gauges follow the gateway.
    await clients.pop()?.close();
    await expect.poll(async () => sample(await (await get('/metrics')).text(), 'pylon_connections')).toBe(2);
    expect(sample(await (await get('/metrics')).text(), 'pylon_users')).toBe(1);
  });
});

describe('admin OpenAPI', () => {
  it('describes every route of the server, and every $ref resolves', async () => {
    const { gateway, get } = await setup();
    const doc = (await (await get('/openapi.json')).json()) as {
      openapi: string;
      paths: Record<string, Record<string, unknown>>;
    };
    expect(doc.openapi).toBe('3.1.0');
    const routes = adminRoutes(new AdminService(gateway), new Registry());
    expect(routes.length).toBeGreaterThanOrEqual(12);
    for (const r of routes) {
      expect(doc.paths[r.path]?.[r.method.toLowerCase()], `${r.method} ${r.path}`).toBeDefined();
    }
    const refs = JSON.stringify(doc).match(/"\$ref":"[^"]+"/g) ?? [];
    for (const ref of refs) {
      const path = ref.slice(8, -1).replace(/^#\//, '').split('/');
      let node: unknown = doc;
      for (const p of path) node = (node as Record<string, unknown>)[p];
      expect(node, ref).toBeDefined();
    }
  });
});

describe('admin profiling', () => {
  it('takes a CPU profile of the running process; one profile at a time (409)', async () => {
    const { get } = await setup();
    const started = Date.now();
    const profiling = get('/v1/debug/cpu-profile?seconds=1', 'POST');
    await new Promise((r) => setTimeout(r, 100));
    const busy = await get('/v1/debug/heap-snapshot', 'POST');
    expect(busy.status).toBe(409);
    expect((await busy.json()).error.code).toBe('CONFLICT');
    expect((await get('/v1/debug/cpu-profile?seconds=1', 'POST')).status).toBe(409);
    const res = await profiling;
    expect(res.status).toBe(200);
    expect(res.headers.get('content-disposition')).toMatch(/\.cpuprofile"$/);
    const profile = (await res.json()) as { nodes: unknown[]; samples: number[]; startTime: number };
    expect(Date.now() - started).toBeGreaterThanOrEqual(1000);
    expect(profile.nodes.length).toBeGreaterThan(0);
    expect(Array.isArray(profile.samples)).toBe(true);
    expect(profile.startTime).toBeGreaterThan(0);
  });

  it('streams a heap snapshot', async () => {
    const { get } = await setup();
    const res = await get('/v1/debug/heap-snapshot', 'POST');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-disposition')).toMatch(/\.heapsnapshot"$/);
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    let head = '';
    while (head.length < 12) {
      const { value, done } = await reader.read();
      if (done) break;
      head += new TextDecoder().decode(value);
    }
    expect(head.startsWith('{"snapshot"')).toBe(true);
    await reader.cancel();
    // The lock was released.
    await expect.poll(async () => (await get('/v1/debug/cpu-profile?seconds=1', 'POST')).status).toBe(200);
  });
});

describe('admin keys and binding', () => {
  it('refuses to bind beyond loopback without a key', async () => {
    const { gateway } = await startGateway();
    for (const host of ['0.0.0.0', '::', '192.0.2.10']) {
      await expect(startAdmin(gateway, { host, httpPort: 0, grpcPort: 0 })).rejects.toThrow(
        `refusing to serve the admin API on ${host} without an API key`,
      );
    }
    await expect(startAdmin(gateway, { httpPort: 0, keys: ['short'] })).rejects.toThrow(
      /at least 16 characters/,
    );
    const local = await startAdmin(gateway, { host: 'localhost', httpPort: 0, grpcPort: false });
    admins.push(local);
    expect(local.grpc).toBeUndefined();
  });

  it('compares keys, accepts any configured key, parses bearer headers, knows loopback', () => {
    const keys = new ApiKeys(['first-key-0123456789', 'second-key-0123456789']);
    expect(keys.allows('Bearer first-key-0123456789')).toBe(true);
    expect(keys.allows('bearer   second-key-0123456789')).toBe(true);
    expect(keys.allows('Bearer second-key-012345678')).toBe(false);
    expect(keys.allows('first-key-0123456789')).toBe(false);
    expect(keys.allows(undefined)).toBe(false);
    expect(new ApiKeys([]).allows(undefined)).toBe(true);
    expect(bearerToken('Bearer a b')).toBeUndefined();
    for (const h of ['127.0.0.1', '127.1.2.3', '::1', 'localhost', '[::1]'])
      expect(isLoopback(h), h).toBe(true);
    for (const h of ['0.0.0.0', '::', '10.0.0.1', 'example.com', '::ffff:10.0.0.1'])
      expect(isLoopback(h), h).toBe(false);
  });

  it('answers 413 to a body over the default 1 MiB limit without resetting the client', async () => {
    const { base } = await setup();
    const body = JSON.stringify({ to: { all: true }, type: 'x', data: 'y'.repeat(3 * 1024 * 1024) });
    for (let i = 0; i < 3; i++) {
      const res = await fetch(`${base}/v1/push`, {
        method: 'POST',
        headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
        body,
      });
      expect(res.status).toBe(413);
      expect((await res.json()).error.message).toBe('body: larger than 1048576 bytes');
    }
  });

  it('close() stops both servers', async () => {
    const { gateway } = await startGateway();
    const admin = await startAdmin(gateway, { httpPort: 0, grpcPort: 0 });
    expect((await fetch(`http://127.0.0.1:${admin.http.port}/healthz`)).status).toBe(200);
    await admin.close();
    await expect(fetch(`http://127.0.0.1:${admin.http.port}/healthz`)).rejects.toThrow();
  });
});
