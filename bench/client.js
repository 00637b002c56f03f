// Load-generating clients in their own process: opens connections of one kind to one server, then
// runs the echo loop or counts broadcast pushes on command. Clients do the minimum each protocol
// needs (no SDK, no parsing beyond what is needed to find a reply, a push's send time or a ping),
// and latencies go into a fixed-size histogram.
//   node bench/client.js <kind>
import net from 'node:net';
import { frameText, readFrames } from './lib/framing.js';
import { Histogram } from './lib/histogram.js';
import { serve } from './lib/ipc.js';

// A server variant (pylon-ws-traced) is driven like the server it varies.
const kind = process.argv[2] === 'pylon-ws-traced' ? 'pylon-ws' : process.argv[2];
const HOST = '127.0.0.1';
const wallNow = () => performance.timeOrigin + performance.now();
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const CH_R = 0x72; // "r": {"kind":"res"... (Pylon) or the echoed {"kind":"req"... (ws, net)
const CH_P = 0x70; // "p": push or ping
const CH_U = 0x75;
const CH_I = 0x69;
const CH_W = 0x77; // "w": welcome
const CH_K = 0x6b; // "k": kick
const STAMP = Buffer.from('"t":');
const PONG = '{"kind":"pong"}';

/** One client connection; fields fixed up front so every connection has the same shape. */
class Conn {
  constructor(i) {
    this.i = i;
    this.sock = null;
    this.sentAt = 0;
    this.reqId = 0;
    this.rest = null;
    this.welcomed = null;
    this.ack = null;
    this.up = false;
  }
}

const conns = [];
let payload = '';
const echo = { running: false, deadline: 0, windowOn: false, count: 0, hist: new Histogram() };
const fan = {
  received: 0,
  expected: 0,
  hist: new Histogram(),
  first: 0,
  last: 0,
  negative: 0,
  waiter: null,
};
const stats = { kicks: 0, pings: 0, closed: 0, errors: 0 };

// ---- what every kind does with a message ----

/** Reads the number after the first `"t":` (the push's send time, ms since the epoch). */
function readStamp(buf) {
  let i = buf.indexOf(STAMP);
  if (i < 0) return Number.NaN;
  i += STAMP.length;
  let v = 0;
  let c = buf[i];
  while (c >= 48 && c <= 57) {
    v = v * 10 + (c - 48);
    c = buf[++i];
  }
  if (c === 46) {
    let f = 0.1;
    c = buf[++i];
    while (c >= 48 && c <= 57) {
      v += (c - 48) * f;
      f /= 10;
      c = buf[++i];
    }
  }
  return v;
}

function onRaw(conn, buf) {
  const c = buf[9];
  if (c === CH_R) onReply(conn);
  else if (c === CH_P) {
    if (buf[10] === CH_U) onPush(conn, readStamp(buf));
    else if (buf[10] === CH_I) {
      stats.pings++;
      driver.send(conn, PONG);
    }
  } else if (c === CH_W) conn.welcomed?.();
  else if (c === CH_K) stats.kicks++;
}

function onReply(conn) {
  const now = performance.now();
  if (echo.windowOn) {
    echo.hist.record((now - conn.sentAt) * 1000);
    echo.count++;
  }
  if (echo.running && now < echo.deadline) driver.request(conn);
}

function onPush(_conn, t) {
  const now = wallNow();
  const lat = now - t;
  if (lat < 0) fan.negative++;
  fan.hist.record(lat * 1000);
  if (fan.received++ === 0) fan.first = now;
  fan.last = now;
  if (fan.received === fan.expected && fan.waiter) fan.waiter();
}

function requestText(conn) {
  return `{"kind":"req","id":${++conn.reqId},"type":"echo","data":"${payload}"}`;
}

function lost() {
  stats.closed++;
}

// ---- drivers: open a connection, send text ----

async function wsDriver() {
  const { WebSocket } = await import('ws');
  function onMessage(data) {
    onRaw(this.conn, data);
  }
  function onError() {
    stats.errors++;
  }
  return {
    open(conn, port, localAddress) {
      const url = kind === 'pylon-ws' ? `ws://${HOST}:${port}/ws?token=u${conn.i}` : `ws://${HOST}:${port}/`;
      const ws = new WebSocket(url, {
        perMessageDeflate: false,
        skipUTF8Validation: true,
        localAddress,
        handshakeTimeout: 20_000,
      });
      ws.conn = conn;
      conn.sock = ws;
      return new Promise((resolve, reject) => {
        ws.once('open', () => {
          ws.off('error', reject);
          ws.on('error', onError);
          ws.on('message', onMessage);
          ws.on('close', lost);
          resolve();
        });
        ws.once('error', reject);
      });
    },
    send(conn, text) {
      conn.sock.send(text);
    },
    request(conn) {
      conn.sentAt = performance.now();
      conn.sock.send(requestText(conn));
    },
    close(conn) {
      conn.sock?.terminate();
    },
  };
}

function tcpDriver() {
  function onFrame(conn, body) {
    onRaw(conn, body);
  }
  function onData(chunk) {
    readFrames(this.conn, chunk, onFrame);
  }
  function onError() {
    stats.errors++;
  }
  return {
    open(conn, port, localAddress) {
      return new Promise((resolve, reject) => {
        const s = net.connect({ port, host: HOST, localAddress, noDelay: true });
        s.conn = conn;
        conn.sock = s;
        conn.rest = null;
        s.on('data', onData);
        s.once('error', reject);
        s.once('connect', () => {
          const opened = () => {
            s.off('error', reject);
            s.on('error', onError);
            s.on('close', lost);
            resolve();
          };
          if (kind === 'pylon-tcp') {
            conn.welcomed = () => {
              conn.welcomed = null;
              opened();
            };
            s.write(frameText(`{"kind":"hello","data":{"token":"u${conn.i}"}}`));
          } else opened();
        });
      });
    },
    send(conn, text) {
      conn.sock.write(frameText(text));
    },
    request(conn) {
      conn.sentAt = performance.now();
      conn.sock.write(frameText(requestText(conn)));
    },
    close(conn) {
      conn.sock?.destroy();
    },
  };
}

