import type { ClientLink, ClientLinkEvents, Dialer, DialOptions } from './link.js';
import { HttpClientLink, httpUrlOf } from './transport-http.js';

/** The transports a client may use on a ws:// or wss:// URL, in the order it tries them. */
export type TransportChoice = 'websocket' | 'http';

export interface FallbackOptions {
  /** Default ['websocket', 'http']: WebSocket, and Pylon over HTTP when WebSocket fails. */
  transports: readonly TransportChoice[];
  /** A transport that has not opened within this long is given up for the next one, ms. Default 3 s. */
  transportTimeout: number;
  /** The server's HTTP transport path (its ws.http.path). Default "/http". */
  httpPath: string;
}

/**
 * A dialer that tries the transports in order, as socket.io and Centrifugo's SDKs do: on a
 * ws:// URL WebSocket first, and when its upgrade is refused, fails or does not open within
 * `transportTimeout`, the HTTP transport on the same host. Which one is in use is the link's
 * `transport`. An http:// URL dials the HTTP transport alone; tcp:// is dialed as it is.
 */
export function fallbackDialer(dial: Dialer, o: FallbackOptions): Dialer {
  return (url, options, events) => {
    const ws = url.protocol === 'ws:' || url.protocol === 'wss:';
    if (url.protocol === 'http:' || url.protocol === 'https:') {
      if (options.codec !== 'json')
        throw new Error(
          `${url.protocol}// carries JSON only: the codec must be "json", not "${options.codec}"`,
        );
      return new HttpClientLink(url, options, events);
    }
    if (!ws) return dial(url, options, events);
    // Binary codecs do not travel over the HTTP transport (JSON lines).
    const order = o.transports.filter((t) => t !== 'http' || options.codec === 'json');
    if (order.length === 1 && order[0] === 'websocket') return dial(url, options, events);
    return new FallbackLink(url, options, events, order, dial, o);
  };
}

/**
 * One link over the transports in order. A transport counts as working once it is known to reach
 * a Pylon server: WebSocket when it opens, HTTP when the first message of its session arrives
 * (an HTTP link "opens" at once, its hello being the body of the POST that may then fail). Until
 * then what the client sent is held, and when a transport fails the next one is dialed and sent
 * the same messages, the hello first: the client sees one open and one link.
 */
class FallbackLink implements ClientLink {
  private current: ClientLink | undefined;
  private currentName: TransportChoice | undefined;
  /** The client was told the link is open (it sent its hello then). */
  private shown = false;
  /** The current transport reached the server: nothing more is held, a failure is a lost connection. */
  private working = false;
  /** What the client sent before the transport was working, to send again on the next one. */
  private held: Array<[Uint8Array, boolean]> = [];
  private next = 0;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private closed = false;

  constructor(
    private readonly url: URL,
    private readonly options: DialOptions,
    private readonly events: ClientLinkEvents,
    private readonly order: readonly TransportChoice[],
    private readonly dial: Dialer,
    private readonly o: FallbackOptions,
  ) {
    this.tryNext(1006, 'no transport to try');
  }

  get transport(): string | undefined {
    return this.currentName;
  }

  get buffered(): number {
    return this.current?.buffered ?? 0;
  }

  send(payload: Uint8Array, text: boolean): void {
    if (!this.working) this.held.push([payload, text]);
    this.current?.send(payload, text);
  }

  close(code: number, reason: string): void {
    this.closed = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    const link = this.current;
    if (link === undefined) {
      this.events.close(code, reason);
      return;
    }
    link.close(code, reason);
  }

  /** The current transport reached the server. */
  private works(): void {
    if (this.working) return;
    this.working = true;
    this.held = [];
    if (this.timer !== undefined) clearTimeout(this.timer);
  }

  private tryNext(code: number, reason: string): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    const name = this.order[this.next++];
    if (name === undefined || this.closed) {
      this.current = undefined;
      this.events.close(code, reason);
      return;
    }
    this.currentName = name;
    let link: ClientLink | undefined;
    const own: ClientLinkEvents = {
      open: () => {
        if (link !== this.current) return;
        if (this.shown) {
          // The client saw an earlier transport open: what it sent there goes out here.
          for (const [payload, text] of this.held) link?.send(payload, text);
        }
        if (name === 'websocket') this.works();
        if (!this.shown) {
          this.shown = true;
          this.events.open();
        }
      },
      frame: (payload) => {
        if (link !== this.current) return;
        this.works();
        this.events.frame(payload);
      },
      close: (c, r) => {
        if (link !== this.current) return;
        // Failed before it reached the server: the next transport, unless the client is closing.
        if (!this.working && !this.closed) this.tryNext(c, r);
        else this.events.close(c, r);
      },
    };
    try {
      link =
        name === 'http'
          ? new HttpClientLink(httpUrlOf(this.url, this.o.httpPath), this.options, own)
          : this.dial(this.url, this.options, own);
    } catch (err) {
      this.tryNext(1006, (err as Error).message);
      return;
    }
    this.current = link;
    if (this.next < this.order.length) {
      this.timer = setTimeout(() => {
        if (this.working || link !== this.current) return;
        // Given up: its close (if it ever comes) is ignored, since it is no longer current.
        this.current = undefined;
        link?.close(4003, 'transport timeout');
        this.tryNext(1006, `${name} did not open in ${this.o.transportTimeout} ms`);
      }, this.o.transportTimeout);
    }
  }
}
