// One client process of `pylon bench`, forked by the coordinator (index.ts): opens its slice of the
// connections (raw TCP with a hand-written framing reader, or `ws`), answers pings, and runs the
// workload it is told to over the IPC channel. It exits by itself when that channel closes.
//
// Memory per connection is kept low: one Conn object with fixed fields, one socket, and handlers
// shared by every socket (they find their Conn through a property of the socket), no closures.
import net from 'node:net';
import type { ClientOptions, WebSocket as WsSocket } from 'ws';
import {
  FRAME_HEADER_SIZE,
  frameLength,
  MAX_FRAME_LENGTH,
  writeFrameHeader,
} from '../../protocol/framing.js';
import { Histogram } from './histogram.js';
import {
  type ChildConfig,
  type ChildCounters,
  emptyCounters,
  type FromChild,
  type ToChild,
  type Workload,
} from './messages.js';

const DIALING = 0;
const HELLO = 1;
const OPEN = 2;
const CLOSING = 3;
const DONE = 4;

const CH_R = 0x72;
const CH_P = 0x70;
const CH_U = 0x75;
const CH_I = 0x69;
const CH_W = 0x77;
const CH_K = 0x6b;
const KIND_PREFIX = Buffer.from('{"kind":"');
const KEY_ID = Buffer.from('"id":');
const KEY_SEQ = Buffer.from('"seq":');
const KEY_T = Buffer.from('"t":');
const KEY_ERROR = Buffer.from('"error":');
const TYPE_BENCH = Buffer.from('"type":"bench"');
const MAX_FAILED_LISTED = 10_000;

const wallNow = (): number => performance.timeOrigin + performance.now();

/** One client connection; every field set in the constructor so all share one shape. */
class Conn {
  sock: net.Socket | WsSocket | null = null;
  /** Unread tail of the TCP stream (a partial frame), or null. */
  rest: Buffer | null = null;
  state = DIALING;
  /** performance.now() when the dial started. */
  started = 0;
  /** performance.now() when the request in flight was sent. */
  sentAt = 0;
  reqId = 0;
  inFlight = false;
  lastSeq = -1;
  /** Why the connect failed (error code), until the close. */
  reason = '';
  /** Index of its source run in `config.sources`. */
  src = 0;
  /** Dials so far (a source port already taken is retried with the next one). */
  tries = 0;
  /** The last dial failed on its source port: dial again instead of failing. */
  retry = false;
  constructor(readonly i: number) {}
}

/** Errors of a source port that is taken (bind) or whose 4-tuple is still in TIME_WAIT (connect). */
const PORT_ERRORS = new Set(['EADDRINUSE', 'EADDRNOTAVAIL']);
const MAX_TRIES = 50;

interface Tagged {
  benchConn?: Conn;
}

let config: ChildConfig | undefined;
let WebSocketClass: typeof import('ws')['WebSocket'] | undefined;
const conns: Conn[] = [];
const pending = new Set<Conn>();
const failedIndexes: number[] = [];
const connectHist = new Histogram();
const workHist = new Histogram();
const counters: ChildCounters = emptyCounters();

const run = {
  workload: 'idle' as Workload,
  running: false,
  /** performance.now() after which echo answers no longer count. */
  deadline: 0,
  /** Echo: ms between two requests of one connection (0: closed loop). */
  interval: 0,
  payload: '',
  since: Number.POSITIVE_INFINITY,
  requestTimeoutMs: 10_000,
  /**
   * Rate-capped echo: connections waiting for their next send time, in a ring of time slots of
   * `tick` ms (a small timing wheel: one interval fits in the ring, so slots never wrap onto
   * pending ones). `slot` is the last slot sent.
   */
  ring: [] as Conn[][],
  tick: 1,
  slot: 0,
  timer: undefined as NodeJS.Timeout | undefined,
  sweeper: undefined as NodeJS.Timeout | undefined,
};
let closingAll = false;

function send(msg: FromChild): void {
  if (process.connected) process.send?.(msg);
}

function count(map: Record<string, number>, key: string): void {
  map[key] = (map[key] ?? 0) + 1;
}

// ---- frames ----

