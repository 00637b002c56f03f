import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import mqttPacket from 'mqtt-packet';
import { afterEach, describe, expect, it } from 'vitest';
import { connect as pylonConnect } from '../src/client/index.js';
import type { Gateway, GatewayOptions } from '../src/index.js';
import { makeCert } from './support/cert.js';
import { startGateway, stopAll } from './support/gateway.js';
import { addressesOf, adminPush, startPylon } from './support/pylon-start.js';

/** The MQTT face, spoken to only by clients nobody here wrote: MQTT.js and Debian's mosquitto tools. */

const clients: MqttClient[] = [];

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.endAsync(true).catch(() => {})));
  await stopAll();
});

async function setup(
  options: GatewayOptions = {},
): Promise<{ gateway: Gateway; url: string; wsUrl: string }> {
  const { gateway, wsUrl } = await startGateway({
    mqtt: { port: 0 },
    validate: (token) => (token === 'bad' ? null : { user: String(token) }),
    authorizeSub: (_conn, label) => !label.startsWith('secret'),
    ...options,
  });
  const port = gateway.addresses?.mqtt?.port;
  return { gateway, url: `mqtt://127.0.0.1:${port}`, wsUrl };
}

async function client(url: string, version: 4 | 5, options: mqtt.IClientOptions = {}): Promise<MqttClient> {
  const c = await mqtt.connectAsync(url, { protocolVersion: version, reconnectPeriod: 0, ...options });
  clients.push(c);
  return c;
}

const nextMessage = (c: MqttClient) =>
  new Promise<{ topic: string; payload: string; packet: mqtt.IPublishPacket }>((resolve) =>
    c.once('message', (topic, payload, packet) => resolve({ topic, payload: payload.toString(), packet })),
  );

/** A raw TCP peer: the bytes it is sent, and when the server closed it. */
function rawPeer(port: number) {
  const s = netConnect({ port, host: '127.0.0.1' });
  const chunks: Buffer[] = [];
  s.on('data', (d) => chunks.push(d));
  s.on('error', () => {});
  const closed = new Promise<void>((resolve) => s.once('close', () => resolve()));
  const packets = () => {
    const out: mqttPacket.Packet[] = [];
    const parser = mqttPacket.parser({ protocolVersion: 5 });
    parser.on('packet', (p: mqttPacket.Packet) => out.push(p));
    parser.parse(Buffer.concat(chunks));
    return out;
  };
  return { socket: s, closed, packets };
}

