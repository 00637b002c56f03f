import { createSocket, type Socket } from 'node:dgram';
import { afterEach, describe, expect, it } from 'vitest';
import type { CloseInfo } from '../src/framework/connection.js';
import { lineProtocol } from '../src/framework/protocol.js';
import { createServer } from '../src/framework/server.js';
import { createLogger } from '../src/log/logger.js';

const silent = createLogger('silent');
const servers: Array<{ close(): Promise<void> }> = [];
const sockets: Socket[] = [];

afterEach(async () => {
  for (const s of sockets.splice(0)) s.close();
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function eventually(pred: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error('condition not met');
    await sleep(10);
  }
}

/** A UDP client socket collecting the datagrams it gets. */
async function client(): Promise<{ socket: Socket; got: string[]; send(port: number, text: string): void }> {
  const socket = createSocket('udp4');
  sockets.push(socket);
  const got: string[] = [];
  socket.on('message', (m) => got.push(m.toString()));
  await new Promise<void>((r) => socket.bind(0, '127.0.0.1', r));
  return { socket, got, send: (port, text) => socket.send(text, port, '127.0.0.1') };
}

describe('udp://', () => {
  it('echoes datagrams with the same handler code, one connection per address:port', async () => {
    const events: string[] = [];
    const server = createServer({
      listen: 'udp://127.0.0.1:0',
      logger: silent,
      onConnect: (c) => events.push(`connect ${c.id} ${c.transport}`),
      onMessage(conn, bytes) {
        conn.send(`${conn.id}:${Buffer.from(bytes).toString()}`);
      },
    });
    servers.push(server);
    const { port } = await server.listen();
    const a = await client();
    const b = await client();
    a.send(port, 'one');
    await eventually(() => a.got.length === 1);
    b.send(port, 'two');
    a.send(port, 'three');
    await eventually(() => a.got.length === 2 && b.got.length === 1);
    expect(a.got).toEqual(['1:one', '1:three']);
    expect(b.got).toEqual(['2:two']);
    expect(events).toEqual(['connect 1 udp', 'connect 2 udp']);
    expect(server.connections.size).toBe(2);
  });

  it('reads datagrams through a protocol; a bad one closes (forgets) only that peer', async () => {
    const closes: Array<[number, CloseInfo]> = [];
    const server = createServer({
      listen: 'udp://127.0.0.1:0',
      protocol: lineProtocol({ maxLength: 16 }),
      logger: silent,
      onMessage: (conn, line) => conn.send(line.toUpperCase()),
      onClose: (c, info) => closes.push([c.id, info]),
      onError: () => {},
    });
    servers.push(server);
    const { port } = await server.listen();
    const a = await client();
    a.send(port, 'hi\nthere\n');
    await eventually(() => a.got.length === 2);
    expect(a.got).toEqual(['HI\n', 'THERE\n']);
    a.send(port, 'no newline');
    await eventually(() => closes.length === 1);
    expect(closes[0]![1].name).toBe('protocol_error');
    a.send(port, 'again\n');
    await eventually(() => a.got.length === 3);
    expect(server.connections.size).toBe(1);
    expect([...server.connections.keys()]).toEqual([2]);
  });

  it('a peer expires after idleTimeout (on the wheel); its close never closes the shared socket', async () => {
    const closes: string[] = [];
    const server = createServer({
      listen: 'udp://127.0.0.1:0',
      idleTimeout: 150,
      logger: silent,
      onMessage(conn, bytes) {
        const text = Buffer.from(bytes).toString();
        if (text === 'bye') conn.close('asked');
        else conn.send(`${conn.id}`);
      },
      onClose: (c, info) => closes.push(`${c.id} ${info.name} ${info.reason}`),
    });
    servers.push(server);
    const { port } = await server.listen();
    const a = await client();
    a.send(port, 'x');
    await eventually(() => a.got.length === 1);
    await eventually(() => closes.length === 1);
    expect(closes).toEqual([expect.stringMatching(/^1 keepalive_timeout /)]);
    a.send(port, 'bye');
    await eventually(() => closes.length === 2);
    expect(closes[1]).toBe('2 closed asked');
    a.send(port, 'still served');
    await eventually(() => a.got.length === 2);
    expect(a.got).toEqual(['1', '3']);
  });
});
