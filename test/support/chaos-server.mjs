// A gateway for the chaos test: TCP on $PORT, qos 1 in the SQLite file $DB, test-only handlers.
// It is killed with SIGKILL and started again on the same port and file during the test.
import { createGateway, createLogger, devValidator } from '../../dist/index.js';
import { SqliteStore } from '../../dist/store/sqlite-store.js';

const store = SqliteStore.open(process.env.DB);
const gateway = createGateway({
  tcp: { port: Number(process.env.PORT) },
  validate: devValidator(),
  store,
  logger: createLogger('warn'),
  delivery: { redeliveryBase: 300, redeliveryMax: 1000 },
  keepalive: { interval: 2000, timeout: 5000 },
  maxPendingRequests: 1000,
  rateLimit: false,
  userRateLimit: false,
});
// Answered once the message is stored: from then on it must reach the user exactly once.
gateway.handle('chaos.push', async ({ user, n }) => {
  const r = await gateway.push({ user }, 'm', { n }, { qos: 1 });
  return r.stored;
});
// The network drops this client's link (no kick, no close frame).
gateway.handle('chaos.drop', (_data, ctx) => {
  ctx.connection.link.destroy();
});
await gateway.listen();
process.stdout.write('ready\n');
