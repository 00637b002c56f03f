import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { type AdminServer, startAdmin } from '../src/api/index.js';
import { Webhooks } from '../src/api/webhooks.js';
import { connect, type PylonClient } from '../src/client/index.js';
import { devValidator } from '../src/index.js';
import { startGateway, stopAll } from './support/gateway.js';
import { Child } from './support/process.js';
import { addressesOf, adminPush, startPylon } from './support/pylon-start.js';
import { startRedis, type TestRedis } from './support/redis.js';

// OpenTelemetry spans: in one process with the SDK's in-memory exporter, and across two gateway
// processes over Redis exporting OTLP/HTTP to a receiver this test runs.

const clients: PylonClient[] = [];
const admins: AdminServer[] = [];
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close().catch(() => {})));
  await Promise.all(admins.splice(0).map((a) => a.close()));
  await stopAll();
});

const PARENT_TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT = `00-${PARENT_TRACE}-00f067aa0ba902b7-01`;

async function traced() {
  const exporter = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
  const { gateway, tcpUrl } = await startGateway({
    validate: devValidator(),
    authorizeSub: () => true,
    tracing: provider,
  });
  const admin = await startAdmin(gateway, { httpPort: 0, grpcPort: false, dashboard: false });
  admins.push(admin);
  const push = (body: unknown, headers: Record<string, string> = {}) =>
    fetch(`http://127.0.0.1:${admin.http?.port}/v1/push`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body: JSON.stringify(body),
    }).then((r) => r.json() as Promise<Record<string, unknown>>);
  const spans = (name: string) => exporter.getFinishedSpans().filter((s) => s.name === name);
  return { gateway, tcpUrl, push, spans, exporter };
}

const attr = (s: ReadableSpan | undefined, k: string) => s?.attributes[k];
const parentOf = (s: ReadableSpan | undefined) => s?.parentSpanContext?.spanId;

describe('tracing in one process', () => {
  it('an admin push with a traceparent: push, store and qos-1 delivery up to the ack, in the caller’s trace', async () => {
    const { tcpUrl, push, spans } = await traced();
    const c = await connect(tcpUrl, { token: 'alice', reconnect: false });
    clients.push(c);
    const got: unknown[] = [];
    c.on('note', (d) => {
      got.push(d);
    });
    const r = await push({ to: { user: 'alice' }, type: 'note', data: 1, qos: 1 }, { traceparent: PARENT });
    await expect.poll(() => spans('pylon.qos1.deliver').length).toBe(1);
    expect(got).toEqual([1]);
    const [p] = spans('pylon.push');
    const [store] = spans('pylon.store');
    const [deliver] = spans('pylon.qos1.deliver');
    expect(p?.spanContext().traceId).toBe(PARENT_TRACE);
    expect(parentOf(p)).toBe('00f067aa0ba902b7');
    expect(attr(p, 'pylon.push.id')).toBe(r.id);
    expect(attr(p, 'pylon.push.qos')).toBe(1);
    expect(parentOf(store)).toBe(p?.spanContext().spanId);
    expect(attr(store, 'pylon.stored')).toBe(1);
    expect(deliver?.spanContext().traceId).toBe(PARENT_TRACE);
    expect(parentOf(deliver)).toBe(p?.spanContext().spanId);
    expect(attr(deliver, 'pylon.acked')).toBe(true);
    expect(attr(deliver, 'pylon.user')).toBe('alice');
  });

  it('a qos-0 label push: one fan-out span with counts, not a span per recipient', async () => {
    const { tcpUrl, push, spans, exporter } = await traced();
    for (let i = 0; i < 5; i++) {
      const c = await connect(tcpUrl, { token: `u${i}`, reconnect: false });
      await c.subscribe(['room']);
      clients.push(c);
    }
    exporter.reset();
    await push({ to: { labels: { all: ['room'] } }, type: 'news', data: 'x' });
    await expect.poll(() => spans('pylon.fanout').length).toBe(1);
    const [fan] = spans('pylon.fanout');
    expect(attr(fan, 'pylon.targeted')).toBe(5);
    expect(attr(fan, 'pylon.delivered')).toBe(5);
    expect(spans('pylon.push')).toHaveLength(1);
    // A push without a traceparent starts a trace of its own.
    expect(spans('pylon.push')[0]?.spanContext().traceId).not.toBe(PARENT_TRACE);
    expect(
      exporter
        .getFinishedSpans()
        .map((s) => s.name)
        .sort(),
    ).toEqual(['pylon.fanout', 'pylon.push']);
  });

  it('a request: one span from receive to answer, with the error code when it failed', async () => {
    const { gateway, tcpUrl, spans } = await traced();
    gateway.handle('echo', (data) => data);
    const c = await connect(tcpUrl, { token: 'bob', reconnect: false });
    clients.push(c);
    expect(await c.request('echo', 'hi')).toBe('hi');
    await expect(c.request('nope', 1)).rejects.toThrow(/no handler/);
    const requests = spans('pylon.request');
    const ok = requests.find((s) => attr(s, 'pylon.request.type') === 'echo');
    expect(attr(ok, 'pylon.user')).toBe('bob');
    expect(attr(ok, 'pylon.error.code')).toBeUndefined();
    const failed = requests.find((s) => attr(s, 'pylon.request.type') === 'nope');
    expect(attr(failed, 'pylon.error.code')).toBe('NOT_FOUND');
  });

  it('a qos-1 message to a connection that closes before its ack: the span ends, not acked', async () => {
    const { gateway, tcpUrl, push, spans } = await traced();
    const c = await connect(tcpUrl, { token: 'carol', reconnect: false });
    clients.push(c);
    // A handler that never finishes: the client never acks.
    c.on('note', () => new Promise<void>(() => {}));
    await push({ to: { user: 'carol' }, type: 'note', data: 1, qos: 1 });
    await expect.poll(() => gateway.stats().qos1.sent).toBe(1);
    gateway.kick({ user: 'carol' });
    await expect.poll(() => spans('pylon.qos1.deliver').length).toBe(1);
    expect(attr(spans('pylon.qos1.deliver')[0], 'pylon.acked')).toBe(false);
  });
});

