import { createServer, type Socket } from 'node:net';
import { ProtocolError } from '../protocol/errors.js';
import { listenOn } from '../transport/listen.js';
import { Connection } from './connection.js';
import type { Listener, ServerCore } from './transport.js';

/**
 * Byte-stream connections (tcp://, line://, length://, http://): the protocol's `input` finds
 * packet boundaries in what the socket delivers. Listeners are module-level functions that find
 * their connection through a symbol-keyed field: a connection costs no closures.
 */

const kConn = Symbol('pylon.framework.conn');
type ConnSocket = Socket & { [kConn]: StreamConnection<unknown, unknown> };

export class StreamConnection<In, Out> extends Connection<In, Out> {
  readonly transport = 'tcp' as const;
  /** @internal Unread bytes (chunks), `size` bytes in all. */
  parts: Buffer[] = [];
  /** @internal */
  size = 0;
  /** @internal Length of the packet being received, once input told it (0: unknown). */
  want = 0;
  /** @internal Inside the read loop (resumeRecv from a handler must not re-enter it). */
  busy = false;
  /** @internal The socket error that ended the connection, if any. */
  failure: Error | undefined = undefined;

  constructor(
    id: number,
    readonly socket: Socket,
    readonly core: ServerCore<In, Out>,
  ) {
    super(id, socket.remoteAddress ?? '', socket.remotePort ?? 0, core);
  }

  get buffered(): number {
    return this.socket.writableLength;
  }

  write(bytes: Uint8Array): void {
    if (this.socket.writable) this.socket.write(bytes);
  }

  protected endWire(): void {
    // Read on and discard (state is no longer open) so the peer's FIN is seen and 'close' comes.
    this.parts = [];
    this.size = 0;
    this.socket.resume();
    this.socket.end();
  }

  protected destroyWire(): void {
    this.socket.destroy();
  }

  protected pauseWire(): void {
    this.socket.pause();
  }

  protected resumeWire(): void {
    this.socket.resume();
  }
}

/** Feeds one chunk: buffers it until the packet `input` announced is whole, then reads packets. */
export function feed<In, Out>(c: StreamConnection<In, Out>, chunk: Buffer): void {
  if (c.want > 0 && c.size + chunk.length < c.want) {
    c.parts.push(chunk);
    c.size += chunk.length;
    return;
  }
  let buf = chunk;
  if (c.size > 0) {
    c.parts.push(chunk);
    buf = Buffer.concat(c.parts, c.size + chunk.length);
  }
  c.parts = [];
  c.size = 0;
  read(c, buf);
}

/** Reads what was buffered while receiving was paused. */
export function readBuffered<In, Out>(c: StreamConnection<In, Out>): void {
  if (c.busy || c.size === 0) return;
  const buf = c.parts.length === 1 ? c.parts[0]! : Buffer.concat(c.parts, c.size);
  c.parts = [];
  c.size = 0;
  read(c, buf);
}

function read<In, Out>(c: StreamConnection<In, Out>, buf: Buffer): void {
  const core = c.core;
  const protocol = core.protocol;
  let off = 0;
  c.busy = true;
  try {
    while (off < buf.length) {
      if (c.state !== 'open') return; // closed by a handler: the rest is dropped
      if (c.recvPaused) break;
      const view = off === 0 ? buf : buf.subarray(off);
      let n = c.want;
      if (n === 0) {
        n = protocol === undefined ? view.length : protocol.input(view, c);
        if (n === 0) break;
        if (!Number.isSafeInteger(n) || n < 0) {
          throw new ProtocolError(`${protocol?.name ?? 'raw'}.input returned ${String(n)}`);
        }
        if (n > core.maxPacket) {
          throw new ProtocolError(
            `packet of ${n} bytes is larger than the maximum of ${core.maxPacket}`,
            'FRAME_TOO_LARGE',
          );
        }
        if (n > view.length) {
          c.want = n;
          break;
        }
      }
      c.want = 0;
      off += n;
      const packet = n === view.length ? view : view.subarray(0, n);
      core.deliver(c, protocol === undefined ? (packet as In) : protocol.decode(packet, c));
    }
    const rest = buf.length - off;
    if (rest > 0) {
      if (c.want === 0 && rest > core.maxPacket) {
        throw new ProtocolError(
          `more than ${core.maxPacket} bytes without a whole packet`,
          'FRAME_TOO_LARGE',
        );
      }
      c.parts.push(off === 0 ? buf : buf.subarray(off));
      c.size = rest;
    }
  } catch (err) {
    c.parts = [];
    c.size = 0;
    core.protocolError(c, err);
  } finally {
    c.busy = false;
  }
}

function onData(this: ConnSocket, chunk: Buffer): void {
  const c = this[kConn];
  if (c.state !== 'open') return;
  c.core.touch(c);
  feed(c, chunk);
}

function onDrain(this: ConnSocket): void {
  const c = this[kConn];
  if (c.overWater && c.socket.writableLength < c.core.highWaterMark) c.core.drained(c);
}

function onEnd(this: ConnSocket): void {
  // The peer closed its side; allowHalfOpen is off, so Node ends ours once writes are flushed.
}

function onError(this: ConnSocket, err: Error): void {
  const c = this[kConn];
  c.failure ??= err;
}

function onClose(this: ConnSocket): void {
  const c = this[kConn];
  c.core.closedWire(c, c.failure);
}

export interface StreamListenOptions {
  host: string;
  port: number;
  /** Written to a socket refused at maxConnections before it is closed (http: a 503). */
  refusal?: Uint8Array;
}

/** Listens for TCP connections; each becomes a StreamConnection of `core`. */
export async function listenStream<In, Out>(
  core: ServerCore<In, Out>,
  options: StreamListenOptions,
): Promise<Listener> {
  const server = createServer({ noDelay: true, highWaterMark: core.highWaterMark }, (socket) => {
    if (core.stopping || core.connectionCount >= core.maxConnections) {
      core.refused();
      socket.on('error', ignore);
      if (options.refusal && !core.stopping) socket.end(options.refusal);
      else socket.destroy();
      return;
    }
    const c = new StreamConnection(core.nextId(), socket, core);
    (socket as ConnSocket)[kConn] = c as StreamConnection<unknown, unknown>;
    socket.on('data', onData);
    socket.on('drain', onDrain);
    socket.on('end', onEnd);
    socket.on('error', onError);
    socket.on('close', onClose);
    core.opened(c);
  });
  const address = await listenOn(server, options.port, options.host);
  return {
    address,
    stop: () => {
      // close() stops accepting at once; its callback would wait for every connection.
      server.close();
      return Promise.resolve();
    },
  };
}

function ignore(): void {}
