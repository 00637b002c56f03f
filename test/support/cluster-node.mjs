// One gateway of a Redis cluster, for test/cluster-redis.test.ts and bench/cluster.js: TCP and
// WebSocket on free ports, the Redis store, broker and registry at $REDIS (keys and channels
// under $PREFIX), a cluster TTL of $TTL ms, and its own admin API on a free port. Prints
//   node <id> tcp <url> ws <url> admin <url>
// and then "ready". SIGTERM closes it cleanly (it leaves the registry); SIGKILL is a crash.

import { pino } from 'pino';
import { redisCluster } from '../../dist/cluster/index.js';
import {
  createGateway,
  devValidator,
  jwtValidator,
  otlpTracing,
  RedisStore,
  startAdmin,
} from '../../dist/index.js';

const url = process.env.REDIS;
const prefix = process.env.PREFIX ?? 'pylon:';
const ttl = Number(process.env.TTL ?? 1500);
const store = await RedisStore.connect(url, { prefix: `${prefix}store:` });
const cluster = await redisCluster(url, { ttl, prefix });
// With $JWT_SECRET a token that looks like a JWT is verified as one (HS256); any other is the user id.
const jwt = process.env.JWT_SECRET ? await jwtValidator({ secret: process.env.JWT_SECRET }) : undefined;
const dev = devValidator();
// With $OTEL_ENDPOINT: spans exported over OTLP/HTTP there, as `pylon start --otel-endpoint` does.
const otel = process.env.OTEL_ENDPOINT
  ? await otlpTracing(process.env.OTEL_ENDPOINT, { instance: process.env.NODE_NAME })
  : undefined;
const gateway = createGateway({
  tcp: { port: 0, host: '127.0.0.1' },
  ws: { port: 0, host: '127.0.0.1' },
  validate: (token, meta) => (jwt && token?.split('.').length === 3 ? jwt(token, meta) : dev(token, meta)),
  authorizeSub: () => true,
  store,
  cluster,
  // Synchronous, so the test reads the outage's log lines as soon as they are written.
  logger: pino(
    { level: process.env.LOG ?? 'warn', base: { name: 'pylon' } },
    pino.destination({ dest: 2, sync: true }),
  ),
  delivery: { redeliveryBase: 300, redeliveryMax: 1000 },
  ...(otel ? { tracing: otel.provider } : {}),
  rateLimit: false,
  userRateLimit: false,
});
const addr = await gateway.listen();
await cluster.ready;
const admin = await startAdmin(gateway, { httpPort: 0, grpcPort: false, dashboard: false });
const tcp = `tcp://127.0.0.1:${addr.tcp.port}`;
const ws = `ws://127.0.0.1:${addr.ws.port}/ws`;
process.stdout.write(
  `node ${gateway.nodeId} tcp ${tcp} ws ${ws} admin http://127.0.0.1:${admin.http.port}\n`,
);
process.stdout.write('ready\n');

process.on('SIGTERM', async () => {
  await gateway.close();
  await admin.close();
  await store.close();
  await otel?.shutdown();
  process.exit(0);
});
