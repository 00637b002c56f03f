// The callers of the RPC benchmark, in a process of their own. The parent sends
// { kind, port, callers, warmupMs, ms }; this process opens the client, runs `callers` closed loops
// (each awaits its answer before the next call) for warmupMs unmeasured and ms measured, and
// answers { calls, seconds, p50, p90, p99, max } (latencies in µs, HdrHistogram), then exits.
//   kind: pylon-json | pylon-msgpack (RpcClient over TCP, 4 connections), grpc (one channel),
//         http (undici Pool, one keep-alive connection per caller)
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import hdr from 'hdr-histogram-js';
import { Pool } from 'undici';
import { RpcClient } from '../dist/rpc/index.js';

const PROTO = fileURLToPath(new URL('./rpc-echo.proto', import.meta.url));
const PAYLOAD = { n: 42, text: 'hello, service' };

async function open(kind, port, callers) {
  if (kind === 'pylon-json' || kind === 'pylon-msgpack') {
    const rpc = new RpcClient({
      url: `tcp://127.0.0.1:${port}`,
      codec: kind === 'pylon-json' ? 'json' : 'msgpack',
      monitor: false, // the bench keeps its own histogram
    });
    await rpc.start();
    return { call: () => rpc.call('echo', PAYLOAD), close: () => rpc.close() };
  }
  if (kind === 'grpc') {
    const def = protoLoader.loadSync(PROTO, { keepCase: true, longs: Number, defaults: false });
    const pkg = grpc.loadPackageDefinition(def);
    const client = new pkg.bench.rpc.EchoService(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    await new Promise((resolve, reject) =>
      client.waitForReady(Date.now() + 5000, (err) => (err ? reject(err) : resolve())),
    );
    const call = () =>
      new Promise((resolve, reject) =>
        client.Echo(PAYLOAD, (err, res) => (err ? reject(err) : resolve(res))),
      );
    return { call, close: () => client.close() };
  }
  if (kind === 'http') {
    const pool = new Pool(`http://127.0.0.1:${port}`, { connections: callers, pipelining: 1 });
    const body = JSON.stringify(PAYLOAD);
    const headers = { 'content-type': 'application/json' };
    const call = async () => {
      const res = await pool.request({ path: '/echo', method: 'POST', headers, body });
      return res.body.json();
    };
    return { call, close: () => pool.close() };
  }
  throw new Error(`unknown kind "${kind}"`);
}

async function run({ kind, port, callers, warmupMs, ms }) {
  const client = await open(kind, port, callers);
  const histogram = hdr.build({
    lowestDiscernibleValue: 1,
    highestTrackableValue: 60_000_000,
    numberOfSignificantValueDigits: 3,
  });
  let measuring = false;
  let calls = 0;
  let stop = false;
  let errors = 0;
  const loop = async () => {
    while (!stop) {
      const t0 = performance.now();
      try {
        await client.call();
      } catch {
        errors++;
        continue;
      }
      if (measuring) {
        histogram.recordValue(Math.max(1, Math.round((performance.now() - t0) * 1000)));
        calls++;
      }
    }
  };
  const loops = Array.from({ length: callers }, loop);
  await new Promise((r) => setTimeout(r, warmupMs));
  measuring = true;
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, ms));
  measuring = false;
  const seconds = (performance.now() - t0) / 1000;
  stop = true;
  await Promise.all(loops);
  await client.close();
  const q = (p) => histogram.getValueAtPercentile(p);
  return { calls, seconds, errors, p50: q(50), p90: q(90), p99: q(99), max: histogram.maxValue };
}

process.on('disconnect', () => process.exit(0));
process.once('message', async (job) => {
  try {
    const result = await run(job);
    process.send({ ok: true, result }, () => process.exit(0));
  } catch (err) {
    process.send({ ok: false, error: String(err?.stack ?? err) }, () => process.exit(1));
  }
});