function frame(text: string): Buffer {
  const n = Buffer.byteLength(text);
  const out = Buffer.allocUnsafe(FRAME_HEADER_SIZE + n);
  writeFrameHeader(out, 0, n);
  out.write(text, FRAME_HEADER_SIZE);
  return out;
}

function write(conn: Conn, text: string): void {
  const s = conn.sock;
  if (s === null || conn.state >= CLOSING) return;
  if (config?.transport === 'ws') {
    const ws = s as WsSocket;
    if (ws.readyState === 1) ws.send(text);
  } else {
    const sock = s as net.Socket;
    if (!sock.destroyed) sock.write(frame(text));
  }
}

/** The number after `key` (digits with an optional fraction), or NaN. */
function numberAfter(buf: Buffer, key: Buffer): number {
  let i = buf.indexOf(key);
  if (i < 0) return Number.NaN;
  i += key.length;
  let c = buf[i];
  if (c === undefined || c < 48 || c > 57) return Number.NaN;
  let v = 0;
  while (c !== undefined && c >= 48 && c <= 57) {
    v = v * 10 + (c - 48);
    c = buf[++i];
  }
  if (c === 46) {
    let f = 0.1;
    c = buf[++i];
    while (c !== undefined && c >= 48 && c <= 57) {
      v += (c - 48) * f;
      f /= 10;
      c = buf[++i];
    }
  }
  return v;
}

/** Dispatches one JSON envelope. The server writes `kind` first, so the kind is read from its bytes. */
function onFrame(conn: Conn, body: Buffer): void {
  if (body.length < 12 || body.compare(KIND_PREFIX, 0, 9, 0, 9) !== 0) return;
  const c = body[9];
  if (c === CH_R) onResponse(conn, body);
  else if (c === CH_P) {
    const d = body[10];
    if (d === CH_U) onPush(conn, body);
    else if (d === CH_I) onPing(conn, body);
  } else if (c === CH_W && body[10] === 0x65) onWelcome(conn);
  else if (c === CH_K && body[10] === CH_I) onKick(conn, body);
}

function onWelcome(conn: Conn): void {
  if (conn.state !== HELLO) return;
  conn.state = OPEN;
  pending.delete(conn);
  connectHist.record((performance.now() - conn.started) * 1000);
  counters.connected++;
  counters.open++;
  connectDone();
}

function onPing(conn: Conn, body: Buffer): void {
  // `{"kind":"ping"}` is 15 bytes; a longer ping carries data to echo back.
  if (body.length <= 16) {
    write(conn, '{"kind":"pong"}');
    return;
  }
  try {
    const env = JSON.parse(body.toString()) as { data?: unknown };
    write(
      conn,
      env.data === undefined ? '{"kind":"pong"}' : JSON.stringify({ kind: 'pong', data: env.data }),
    );
  } catch {
    write(conn, '{"kind":"pong"}');
  }
}

function onKick(conn: Conn, body: Buffer): void {
  let code = 'unknown';
  try {
    const env = JSON.parse(body.toString()) as { data?: { code?: unknown } };
    if (env.data?.code !== undefined) code = String(env.data.code);
  } catch {}
  if (conn.state === OPEN) count(counters.kicked, code);
  else if (conn.state < OPEN) conn.reason = `kick ${code}`;
}

function onResponse(conn: Conn, body: Buffer): void {
  const id = numberAfter(body, KEY_ID);
  if (!conn.inFlight || id !== conn.reqId) return;
  conn.inFlight = false;
  const now = performance.now();
  if (body.indexOf(KEY_ERROR) >= 0) counters.requestErrors++;
  else if (now <= run.deadline) {
    workHist.record((now - conn.sentAt) * 1000);
    counters.messages++;
  }
  if (!run.running || now > run.deadline || conn.state !== OPEN) return;
  if (run.interval === 0) request(conn, now);
  else {
    const due = conn.sentAt + run.interval;
    if (due <= now) request(conn, now);
    else schedule(conn, due);
  }
}