for (const version of [4, 5] as const) {
  const v = version === 5 ? 'MQTT 5' : 'MQTT 3.1.1';
  describe(`${v} through MQTT.js`, () => {
    it('CONNECT goes through validate (the password is the token, else the username); a refusal is the CONNACK code', async () => {
      const { gateway, url } = await setup();
      await client(url, version, { username: 'device-7', password: 'ann' });
      await client(url, version, { username: 'bo' });
      expect(gateway.connectionsOf('ann')).toHaveLength(1);
      expect(gateway.connectionsOf('bo')).toHaveLength(1);
      const refused = mqtt.connectAsync(url, {
        protocolVersion: version,
        reconnectPeriod: 0,
        password: 'bad',
        username: 'x',
      });
      await expect(refused).rejects.toMatchObject({ code: version === 5 ? 0x86 : 4 });
    });

    it('a topic is a label: a push to it reaches MQTT and WebSocket members alike; the push type rides along on MQTT 5', async () => {
      const { gateway, url, wsUrl } = await setup();
      const m = await client(url, version, { username: 'ann' });
      expect(await m.subscribeAsync('room/1')).toMatchObject([{ topic: 'room/1', qos: 0 }]);
      const w = await pylonConnect(wsUrl, { token: 'bo', reconnect: false });
      await w.subscribe(['room/1']);
      const wsGot = new Promise((resolve) => w.on('say', resolve));
      const got = nextMessage(m);
      const r = await gateway.push({ labels: { all: ['room/1'] } }, 'say', { text: 'hi', n: 1 });
      expect(r.targeted).toBe(2);
      const msg = await got;
      expect(msg.topic).toBe('room/1');
      expect(JSON.parse(msg.payload)).toEqual({ text: 'hi', n: 1 });
      if (version === 5) expect(msg.packet.properties?.userProperties).toEqual({ type: 'say' });
      expect(await wsGot).toEqual({ text: 'hi', n: 1 });
      await w.close();
      // A push to everyone goes on its type; bytes and strings go as they are.
      const next = nextMessage(m);
      await gateway.push({ all: true }, 'news', 'plain words');
      expect(await next).toMatchObject({ topic: 'news', payload: 'plain words' });
      // Unsubscribed: the label is left.
      await m.unsubscribeAsync('room/1');
      expect(gateway.connectionsOf('ann')[0]?.labels ?? []).toEqual([]);
    });

    it("the label's latest history entry is the topic's retained message, sent after the SUBACK", async () => {
      const { gateway, url } = await setup({ history: [{ match: /^room\//, size: 10 }] });
      await gateway.push({ labels: { all: ['room/7'] } }, 'state', { on: false });
      await gateway.push({ labels: { all: ['room/7'] } }, 'state', { on: true });
      const m = await client(url, version, { username: 'ann' });
      const got: Array<[string, string, boolean]> = [];
      m.on('message', (topic, payload, packet) => got.push([topic, payload.toString(), packet.retain]));
      await m.subscribeAsync('room/7');
      await expect.poll(() => got).toEqual([['room/7', '{"on":true}', true]]);
      await gateway.push({ labels: { all: ['room/7'] } }, 'state', { on: false });
      await expect.poll(() => got.at(-1)).toEqual(['room/7', '{"on":false}', false]);
      // A label without history has no retained message.
      await m.subscribeAsync('quiet');
      await new Promise((r) => setTimeout(r, 100));
      expect(got).toHaveLength(2);
    });

    it('SUBSCRIBE refused by authorizeSub or with wildcards gets a failure code, and joins nothing', async () => {
      const { gateway, url } = await setup();
      const m = await client(url, version, { username: 'ann' });
      const refused = m.subscribeAsync('secret/plans');
      const wild = m.subscribeAsync('room/+');
      if (version === 5) {
        await expect(refused).rejects.toThrow(/Not authorized/i);
        await expect(wild).rejects.toThrow(/Wildcard Subscriptions not supported/i);
      } else {
        // MQTT 3.1.1 has one failure code, 0x80 (MQTT.js reports it as an error).
        await expect(refused).rejects.toThrow();
        await expect(wild).rejects.toThrow();
      }
      expect(gateway.connectionsOf('ann')[0]?.labels ?? []).toEqual([]);
    });

    it("PUBLISH from a device goes to the topic's handler: QoS 0 as a message, QoS 1 answered by PUBACK", async () => {
      const { gateway, url } = await setup();
      const seen: Array<[string, unknown, string | undefined]> = [];
      gateway.handle('sensors/temp', (data, ctx) => {
        seen.push(['sensors/temp', data, ctx.connection.user]);
        return 'ok';
      });
      const m = await client(url, version, { username: 'dev1' });
      await m.publishAsync('sensors/temp', JSON.stringify({ c: 21.5 }), { qos: 0 });
      await m.publishAsync('sensors/temp', 'not json', { qos: 1 }); // resolves on PUBACK
      await m.publishAsync('sensors/temp', Buffer.from([0, 1, 2]), { qos: 1 });
      await expect.poll(() => seen.length).toBe(3);
      expect(seen[0]).toEqual(['sensors/temp', { c: 21.5 }, 'dev1']);
      expect(seen[1]?.[1]).toEqual(new Uint8Array(Buffer.from('not json')));
      expect(seen[2]?.[1]).toEqual(new Uint8Array([0, 1, 2]));
    });

    it('a qos-1 push to a user is a QoS 1 PUBLISH; the PUBACK removes it from the store', async () => {
      const { gateway, url } = await setup();
      const m = await client(url, version, { username: 'cy' });
      const got: string[] = [];
      m.on('message', (topic, payload, packet) => got.push(`${topic} ${payload} q${packet.qos}`));
      for (let i = 1; i <= 3; i++) await gateway.push({ user: 'cy' }, 'order', { i }, { qos: 1 });
      await expect.poll(() => got).toEqual(['order {"i":1} q1', 'order {"i":2} q1', 'order {"i":3} q1']);
      await expect.poll(() => gateway.stats().qos1?.acked).toBe(3);
    });
  });
}

describe('MQTT publishing to subscribers (mqtt.publish) and last wills', () => {
  it("a PUBLISH the policy lets through reaches the topic's MQTT and WebSocket subscribers; one it refuses only the handler", async () => {
    const asked: string[] = [];
    const { gateway, url, wsUrl } = await setup({
      mqtt: {
        port: 0,
        publish: (conn, topic) => {
          asked.push(`${conn.user} ${topic}`);
          return topic.startsWith('shared/');
        },
      },
    });
    const handled: unknown[] = [];
    gateway.handle('private/x', (d) => void handled.push(d));
    const sub = await client(url, 5, { username: 'sub' });
    await sub.subscribeAsync('shared/t');
    await sub.subscribeAsync('private/x');
    const w = await pylonConnect(wsUrl, { token: 'web', reconnect: false });
    await w.subscribe(['shared/t']);
    const wsGot = new Promise((resolve) => w.on('shared/t', resolve));
    const got: string[] = [];
    sub.on('message', (topic, payload) => got.push(`${topic} ${payload}`));
    const pub = await client(url, 4, { username: 'dev' });
    await pub.publishAsync('shared/t', '{"v":1}', { qos: 1 }); // no handler, but it went out: PUBACK success
    await pub.publishAsync('private/x', '{"v":2}', { qos: 0 });
    await expect.poll(() => got).toEqual(['shared/t {"v":1}']);
    expect(await wsGot).toEqual({ v: 1 });
    await expect.poll(() => handled).toEqual([{ v: 2 }]);
    expect(got).toEqual(['shared/t {"v":1}']);
    expect(asked).toEqual(['dev shared/t', 'dev private/x']);
    await w.close();
    // Data a push refuses (nested deeper than 64): a QoS 1 PUBLISH says so in its PUBACK.
    const v5 = await client(url, 5, { username: 'dev5' });
    const puback = new Promise<mqttPacket.IPubackPacket>((resolve) =>
      v5.on('packetreceive', (p) => p.cmd === 'puback' && resolve(p as mqttPacket.IPubackPacket)),
    );
    v5.publish('shared/t', `${'['.repeat(100)}${']'.repeat(100)}`, { qos: 1 });
    expect((await puback).reasonCode).toBe(0x99);
    expect(got).toEqual(['shared/t {"v":1}']);
  });

  it('the will goes out on a close the client did not ask for, not after its DISCONNECT', async () => {
    const { gateway, url } = await setup({ mqtt: { port: 0, publish: () => true } });
    const watcher = await client(url, 5, { username: 'watch' });
    await watcher.subscribeAsync('status/dev');
    const got: string[] = [];
    watcher.on('message', (topic, payload) => got.push(`${topic} ${payload}`));
    const will = { topic: 'status/dev', payload: Buffer.from('offline'), qos: 0 as const, retain: false };
    const polite = await client(url, 5, { username: 'dev', will });
    await polite.endAsync(); // DISCONNECT: no will
    const rude = await client(url, 4, { username: 'dev', will });
    await expect.poll(() => gateway.connectionsOf('dev').length).toBe(1);
    (rude.stream as unknown as { destroy(): void }).destroy(); // the network drops it
    await expect.poll(() => got).toEqual(['status/dev offline']);
    await new Promise((r) => setTimeout(r, 100));
    expect(got).toEqual(['status/dev offline']);
  });
});

describe('MQTT publishes waiting for the policy are bounded', () => {
  it('as requests are (maxPendingRequests): past it a QoS 1 PUBLISH gets PUBACK 0x97', async () => {
    const { url } = await setup({
      maxPendingRequests: 3,
      mqtt: { port: 0, publish: () => new Promise<boolean>(() => {}) },
    });
    const m = await client(url, 5, { username: 'slow' });
    const codes: number[] = [];
    m.on('packetreceive', (p) => {
      if (p.cmd === 'puback') codes.push((p as mqttPacket.IPubackPacket).reasonCode ?? 0);
    });
    for (let i = 0; i < 5; i++) m.publish('t', String(i), { qos: 1 });
    await expect.poll(() => codes).toEqual([0x97, 0x97]); // three wait for the policy, the rest are refused
  });
});

describe('MQTT last wills are bounded', () => {
  it('per will and for the gateway: past either the CONNECT is refused with 0x97; a closed connection gives its bytes back', async () => {
    const { gateway, url } = await setup({
      mqtt: { port: 0, publish: () => true, maxWill: 100, maxWillTotal: 150 },
    });
    const will = (n: number) => ({
      topic: 'w',
      payload: Buffer.alloc(n, 0x61),
      qos: 0 as const,
      retain: false,
    });
    const a = await client(url, 5, { username: 'a', will: will(79) }); // 80 bytes with its topic
    const refusal = (n: number, user: string) =>
      mqtt.connectAsync(url, { protocolVersion: 5, reconnectPeriod: 0, username: user, will: will(n) });
    await expect(refusal(79, 'b')).rejects.toMatchObject({ code: 0x97 }); // 160 in all: over 150
    await expect(refusal(150, 'c')).rejects.toMatchObject({ code: 0x97 }); // one will over 100
    await a.endAsync();
    await expect.poll(() => gateway.connectionsOf('a').length).toBe(0);
    const b = await client(url, 5, { username: 'b', will: will(79) }); // room again
    expect(b.connected).toBe(true);
  });
});

describe('MQTT refusals and hostile input', () => {
  it('QoS 2 is refused with reason 0x9B on MQTT 5; QoS 1 to a topic nobody handles gets PUBACK 0x10', async () => {
    const { gateway, url } = await setup();
    const m = await client(url, 5, { username: 'ann' });
    const reason = new Promise<number | undefined>((resolve) =>
      m.once('disconnect', (p) => resolve(p.reasonCode)),
    );
    const puback = new Promise<mqttPacket.IPubackPacket>((resolve) =>
      m.on('packetreceive', (p) => p.cmd === 'puback' && resolve(p as mqttPacket.IPubackPacket)),
    );
    m.publish('nobody/here', 'x', { qos: 1 });
    expect((await puback).reasonCode).toBe(0x10);
    m.publish('sensors/x', 'x', { qos: 2 });
    expect(await reason).toBe(0x9b);
    await expect.poll(() => gateway.stats().connections).toBe(0);
  });

  it('a first packet that is not CONNECT, garbage, and an oversize remaining length close only that connection', async () => {
    const { gateway, url } = await setup({ maxFrame: 1024 });
    const port = Number(new URL(url).port);
    const keep = await client(url, 5, { username: 'stays' });
    const notConnect = rawPeer(port);
    notConnect.socket.write(mqttPacket.generate({ cmd: 'pingreq' }));
    const garbage = rawPeer(port);
    garbage.socket.write(Buffer.from('GET / HTTP/1.1\r\nHost: example\r\nAccept: */*\r\n\r\n'));
    const big = rawPeer(port);
    // A PUBLISH header announcing 268 MB: refused at its length, before any of it is held.
    big.socket.write(Buffer.from([0x30, 0xff, 0xff, 0xff, 0x7f]));
    await Promise.all([notConnect.closed, garbage.closed, big.closed]);
    expect(notConnect.packets()).toEqual([]);
    const got = nextMessage(keep);
    await keep.subscribeAsync('still');
    await gateway.push({ labels: { all: ['still'] } }, 'x', 1);
    expect((await got).topic).toBe('still');
  });

  it('a client silent past 1.5 x its keepalive is closed with reason 0x8D; one that pings stays', async () => {
    const { url } = await setup();
    const port = Number(new URL(url).port);
    const silent = rawPeer(port);
    silent.socket.write(
      mqttPacket.generate(
        { cmd: 'connect', protocolVersion: 5, clientId: 'quiet', keepalive: 1, username: 'q', clean: true },
        { protocolVersion: 5 },
      ),
    );
    const pinging = await client(url, 5, { username: 'p', keepalive: 1 });
    const started = Date.now();
    await silent.closed;
    expect(Date.now() - started).toBeGreaterThanOrEqual(1000);
    const packets = silent.packets();
    expect(packets[0]).toMatchObject({ cmd: 'connack', reasonCode: 0 });
    expect(packets.at(-1)).toMatchObject({ cmd: 'disconnect', reasonCode: 0x8d });
    await new Promise((r) => setTimeout(r, 1000));
    expect(pinging.connected).toBe(true);
  });
});

const run = (cmd: string, args: string[]) =>
  new Promise<string>((resolve, reject) =>
    execFile(cmd, args, { timeout: 10_000 }, (err, stdout, stderr) =>
      err ? reject(new Error(`${cmd}: ${err.message} ${stderr}`)) : resolve(stdout),
    ),
  );

describe('MQTT with the mosquitto tools', () => {
  it('mosquitto_sub reads a label push on its topic; mosquitto_pub reaches a handler', async () => {
    const { gateway, url } = await setup();
    const port = new URL(url).port;
    const seen: unknown[] = [];
    gateway.handle('telemetry', (data) => void seen.push(data));
    const sub = spawn('mosquitto_sub', [
      '-h',
      '127.0.0.1',
      '-p',
      port,
      '-u',
      'eve',
      '-t',
      'alerts',
      '-C',
      '1',
      '-V',
      'mqttv5',
    ]);
    let out = '';
    sub.stdout.on('data', (d) => {
      out += d;
    });
    const exited = new Promise<number | null>((resolve) => sub.once('exit', resolve));
    await expect.poll(() => gateway.connectionsOf('eve')[0]?.labels ?? []).toEqual(['alerts']);
    await gateway.push({ labels: { any: ['alerts'] } }, 'alert', { level: 'high' });
    expect(await exited).toBe(0);
    expect(JSON.parse(out.trim())).toEqual({ level: 'high' });
    await run('mosquitto_pub', [
      '-h',
      '127.0.0.1',
      '-p',
      port,
      '-u',
      'fay',
      '-t',
      'telemetry',
      '-m',
      '{"v":3}',
      '-q',
      '1',
    ]);
    await expect.poll(() => seen).toEqual([{ v: 3 }]);
  });
});

describe('MQTT over TLS', () => {
  it("mqtts:// with the listener's certificate: connect, subscribe, a push arrives", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pylon-mqtt-tls-'));
    try {
      const tls = makeCert(dir, 'mqtt');
      const { gateway } = await setup({ mqtt: { port: 0, tls } });
      const port = gateway.addresses?.mqtt?.port;
      const m = await client(`mqtts://127.0.0.1:${port}`, 5, { username: 'tia', ca: readFileSync(tls.cert) });
      await m.subscribeAsync('secure/room');
      const got = nextMessage(m);
      await gateway.push({ labels: { all: ['secure/room'] } }, 'x', { ok: true });
      expect(await got).toMatchObject({ topic: 'secure/room', payload: '{"ok":true}' });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('pylon start --mqtt-port', () => {
  it('an MQTT device chats in a room of the built-in chat, and an admin push to the room reaches it on its topic', async () => {
    const cli = startPylon(['--mqtt-port', '0', '--store', 'memory']);
    try {
      const url = (await cli.waitFor(/MQTT on (mqtt:\/\/\S+)/))[1] as string;
      const { admin } = await addressesOf(cli);
      const m = await client(url, 5, { username: 'ann' }); // dev auth: the token is the user
      await m.subscribeAsync('room:lobby');
      const got: string[] = [];
      m.on('message', (topic, payload, packet) => got.push(`${topic} q${packet.qos} ${payload}`));
      // chat.send as a QoS 1 PUBLISH: the handler's answer is the PUBACK.
      await m.publishAsync('chat.send', JSON.stringify({ room: 'lobby', text: 'hello from a device' }), {
        qos: 1,
      });
      await expect.poll(() => got.length).toBe(1);
      expect(got[0]).toMatch(/^chat\.message q1 .*"user":"ann".*"text":"hello from a device"/);
      expect(
        await adminPush(admin, { to: { labels: { all: ['room:lobby'] } }, type: 'note', data: { n: 1 } }),
      ).toBe(200);
      await expect.poll(() => got.at(-1)).toBe('room:lobby q0 {"n":1}');
    } finally {
      cli.kill('SIGKILL');
      await cli.exited;
    }
  });
});
