// The browser's WebSocket as a client link: no Node built-ins here.
import type { ClientLink, ClientLinkEvents, Dialer } from './link.js';

class BrowserWsLink implements ClientLink {
  readonly transport = 'websocket';
  private readonly ws: WebSocket;
  private closing = false;
  private reported = false;

  constructor(
    url: URL,
    protocol: string,
    private readonly events: ClientLinkEvents,
  ) {
    this.ws = new WebSocket(url.toString(), [protocol]);
    this.ws.binaryType = 'arraybuffer';
    this.ws.onopen = () => events.open();
    this.ws.onmessage = (e: MessageEvent) => {
      const d = e.data;
      events.frame(typeof d === 'string' ? encoder.encode(d) : new Uint8Array(d as ArrayBuffer));
    };
    this.ws.onclose = (e: CloseEvent) =>
      this.report(this.closing && e.code === 1005 ? 1000 : e.code, e.reason);
  }

  get buffered(): number {
    return this.ws.bufferedAmount;
  }

  send(payload: Uint8Array, text: boolean): void {
    if (this.ws.readyState !== WebSocket.OPEN) return;
    if (text) this.ws.send(decoder.decode(payload));
    else this.ws.send(payload as Uint8Array<ArrayBuffer>);
  }

  close(code: number, reason: string): void {
    this.closing = true;
    // Browsers only let scripts close with 1000 or 3000-4999.
    this.ws.close(code === 1000 || (code >= 3000 && code <= 4999) ? code : 1000, reason);
    // A browser reports the close only when the closing handshake ends, which on a dead network
    // is when the network comes back: the client learns it now and can start reconnecting.
    this.report(code, reason);
  }

  private report(code: number, reason: string): void {
    if (this.reported) return;
    this.reported = true;
    this.events.close(code, reason);
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Dials ws:// and wss:// URLs with the browser's WebSocket; the token goes in ?token=. */
export const browserDialer: Dialer = (url, options, events) => {
  if (url.protocol !== 'ws:' && url.protocol !== 'wss:') {
    throw new TypeError(
      `browsers can only dial ws://, wss://, http:// or https:// URLs, not "${url.protocol}"`,
    );
  }
  const target = new URL(url);
  if (options.token !== undefined && !target.searchParams.has('token'))
    target.searchParams.set('token', options.token);
  return new BrowserWsLink(target, `pylon.v1.${options.codec}`, events);
};
