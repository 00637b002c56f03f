// One gateway of bench/cluster-redis.js, like test/support/cluster-node.mjs but pointed at a
// Redis Cluster: TCP on a free port (dev auth: the token is the user name), the Redis store,
// sharded broker and registry at $REDIS (comma-separated seeds), keys and channels under
// $PREFIX, the default cluster TTL (15 s: a heartbeat every 5 s) unless $TTL, and its own admin
// API (HTTP) on a free port. Controlled over IPC (lib/ipc.js):
//   info      -> { id, tcp, admin, nodeChannel }
//   counters  -> { status: cluster.status(), sent: { store|broker|registry: { command: n } }, connections }
// `sent` counts the commands this process hands to each ioredis client (what goes on the wire,
// before Redis runs the commands inside a script), to attribute the server's counts. A script
// call (EVALSHA, or the EVAL ioredis sends the first time on a connection) is counted under the
// script's name (pylonRegLocate, pylonTurn, …), found by its sha among the client's scripts.
import { pino } from 'pino';
import { redisCluster } from '../../dist/cluster/index.js';
import { createGateway, devValidator, RedisStore, startAdmin } from '../../dist/index.js';
import { serve } from './ipc.js';

const url = process.env.REDIS;
const prefix = process.env.PREFIX ?? 'pylon:';
const ttl = process.env.TTL ? Number(process.env.TTL) : undefined;

const sent = { store: {}, broker: {}, registry: {} };

/**
 * Counts every command handed to an ioredis client (Redis or Cluster), by name; a script call by
 * its script's name (ioredis's scriptsSet: name -> Script with its sha; the sha is args[0]).
 */
function count(client, into) {
  if (!client || typeof client.sendCommand !== 'function') return false;
  const send = client.sendCommand.bind(client);
  let byScript = new Map();
  const scriptOf = (sha) => {
    if (!byScript.has(sha)) {
      byScript = new Map(Object.entries(client.scriptsSet ?? {}).map(([n, s]) => [s.sha, n]));
    }
    return byScript.get(sha);
  };
  client.sendCommand = (command, ...rest) => {
    let name = command?.name ?? '?';
    if (name === 'evalsha' || name === 'eval') name = scriptOf(command.args?.[0]) ?? name;
    into[name] = (into[name] ?? 0) + 1;
    return send(command, ...rest);
  };
  return true;
}

const store = await RedisStore.connect(url, { prefix: `${prefix}store:` });
const cluster = await redisCluster(url, ttl === undefined ? { prefix } : { prefix, ttl });
// The clients are private fields of the broker and the registry: reached at run time only to count.
const counted = {
  store: count(store.redis, sent.store),
  broker: count(cluster.broker.redis, sent.broker),
  registry: count(cluster.registry.redis, sent.registry),
};

const gateway = createGateway({
  tcp: { port: 0, host: '127.0.0.1' },
  validate: devValidator(),
  authorizeSub: () => true,
  store,
  cluster,
  logger: pino({ level: process.env.LOG ?? 'warn', base: { name: 'pylon' } }, pino.destination(2)),
  rateLimit: false,
});
const addr = await gateway.listen();
await cluster.ready;
const admin = await startAdmin(gateway, { httpPort: 0, grpcPort: false, dashboard: false });

const copy = (o) => JSON.parse(JSON.stringify(o));

serve({
  info: () => ({
    id: gateway.nodeId,
    tcp: addr.tcp.port,
    admin: `http://127.0.0.1:${admin.http.port}`,
    nodeChannel: `${prefix}node:${gateway.nodeId}`,
    counted,
  }),
  counters: () => ({
    status: cluster.status(),
    sent: copy(sent),
    connections: gateway.stats().connections,
  }),
  exit: async () => {
    await gateway.close();
    await admin.close();
    await store.close();
  },
});
process.send?.({ event: 'ready', data: null });
