import { MqttCodec } from '../mqtt/codec.js';
import { mqttPacketLength } from '../mqtt/length.js';
import { setBudgetLimits } from '../net/budget.js';
import { HttpTransport, type PostResult } from '../net/http-transport.js';
import type { LinkSink } from '../net/link.js';
import { trustSet } from '../net/proxy.js';
import type { SocketLink } from '../net/socket-link.js';
import { StreamListener } from '../net/stream.js';
import { WsListener } from '../net/ws.js';
import { FRAME_HEADER_SIZE, frameLength } from '../protocol/framing.js';
import { SUBPROTOCOLS } from '../protocol/index.js';
import type { Connection } from './connection.js';
import type { ResolvedOptions } from './options.js';
import type { GatewayAddresses } from './types.js';

/** Whether an MQTT link's connection has not sent its CONNECT yet. */
function awaitingConnect(link: SocketLink): boolean {
  const codec = (link.owner as Connection | undefined)?.codec;
  return codec instanceof MqttCodec && codec.awaitingConnect;
}

/** The gateway's listeners, built from its options: TCP and/or WebSocket, one sink. */
export class Listeners {
  private tcp: StreamListener | undefined;
  private mqtt: StreamListener | undefined;
  private ws: WsListener | undefined;
  private http: HttpTransport | undefined;

  constructor(
    private readonly o: ResolvedOptions,
    private readonly sink: LinkSink,
    private readonly node: {
      nodeId: string;
      forward: ((node: string, session: string, messages: Uint8Array[]) => Promise<void>) | undefined;
    },
  ) {}

  /** Messages POSTed for an HTTP session of this node (at another node of the cluster). */
  post(session: string, messages: readonly Uint8Array[]): PostResult {
    return this.http?.post(session, messages) ?? 'unknown';
  }

  /** Open HTTP streams. */
  get httpStreams(): number {
    return this.http?.streams ?? 0;
  }

  async start(): Promise<GatewayAddresses> {
    const o = this.o;
    if (!o.tcp && !o.ws && !o.mqtt)
      throw new Error('no listener configured: set options.tcp, options.ws and/or options.mqtt');
    setBudgetLimits(o.budgets);
    const common = {
      sink: this.sink,
      highWaterMark: o.highWaterMark,
      maxBuffered: o.maxBuffered,
      closeTimeout: o.closeTimeout,
    };
    const addresses: GatewayAddresses = {};
    if (o.tcp) {
      const maxFrame = o.maxFrame;
      this.tcp = new StreamListener({
        ...common,
        host: o.tcp.host,
        port: o.tcp.port,
        ...(o.tcp.tls ? { tls: o.tcp.tls } : {}),
        maxPacket: FRAME_HEADER_SIZE + maxFrame,
        length: (buffer: Uint8Array, _link: SocketLink) => frameLength(buffer, maxFrame),
        lengthPrefix: true,
      });
      addresses.tcp = await this.tcp.listen();
    }
    if (o.mqtt) {
      // MQTT's own framing (a remaining-length varint): whole packets to the sink, which reads
      // them with the connection's MqttCodec. The largest packet is maxFrame plus its header.
      const maxPacket = 5 + o.maxFrame;
      this.mqtt = new StreamListener({
        ...common,
        host: o.mqtt.host,
        port: o.mqtt.port,
        ...(o.mqtt.tls ? { tls: o.mqtt.tls } : {}),
        maxPacket,
        length: (buffer: Uint8Array, link: SocketLink) =>
          mqttPacketLength(buffer, maxPacket, awaitingConnect(link)),
        lengthPrefix: false,
        protocol: 'mqtt',
      });
      addresses.mqtt = await this.mqtt.listen();
    }
    if (o.ws) {
      const h = o.ws.http;
      this.http =
        h === undefined
          ? undefined
          : new HttpTransport({
              ...common,
              path: h.path,
              streamPath: h.streamPath,
              maxMessage: o.maxFrame,
              maxPost: h.maxPost,
              postRate: h.postRate,
              maxStreams: h.maxStreams,
              maxWaiting: h.maxPost,
              trustedProxies: trustSet(o.trustedProxies),
              nodeId: this.node.nodeId,
              ...(this.node.forward ? { forward: this.node.forward } : {}),
            });
      this.ws = new WsListener({
        ...common,
        host: o.ws.host,
        port: o.ws.port,
        path: o.ws.path,
        ...(o.ws.tls ? { tls: o.ws.tls } : {}),
        ...(o.ws.httpHandler ? { httpHandler: o.ws.httpHandler } : {}),
        ...(this.http ? { httpTransport: this.http } : {}),
        maxMessage: o.maxFrame,
        maxPacket: 14 + o.maxFrame,
        // The JSON codec decodes text with a fatal TextDecoder: invalid UTF-8 is a protocol error
        // without a second check of every message.
        validateUtf8: false,
        protocols: Object.keys(SUBPROTOCOLS),
        handshakeTimeout: o.handshakeTimeout,
        trustedProxies: trustSet(o.trustedProxies),
        ...(o.ws.compression ? { compression: o.ws.compression } : {}),
      });
      addresses.ws = await this.ws.listen();
    }
    return addresses;
  }

  reloadTls(): void {
    this.tcp?.reloadTls();
    this.mqtt?.reloadTls();
    this.ws?.reloadTls();
  }

  /** Stop accepting; open connections stay. */
  async stop(): Promise<void> {
    await Promise.all([this.tcp?.stop(), this.mqtt?.stop(), this.ws?.stop()]);
  }
}