async function socketIoDriver() {
  const { io } = await import('socket.io-client');
  return {
    open(conn, port, localAddress) {
      const socket = io(`http://${HOST}:${port}`, {
        transports: ['websocket'],
        forceNew: true,
        reconnection: false,
        timeout: 20_000,
        localAddress,
        perMessageDeflate: false,
      });
      conn.sock = socket;
      conn.ack = () => onReply(conn);
      socket.on('b', (data) => onPush(conn, data.t));
      return new Promise((resolve, reject) => {
        socket.once('connect', () => {
          socket.off('connect_error', reject);
          socket.on('disconnect', lost);
          resolve();
        });
        socket.once('connect_error', reject);
      });
    },
    send() {},
    request(conn) {
      conn.sentAt = performance.now();
      conn.sock.emit('echo', payload, conn.ack);
    },
    close(conn) {
      conn.sock?.disconnect();
    },
  };
}

const driver =
  kind === 'ws' || kind === 'pylon-ws'
    ? await wsDriver()
    : kind === 'socket.io'
      ? await socketIoDriver()
      : kind === 'net' || kind === 'pylon-tcp'
        ? tcpDriver()
        : null;
if (driver === null) {
  console.error(`unknown client kind "${kind}"`);
  process.exit(2);
}

// ---- commands ----

/**
 * Opens `count` connections, at most `concurrency` handshakes at a time, spread over the given
 * loopback source addresses; a failed attempt is retried (up to 3 times). Tokens are u<first+i>.
 */
async function connect({ port, count, first, addresses, concurrency = 64, timeoutMs = 60_000 }) {
  const t0 = performance.now();
  const deadline = t0 + timeoutMs;
  const offset = Math.floor(Math.random() * addresses.length);
  let next = 0;
  let failed = 0;
  let lastError = '';
  const worker = async () => {
    while (next < count && performance.now() < deadline) {
      const i = next++;
      const conn = new Conn(first + i);
      const addr = addresses[(i + offset) % addresses.length];
      for (let attempt = 0; ; attempt++) {
        try {
          await driver.open(conn, port, addr);
          conn.up = true;
          conns.push(conn);
          break;
        } catch (err) {
          driver.close(conn);
          lastError = err instanceof Error ? err.message : String(err);
          if (attempt >= 3 || performance.now() >= deadline) {
            failed++;
            break;
          }
          await sleep(100 * (attempt + 1));
        }
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  return { connected: conns.length, failed, lastError, ms: performance.now() - t0 };
}

serve({
  connect,
  status: () => ({ connections: conns.length, received: fan.received, ...stats }),
  /** Starts the closed echo loop: each connection keeps one request in flight until stopped or maxMs. */
  'echo-start': ({ payloadLength, maxMs }) => {
    payload = 'x'.repeat(payloadLength);
    echo.running = true;
    echo.deadline = performance.now() + maxMs;
    for (const c of conns) driver.request(c);
  },
  'echo-stop': () => {
    echo.running = false;
  },
  /** Opens (on: true) or closes a measurement window; closing returns its count and latencies. */
  window: ({ on }) => {
    if (on) {
      echo.hist.reset();
      echo.count = 0;
      echo.windowOn = true;
      return null;
    }
    echo.windowOn = false;
    return { count: echo.count, hist: echo.hist.toJSON(), lost: stats.closed, kicks: stats.kicks };
  },
  /** Resets the push counters before a fan-out window. */
  'fan-reset': () => {
    fan.hist.reset();
    fan.received = 0;
    fan.expected = Number.POSITIVE_INFINITY;
    fan.first = 0;
    fan.last = 0;
    fan.negative = 0;
  },
  /**
   * Waits until every connection has received `count` pushes since the reset, or none came for
   * `stallMs`, or `timeoutMs` passed.
   */
  'fan-wait': async ({ count, timeoutMs, stallMs }) => {
    fan.expected = count * conns.length;
    const t0 = performance.now();
    let seen = -1;
    let seenAt = t0;
    while (fan.received < fan.expected) {
      const now = performance.now();
      if (fan.received !== seen) {
        seen = fan.received;
        seenAt = now;
      }
      if (now - seenAt > stallMs || now - t0 > timeoutMs) break;
      await new Promise((resolve) => {
        fan.waiter = resolve;
        setTimeout(resolve, 50);
      });
      fan.waiter = null;
    }
    return {
      received: fan.received,
      expected: fan.expected,
      first: fan.first,
      last: fan.last,
      negative: fan.negative,
      hist: fan.hist.toJSON(),
      lost: stats.closed,
      kicks: stats.kicks,
    };
  },
  close: () => {
    echo.running = false;
    for (const c of conns) driver.close(c);
    conns.length = 0;
    // What closes now was closed on purpose.
    setTimeout(() => {
      stats.closed = 0;
      stats.kicks = 0;
    }, 500);
  },
  exit: () => {
    echo.running = false;
    for (const c of conns) driver.close(c);
  },
});
process.send?.({ event: 'ready', data: { pid: process.pid } });
