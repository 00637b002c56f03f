// An echo server on TCP and WebSocket: the same handlers serve both.
// Run after `npm run build`:  node examples/echo/server.js
import { createGateway, PylonError } from '../../dist/index.js';

const gateway = createGateway({
  tcp: { port: Number(process.env.TCP_PORT ?? 8081) },
  ws: { port: Number(process.env.WS_PORT ?? 8080), path: '/ws' },
});

// A request: the return value is the answer.
gateway.handle('echo', (data) => data);

// A request that fails with a code the client can switch on.
gateway.handle('divide', ({ a, b }) => {
  if (b === 0) throw new PylonError('BAD_REQUEST', 'division by zero');
  return a / b;
});

// A one-way message, pushed back the hotpot way.
gateway.handle('Echo', (data, ctx) => {
  ctx.connection.send('Echo', data);
});

gateway.on('connect', (c) => console.log(`+ ${c.id} ${c.transport} ${c.remoteAddress}`));
gateway.on('disconnect', (c, info) => console.log(`- ${c.id} ${info.code} ${info.name}`));

const addr = await gateway.listen();
console.log(`echo server: tcp://127.0.0.1:${addr.tcp.port} ws://127.0.0.1:${addr.ws.port}/ws`);
const stop = () => gateway.close().then(() => process.exit(0));
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