describe('tracing of webhooks', () => {
  it('a span per webhook call, its traceparent in the request headers', async () => {
    const { gateway, tcpUrl, spans } = await traced();
    const seen: Array<string | undefined> = [];
    const business = createServer((req, res) => {
      seen.push(req.headers.traceparent as string | undefined);
      req.resume();
      req.on('end', () => res.writeHead(204).end());
    });
    await new Promise<void>((r) => business.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(business.address() as AddressInfo).port}/events`;
    const hooks = new Webhooks(gateway, { connect: url }).start();
    try {
      const c = await connect(tcpUrl, { token: 'frank', reconnect: false });
      clients.push(c);
      await expect.poll(() => spans('pylon.webhook').length).toBe(1);
      const [span] = spans('pylon.webhook');
      expect(attr(span, 'http.response.status_code')).toBe(204);
      expect(seen[0]).toBe(`00-${span?.spanContext().traceId}-${span?.spanContext().spanId}-01`);
    } finally {
      await hooks.close();
      business.close();
    }
  });
});

describe('tracing across two gateway processes', () => {
  let redis: TestRedis | undefined;
  let receiver: Server | undefined;
  const receivers: Server[] = [];
  const procs: Child[] = [];
  afterAll(async () => {
    for (const p of procs) p.kill('SIGKILL');
    await redis?.stop();
    receiver?.close();
    for (const r of receivers) r.close();
  });

  it('one trace from an admin push on node A to the ack on node B, exported over OTLP/HTTP', async () => {
    const { received, endpoint } = await otlpReceiver((srv) => {
      receiver = srv;
    });
    redis = await startRedis();
    const start = async (name: string) => {
      const child = new Child(process.execPath, ['test/support/cluster-node.mjs'], {
        REDIS: (redis as TestRedis).url,
        TTL: '1500',
        PREFIX: 'trace:',
        LOG: 'warn',
        OTEL_ENDPOINT: endpoint,
        NODE_NAME: name,
        OTEL_BSP_SCHEDULE_DELAY: '100',
      });
      procs.push(child);
      const m = await child.waitFor(/^node (\S+) tcp (\S+) ws (\S+) admin (\S+)/);
      await child.waitFor(/^ready/);
      return { tcp: m[2] as string, admin: m[4] as string };
    };
    const [a, b] = await Promise.all([start('A'), start('B')]);
    const dana = await connect(b.tcp, { token: 'dana', reconnect: false });
    clients.push(dana);
    const got: unknown[] = [];
    dana.on('note', (d) => {
      got.push(d);
    });
    await expect
      .poll(async () => {
        const r = await fetch(`${a.admin}/v1/dispatch?user=dana`);
        return ((await r.json()) as { nodes: Array<{ current?: boolean }> }).nodes.some((n) => n.current);
      })
      .toBe(true);
    const res = await fetch(`${a.admin}/v1/push`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', traceparent: PARENT },
      body: JSON.stringify({ to: { user: 'dana' }, type: 'note', data: { n: 1 }, qos: 1 }),
    });
    expect(res.status).toBe(200);
    await expect.poll(() => got).toEqual([{ n: 1 }]);
    await expect
      .poll(() => received.some((s) => s.name === 'pylon.qos1.deliver' && s.process === 'B'), {
        timeout: 10_000,
      })
      .toBe(true);
    const push = received.find((s) => s.name === 'pylon.push');
    const deliver = received.find((s) => s.name === 'pylon.qos1.deliver');
    expect(push).toMatchObject({ process: 'A', traceId: PARENT_TRACE, parent: '00f067aa0ba902b7' });
    expect(deliver).toMatchObject({ process: 'B', traceId: PARENT_TRACE, parent: push?.spanId });
    expect(deliver?.attrs['pylon.acked']).toBe(true);
  }, 60_000);

  it('pylon start --otel-endpoint exports its spans, the last ones at the stop', async () => {
    const { received, endpoint } = await otlpReceiver((srv) => {
      receivers.push(srv);
    });
    const cli = startPylon(['--store', 'memory', '--otel-endpoint', endpoint]);
    procs.push(cli);
    const { admin, tcp } = await addressesOf(cli);
    const c = await connect(tcp, { token: 'erin', reconnect: false });
    expect(await c.request('echo', { x: 1 })).toEqual({ x: 1 });
    expect(await adminPush(admin, { to: { user: 'erin' }, type: 'note', data: 1 })).toBe(200);
    await c.close();
    cli.kill('SIGTERM');
    await expect
      .poll(
        () =>
          received
            .map((s) => s.name)
            .filter((n) => n.startsWith('pylon.'))
            .sort(),
        { timeout: 10_000 },
      )
      .toEqual(['pylon.fanout', 'pylon.push', 'pylon.request']);
  }, 30_000);
});

interface Received {
  process: string;
  name: string;
  traceId: string;
  spanId: string;
  parent: string;
  attrs: Record<string, unknown>;
}

/** An OTLP/HTTP (JSON) receiver on a free loopback port: what a collector would get. */
async function otlpReceiver(keep: (s: Server) => void): Promise<{ received: Received[]; endpoint: string }> {
  const received: Received[] = [];
  const receiver = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => {
      body += c;
    });
    req.on('end', () => {
      const doc = JSON.parse(body) as OtlpDoc;
      for (const rs of doc.resourceSpans ?? []) {
        const process = String(value(rs.resource?.attributes, 'service.instance.id'));
        for (const ss of rs.scopeSpans ?? []) {
          for (const s of ss.spans ?? []) {
            received.push({
              process,
              name: s.name,
              traceId: hex(s.traceId),
              spanId: hex(s.spanId),
              parent: hex(s.parentSpanId ?? ''),
              attrs: Object.fromEntries((s.attributes ?? []).map((a) => [a.key, plain(a.value)])),
            });
          }
        }
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  keep(receiver);
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
  return { received, endpoint: `http://127.0.0.1:${(receiver.address() as AddressInfo).port}` };
}

interface OtlpValue {
  stringValue?: string;
  intValue?: number | string;
  boolValue?: boolean;
  doubleValue?: number;
}
interface OtlpDoc {
  resourceSpans?: Array<{
    resource?: { attributes?: Array<{ key: string; value: OtlpValue }> };
    scopeSpans?: Array<{
      spans?: Array<{
        name: string;
        traceId: string;
        spanId: string;
        parentSpanId?: string;
        attributes?: Array<{ key: string; value: OtlpValue }>;
      }>;
    }>;
  }>;
}

function plain(v: OtlpValue): unknown {
  return v.stringValue ?? v.boolValue ?? (v.intValue !== undefined ? Number(v.intValue) : v.doubleValue);
}

function value(attrs: Array<{ key: string; value: OtlpValue }> | undefined, key: string): unknown {
  const a = attrs?.find((x) => x.key === key);
  return a ? plain(a.value) : undefined;
}

/** OTLP/JSON ids are hex; accept base64 too. */
function hex(id: string): string {
  if (id === '' || /^[0-9a-f]+$/.test(id)) return id;
  return Buffer.from(id, 'base64').toString('hex');
}
