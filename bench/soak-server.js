// The soak test's gateway, in its own process (forked by bench/soak.js with --expose-gc and an IPC
// channel): TCP and WebSocket listeners, devValidator, a SQLite store in the directory $SOAK_DIR,
// authorizeSub allowing every label, log level warn, the default keepalive and every other default.
// It pushes on a timer (qos 0 to rooms, qos 1 to users), records how many qos-1 messages it
// accepted per user, and answers the parent's requests for samples over IPC.
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { createGateway, createLogger, devValidator, SqliteStore } from '../dist/index.js';

if (typeof process.send !== 'function') {
  console.error('soak-server: run by bench/soak.js (needs an IPC channel)');
  process.exit(2);
}
if (typeof global.gc !== 'function') {
  console.error('soak-server: run with --expose-gc');
  process.exit(2);
}

const config = JSON.parse(process.env.SOAK_CONFIG ?? '{}');
const ROOMS = config.rooms ?? 100;
const RESUME_WINDOW = 120_000; // the gateway's default resume.window
const TICK_MS = 50;

// If the parent dies without a word, do not linger: the IPC channel closes, and a hard limit holds.
process.on('disconnect', () => process.exit(3));
const lifetime = setTimeout(() => process.exit(4), config.maxLifetimeMs ?? 3_600_000);
lifetime.unref();

const store = SqliteStore.open(join(config.dir, 'soak.db'));
const gateway = createGateway({
  tcp: { port: 0 },
  ws: { port: 0 },
  validate: devValidator(),
  store,
  authorizeSub: () => true,
  logger: createLogger('warn'),
});
gateway.handle('echo', (d) => d);
// A flash disconnect: the link is destroyed (no kick, no close frame), as a network would do it.
gateway.handle('soak.drop', (_data, ctx) => {
  ctx.connection.link.destroy();
});

// ---- per-user bookkeeping, in typed arrays indexed by the user number (token "u<gid>") ----
// Typed arrays keep the soak's own records out of the V8 heap being measured.

let capacity = Math.max(1024, config.maxUsers ?? 65_536);
let accepted = new Uint32Array(capacity); // qos-1 pushes accepted (push resolved, stored) = last n accepted
let assigned = new Uint32Array(capacity); // n handed out (accepted + in flight + failed)
let online = new Uint16Array(capacity); // open connections of the user
let awayAt = new Float64Array(capacity); // when its last connection dropped resumably (0: not away)
let onlinePos = new Int32Array(capacity).fill(-1);
let onlineList = new Int32Array(capacity);
let onlineCount = 0;
const AWAY_RING = 16_384;
const awayRing = new Int32Array(AWAY_RING).fill(-1);
let awayNext = 0;
/** Pushes whose promise rejected: n unknown (may or may not be stored). [gid, n] */
const failedPushes = [];
let untracked = 0;

function grow(gid) {
  let size = capacity;
  while (size <= gid) size *= 2;
  const bigger = (Type, old, fill) => {
    const a = new Type(size);
    if (fill !== undefined) a.fill(fill);
    a.set(old);
    return a;
  };
  accepted = bigger(Uint32Array, accepted);
  assigned = bigger(Uint32Array, assigned);
  online = bigger(Uint16Array, online);
  awayAt = bigger(Float64Array, awayAt);
  onlinePos = bigger(Int32Array, onlinePos, -1);
  onlineList = bigger(Int32Array, onlineList);
  capacity = size;
}

function gidOf(user) {
  if (typeof user !== 'string' || user[0] !== 'u') return -1;
  const gid = Number(user.slice(1));
  if (!Number.isInteger(gid) || gid < 0 || gid > 50_000_000) return -1;
  if (gid >= capacity) grow(gid);
  return gid;
}