function onPush(conn: Conn, body: Buffer): void {
  if (body.indexOf(TYPE_BENCH) < 0) return;
  const seq = numberAfter(body, KEY_SEQ);
  if (!Number.isNaN(seq)) {
    write(conn, `{"kind":"ack","seq":${seq}}`);
    counters.acks++;
    if (seq <= conn.lastSeq) {
      counters.duplicates++;
      return;
    }
    conn.lastSeq = seq;
  }
  const t = numberAfter(body, KEY_T);
  if (Number.isNaN(t) || t < run.since) {
    counters.stale++;
    return;
  }
  counters.messages++;
  workHist.record((wallNow() - t) * 1000);
}

function request(conn: Conn, now: number): void {
  conn.reqId = conn.reqId >= 4_294_967_295 ? 1 : conn.reqId + 1;
  conn.sentAt = now;
  conn.inFlight = true;
  write(
    conn,
    `{"kind":"req","id":${conn.reqId},"type":"echo","data":{"t":${Date.now()},"p":"${run.payload}"}}`,
  );
}

// ---- TCP ----

function tcpData(this: net.Socket, chunk: Buffer): void {
  const conn = (this as Tagged).benchConn;
  if (conn === undefined) return;
  let buf = conn.rest === null ? chunk : Buffer.concat([conn.rest, chunk]);
  let pos = 0;
  const end = buf.length;
  while (end - pos >= FRAME_HEADER_SIZE) {
    const whole = frameLength(pos === 0 ? buf : buf.subarray(pos), MAX_FRAME_LENGTH);
    if (end - pos < whole) break;
    onFrame(conn, buf.subarray(pos + FRAME_HEADER_SIZE, pos + whole));
    pos += whole;
  }
  if (pos === end) conn.rest = null;
  else {
    // Keep only the unread tail, copied so the chunk it came from can be released.
    buf = Buffer.from(buf.subarray(pos));
    conn.rest = buf;
  }
}

function tcpConnect(this: net.Socket): void {
  const conn = (this as Tagged).benchConn;
  if (conn === undefined || conn.state !== DIALING) return;
  conn.state = HELLO;
  this.write(
    frame(
      `{"kind":"hello","data":{"codec":"json","token":"bench-${config!.process}-${conn.i}","client":"pylon-bench"}}`,
    ),
  );
}

function sockError(this: net.Socket | WsSocket, err: Error & { code?: string }): void {
  const conn = (this as Tagged).benchConn;
  if (conn === undefined || conn.sock !== this) return;
  if (
    conn.state === DIALING &&
    err.code !== undefined &&
    PORT_ERRORS.has(err.code) &&
    conn.tries < MAX_TRIES
  ) {
    conn.retry = true;
    return;
  }
  if (conn.reason === '') conn.reason = err.code ?? shortReason(err.message);
}

function tcpClose(this: net.Socket): void {
  const conn = (this as Tagged).benchConn;
  if (conn !== undefined && conn.sock === this) lost(conn);
}

/** Where the next dial of `conn` binds: its run's address and next free port; null when out of ports. */
function bindTo(conn: Conn): { localAddress?: string; localPort?: number } | null {
  const run = sources[conn.src];
  if (run === undefined || run.address === null) return {};
  if (run.portTo <= run.portFrom) return { localAddress: run.address };
  if (run.nextPort >= run.portTo) return null;
  return { localAddress: run.address, localPort: run.nextPort++ };
}

/** Dials (again): a fresh socket for `conn`; false when there is no source port left. */
function dial(conn: Conn): boolean {
  const bind = bindTo(conn);
  if (bind === null) return false;
  conn.tries++;
  conn.state = DIALING;
  conn.retry = false;
  conn.rest = null;
  if (config!.transport === 'ws') openWs(conn, bind);
  else openTcp(conn, bind);
  return true;
}

function openTcp(conn: Conn, bind: { localAddress?: string; localPort?: number }): void {
  const c = config!;
  const s = net.connect({ host: c.host, port: c.port, noDelay: true, ...bind });
  (s as Tagged).benchConn = conn;
  conn.sock = s;
  s.on('connect', tcpConnect);
  s.on('data', tcpData);
  s.on('error', sockError);
  s.on('close', tcpClose);
}

// ---- WebSocket ----

