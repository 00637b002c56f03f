import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import type { AddressInfo } from 'node:net';
import { isIPv6 } from 'node:net';
import { ProtocolError } from '../protocol/errors.js';
import { type PacketLength, Reassembler } from '../protocol/reassembly.js';
import type { Link, LinkInfo, LinkSink } from './link.js';
import { type OutFrame, OutFrameBatch } from './out-frame.js';

export interface UdpListenOptions {
  sink: LinkSink;
  host: string;
  port: number;
  /** Where a packet ends inside a datagram (undefined: a datagram is one packet). */
  length: PacketLength<Link> | undefined;
  /** Largest packet. */
  maxPacket: number;
}

const NO_HEADERS = {};
const NO_QUERY = new URLSearchParams();

/**
 * A UDP peer (address:port) as a link: it gets one on its first datagram (if the sink admits
 * it) and keeps it until the sink closes it (the framework forgets an idle peer). Datagrams are
 * not queued per peer (`buffered` is 0, `send` always true); a paused peer's datagrams are
 * dropped (counted): a datagram socket cannot push back on one peer. Closing a peer never
 * closes the shared socket.
 */
export class UdpLink implements Link {
  readonly transport = 'udp' as const;
  owner: unknown = undefined;
  batching = false;
  readonly buffered = 0;
  paused = false;
  closed = false;
  readonly peerAddress: string;

  constructor(
    readonly key: string,
    readonly remoteAddress: string,
    readonly remotePort: number,
    readonly endpoint: UdpListener,
  ) {
    this.peerAddress = remoteAddress;
  }

  send(payload: Uint8Array): boolean {
    if (this.closed) return false;
    // Errors (EMSGSIZE, unreachable) come to the socket's 'error' listener.
    this.endpoint.socket?.send(payload, this.remotePort, this.remoteAddress);
    return true;
  }

  sendFrame(f: OutFrame): boolean {
    // A datagram per message: a batch's parts go one by one.
    if (f instanceof OutFrameBatch) {
      for (const part of f.parts) if (!this.send(part.payload)) return false;
      return true;
    }
    return this.send(f.payload);
  }

  close(code: number, reason: string): void {
    this.endpoint.forget(this, code, reason);
  }

  destroy(): void {
    this.endpoint.forget(this, 1000, 'destroyed');
  }

  pause(): void {
    this.paused = true;
  }

  resume(): void {
    this.paused = false;
  }
}

/** Binds a UDP socket; its peers become UdpLinks of the sink. */
export class UdpListener {
  socket: Socket | undefined;
  readonly peers = new Map<string, UdpLink>();
  /** Datagrams dropped: refused peers, paused peers. */
  dropped = 0;
  /** Splits a datagram into packets with the one reassembly loop; a rest is a protocol error. */
  private readonly reader: Reassembler;

  constructor(private readonly options: UdpListenOptions) {
    this.reader = new Reassembler(options.maxPacket);
  }

  listen(): Promise<AddressInfo> {
    const o = this.options;
    const socket = createSocket({ type: isIPv6(o.host) ? 'udp6' : 'udp4' });
    this.socket = socket;
    return new Promise((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(o.port, o.host, () => {
        socket.off('error', reject);
        // A failed send (EMSGSIZE, ICMP unreachable) must not close the shared socket.
        socket.on('error', ignore);
        socket.on('message', (m: Buffer, r: RemoteInfo) => this.receive(m, r));
        resolve(socket.address() as AddressInfo);
      });
    });
  }

  /** Closes every peer (with `shutdown` unless told), then the socket. */
  async stop(code = 4000, reason = 'server shutting down'): Promise<void> {
    for (const link of [...this.peers.values()]) this.forget(link, code, reason);
    const socket = this.socket;
    this.socket = undefined;
    if (socket) await new Promise<void>((done) => socket.close(() => done()));
  }

  /** @internal */
  deliver(link: UdpLink, packet: Uint8Array): void {
    this.options.sink.onPacket(link, packet, false);
  }

  /** @internal */
  forget(link: UdpLink, code: number, reason: string): void {
    if (link.closed) return;
    link.closed = true;
    if (this.peers.get(link.key) === link) this.peers.delete(link.key);
    this.options.sink.onClose(link, code, reason);
  }

  private receive(datagram: Buffer, rinfo: RemoteInfo): void {
    const o = this.options;
    const key = `${rinfo.address}:${rinfo.port}`;
    let link = this.peers.get(key);
    if (link === undefined) {
      if (o.sink.admit({ transport: 'udp', remoteAddress: rinfo.address, headers: NO_HEADERS }) !== true) {
        this.dropped++;
        return;
      }
      link = new UdpLink(key, rinfo.address, rinfo.port, this);
      this.peers.set(key, link);
      const info: LinkInfo = {
        transport: 'udp',
        remoteAddress: rinfo.address,
        remotePort: rinfo.port,
        headers: NO_HEADERS,
        url: '',
        query: NO_QUERY,
        protocol: '',
      };
      o.sink.onOpen(link, info);
    }
    if (link.closed) return;
    if (link.paused) {
      this.dropped++;
      return;
    }
    if (o.length === undefined) {
      o.sink.onPacket(link, datagram, false);
      return;
    }
    try {
      this.reader.push(datagram, o.length, emit, link);
      if (this.reader.held > 0) {
        const n = this.reader.held;
        this.reader.clear();
        throw new ProtocolError(`a datagram ends with ${n} bytes of an unfinished packet`);
      }
    } catch (err) {
      this.reader.clear();
      o.sink.onPacketError(link, err as Error);
    }
  }
}

function emit(packet: Uint8Array, link: UdpLink): boolean {
  if (link.closed) return true;
  link.endpoint.deliver(link, packet);
  return true;
}

function ignore(): void {}
