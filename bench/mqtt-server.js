// One MQTT broker under test for bench/mqtt.js, in its own process: `node bench/mqtt-server.js
// <pylon|aedes>` prints `port <n>` once it listens. Pylon: createGateway with only an MQTT listener,
// every client allowed to subscribe and to publish to subscribers (the broker's default).
import { createServer } from 'node:net';

const kind = process.argv[2];
if (kind === 'pylon') {
  const { createGateway, createLogger } = await import('../dist/index.js');
  const gateway = createGateway({
    mqtt: { port: 0, publish: () => true },
    logger: createLogger('warn'),
    validate: (token) => ({ user: String(token ?? 'anon') }),
    authorizeSub: () => true,
    maxConnectionsPerIp: 100_000,
  });
  const addr = await gateway.listen();
  console.log(`port ${addr.mqtt.port}`);
} else if (kind === 'aedes') {
  const { Aedes } = await import('aedes');
  const broker = await Aedes.createBroker();
  const server = createServer(broker.handle);
  server.listen(0, '127.0.0.1', () => console.log(`port ${server.address().port}`));
} else {
  console.error(`unknown broker ${kind}`);
  process.exit(2);
}