function wsOpen(this: WsSocket): void {
  const conn = (this as Tagged).benchConn;
  if (conn === undefined || conn.state !== DIALING) return;
  conn.state = HELLO;
  this.send('{"kind":"hello","data":{"client":"pylon-bench"}}');
}

function wsMessage(this: WsSocket, data: Buffer): void {
  const conn = (this as Tagged).benchConn;
  if (conn !== undefined && Buffer.isBuffer(data)) onFrame(conn, data);
}

function wsClose(this: WsSocket, code: number): void {
  const conn = (this as Tagged).benchConn;
  if (conn === undefined || conn.sock !== this) return;
  if (conn.state < OPEN && conn.reason === '' && code >= 4000) conn.reason = `kick ${code}`;
  lost(conn);
}

function openWs(conn: Conn, bind: { localAddress?: string; localPort?: number }): void {
  const c = config!;
  const url = `${c.wsUrl}${c.wsUrl!.includes('?') ? '&' : '?'}token=bench-${c.process}-${conn.i}`;
  // ws hands these options to http.request, and so to net.connect (localAddress, localPort).
  const options = {
    perMessageDeflate: false,
    skipUTF8Validation: true,
    handshakeTimeout: c.connectTimeoutMs,
    ...bind,
  } as ClientOptions;
  const ws = new WebSocketClass!(url, options);
  (ws as Tagged).benchConn = conn;
  conn.sock = ws;
  ws.on('open', wsOpen);
  ws.on('message', wsMessage);
  ws.on('error', sockError);
  ws.on('close', wsClose);
}

// ---- connection lifecycle ----

function shortReason(message: string): string {
  return message.length > 60 ? `${message.slice(0, 57)}...` : message;
}

/** The socket closed: a failed connect, a lost connection, or one closed on purpose. */
function lost(conn: Conn): void {
  const state = conn.state;
  if (state === DIALING && conn.retry && !closingAll) {
    // Its source port was taken: the next one.
    if (dial(conn)) return;
    conn.reason = 'no free source port';
  }
  conn.state = DONE;
  conn.inFlight = false;
  conn.rest = null;
  if (state < OPEN) {
    pending.delete(conn);
    fail(conn, conn.reason || 'closed before welcome');
    connectDone();
    return;
  }
  if (state === OPEN || state === CLOSING) counters.open--;
  if (state === OPEN && !closingAll) counters.closed++;
  closedWaiter?.();
}

function fail(conn: Conn, reason: string): void {
  counters.failed++;
  count(counters.reasons, reason);
  if (failedIndexes.length < MAX_FAILED_LISTED) failedIndexes.push(conn.i);
}

function destroy(conn: Conn): void {
  const s = conn.sock;
  if (s === null) return;
  if (config?.transport === 'ws') (s as WsSocket).terminate();
  else (s as net.Socket).destroy();
}

// ---- connect phase ----

/** The source runs of this process, each with the next port to try. */
const sources: Array<{ address: string | null; portFrom: number; portTo: number; nextPort: number }> = [];

const connect = {
  next: 0,
  /** Which source run the next connection uses, and how many of it are left. */
  run: 0,
  runLeft: 0,
  inFlight: 0,
  t0: 0,
  deadline: 0,
  reported: false,
  timer: undefined as NodeJS.Timeout | undefined,
  sweeper: undefined as NodeJS.Timeout | undefined,
};

/** The source run of the next connection. */
function nextSource(): number {
  const c = config!;
  while (connect.runLeft === 0 && connect.run < c.sources.length - 1) {
    connect.run++;
    connect.runLeft = c.sources[connect.run]!.count;
  }
  connect.runLeft--;
  return connect.run;
}

