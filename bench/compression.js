// WebSocket compression side by side: a ~1 KB JSON broadcast to N connections, with and without
// permessage-deflate, on Pylon (library, ws.compression) and on ws (perMessageDeflate, its
// defaults). Each server runs in a process of its own, the N clients (the ws package, which
// inflates like a browser) in another. Measured per server: server CPU per delivery
// (process.cpuUsage over the broadcasts), bytes on the wire per delivery (read by the clients'
// sockets), and the server's RSS per connection once connected.
// Run after `npm run build`:  node bench/compression.js [--connections N] [--broadcasts N] [--repeats N]
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const arg = (name, fallback) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
};
const role = process.argv[2];
const HOST = '127.0.0.1';

/** A ~1.1 KB JSON object a push system would send: a list of items with names, prices, flags. */
function payload(seq) {
  const items = Array.from({ length: 18 }, (_, i) => ({
    id: 10_000 + seq * 31 + i,
    name: ['alpha', 'bravo', 'charlie', 'delta', 'echo', 'foxtrot'][(seq + i) % 6],
    price: Math.round(((seq * 7 + i * 13) % 1000) * 1.37) / 100,
    inStock: (seq + i) % 3 !== 0,
  }));
  return { seq, at: new Date(1_764_763_200_000 + seq * 1000).toISOString(), title: `update ${seq}`, items };
}

if (role === 'server') {
  const kind = process.argv[3];
  const deflate = process.argv[4] === 'on';
  let broadcast;
  let port;
  if (kind === 'pylon') {
    const { createGateway } = await import('../dist/index.js');
    const { createLogger } = await import('../dist/log/logger.js');
    const gateway = createGateway({
      ws: { port: 0, host: HOST, ...(deflate ? { compression: true } : {}) },
      logger: createLogger('silent'),
      maxConnections: 200_000,
      maxConnectionsPerIp: 200_000,
      rateLimit: false,
      userRateLimit: false,
    });
    port = (await gateway.listen()).ws.port;
    broadcast = async (data) => (await gateway.push({ all: true }, 'b', data)).done;
  } else {
    const { WebSocketServer } = await import('ws');
    const wss = new WebSocketServer({ port: 0, host: HOST, perMessageDeflate: deflate });
    await new Promise((r) => wss.once('listening', r));
    port = wss.address().port;
    broadcast = async (data) => {
      const text = JSON.stringify({ kind: 'push', type: 'b', data });
      for (const c of wss.clients) c.send(text);
    };
  }
  process.send({ type: 'ready', port });
  process.on('message', async (m) => {
    if (m.type === 'rss') {
      global.gc?.();
      process.send({ type: 'rss', rss: process.memoryUsage().rss });
      return;
    }
    if (m.type !== 'broadcast') return;
    const start = process.cpuUsage();
    for (let i = 0; i < m.count; i++) await broadcast(payload(m.from + i));
    // The writes are queued: CPU is read again once the clients said they have everything.
    process.once('message', (done) => {
      if (done.type !== 'cpu') return;
      const c = process.cpuUsage(start);
      process.send({ type: 'cpu', us: c.user + c.system });
    });
    process.send({ type: 'sent' });
  });
} else if (role === 'clients') {
  const { WebSocket } = await import('ws');
  const [port, n, deflate] = [Number(process.argv[3]), Number(process.argv[4]), process.argv[5] === 'on'];
  let received = 0;
  const sockets = [];
  for (let i = 0; i < n; i += 500) {
    await Promise.all(
      Array.from({ length: Math.min(500, n - i) }, () => {
        const ws = new WebSocket(`ws://${HOST}:${port}/ws`, { perMessageDeflate: deflate });
        ws.on('message', () => {
          received++;
        });
        sockets.push(ws);
        return new Promise((resolve, reject) => {
          ws.once('open', resolve);
          ws.once('error', reject);
        });
      }),
    );
  }
  const bytes = () => sockets.reduce((sum, ws) => sum + ws._socket.bytesRead, 0);
  process.send({ type: 'ready', compressed: sockets[0].extensions !== '' });
  process.on('message', async (m) => {
    if (m.type !== 'await') return;
    const b0 = bytes();
    while (received < m.until) await new Promise((r) => setTimeout(r, 5));
    process.send({ type: 'received', bytes: bytes() - b0 });
  });
} else {
  const N = arg('--connections', 10_000);
  const B = arg('--broadcasts', 20);
  const R = arg('--repeats', 3);
  const here = fileURLToPath(import.meta.url);
  const next = (child, type) =>
    new Promise((resolve) => child.on('message', (m) => m.type === type && resolve(m)));
  const rows = [];
  for (const [kind, deflate] of [
    ['ws', 'off'],
    ['ws', 'on'],
    ['pylon', 'off'],
    ['pylon', 'on'],
  ]) {
    const runs = [];
    for (let r = 0; r < R; r++) {
      const server = fork(here, ['server', kind, deflate], { execArgv: ['--expose-gc'] });
      const { port } = await next(server, 'ready');
      const clients = fork(here, ['clients', String(port), String(N), deflate]);
      const { compressed } = await next(clients, 'ready');
      server.send({ type: 'rss' });
      const { rss } = await next(server, 'rss');
      let total = 0;
      // One warm-up broadcast, then B measured.
      for (const [from, count] of [
        [0, 1],
        [1, B],
      ]) {
        total += count * N;
        clients.send({ type: 'await', until: total });
        server.send({ type: 'broadcast', from, count });
        await next(server, 'sent');
        const { bytes } = await next(clients, 'received');
        server.send({ type: 'cpu' });
        const { us } = await next(server, 'cpu');
        if (from > 0) runs.push({ cpu: us / (B * N), bytes: bytes / (B * N), rss: rss / N, compressed });
      }
      server.kill();
      clients.kill();
    }
    const med = (k) => [...runs.map((x) => x[k])].sort((a, b) => a - b)[Math.floor(runs.length / 2)];
    const range = (k, d) =>
      `${Math.min(...runs.map((x) => x[k])).toFixed(d)}–${Math.max(...runs.map((x) => x[k])).toFixed(d)}`;
    rows.push({
      kind,
      deflate,
      cpu: med('cpu'),
      cpuR: range('cpu', 2),
      bytes: med('bytes'),
      bytesR: range('bytes', 0),
      rss: med('rss'),
      compressed: runs[0].compressed,
    });
    console.error(
      `${kind} compression ${deflate}: ${med('cpu').toFixed(2)} µs CPU/delivery, ${med('bytes').toFixed(0)} B/delivery`,
    );
  }
  const base = rows[0];
  console.log(
    `\n${N} connections, ${B} broadcasts of a ${JSON.stringify({ kind: 'push', type: 'b', data: payload(1) }).length}-byte JSON push, median of ${R} (min–max); ratios to ws without compression\n`,
  );
  console.log(
    '| server | compression | negotiated | server CPU µs per delivery | bytes on the wire per delivery | server RSS per connection |',
  );
  console.log('|---|---|---|---|---|---|');
  for (const r of rows) {
    console.log(
      `| ${r.kind} | ${r.deflate} | ${r.compressed ? 'yes' : 'no'} | ${r.cpu.toFixed(2)} (${r.cpuR}), ${(r.cpu / base.cpu).toFixed(2)}× | ${r.bytes.toFixed(0)} (${r.bytesR}), ${(r.bytes / base.bytes).toFixed(2)}× | ${(r.rss / 1024).toFixed(1)} KB |`,
    );
  }
}
