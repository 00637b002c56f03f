import { SUBPROTOCOLS } from '../protocol/index.js';
import type { TimingWheel } from '../timer/wheel.js';
import type { LinkSink } from '../transport/link.js';
import { TcpTransport } from '../transport/tcp.js';
import { WsTransport } from '../transport/ws.js';
import type { ResolvedOptions } from './options.js';
import type { GatewayAddresses } from './types.js';

/** The gateway's listeners, built from its options: TCP and/or WebSocket, same sink. */
export class Listeners {
  private tcp: TcpTransport | undefined;
  private ws: WsTransport | undefined;

  constructor(
    private readonly o: ResolvedOptions,
    private readonly sink: LinkSink,
    private readonly wheel: TimingWheel,
  ) {}

  async start(): Promise<GatewayAddresses> {
    const o = this.o;
    if (!o.tcp && !o.ws) throw new Error('no listener configured: set options.tcp and/or options.ws');
    const addresses: GatewayAddresses = {};
    if (o.tcp) {
      this.tcp = new TcpTransport({
        sink: this.sink,
        maxFrame: o.maxFrame,
        highWaterMark: o.highWaterMark,
        closeTimeout: o.closeTimeout,
        tls: o.tcp.tls,
        after: (ms, fn, link) => {
          this.wheel.schedule(ms, fn, link);
        },
      });
      addresses.tcp = await this.tcp.listen(o.tcp.port, o.tcp.host);
    }
    if (o.ws) {
      this.ws = new WsTransport({
        sink: this.sink,
        path: o.ws.path,
        maxFrame: o.maxFrame,
        highWaterMark: o.highWaterMark,
        handshakeTimeout: o.handshakeTimeout,
        protocols: Object.keys(SUBPROTOCOLS),
        httpHandler: o.ws.httpHandler,
        tls: o.ws.tls,
      });
      addresses.ws = await this.ws.listen(o.ws.port, o.ws.host);
    }
    return addresses;
  }

  reloadTls(): void {
    this.tcp?.reloadTls();
    this.ws?.reloadTls();
  }

  /** Stop accepting; open connections stay. */
  async stop(): Promise<void> {
    await Promise.all([this.tcp?.stop(), this.ws?.stop()]);
  }
}