/** Starts as many connections as the rate and the in-flight bound allow. */
function pump(): void {
  const c = config!;
  const now = performance.now();
  if (now > connect.deadline && connect.next < c.count) {
    // Out of time: what was never started has failed.
    while (connect.next < c.count) fail(new Conn(connect.next++), 'not started (connect phase timeout)');
  }
  const allowed =
    c.connectRate > 0
      ? Math.min(c.count, Math.floor(((now - connect.t0) / 1000) * c.connectRate) + 1)
      : c.count;
  while (connect.next < allowed && connect.inFlight < c.maxInFlight) {
    const conn = new Conn(connect.next++);
    conns.push(conn);
    pending.add(conn);
    connect.inFlight++;
    conn.started = performance.now();
    conn.src = nextSource();
    let reason = 'no free source port';
    let ok = false;
    try {
      ok = dial(conn);
    } catch (err) {
      reason = shortReason(err instanceof Error ? err.message : String(err));
    }
    if (!ok) {
      pending.delete(conn);
      conn.state = DONE;
      connect.inFlight--;
      fail(conn, reason);
    }
  }
  connectDone(false);
}

let pumpScheduled = false;

/** A connect finished (or may have): frees its slot, schedules the next, reports the end of the phase. */
function connectDone(slotFreed = true): void {
  if (slotFreed) connect.inFlight--;
  const c = config!;
  if (!connect.reported && counters.connected + counters.failed >= c.count) {
    connect.reported = true;
    clearInterval(connect.timer);
    clearInterval(connect.sweeper);
    send({
      type: 'connected',
      counters,
      failedIndexes,
      seconds: (performance.now() - connect.t0) / 1000,
    });
    return;
  }
  if (slotFreed && c.connectRate === 0 && !pumpScheduled && connect.next < c.count) {
    pumpScheduled = true;
    setImmediate(() => {
      pumpScheduled = false;
      pump();
    });
  }
}

/** Fails connects that have waited too long for their welcome. */
function sweepConnects(): void {
  const limit = performance.now() - config!.connectTimeoutMs;
  for (const conn of pending) {
    if (conn.started < limit) {
      if (conn.reason === '') conn.reason = conn.state === DIALING ? 'timeout (dial)' : 'timeout (welcome)';
      destroy(conn); // the close event fails it
      if (conn.state < OPEN) {
        // A socket that never opened may not emit close after destroy: fail it here.
        pending.delete(conn);
        conn.state = DONE;
        fail(conn, conn.reason);
        connectDone();
      }
    }
  }
}

async function start(c: ChildConfig): Promise<void> {
  config = c;
  if (c.transport === 'ws') WebSocketClass = (await import('ws')).WebSocket;
  connect.t0 = performance.now();
  connect.deadline = connect.t0 + c.phaseTimeoutMs;
  connect.runLeft = c.sources[0]?.count ?? c.count;
  for (const r of c.sources) sources.push({ ...r, nextPort: r.portFrom });
  connect.timer = setInterval(pump, c.connectRate > 0 ? 10 : 100);
  connect.sweeper = setInterval(sweepConnects, 250);
  if (c.count === 0) connectDone(false);
  else pump();
}

// ---- workloads ----

function startWorkload(msg: Extract<ToChild, { type: 'run' }>): void {
  run.workload = msg.workload;
  run.since = msg.since;
  run.requestTimeoutMs = msg.requestTimeoutMs;
  workHist.reset();
  counters.messages = 0;
  if (msg.workload !== 'echo') return;
  run.payload = 'x'.repeat(Math.max(0, msg.payload));
  run.interval = msg.rate > 0 ? 1000 / msg.rate : 0;
  run.running = true;
  const now = performance.now();
  run.deadline = now + msg.durationMs;
  if (run.interval === 0) {
    for (const conn of conns) if (conn.state === OPEN) request(conn, now);
  } else {
    // Rate-capped: first sends spread evenly over one interval, so the connections do not fire
    // in lockstep (a burst of every connection at once, every interval).
    run.tick = Math.max(1, run.interval / 500);
    run.ring = Array.from({ length: Math.ceil(run.interval / run.tick) + 3 }, () => []);
    run.slot = Math.floor(now / run.tick) - 1;
    const open = conns.filter((c) => c.state === OPEN);
    open.forEach((conn, i) => {
      schedule(conn, now + (i / open.length) * run.interval);
    });
    run.timer = setInterval(sendDue, 1);
  }
  run.sweeper = setInterval(sweepRequests, 500);
}

/** Rate-capped echo: `conn` sends its next request at `due` (performance.now() ms). */
function schedule(conn: Conn, due: number): void {
  const slot = Math.max(Math.floor(due / run.tick), run.slot + 1);
  run.ring[slot % run.ring.length]!.push(conn);
}

