// One of the soak test's client processes (forked by bench/soak.js with an IPC channel): holds its
// share of the connections with the SDK (half TCP, half WebSocket), each subscribed to one of the
// room labels; churns them every second (flash drops that resume, vanished apps that come back
// later, users who leave, new users), sends echo requests at a steady rate, and counts what it
// receives: qos-1 messages per user (the SDK deduplicates; a repeat or a hole is counted here) and
// qos-0 room pushes.

import { syncBuiltinESMExports } from 'node:module';
import net from 'node:net';

if (typeof process.send !== 'function') {
  console.error('soak-clients: run by bench/soak.js (needs an IPC channel)');
  process.exit(2);
}

const config = JSON.parse(process.env.SOAK_CONFIG ?? '{}');
const PROC = config.proc;
const PROCS = config.procs;
const TARGET = config.connections; // this process's share
const ROOMS = config.rooms ?? 100;
const CHURN = config.churn ?? 0.01; // share of connections closed per second
const ECHO_RATE = config.echoRate ?? 50; // per second, this process
const ADDRESSES = config.localAddresses ?? ['127.0.0.1'];
const RESUME_WINDOW = 120_000;

process.on('disconnect', () => process.exit(3));
const lifetime = setTimeout(() => process.exit(4), config.maxLifetimeMs ?? 3_600_000);
lifetime.unref();

// The SDK has no localAddress option. The gateway admits at most maxConnectionsPerIp (default
// 10,000) connections per remote address, so spread this process's connections over several
// loopback source addresses: give every outgoing loopback connection (the SDK's TCP links and the
// ws library's sockets both go through net.connect) the next address, round robin.
const originalConnect = net.connect;
let nextAddress = 0;
net.connect = function connectFrom(...args) {
  const o = args[0];
  if (o && typeof o === 'object' && o.localAddress === undefined && o.host === '127.0.0.1') {
    args[0] = { ...o, localAddress: ADDRESSES[nextAddress++ % ADDRESSES.length] };
  }
  return originalConnect.apply(this, args);
};
syncBuiltinESMExports();
const { connect } = await import('../dist/client/index.js');

const TCP_URL = `tcp://127.0.0.1:${config.tcpPort}`;
const WS_URL = `ws://127.0.0.1:${config.wsPort}/ws`;

// ---- users ----
// gid = PROC + PROCS * k: every user belongs to one process. Per user, kept across its
// connections and app instances: what the handlers saw.

/**
 * @typedef {{
 *   gid: number, k: number, tcp: boolean, codec: string, room: string, slow: boolean,
 *   phase: 'connecting' | 'open' | 'down' | 'away' | 'gone',
 *   client: any, subscribed: boolean, vanishing: boolean, returnAt: number,
 *   count: number, lastN: number, dupes: number, gaps: number, gapList: number[], q0: number,
 *   lastSeq: number, connections: number
 * }} User
 */
/** @type {Map<number, User>} */
const users = new Map();
/** Users with a connection (connecting, open or down and reconnecting), for random picks. */
/** @type {User[]} */
const active = [];
const activeAt = new Map();
/** Users gone for a while who will come back, soonest first (kept sorted by returnAt). */
/** @type {User[]} */
const returners = [];
let nextK = 0;

const c = {
  connects: 0,
  connectFailures: 0,
  newUsers: 0,
  returns: 0,
  drops: 0,
  vanishes: 0,
  leaves: 0,
  reconnects: 0,
  resumed: 0,
  notResumed: 0,
  recovered: 0,
  notRecovered: 0,
  subscribeFailures: 0,
  closeEvents: {},
  clientErrors: 0,
  echoSent: 0,
  echoOk: 0,
  echoMismatch: 0,
  echoFailed: {},
  q0: 0,
  q1: 0,
  q1Dupes: 0,
  q1Gaps: 0,
};
/** Times of link drops (flash and vanish): each leaves a resumable session on the server. */
const dropTimes = [];
const echoLatency = [];

