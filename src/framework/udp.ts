import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import type { AddressInfo } from 'node:net';
import { isIPv6 } from 'node:net';
import { ProtocolError } from '../protocol/errors.js';
import { Connection } from './connection.js';
import type { Listener, ServerCore } from './transport.js';

/**
 * udp:// — datagrams in and out with the same handler code as the stream transports. A peer
 * (address:port) gets a connection on its first datagram and is forgotten after `idleTimeout`
 * without one (on the timing wheel), or when the application closes it. Each datagram is read
 * with `protocol.input`/`decode` (one or more whole packets; a partial packet is a protocol
 * error), or handed over as its bytes when there is no protocol. Closing a peer never closes the
 * shared socket; only `server.close()` does.
 */

export class UdpConnection<In, Out> extends Connection<In, Out> {
  readonly transport = 'udp' as const;

  constructor(
    id: number,
    readonly key: string,
    address: string,
    port: number,
    readonly endpoint: UdpEndpoint<In, Out>,
  ) {
    super(id, address, port, endpoint.core);
  }

  /** Datagrams are not queued per peer. */
  get buffered(): number {
    return 0;
  }

  write(bytes: Uint8Array): void {
    this.endpoint.send(bytes, this.remotePort, this.peerAddress);
  }

  protected endWire(): void {
    this.endpoint.forget(this);
  }

  protected destroyWire(): void {
    this.endpoint.forget(this);
  }

  // A datagram socket cannot push back on one peer: while paused, its datagrams are dropped.
  protected pauseWire(): void {}
  protected resumeWire(): void {}
}

export class UdpEndpoint<In, Out> {
  readonly peers = new Map<string, UdpConnection<In, Out>>();
  /** Datagrams dropped: unknown peers over maxConnections, paused peers. */
  dropped = 0;

  constructor(
    readonly socket: Socket,
    readonly core: ServerCore<In, Out>,
  ) {}

  send(bytes: Uint8Array, port: number, address: string): void {
    // Errors (EMSGSIZE, unreachable) come to the socket's 'error' listener.
    this.socket.send(bytes, port, address);
  }

  forget(c: UdpConnection<In, Out>): void {
    if (this.peers.get(c.key) === c) this.peers.delete(c.key);
    this.core.closedWire(c);
  }

  receive(datagram: Buffer, rinfo: RemoteInfo): void {
    const core = this.core;
    const key = `${rinfo.address}:${rinfo.port}`;
    let c = this.peers.get(key);
    if (c === undefined) {
      if (core.stopping || core.connectionCount >= core.maxConnections) {
        core.refused();
        this.dropped++;
        return;
      }
      c = new UdpConnection(core.nextId(), key, rinfo.address, rinfo.port, this);
      this.peers.set(key, c);
      core.opened(c);
    }
    if (c.state !== 'open') return;
    if (c.recvPaused) {
      this.dropped++;
      return;
    }
    core.touch(c);
    const protocol = core.protocol;
    if (protocol === undefined) {
      core.deliver(c, datagram as unknown as In);
      return;
    }
    try {
      let off = 0;
      while (off < datagram.length && c.state === 'open') {
        const view = off === 0 ? datagram : datagram.subarray(off);
        const n = protocol.input(view, c);
        if (!Number.isSafeInteger(n) || n <= 0 || n > view.length) {
          throw new ProtocolError(
            n > view.length
              ? `datagram holds ${view.length} bytes of a ${n}-byte packet`
              : `${protocol.name}.input returned ${String(n)} for a datagram`,
          );
        }
        off += n;
        core.deliver(c, protocol.decode(n === view.length ? view : view.subarray(0, n), c));
      }
    } catch (err) {
      core.protocolError(c, err);
    }
  }
}

const kEndpoint = Symbol('pylon.framework.udp');
type EndpointSocket = Socket & { [kEndpoint]: UdpEndpoint<unknown, unknown> };

function onDatagram(this: EndpointSocket, msg: Buffer, rinfo: RemoteInfo): void {
  this[kEndpoint].receive(msg, rinfo);
}

function onSocketError(this: EndpointSocket, err: Error): void {
  // A failed send (EMSGSIZE, ICMP unreachable) must not close the shared socket.
  this[kEndpoint].core.warn(err, 'udp socket error');
}

/** Binds a UDP socket; its peers become UdpConnections of `core`. */
export function listenUdp<In, Out>(
  core: ServerCore<In, Out>,
  options: { host: string; port: number },
): Promise<Listener & { endpoint: UdpEndpoint<In, Out> }> {
  const socket = createSocket({ type: isIPv6(options.host) ? 'udp6' : 'udp4' });
  const endpoint = new UdpEndpoint(socket, core);
  (socket as EndpointSocket)[kEndpoint] = endpoint as UdpEndpoint<unknown, unknown>;
  return new Promise((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(options.port, options.host, () => {
      socket.off('error', reject);
      socket.on('error', onSocketError);
      socket.on('message', onDatagram);
      resolve({
        endpoint,
        address: socket.address() as AddressInfo,
        stop: () =>
          new Promise<void>((done) => {
            for (const c of [...endpoint.peers.values()])
              c.closeWith({ code: 4000, name: 'shutdown', reason: 'server shutting down' });
            socket.close(() => done());
          }),
      });
    });
  });
}