/** Rate-capped echo: sends for every slot whose time has come. */
function sendDue(): void {
  const now = performance.now();
  const target = Math.floor(now / run.tick);
  const size = run.ring.length;
  // After a stall longer than the ring, every slot is due once.
  if (target - run.slot > size) run.slot = target - size;
  for (let slot = run.slot + 1; slot <= target; slot++) {
    const bucket = run.ring[slot % size]!;
    if (bucket.length === 0) continue;
    run.ring[slot % size] = [];
    for (const conn of bucket) {
      if (run.running && now <= run.deadline && conn.state === OPEN && !conn.inFlight) request(conn, now);
    }
  }
  run.slot = target;
}

/** Echo requests unanswered for too long count as timeouts; their connection sends a fresh one. */
function sweepRequests(): void {
  const now = performance.now();
  const limit = now - run.requestTimeoutMs;
  for (const conn of conns) {
    if (conn.inFlight && conn.sentAt < limit) {
      counters.timeouts++;
      conn.inFlight = false;
      if (run.running && now <= run.deadline && conn.state === OPEN) request(conn, now);
    }
  }
}

async function stopWorkload(): Promise<void> {
  if (run.workload === 'echo') {
    run.running = false;
    clearInterval(run.timer);
    clearInterval(run.sweeper);
    // Let the requests in flight come back (they no longer count); what does not is a timeout.
    const until = performance.now() + 3000;
    while (performance.now() < until && conns.some((c) => c.inFlight)) await sleep(20);
    for (const conn of conns) {
      if (conn.inFlight) {
        counters.timeouts++;
        conn.inFlight = false;
      }
    }
  }
  send({ type: 'stopped', counters, connectHist: connectHist.toJSON(), workHist: workHist.toJSON() });
}

let closedWaiter: (() => void) | undefined;

/** Says bye on every open connection, waits (bounded) for them to close, then reports. */
async function closeAll(): Promise<void> {
  closingAll = true;
  run.running = false;
  clearInterval(connect.timer);
  clearInterval(connect.sweeper);
  // bye, then the server closes: its side keeps the TIME_WAIT, not our source ports.
  for (const conn of conns) {
    if (conn.state === OPEN) {
      write(conn, '{"kind":"bye"}');
      conn.state = CLOSING;
      if (config?.transport === 'ws') (conn.sock as WsSocket).close(1000);
    } else if (conn.state < OPEN) destroy(conn);
  }
  const until = performance.now() + 3000;
  while (counters.open > 0 && performance.now() < until) {
    await new Promise<void>((resolve) => {
      closedWaiter = resolve;
      setTimeout(resolve, 50);
    });
    closedWaiter = undefined;
  }
  for (const conn of conns) if (conn.state !== DONE) destroy(conn);
  send({ type: 'closed' });
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// ---- IPC ----

function fatal(err: unknown): void {
  const message = err instanceof Error ? (err.stack ?? err.message) : String(err);
  send({ type: 'fatal', message });
  process.stderr.write(`pylon bench client ${config?.process ?? '?'}: ${message}\n`);
  setTimeout(() => process.exit(1), 100).unref();
}

if (process.send === undefined) {
  process.stderr.write('pylon bench: client-process.js is started by the bench coordinator, not by hand\n');
  process.exit(2);
}

// The coordinator is gone (exited, killed): nothing left to do.
process.on('disconnect', () => process.exit(0));
process.on('uncaughtException', fatal);
process.on('unhandledRejection', fatal);
process.on('message', (msg: ToChild) => {
  switch (msg.type) {
    case 'start':
      start(msg.config).catch(fatal);
      break;
    case 'run':
      startWorkload(msg);
      break;
    case 'stop':
      stopWorkload().catch(fatal);
      break;
    case 'close':
      closeAll()
        .catch(fatal)
        .finally(() => {
          clearInterval(progressTimer);
          setTimeout(() => process.exit(0), 50);
        });
      break;
  }
});

const progressTimer = setInterval(() => send({ type: 'progress', counters }), 500);
send({ type: 'ready', pid: process.pid });
