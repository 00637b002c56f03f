// The subscribers of bench/mqtt.js, in their own process: N raw MQTT 3.1.1 connections (mqtt-packet
// on plain sockets, lighter than a client library), each subscribed to one topic; counts the
// PUBLISHes that arrive and their latency (the payload carries its send time). Driven over IPC.
import { connect } from 'node:net';
import mqttPacket from 'mqtt-packet';
import { Histogram } from './lib/histogram.js';

const now = () => performance.timeOrigin + performance.now();
const sockets = [];
let received = 0;
let lastAt = 0;
let hist = new Histogram();

function open(port, i, topic) {
  return new Promise((resolve, reject) => {
    const s = connect({ port, host: '127.0.0.1' });
    const parser = mqttPacket.parser({ protocolVersion: 4 });
    let subscribed = false;
    parser.on('packet', (p) => {
      if (p.cmd === 'connack') {
        if (p.returnCode !== 0) reject(new Error(`CONNACK ${p.returnCode}`));
        s.write(mqttPacket.generate({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic, qos: 0 }] }));
      } else if (p.cmd === 'suback') {
        subscribed = true;
        resolve(s);
      } else if (p.cmd === 'publish') {
        received++;
        lastAt = now();
        const sent = Number(p.payload.subarray(0, 20).toString());
        if (sent > 0) hist.record(Math.max(0, now() - sent) * 1000);
      }
    });
    s.on('data', (d) => parser.parse(d));
    s.on('error', (err) => {
      if (!subscribed) reject(err);
    });
    s.once('connect', () =>
      s.write(
        mqttPacket.generate({
          cmd: 'connect',
          protocolVersion: 4,
          clientId: `c${i}`,
          clean: true,
          keepalive: 0,
          username: `u${i}`,
        }),
      ),
    );
  });
}

process.on('message', async (m) => {
  if (m.cmd === 'open') {
    const t0 = performance.now();
    const batch = 200;
    for (let i = 0; i < m.count; i += batch) {
      const n = Math.min(batch, m.count - i);
      const opened = await Promise.all(Array.from({ length: n }, (_, k) => open(m.port, i + k, m.topic)));
      sockets.push(...opened);
    }
    process.send({ cmd: 'opened', ms: performance.now() - t0 });
  } else if (m.cmd === 'reset') {
    received = 0;
    lastAt = 0;
    hist = new Histogram();
    process.send({ cmd: 'reset' });
  } else if (m.cmd === 'report') {
    process.send({
      cmd: 'report',
      received,
      lastAt,
      p50: hist.quantile(0.5) / 1000,
      p99: hist.quantile(0.99) / 1000,
    });
  } else if (m.cmd === 'close') {
    for (const s of sockets) s.destroy();
    process.exit(0);
  }
});
process.send({ cmd: 'ready' });
