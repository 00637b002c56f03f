// The TCP clients of bench/cluster-redis.js (JSON codec, one process). Controlled over IPC:
//   open  { users: [[user, port, labels[]], ...], concurrency } -> { ms }
//         connects each user (hello with token = user), `sub`s its labels if any, resolves when
//         every one has its welcome (and its sub answer); `concurrency` connects in flight.
//   close { users, oneAtATime } -> closes those connections (all at once, or one every 2 ms).
//   reset -> zeroes the counters; report -> { received, byType, latency histogram, lastAt }
// A qos-1 push is acked at once ({"kind":"ack","seq":N}). A push whose data carries `t` (a
// monotonic clock reading in ms, process.hrtime: the same clock in every process of this
// machine) adds now - t to the latency histogram.
import { connect } from 'node:net';
import { frameText, readFrames } from './framing.js';
import { Histogram } from './histogram.js';
import { serve } from './ipc.js';

const mono = () => Number(process.hrtime.bigint()) / 1e6;
const sockets = new Map();
const hist = new Histogram();
let received = 0;
let byType = {};
let lastAt = 0;

function onFrame(holder, body) {
  const m = JSON.parse(body.toString());
  if (m.kind === 'push') {
    received++;
    byType[m.type] = (byType[m.type] ?? 0) + 1;
    lastAt = mono();
    if (m.qos === 1 && typeof m.seq === 'number')
      holder.socket.write(frameText(JSON.stringify({ kind: 'ack', seq: m.seq })));
    if (m.data && typeof m.data.t === 'number') hist.record((mono() - m.data.t) * 1000);
    return;
  }
  const w = holder.waiting;
  if (w === undefined) return;
  if (m.kind === 'welcome') {
    if (holder.labels.length === 0) {
      holder.waiting = undefined;
      w.resolve();
    } else {
      holder.socket.write(frameText(JSON.stringify({ kind: 'sub', id: 1, data: { labels: holder.labels } })));
    }
  } else if (m.kind === 'res' && m.id === 1) {
    holder.waiting = undefined;
    if (m.error) w.reject(new Error(`sub: ${m.error.message}`));
    else w.resolve();
  } else if (m.kind === 'error' || m.kind === 'close') {
    holder.waiting = undefined;
    w.reject(new Error(`${holder.user}: ${body.toString()}`));
  }
}

function open(user, port, labels) {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, noDelay: true });
    const holder = { rest: null, socket, user, labels, waiting: { resolve, reject } };
    const timer = setTimeout(() => reject(new Error(`${user}: no welcome within 15 s`)), 15_000);
    holder.waiting = {
      resolve: () => {
        clearTimeout(timer);
        resolve();
      },
      reject: (err) => {
        clearTimeout(timer);
        reject(err);
      },
    };
    socket.on('connect', () =>
      socket.write(frameText(JSON.stringify({ kind: 'hello', data: { token: user } }))),
    );
    socket.on('data', (chunk) => readFrames(holder, chunk, (h, body) => onFrame(h, body)));
    socket.on('error', (err) => holder.waiting?.reject(err));
    socket.on('close', () => {
      sockets.delete(user);
      holder.waiting?.reject(new Error(`${user}: closed before its welcome`));
    });
    sockets.set(user, socket);
  });
}

serve({
  async open({ users, concurrency = 50 }) {
    const t0 = mono();
    let next = 0;
    const worker = async () => {
      while (next < users.length) {
        const [user, port, labels = []] = users[next++];
        await open(user, port, labels);
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, concurrency) }, worker));
    return { ms: mono() - t0 };
  },
  async close({ users, oneAtATime = false, gapMs = 2 }) {
    const done = [];
    for (const u of users) {
      const s = sockets.get(u);
      if (!s) continue;
      const closed = new Promise((r) => s.once('close', r));
      done.push(closed);
      s.destroy();
      // One at a time: each close in its own turn of the gateway's event loop (a registry batch each).
      if (oneAtATime) await new Promise((r) => setTimeout(r, gapMs));
    }
    await Promise.all(done);
    return { closed: done.length };
  },
  reset() {
    received = 0;
    byType = {};
    lastAt = 0;
    hist.reset();
  },
  report: () => ({ received, byType, lastAt, hist: hist.toJSON(), open: sockets.size }),
});
process.send?.({ event: 'ready', data: null });
