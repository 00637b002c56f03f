// The attacks of one hostile client machine on `pylon start` (its defaults unless named), at
// their original sizes: `npm run attack` (not in CI; about 10 minutes). For each: the server's
// RSS and heap before, at peak and 20 s after the attackers left, the worst latency of a
// witness client echoing every 100 ms meanwhile, and the verdict. Loopback only; every attack
// is bounded in count and time and stops by itself. docs/reliability.md carries the table.
//
//   node bench/attack.js [--only a,b] [--quick] [--json FILE]
//
// --quick: a tenth of the counts and durations (a check that the script works).

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WebSocket } from 'ws';
import { frame, frameLength, Reassembler, writeFrameHeader } from '../dist/protocol/index.js';

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const only = args.includes('--only') ? args[args.indexOf('--only') + 1].split(',') : undefined;
const jsonOut = args.includes('--json') ? args[args.indexOf('--json') + 1] : undefined;
const scale = quick ? 0.1 : 1;
const n = (x) => Math.max(1, Math.round(x * scale));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const enc = new TextEncoder();
const MiB = 1024 * 1024;

// ---- the server ----

async function startPylon(extra = []) {
  const dir = mkdtempSync(join(tmpdir(), 'pylon-attack-'));
  const child = spawn(
    process.execPath,
    [
      'dist/cli/main.js',
      'start',
      '--ws-port',
      '0',
      '--tcp-port',
      '0',
      '--admin-port',
      '0',
      '--grpc-port',
      '-1',
      '--store',
      `sqlite:${join(dir, 'pylon.db')}`,
      '--log-level',
      'error',
      ...extra,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  child.stdout.on('data', (d) => {
    out += d;
  });
  child.stderr.on('data', () => {});
  const started = Date.now();
  while (!/ready/.test(out)) {
    if (Date.now() - started > 15_000) throw new Error(`pylon start did not come up: ${out}`);
    await sleep(50);
  }
  const ws = /WebSocket on (ws:\/\/\S+)/.exec(out)[1];
  const tcp = /TCP on tcp:\/\/([\d.]+):(\d+)/.exec(out);
  const admin = /admin API on (http:\/\/\S+)\/v1\//.exec(out)[1];
  return {
    ws,
    tcpPort: Number(tcp[2]),
    admin,
    stop: async () => {
      child.kill('SIGKILL');
      await new Promise((r) => child.on('exit', r));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function memory(server) {
  const s = await (await fetch(`${server.admin}/v1/stats`)).json();
  return { rss: s.process?.rss ?? 0, heap: s.process?.heapUsed ?? 0, connections: s.connections };
}

// ---- clients ----

/** A raw TCP peer with Pylon framing: hello, then whatever the attack writes. */
function tcpPeer(port, hello = { kind: 'hello' }) {
  return new Promise((resolve) => {
    const s = netConnect({ port, host: '127.0.0.1' }, () => {
      if (hello) s.write(frame(enc.encode(JSON.stringify(hello))));
      resolve(s);
    });
    s.on('error', () => {});
    s.on('close', () => {
      s.gone = true;
    });
  });
}

/** Echoes every 100 ms over TCP and keeps the worst round trip. */
async function witness(port) {
  const s = await tcpPeer(port, { kind: 'hello', data: { token: 'witness' } });
  const reader = new Reassembler(16 * MiB);
  let sentAt = 0;
  let worst = 0;
  let lost = false;
  let waiting = false;
  s.on('data', (chunk) =>
    reader.push(
      chunk,
      (b) => frameLength(b, 16 * MiB),
      (p) => {
        const m = JSON.parse(Buffer.from(p.subarray(4)).toString());
        if (m.kind === 'res') {
          worst = Math.max(worst, performance.now() - sentAt);
          waiting = false;
        }
      },
      null,
    ),
  );
  s.on('close', () => {
    lost = true;
  });
  let id = 0;
  const timer = setInterval(() => {
    if (waiting) {
      worst = Math.max(worst, performance.now() - sentAt);
      return;
    }
    waiting = true;
    sentAt = performance.now();
    s.write(frame(enc.encode(JSON.stringify({ kind: 'req', id: ++id, type: 'echo', data: id }))));
  }, 100);
  return {
    result: () => {
      clearInterval(timer);
      if (waiting) worst = Math.max(worst, performance.now() - sentAt);
      s.destroy();
      return { worstMs: Math.round(worst), lost };
    },
  };
}

// ---- attacks ----

const FRAGMENT = Buffer.alloc(250_000, 0x61);

const attacks = {
  /** 3,000 connections each sending 1 MiB − 1 byte of a frame (max-frame 1 MiB, the old default), then nothing. */
  'half-sent frames': {
    flags: ['--max-frame', String(MiB)],
    async run(server, during) {
      const sockets = [];
      const header = Buffer.alloc(4);
      writeFrameHeader(header, 0, MiB);
      const body = Buffer.alloc(MiB - 1, 0x41); // one buffer for every socket: written, not copied
      for (let i = 0; i < n(3000); i++) {
        const s = await tcpPeer(server.tcpPort);
        s.resume(); // reads (and drops) what the server says, so its close is seen
        s.write(header);
        s.write(body);
        sockets.push(s);
        if (i % 100 === 0) await during();
      }
      for (let t = 0; t < 30 * scale; t++) {
        await sleep(1000);
        await during();
      }
      const closed = sockets.filter((s) => s.gone).length;
      for (const s of sockets) s.destroy();
      return `${closed} of ${sockets.length} closed by the server`;
    },
  },

  /** The same with unfinished fragmented WebSocket messages. */
  'fragmented WebSocket messages': {
    flags: ['--max-frame', String(MiB)],
    async run(server, during) {
      const clients = [];
      for (let i = 0; i < n(1000); i++) {
        const ws = new WebSocket(server.ws);
        ws.on('error', () => {});
        await new Promise((r) => {
          ws.on('open', r);
          ws.on('close', r);
        });
        for (let k = 0; k < 4; k++) ws.send(FRAGMENT, { fin: false });
        clients.push(ws);
        if (i % 50 === 0) await during();
      }
      for (let t = 0; t < 15 * scale; t++) {
        await sleep(1000);
        await during();
      }
      const closed = clients.filter((c) => c.readyState !== WebSocket.OPEN).length;
      for (const c of clients) c.terminate();
      return `${closed} of ${clients.length} closed by the server`;
    },
  },

  /** A client that never reads, sending pings with 1 MiB of data for 10 s. */
  reflection: {
    flags: ['--max-frame', String(MiB)],
    async run(server, during) {
      const s = await tcpPeer(server.tcpPort);
      s.pause();
      const ping = frame(enc.encode(JSON.stringify({ kind: 'ping', data: 'p'.repeat(MiB - 64) })));
      const end = Date.now() + 10_000 * scale;
      let sent = 0;
      while (Date.now() < end && !s.destroyed) {
        if (s.writableLength < 8 * MiB) {
          s.write(ping);
          sent++;
        }
        await sleep(5);
        if (sent % 20 === 0) await during();
      }
      const closed = s.gone === true;
      s.destroy();
      return `${sent} pings sent; ${closed ? 'closed by the server' : 'still open'}`;
    },
  },

  /** 4 clients cycling through rooms with chat.send for 40 s. */
  'label histories': {
    flags: [],
    async run(server, during) {
      const clients = await Promise.all(
        [1, 2, 3, 4].map(
          (i) =>
            new Promise((resolve) => {
              const ws = new WebSocket(`${server.ws}?token=roomer${i}`);
              ws.on('error', () => {});
              ws.on('open', () => resolve(ws));
            }),
        ),
      );
      let id = 0;
      let room = 0;
      const end = Date.now() + 40_000 * scale;
      while (Date.now() < end) {
        room++;
        for (const ws of clients) {
          ws.send(JSON.stringify({ kind: 'sub', id: ++id, data: { labels: [`room:r${room}`] } }));
          ws.send(
            JSON.stringify({
              kind: 'req',
              id: ++id,
              type: 'chat.send',
              data: { room: `r${room}`, text: 'x'.repeat(1000) },
            }),
          );
          ws.send(JSON.stringify({ kind: 'unsub', id: ++id, data: { labels: [`room:r${room}`] } }));
        }
        await sleep(25);
        if (room % 20 === 0) await during();
      }
      for (const ws of clients) ws.close();
      return `${room} rooms visited`;
    },
  },

  /** Connect, hello, reset, as fast as possible for 40 s (dev auth: a new user each time). */
  'saved sessions': {
    flags: [],
    async run(server, during) {
      let cycles = 0;
      const end = Date.now() + 40_000 * scale;
      while (Date.now() < end) {
        const batch = [];
        for (let i = 0; i < 50; i++) {
          batch.push(
            tcpPeer(server.tcpPort, { kind: 'hello', data: { token: `cycle-${cycles++}` } }).then(
              async (s) => {
                await sleep(20);
                s.resetAndDestroy();
              },
            ),
          );
        }
        await Promise.all(batch);
        await during();
      }
      return `${cycles} connect-hello-reset cycles`;
    },
  },

  /** A 1,000,000-character token as the user id (dev auth). */
  'identity size': {
    flags: ['--max-frame', String(2 * MiB)],
    async run(server, during) {
      const results = [];
      for (let i = 0; i < n(50); i++) {
        const s = await tcpPeer(server.tcpPort, { kind: 'hello', data: { token: 'u'.repeat(1_000_000) } });
        const kick = await new Promise((resolve) => {
          const reader = new Reassembler(16 * MiB);
          s.on('data', (c) =>
            reader.push(
              c,
              (b) => frameLength(b, 16 * MiB),
              (p) => resolve(JSON.parse(Buffer.from(p.subarray(4)).toString())),
              null,
            ),
          );
          s.on('close', () => resolve(undefined));
        });
        results.push(kick?.data?.code ?? kick?.kind);
        s.destroy();
        await during();
      }
      return `answers: ${[...new Set(results)].join(', ')}`;
    },
  },

  /** 1,000 members of a room with presence; one client flapping sub/unsub 776 times a second. */
  'presence amplification': {
    flags: [],
    async run(server, during) {
      const members = [];
      const joinStart = performance.now();
      for (let i = 0; i < n(1000); i++) {
        const s = await tcpPeer(server.tcpPort, { kind: 'hello', data: { token: `member${i}` } });
        s.write(frame(enc.encode(JSON.stringify({ kind: 'sub', id: 1, data: { labels: ['room:big'] } }))));
        s.on('data', () => {});
        members.push(s);
      }
      // Joined once the gateway counts them all in the room.
      for (;;) {
        const r = await (
          await fetch(`${server.admin}/v1/labels/${encodeURIComponent('room:big')}?limit=1`)
        ).json();
        if (r.count >= members.length) break;
        await sleep(20);
      }
      const joinMs = Math.round(performance.now() - joinStart);
      const flapper = await tcpPeer(server.tcpPort, { kind: 'hello', data: { token: 'flapper' } });
      flapper.on('data', () => {});
      let id = 0;
      const end = Date.now() + 20_000 * scale;
      while (Date.now() < end) {
        for (let k = 0; k < 8; k++) {
          const kind = id % 2 === 0 ? 'sub' : 'unsub';
          flapper.write(
            frame(enc.encode(JSON.stringify({ kind, id: ++id, data: { labels: ['room:big'] } }))),
          );
        }
        await sleep(10);
        if (id % 400 === 0) await during();
      }
      for (const s of [...members, flapper]) s.destroy();
      return `${members.length} joined in ${joinMs} ms (connect, hello, sub); ${id} sub/unsub sent`;
    },
  },

  /** 1,000 pushes paced at 1e-9 connections/s, then paced pushes at a sane rate. */
  'paced pushes': {
    flags: [],
    async run(server, during) {
      const post = (body) =>
        fetch(`${server.admin}/v1/push`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(body),
        }).then((r) => r.status);
      const statuses = new Map();
      for (let i = 0; i < n(1000); i++) {
        const s = await post({ to: { all: true }, type: 't', rate: 1e-9 });
        statuses.set(s, (statuses.get(s) ?? 0) + 1);
        if (i % 100 === 0) await during();
      }
      const later = await post({ to: { all: true }, type: 't', rate: 1000 });
      return `slow ones answered ${[...statuses].map(([k, v]) => `${v}× ${k}`).join(', ')}; a sane one then ${later}`;
    },
  },

  /** A qos-1 push to 10,000 users (each online), timing the event loop through the witness. */
  'big qos-1 push': {
    flags: [],
    async run(server, during) {
      const users = [];
      const sockets = [];
      for (let i = 0; i < n(10_000); i++) {
        const s = await tcpPeer(server.tcpPort, { kind: 'hello', data: { token: `q${i}` } });
        s.on('data', () => {});
        sockets.push(s);
        users.push(`q${i}`);
        if (i % 500 === 0) await during();
      }
      const t = performance.now();
      const res = await fetch(`${server.admin}/v1/push`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ to: { users }, type: 'big', data: { x: 1 }, qos: 1 }),
      });
      const ms = Math.round(performance.now() - t);
      await during();
      await sleep(2000);
      await during();
      for (const s of sockets) s.destroy();
      return `answered ${res.status} in ${ms} ms`;
    },
  },
};

// ---- the run ----

const MB = (b) => (b / 1e6).toFixed(0);
const rows = [];
for (const [name, attack] of Object.entries(attacks)) {
  if (only && !only.some((o) => name.includes(o))) continue;
  const server = await startPylon(attack.flags);
  await sleep(500);
  const before = await memory(server);
  const w = await witness(server.tcpPort);
  let peak = { ...before };
  const during = async () => {
    const m = await memory(server).catch(() => peak);
    peak = { rss: Math.max(peak.rss, m.rss), heap: Math.max(peak.heap, m.heap), connections: m.connections };
  };
  let outcome;
  try {
    outcome = await attack.run(server, during);
  } catch (err) {
    outcome = `attack failed: ${err.message}`;
  }
  const seen = w.result();
  for (let t = 0; t < 20; t++) {
    await sleep(1000);
    await during();
  }
  const after = await memory(server);
  await server.stop();
  const bounded = peak.rss - before.rss < 512 * 1e6;
  const recovered = after.rss - before.rss < 128 * 1e6 && after.heap - before.heap < 64 * 1e6;
  const responsive = seen.worstMs < 100 && !seen.lost;
  const verdict =
    bounded && recovered && responsive
      ? 'held'
      : `NOT HELD (${[!bounded && 'memory', !recovered && 'not returned', !responsive && 'witness'].filter(Boolean).join(', ')})`;
  const row = { name, flags: attack.flags.join(' '), before, peak, after, witness: seen, outcome, verdict };
  rows.push(row);
  console.error(
    `${name}: RSS ${MB(before.rss)} → ${MB(peak.rss)} → ${MB(after.rss)} MB, heap ${MB(before.heap)} → ${MB(peak.heap)} → ${MB(after.heap)} MB, witness worst ${seen.worstMs} ms; ${outcome}; ${verdict}`,
  );
}

console.log(
  '| attack | flags | RSS before / peak / 20 s after (MB) | heap before / peak / after (MB) | witness worst echo | what happened | verdict |',
);
console.log('|---|---|---|---|---|---|---|');
for (const r of rows) {
  console.log(
    `| ${r.name} | ${r.flags || 'defaults'} | ${MB(r.before.rss)} / ${MB(r.peak.rss)} / ${MB(r.after.rss)} | ${MB(r.before.heap)} / ${MB(r.peak.heap)} / ${MB(r.after.heap)} | ${r.witness.worstMs} ms${r.witness.lost ? ' (lost)' : ''} | ${r.outcome} | ${r.verdict} |`,
  );
}
if (jsonOut) writeFileSync(jsonOut, JSON.stringify(rows, null, 2));