const disconnects = {};
gateway.on('connect', (conn) => {
  const gid = gidOf(conn.user);
  if (gid < 0) {
    untracked++;
    return;
  }
  if (online[gid]++ === 0) {
    onlinePos[gid] = onlineCount;
    onlineList[onlineCount++] = gid;
  }
  awayAt[gid] = 0;
});
gateway.on('disconnect', (conn, info) => {
  disconnects[info.name] = (disconnects[info.name] ?? 0) + 1;
  const gid = gidOf(conn.user);
  if (gid < 0 || online[gid] === 0) return;
  if (--online[gid] === 0) {
    const at = onlinePos[gid];
    const last = onlineList[--onlineCount];
    onlineList[at] = last;
    onlinePos[last] = at;
    onlinePos[gid] = -1;
    if (info.reconnect) {
      awayAt[gid] = Date.now();
      awayRing[awayNext] = gid;
      awayNext = (awayNext + 1) % AWAY_RING;
    }
  }
});

// ---- pushes, server-driven on a timer ----

const counts = {
  qos1Calls: 0,
  qos1Accepted: 0,
  qos1ToAway: 0,
  qos1Failed: 0,
  qos0Calls: 0,
  qos0Targeted: 0,
  qos0Delivered: 0,
  qos0Dropped: 0,
  skippedTicks: 0,
};
let pushing = false;
let inFlight = 0;
let owed1 = 0;
let owed0 = 0;
let lastTick = performance.now();

function pickOnline() {
  return onlineCount === 0 ? -1 : onlineList[Math.floor(Math.random() * onlineCount)];
}

/** A user whose last connection dropped less than the resume window ago and is not back yet. */
function pickAway(now) {
  for (let i = 0; i < 4; i++) {
    const gid = awayRing[Math.floor(Math.random() * AWAY_RING)];
    if (gid >= 0 && online[gid] === 0 && awayAt[gid] > 0 && now - awayAt[gid] < RESUME_WINDOW) return gid;
  }
  return -1;
}

function pushQos1(gid, away) {
  const n = ++assigned[gid];
  counts.qos1Calls++;
  if (away) counts.qos1ToAway++;
  inFlight++;
  gateway.push({ user: `u${gid}` }, 'q1', { n }, { qos: 1 }).then(
    (r) => {
      inFlight--;
      if (r.stored === 1) {
        // Stores assign seqs in call order, so accepted n are 1, 2, 3 … per user.
        accepted[gid] = Math.max(accepted[gid], n);
        counts.qos1Accepted++;
      } else {
        failedPushes.push([gid, n]);
        counts.qos1Failed++;
      }
    },
    () => {
      inFlight--;
      failedPushes.push([gid, n]);
      counts.qos1Failed++;
    },
  );
}

function pushQos0() {
  const room = `room_${Math.floor(Math.random() * ROOMS)}`;
  counts.qos0Calls++;
  inFlight++;
  gateway.push({ labels: { all: [room] } }, 'q0', { room, at: Date.now() }).then(
    (r) => {
      counts.qos0Targeted += r.targeted;
      return r.done.then((d) => {
        inFlight--;
        counts.qos0Delivered += d.delivered;
        counts.qos0Dropped += d.dropped;
      });
    },
    () => {
      inFlight--;
    },
  );
}

const pushTimer = setInterval(() => {
  // The rates follow the time that passed (timers fire late on a busy machine), at most 1 s of it.
  const tick = performance.now();
  const seconds = Math.min(1, (tick - lastTick) / 1000);
  lastTick = tick;
  if (!pushing) return;
  if (inFlight > 5000) {
    counts.skippedTicks++;
    return;
  }
  owed1 += (config.qos1Rate ?? 200) * seconds;
  owed0 += (config.qos0Rate ?? 10) * seconds;
  const now = Date.now();
  for (; owed1 >= 1; owed1--) {
    const away = Math.random() < (config.awayShare ?? 0.15);
    const gid = away ? pickAway(now) : pickOnline();
    if (gid >= 0) pushQos1(gid, away);
    else if (!away) break;
  }
  for (; owed0 >= 1; owed0--) pushQos0();
}, TICK_MS);