function addActive(u) {
  activeAt.set(u.gid, active.length);
  active.push(u);
}

function removeActive(u) {
  const i = activeAt.get(u.gid);
  if (i === undefined) return;
  const last = active.pop();
  if (last !== u) {
    active[i] = last;
    activeAt.set(last.gid, i);
  }
  activeAt.delete(u.gid);
}

function newUser() {
  const k = nextK++;
  /** @type {User} */
  const u = {
    gid: PROC + PROCS * k,
    k,
    tcp: k % 2 === 0,
    codec: (k >> 1) % 2 === 0 ? 'json' : 'msgpack',
    room: `room_${Math.floor(Math.random() * ROOMS)}`,
    slow: Math.random() < 0.25,
    phase: 'gone',
    client: undefined,
    subscribed: false,
    vanishing: false,
    returnAt: 0,
    count: 0,
    lastN: 0,
    dupes: 0,
    gaps: 0,
    gapList: [],
    q0: 0,
    lastSeq: 0,
    connections: 0,
  };
  users.set(u.gid, u);
  c.newUsers++;
  return u;
}

function onQos1(u, data) {
  const n = data?.n;
  c.q1++;
  if (typeof n !== 'number' || n <= u.lastN) {
    // The SDK ran the handler twice for one message (or out of order): exactly-once broken.
    u.dupes++;
    c.q1Dupes++;
    return;
  }
  if (n > u.lastN + 1) {
    u.gaps += n - u.lastN - 1;
    c.q1Gaps += n - u.lastN - 1;
    for (let m = u.lastN + 1; m < n && u.gapList.length < 20; m++) u.gapList.push(m);
  }
  u.lastN = n;
  u.count++;
}

async function subscribe(u, client) {
  try {
    await client.subscribe([u.room], { timeout: 15_000 });
    u.subscribed = true;
  } catch {
    c.subscribeFailures++;
  }
}

/** Open a connection for `u` (a new app instance: fresh session, the lastSeq the app persisted). */
async function open(u) {
  u.phase = 'connecting';
  u.vanishing = false;
  u.subscribed = false;
  addActive(u);
  // The app persists the last seq it processed across restarts (ClientOptions.lastSeq), so a
  // message processed but not acked before the app went away is acked, not processed again.
  if (u.client) u.lastSeq = Math.max(u.lastSeq, u.client.lastSeq);
  const options = {
    token: `u${u.gid}`,
    codec: u.codec,
    lastSeq: u.lastSeq,
    requestTimeout: 15_000,
    connectTimeout: 15_000,
    // A quarter of the apps come back slowly after a drop (still well within the resume window).
    reconnect: u.slow ? { base: 20_000, max: 30_000 } : { base: 500, max: 5_000 },
  };
  let client;
  try {
    client = await connect(u.tcp ? TCP_URL : WS_URL, options);
  } catch {
    c.connectFailures++;
    removeActive(u);
    u.phase = 'away';
    scheduleReturn(u, Date.now() + 1000 + Math.random() * 4000);
    return;
  }
  c.connects++;
  u.connections++;
  u.client = client;
  u.phase = 'open';
  client.on('q1', (data) => onQos1(u, data));
  client.on('q0', () => {
    u.q0++;
    c.q0++;
  });
  client.on('error', () => {
    c.clientErrors++;
  });
  client.on('close', (e) => {
    if (u.client !== client) return;
    c.closeEvents[e.name] = (c.closeEvents[e.name] ?? 0) + 1;
    if (e.willReconnect && !u.vanishing) {
      u.phase = 'down';
      return;
    }
    if (u.vanishing) {
      // The app is gone with its link: no bye, no reconnect. Its session waits on the server.
      setImmediate(() => client.close());
    }
  });
  client.on('reconnected', (welcome) => {
    if (u.client !== client) return;
    c.reconnects++;
    if (welcome.resumed) c.resumed++;
    else c.notResumed++;
    if (welcome.resumed && welcome.recovered) c.recovered++;
    else if (welcome.resumed) c.notRecovered++;
    u.phase = 'open';
    // A resumed session has its labels back; otherwise (or if the sub never completed) sub again.
    if (!welcome.resumed || !u.subscribed) void subscribe(u, client);
  });
  await subscribe(u, client);
}

