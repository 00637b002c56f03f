// The clients of bench/paced.js: N raw TCP connections (hello, then answer pings, count pushes),
// and a probe that sends an echo request every 20 ms while the paced push goes out.
import { connect } from 'node:net';
import { frameText, readFrames } from './lib/framing.js';

const port = Number(process.argv[2]);
const N = Number(process.argv[3]);
const sources = Array.from({ length: 8 }, (_, i) => `127.0.0.${i + 2}`);
let received = 0;
let pongs = 0;
let closed = 0;
const sockets = [];

function open(i) {
  return new Promise((resolve) => {
    const s = connect({ port, host: '127.0.0.1', localAddress: sources[i % sources.length] }, () => {
      s.write(frameText(JSON.stringify({ kind: 'hello', data: { token: `u${i}` } })));
    });
    const holder = { rest: null };
    s.on('data', (chunk) =>
      readFrames(holder, chunk, (_h, f) => {
        const m = JSON.parse(f.toString());
        if (m.kind === 'welcome') resolve();
        else if (m.kind === 'ping') {
          s.write(frameText('{"kind":"pong"}'));
          pongs++;
        } else if (m.kind === 'push') received++;
        else if (m.kind === 'res') onEcho(m);
      }),
    );
    s.on('close', () => closed++);
    s.on('error', () => {});
    sockets.push(s);
  });
}

for (let i = 0; i < N; i += 200)
  await Promise.all(Array.from({ length: Math.min(200, N - i) }, (_, j) => open(i + j)));
process.send({ type: 'connected' });

let echoes = 0;
let maxEchoMs = 0;
const sent = new Map();
function onEcho(m) {
  const t = sent.get(m.id);
  if (t === undefined) return;
  sent.delete(m.id);
  echoes++;
  maxEchoMs = Math.max(maxEchoMs, performance.now() - t);
}
let probe;
process.on('message', (m) => {
  if (m.type === 'probe') {
    let id = 0;
    probe = setInterval(() => {
      sent.set(++id, performance.now());
      sockets[0].write(frameText(JSON.stringify({ kind: 'req', id, type: 'echo', data: id })));
    }, 20);
  } else if (m.type === 'report') {
    clearInterval(probe);
    setTimeout(() => process.send({ type: 'report', received, pongs, echoes, maxEchoMs, closed }), 200);
  }
});
