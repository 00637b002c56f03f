// A Node client for the echo server (or `pylon start`), over TCP or WebSocket.
// Run after `npm run build`:  node examples/echo/client.js [tcp://127.0.0.1:8081 | ws://127.0.0.1:8080/ws]
import { connect, PylonError } from '../../dist/client/index.js';

const url = process.argv[2] ?? 'tcp://127.0.0.1:8081';
const client = await connect(url, { codec: 'msgpack' });
console.log(`connected to ${url} as ${client.welcome.connection}`);

console.log('echo:', JSON.stringify(await client.request('echo', { hello: 'pylon' })));

const pushed = new Promise((resolve) => client.on('Echo', resolve));
client.send('Echo', { Message: 'hi' });
console.log('push Echo:', JSON.stringify(await pushed));

try {
  await client.request('divide', { a: 1, b: 0 });
} catch (err) {
  if (err instanceof PylonError) console.log(`divide: ${err.code} ${err.message}`);
}
await client.close();
