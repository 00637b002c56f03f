import { connect as netConnect, type Socket } from 'node:net';
import { createGateway, type Gateway, type GatewayOptions } from '../../src/index.js';
import { createLogger } from '../../src/log/logger.js';
import { FRAME_HEADER_SIZE, frame, frameLength } from '../../src/protocol/framing.js';
import { Reassembler } from '../../src/protocol/reassembly.js';

/** A gateway on free ports with a silent logger; closed by `stopAll`. */
export async function startGateway(options: GatewayOptions = {}): Promise<{
  gateway: Gateway;
  tcpUrl: string;
  wsUrl: string;
}> {
  const gateway = createGateway({
    tcp: { port: 0 },
    ws: { port: 0 },
    logger: createLogger('silent'),
    ...options,
  });
  running.add(gateway);
  const addr = await gateway.listen();
  return {
    gateway,
    tcpUrl: addr.tcp ? `tcp://127.0.0.1:${addr.tcp.port}` : '',
    wsUrl: addr.ws ? `ws://127.0.0.1:${addr.ws.port}/ws` : '',
  };
}

const running = new Set<Gateway>();

export async function stopAll(): Promise<void> {
  const all = [...running];
  running.clear();
  await Promise.all(all.map((g) => g.close()));
}

/** A raw TCP peer that speaks frames by hand: what a client in another language would do. */
export class RawTcp {
  readonly socket: Socket;
  readonly frames: Uint8Array[] = [];
  closed = false;
  private readonly reader = new Reassembler(FRAME_HEADER_SIZE + 16 * 1024 * 1024);
  private waiters: Array<() => void> = [];

  private constructor(socket: Socket) {
    this.socket = socket;
    socket.on('data', (chunk: Buffer) => {
      this.reader.push(chunk, bigFrame, keepFrame, this.frames);
      this.wake();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
    socket.on('error', () => {});
  }

  static open(url: string): Promise<RawTcp> {
    const u = new URL(url);
    return new Promise((resolve, reject) => {
      const s = netConnect({ host: u.hostname, port: Number(u.port) }, () => resolve(new RawTcp(s)));
      s.once('error', reject);
    });
  }

  /** Write a JSON envelope as one frame. */
  sendJson(value: unknown): void {
    this.socket.write(frame(new TextEncoder().encode(JSON.stringify(value))));
  }

  write(bytes: Uint8Array): void {
    this.socket.write(bytes);
  }

  /** The frames received so far, parsed as JSON. */
  json(): Array<Record<string, unknown>> {
    return this.frames.map((f) => JSON.parse(new TextDecoder().decode(f)) as Record<string, unknown>);
  }

  /** Wait until `predicate` holds over what was received (or the socket closed). */
  async until(predicate: (self: RawTcp) => boolean, ms = 5000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!predicate(this)) {
      if (Date.now() > deadline)
        throw new Error(`condition not met in ${ms} ms; got ${JSON.stringify(this.json())}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 50);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  waitClosed(ms = 5000): Promise<void> {
    return this.until((s) => s.closed, ms);
  }

  destroy(): void {
    this.socket.destroy();
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const fn of w) fn();
  }
}

export function once<T>(subscribe: (resolve: (value: T) => void) => void, ms = 5000): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`event not seen in ${ms} ms`)), ms);
    subscribe((v) => {
      clearTimeout(t);
      resolve(v);
    });
  });
}

function bigFrame(buffer: Uint8Array): number {
  return frameLength(buffer, 16 * 1024 * 1024);
}

function keepFrame(packet: Uint8Array, frames: Uint8Array[]): boolean {
  frames.push(packet.slice(FRAME_HEADER_SIZE));
  return true;
}

/** Waits until `cond` holds, polling every 10 ms; throws after `ms`. */
export async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`condition not met in ${ms} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
