// The framework face of Pylon: servers by URL scheme, raw messages, a group, a worker pool.
// Run after `npm run build`:  node examples/framework/servers.js
//
//   nc 127.0.0.1 5678                  line chat room: every line goes to everyone; "/prime 20000"
//                                      is computed on a worker thread and answered inside the room
//   curl -i http://127.0.0.1:8088/     HTTP/1.1 keep-alive hello world (try ab -k or wrk)
//   echo hi | nc -u -w1 127.0.0.1 5679 UDP echo
//   websocat ws://127.0.0.1:8089/      WebSocket echo
import { createServer, Group, jsonResponse } from '../../dist/framework/index.js';

const nthPrime = new URL('./work.js#nthPrime', import.meta.url); // module + export name

// A chat room over the line protocol: one Group, so its handlers run one at a time.
const room = new Group({ name: 'room' });
room.on('$join', (conn) => say(`* ${conn.id} joined (${room.members.size} here)`));
room.on('$leave', (conn) => say(`* ${conn.id} left`));
room.on('*', (conn, line) => {
  const prime = /^\/prime (\d{1,7})$/.exec(line);
  if (prime) {
    // Off the event loop; the answer comes back inside the room's mailbox.
    room.slowCall(nthPrime, Number(prime[1]), (result, error) => {
      if (conn.open) conn.send(error ? `! ${error.message}` : `prime #${prime[1]} is ${result}`);
    });
    return;
  }
  say(`${conn.id}: ${line}`);
});
function say(text) {
  for (const c of room.members) c.send(text);
}

const line = createServer({
  listen: 'line://127.0.0.1:5678',
  idleTimeout: 10 * 60_000,
  onConnect: (conn) => {
    conn.send('welcome: type a line; /prime N');
    room.add(conn); // from now on the room handles its lines
  },
  onBufferFull: (conn) => conn.pauseRecv(), // a reader too slow for the room: stop reading it
  onBufferDrain: (conn) => conn.resumeRecv(),
});

const http = createServer({
  listen: 'http://127.0.0.1:8088',
  onMessage(conn, req) {
    if (req.path === '/json') conn.send(jsonResponse({ hello: 'world', from: req.remoteAddress }));
    else conn.send('hello world\n');
  },
});

const udp = createServer({
  listen: 'udp://127.0.0.1:5679',
  onMessage: (peer, bytes) => peer.send(bytes),
});

const ws = createServer({
  listen: 'ws://127.0.0.1:8089',
  onMessage: (conn, message) => conn.send(message),
});

for (const server of [line, http, udp, ws]) console.log(`listening on ${(await server.listen()).url}`);
const stop = () => Promise.all([line, http, udp, ws].map((s) => s.close())).then(() => process.exit(0));
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
