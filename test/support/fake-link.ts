import type { Link, LinkInfo, TransportName } from '../../src/net/link.js';
import type { OutFrame } from '../../src/net/out-frame.js';

/**
 * A Link with no socket: what a sink wrote, and whether it closed, paused or destroyed it.
 * For unit tests of what sits on the socket layer (the framework's protocols, connections).
 */
export class FakeLink implements Link {
  owner: unknown = undefined;
  batching = false;
  buffered = 0;
  readonly sent: Array<{ bytes: Uint8Array; text: boolean }> = [];
  closed: { code: number; reason: string } | undefined = undefined;
  destroyed = false;
  paused = false;
  readonly peerAddress: string;
  readonly remotePort = 4000;

  constructor(
    readonly transport: TransportName = 'tcp',
    readonly remoteAddress = '10.0.0.9',
  ) {
    this.peerAddress = remoteAddress;
  }

  get info(): LinkInfo {
    return {
      transport: this.transport,
      remoteAddress: this.remoteAddress,
      remotePort: this.remotePort,
      headers: {},
      url: '',
      query: new URLSearchParams(),
      protocol: '',
    };
  }

  send(payload: Uint8Array, text: boolean): boolean {
    this.sent.push({ bytes: payload, text });
    return true;
  }

  sendFrame(f: OutFrame): boolean {
    return this.send(f.payload, f.text);
  }

  close(code: number, reason: string): void {
    this.closed ??= { code, reason };
  }

  destroy(): void {
    this.destroyed = true;
  }

  pause(): void {
    this.paused = true;
  }

  resume(): void {
    this.paused = false;
  }
}