function scheduleReturn(u, at) {
  u.returnAt = at;
  let i = returners.length;
  while (i > 0 && returners[i - 1].returnAt > at) i--;
  returners.splice(i, 0, u);
}

function pickOpen() {
  for (let i = 0; i < 8 && active.length > 0; i++) {
    const u = active[Math.floor(Math.random() * active.length)];
    if (u.phase === 'open' && u.client?.connected && !u.vanishing) return u;
  }
  return undefined;
}

// ---- churn ----

let churning = false;
let filling = false;
let owedCloses = 0;
let lastChurn = Date.now();

function drop(u) {
  c.drops++;
  dropTimes.push(Date.now());
  // Down from now on, so that the churn does not pick it again before its link has gone.
  u.phase = 'down';
  const client = u.client;
  client.request('soak.drop', undefined, { timeout: 5000 }).catch(() => {
    if (u.client === client && client.connected && u.phase === 'down') u.phase = 'open';
  });
}

function vanish(u) {
  c.vanishes++;
  dropTimes.push(Date.now());
  u.vanishing = true;
  u.phase = 'away';
  removeActive(u);
  const client = u.client;
  client.request('soak.drop', undefined, { timeout: 5000 }).catch(() => {});
  // Should the drop not take (the link went down some other way meanwhile), the app still goes.
  setTimeout(() => void client.close(), 3000);
  // The app comes back later as a new instance: within the resume window or after it.
  scheduleReturn(u, Date.now() + 5_000 + Math.random() * 175_000);
}

function leave(u) {
  c.leaves++;
  u.phase = 'away';
  removeActive(u);
  const client = u.client;
  void client.close();
  if (Math.random() < 0.5) scheduleReturn(u, Date.now() + 10_000 + Math.random() * 290_000);
  else u.phase = 'gone';
}

/** Open connections until this process holds its share again: returning users first. */
function refill(now, limit) {
  const deficit = Math.min(limit, TARGET - active.length);
  for (let i = 0; i < deficit; i++) {
    let u;
    if (returners.length > 0 && (filling || returners[0].returnAt <= now)) {
      u = returners.shift();
      c.returns++;
    } else {
      u = newUser();
    }
    void open(u);
  }
}

const churnTimer = setInterval(() => {
  const now = Date.now();
  const since = lastChurn;
  lastChurn = now;
  while (dropTimes.length > 0 && dropTimes[0] < now - 2 * RESUME_WINDOW) dropTimes.shift();
  if (filling) {
    refill(now, Math.max(50, Math.ceil(TARGET * 0.05)));
    return;
  }
  if (!churning) return;
  owedCloses += TARGET * CHURN * Math.min(2, (now - since) / 1000);
  for (; owedCloses >= 1; owedCloses--) {
    const u = pickOpen();
    if (u === undefined) break;
    const r = Math.random();
    if (r < 0.4) drop(u);
    else if (r < 0.7) vanish(u);
    else leave(u);
  }
  refill(now, Math.max(10, Math.ceil(TARGET * CHURN * 3)));
}, 1000);

// ---- echo requests ----

