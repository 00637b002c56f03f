import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type PylonClient } from '../src/client/index.js';
import { redisCluster } from '../src/cluster/setup.js';
import { devValidator, type Gateway, RedisStore } from '../src/index.js';
import { startGateway, stopAll } from './support/gateway.js';
import { startRedisCluster, type TestRedisCluster } from './support/redis-cluster.js';

// A Redis Cluster master SIGKILLed in the middle of 2,000 qos-1 pushes: its replica takes over
// (1 s node timeout); a push that fails meanwhile is retried with the same idempotency key, as a
// business system would. Every accepted push must arrive exactly once, in order per user.
// The store waits for one replica (waitReplicas: 1), so an accepted push is on the replica that
// takes over; the killed master comes back 1.5 s later as the new master's replica (until then
// WAIT cannot succeed on that shard and its pushes are refused and retried).

let rc: TestRedisCluster;
let store: RedisStore;
const gateways: Gateway[] = [];
const urls: string[] = [];
const clients: PylonClient[] = [];

beforeAll(async () => {
  rc = await startRedisCluster({ masters: 3, replicas: 1 });
  store = await RedisStore.connect(rc.spec, { prefix: 'fo:', waitReplicas: 1, waitTimeout: 500 });
  for (let i = 0; i < 2; i++) {
    const cluster = await redisCluster(rc.spec, { prefix: 'fo:', ttl: 5000 });
    const g = await startGateway({
      validate: devValidator(),
      store,
      cluster,
      delivery: { redeliveryBase: 500, redeliveryMax: 2000 },
    });
    await cluster.ready;
    gateways.push(g.gateway);
    urls.push(g.tcpUrl);
  }
}, 90_000);

afterAll(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close().catch(() => {})));
  await stopAll();
  await store?.close();
  await rc?.stop();
});

describe('qos 1 across a Redis Cluster failover', () => {
  it('every accepted push arrives exactly once, in order per user', async () => {
    const USERS = 20;
    const TOTAL = 2000;
    const got = new Map<string, number[]>();
    for (let u = 0; u < USERS; u++) {
      const list: number[] = [];
      got.set(`fo-${u}`, list);
      const c = await connect(urls[1] as string, { token: `fo-${u}`, reconnect: { base: 50, max: 500 } });
      clients.push(c);
      c.on('n', (data) => {
        list.push(data as number);
      });
    }
    const a = gateways[0] as Gateway;
    const accepted = new Map<string, number[]>();
    let failures = 0;
    let last = '';
    let sent = 0;
    let killed: Promise<number> | undefined;
    const t0 = Date.now();
    const progress = setInterval(
      () => console.log(`t=${Date.now() - t0} sent=${sent} failures=${failures} ${last}`),
      2000,
    );
    await Promise.all(
      Array.from({ length: USERS }, async (_, u) => {
        const user = `fo-${u}`;
        const mine: number[] = [];
        accepted.set(user, mine);
        for (let i = u; i < TOTAL; i += USERS) {
          for (let attempt = 0; ; attempt++) {
            try {
              await a.push({ user }, 'n', i, { qos: 1, idempotencyKey: `fo-${i}` });
              mine.push(i);
              break;
            } catch (err) {
              failures++;
              last = (err as Error).message.slice(0, 100);
              if (attempt > 100) throw err;
              await new Promise((r) => setTimeout(r, 100));
            }
          }
          if (++sent === TOTAL / 4)
            killed = rc.killMaster().then(async (port) => {
              await new Promise((r) => setTimeout(r, 1500));
              await rc.restartNode(port);
              return port;
            });
        }
      }),
    );
    await killed;
    clearInterval(progress);
    for (const [user, list] of accepted) {
      await expect
        .poll(() => (got.get(user) as number[]).length, { timeout: 30_000, interval: 200 })
        .toBeGreaterThanOrEqual(list.length);
    }
    await new Promise((r) => setTimeout(r, 1000));
    for (const [user, list] of accepted) expect(got.get(user)).toEqual(list);
    console.log(
      `failover: ${TOTAL} pushes accepted, ${failures} attempts failed during the failover and were retried`,
    );
  }, 120_000);
});