// ---- samples ----

// Event-loop delay: the time between two 10 ms checks (so an idle loop reads about 10 ms).
const loopDelay = monitorEventLoopDelay({ resolution: 10 });
loopDelay.enable();
let lastCpu = process.cpuUsage();
let lastCpuAt = performance.now();

async function sample(withGc) {
  // CPU and event-loop delay since the last sample, taken before the forced GCs below.
  const cpu = process.cpuUsage(lastCpu);
  const windowMs = performance.now() - lastCpuAt;
  // A window under a second (back-to-back samples) says nothing: reported as null.
  const cpuPct = windowMs < 1000 ? null : ((cpu.user + cpu.system) / 1000 / windowMs) * 100;
  const ms = (ns) => Math.round(ns / 1e4) / 100;
  const loop =
    windowMs < 1000 || loopDelay.count === 0
      ? { p50: null, p99: null, max: null }
      : {
          p50: ms(loopDelay.percentile(50)),
          p99: ms(loopDelay.percentile(99)),
          max: ms(loopDelay.max),
        };
  let gcMs = 0;
  let heapUsedAfterGc = null;
  if (withGc) {
    // The forced GCs block the loop: keep them out of the next window's event-loop delay.
    loopDelay.disable();
    const t = performance.now();
    global.gc();
    global.gc();
    global.gc();
    gcMs = performance.now() - t;
    heapUsedAfterGc = process.memoryUsage().heapUsed;
  }
  const mem = process.memoryUsage();
  const s = {
    at: Date.now(),
    stats: gateway.stats(),
    connections: gateway.connections.size,
    heapUsedAfterGc,
    gcMs: Math.round(gcMs),
    heapUsed: mem.heapUsed,
    heapTotal: mem.heapTotal,
    rss: mem.rss,
    external: mem.external,
    arrayBuffers: mem.arrayBuffers,
    // The timing wheel is private to the gateway (no public size); not sampled.
    wheelSize: null,
    store: await store.stats(),
    trackedOnline: onlineCount,
    pushInFlight: inFlight,
    counts: { ...counts },
    disconnects: { ...disconnects },
    cpuPct: cpuPct === null ? null : Math.round(cpuPct),
    loopDelayMs: loop,
  };
  loopDelay.reset();
  if (withGc) setTimeout(() => loopDelay.enable(), 20);
  lastCpu = process.cpuUsage();
  lastCpuAt = performance.now();
  return s;
}

/** Per user with any qos-1 push: accepted count, online now, and the n still in its inbox. */
async function final() {
  const now = Date.now();
  const users = [];
  for (let gid = 0; gid < capacity; gid++) {
    if (assigned[gid] === 0) continue;
    const waiting = (await store.pending(`u${gid}`, 0, 1_000_000, now)).map((m) => m.data?.n);
    users.push({ gid, accepted: accepted[gid], assigned: assigned[gid], online: online[gid], waiting });
  }
  return { users, failedPushes, untracked, deadLetters: await store.deadLetters(100) };
}

const commands = {
  sample: (a) => sample(a?.gc !== false),
  push: (a) => {
    pushing = a.on;
    return { pushing, inFlight };
  },
  final,
  stop: async () => {
    pushing = false;
    clearInterval(pushTimer);
    await gateway.close();
    await store.close();
    setTimeout(() => process.exit(0), 50);
    return true;
  },
};

process.on('message', async (m) => {
  if (!m || typeof m.cmd !== 'string') return;
  try {
    const fn = commands[m.cmd];
    if (!fn) throw new Error(`unknown command ${m.cmd}`);
    process.send({ id: m.id, ok: true, result: await fn(m.args) });
  } catch (err) {
    process.send({ id: m.id, ok: false, error: String(err?.stack ?? err) });
  }
});

const addresses = await gateway.listen();
process.send({ event: 'ready', data: { tcp: addresses.tcp.port, ws: addresses.ws.port } });