let echoing = false;
let owedEcho = 0;
let echoNo = 0;
let lastEcho = performance.now();
const echoTimer = setInterval(() => {
  // The rate follows the time that passed (timers fire late on a busy machine), at most 1 s of it.
  const tick = performance.now();
  const seconds = Math.min(1, (tick - lastEcho) / 1000);
  lastEcho = tick;
  if (!echoing) return;
  owedEcho += ECHO_RATE * seconds;
  for (; owedEcho >= 1; owedEcho--) {
    const u = pickOpen();
    if (u === undefined) break;
    const i = ++echoNo;
    const t = performance.now();
    c.echoSent++;
    u.client.request('echo', { i, p: 'soak' }, { timeout: 10_000 }).then(
      (r) => {
        if (r?.i === i && r.p === 'soak') c.echoOk++;
        else c.echoMismatch++;
        if (echoLatency.length < 100_000) echoLatency.push(performance.now() - t);
        else echoLatency[Math.floor(Math.random() * echoLatency.length)] = performance.now() - t;
      },
      (err) => {
        const code = err?.code ?? 'ERROR';
        c.echoFailed[code] = (c.echoFailed[code] ?? 0) + 1;
      },
    );
  }
}, 100);

// ---- commands from the parent ----

function phases() {
  const p = { connecting: 0, open: 0, down: 0 };
  for (const u of active) p[u.phase] = (p[u.phase] ?? 0) + 1;
  let connected = 0;
  for (const u of active) if (u.client?.connected) connected++;
  return { ...p, active: active.length, connected, returners: returners.length, users: users.size };
}

function percentile(xs, q) {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  return Math.round(s[Math.min(s.length - 1, Math.floor(q * s.length))] * 100) / 100;
}

const commands = {
  /** Open this process's share, `rate` per second at most. */
  ramp: async ({ rate }) => {
    const started = Date.now();
    const deadline = started + config.rampTimeoutMs;
    const batch = Math.max(1, Math.floor(rate / 10));
    while (active.length < TARGET && Date.now() < deadline) {
      const n = Math.min(batch, TARGET - active.length);
      for (let i = 0; i < n; i++) void open(newUser());
      await new Promise((r) => setTimeout(r, 100));
    }
    while (Date.now() < deadline) {
      const p = phases();
      if (p.connecting === 0) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    return { ms: Date.now() - started, ...phases() };
  },
  churn: ({ on }) => {
    churning = on;
    return true;
  },
  echo: ({ on }) => {
    echoing = on;
    return true;
  },
  /** Stop churning and bring the process back to its share (returning users first). */
  fill: () => {
    churning = false;
    filling = true;
    return true;
  },
  counts: () => {
    const now = Date.now();
    let dropsInWindow = 0;
    for (let i = dropTimes.length - 1; i >= 0 && dropTimes[i] >= now - RESUME_WINDOW - 5_000; i--)
      dropsInWindow++;
    return {
      at: now,
      ...phases(),
      dropsInWindow,
      counters: structuredClone(c),
      echoLatencyMs: { p50: percentile(echoLatency, 0.5), p99: percentile(echoLatency, 0.99) },
      memory: process.memoryUsage().rss,
    };
  },
  /** Per user that saw anything or may have: counts of what the handlers saw. */
  report: () => {
    const out = [];
    for (const u of users.values()) {
      out.push({
        gid: u.gid,
        count: u.count,
        lastN: u.lastN,
        dupes: u.dupes,
        gaps: u.gaps,
        gapList: u.gapList,
        connected: u.client?.connected === true && u.phase === 'open',
        phase: u.phase,
      });
    }
    return out;
  },
  shutdown: async () => {
    churning = false;
    echoing = false;
    filling = false;
    clearInterval(churnTimer);
    clearInterval(echoTimer);
    const closing = [];
    for (const u of users.values()) if (u.client) closing.push(u.client.close());
    await Promise.race([Promise.all(closing), new Promise((r) => setTimeout(r, 10_000))]);
    setTimeout(() => process.exit(0), 50);
    return true;
  },
};

process.on('message', async (m) => {
  if (!m || typeof m.cmd !== 'string') return;
  try {
    const fn = commands[m.cmd];
    if (!fn) throw new Error(`unknown command ${m.cmd}`);
    process.send({ id: m.id, ok: true, result: await fn(m.args ?? {}) });
  } catch (err) {
    process.send({ id: m.id, ok: false, error: String(err?.stack ?? err) });
  }
});

process.send({ event: 'ready', data: { proc: PROC } });
