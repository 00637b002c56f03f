// Pylon over HTTP with fetch (Node 18+ and browsers): no platform imports here.
import type { ClientLink, ClientLinkEvents, DialOptions } from './link.js';

const NEWLINE = 0x0a;
/** A POST not answered within this long ends the link (a lost connection: the client reconnects). */
const POST_TIMEOUT = 15_000;

/**
 * A client link over Pylon's HTTP transport (PROTOCOL.md, "HTTP"): the first message sent (the
 * hello) opens the session with `POST {base}`, whose response is read as JSON lines for as long
 * as the session lasts; what is sent after it goes out in POSTs to `{base}/send`, one at a time,
 * each carrying every message queued meanwhile. A POST the server does not take (the session
 * ended, a network error) ends the link as a lost connection: the client reconnects and resumes.
 */
export class HttpClientLink implements ClientLink {
  readonly transport = 'http';
  private session = '';
  private started = false;
  private queue: Uint8Array[] = [];
  private queuedBytes = 0;
  private posting = false;
  private ended = false;
  private closing = false;
  private closeTimer: ReturnType<typeof setTimeout> | undefined;
  private readonly abort = new AbortController();

  constructor(
    /** `http(s)://host:port/http`: the session path. */
    private readonly base: URL,
    private readonly options: DialOptions,
    private readonly events: ClientLinkEvents,
  ) {
    // Nothing to dial before the hello: the link is open for it at once.
    queueMicrotask(() => {
      if (!this.ended) events.open();
    });
  }

  get buffered(): number {
    return this.queuedBytes;
  }

  send(payload: Uint8Array, _text: boolean): void {
    if (this.ended || this.closing) return;
    if (!this.started) {
      this.started = true;
      void this.open(payload);
      return;
    }
    this.queue.push(payload);
    this.queuedBytes += payload.length;
    this.flush();
  }

  close(code: number, reason: string): void {
    if (this.ended) return;
    if (code === 1000 && (this.queue.length > 0 || this.posting)) {
      // A clean close: what was queued (the bye) goes out first, a second at most.
      this.closing = true;
      this.closeTimer = setTimeout(() => this.end(code, reason), 1000);
      return;
    }
    this.end(code, reason);
  }

  private async open(hello: Uint8Array): Promise<void> {
    let res: Response;
    try {
      res = await fetch(this.base, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/x-ndjson' },
        body: hello as Uint8Array<ArrayBuffer>,
        signal: this.abort.signal,
      });
    } catch (err) {
      this.end(1006, (err as Error).message);
      return;
    }
    if (res.status !== 200 || res.body === null) {
      const text = await res.text().catch(() => '');
      this.end(1006, `HTTP ${res.status}${text ? `: ${text.trim()}` : ''}`);
      return;
    }
    this.session = res.headers.get('x-pylon-session') ?? '';
    this.flush();
    await this.read(res.body);
  }

  private async read(body: ReadableStream<Uint8Array>): Promise<void> {
    const reader = body.getReader();
    let held: Uint8Array = new Uint8Array(0);
    const max = this.options.maxFrame;
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        let chunk = value;
        if (held.length > 0) {
          const joined = new Uint8Array(held.length + chunk.length);
          joined.set(held, 0);
          joined.set(chunk, held.length);
          chunk = joined;
        }
        let start = 0;
        for (let i = chunk.indexOf(NEWLINE); i >= 0; i = chunk.indexOf(NEWLINE, start)) {
          if (i > start && !this.ended) this.events.frame(chunk.subarray(start, i));
          start = i + 1;
        }
        held = chunk.subarray(start);
        if (held.length > max) throw new Error(`a message over ${max} bytes`);
        if (this.ended) return;
      }
      this.end(this.closing ? 1000 : 1006, 'stream ended');
    } catch (err) {
      this.end(1006, (err as Error).message);
    }
  }

  private flush(): void {
    if (this.posting || this.session === '' || this.queue.length === 0 || this.ended) return;
    const list = this.queue;
    this.queue = [];
    const body = new Uint8Array(this.queuedBytes + list.length);
    let at = 0;
    for (const m of list) {
      body.set(m, at);
      at += m.length;
      body[at++] = NEWLINE;
    }
    this.posting = true;
    void this.post(body, list.length);
  }

  private async post(body: Uint8Array, count: number): Promise<void> {
    let status = 0;
    // Cancelled with the link, and given up after POST_TIMEOUT: a hung POST would hold back every later one.
    const own = new AbortController();
    const cancel = () => own.abort();
    this.abort.signal.addEventListener('abort', cancel, { once: true });
    const timer = setTimeout(cancel, POST_TIMEOUT);
    try {
      const res = await fetch(new URL(`${this.base.pathname.replace(/\/$/, '')}/send`, this.base), {
        method: 'POST',
        headers: { 'content-type': 'application/x-ndjson', 'x-pylon-session': this.session },
        body: body as Uint8Array<ArrayBuffer>,
        signal: own.signal,
      });
      status = res.status;
      await res.arrayBuffer().catch(() => undefined);
    } catch {
      status = 0;
    } finally {
      clearTimeout(timer);
      this.abort.signal.removeEventListener('abort', cancel);
    }
    this.posting = false;
    if (this.ended) return;
    this.queuedBytes -= body.length - count;
    if (status !== 204 && status !== 202) {
      // The session is gone (404), over its rate (429), or the network failed: the server's
      // stream says why when it can; otherwise it is a lost connection.
      this.end(1006, status === 0 ? 'POST failed' : `POST answered ${status}`);
      return;
    }
    if (this.closing && this.queue.length === 0) {
      this.end(1000, 'bye');
      return;
    }
    this.flush();
  }

  private end(code: number, reason: string): void {
    if (this.ended) return;
    this.ended = true;
    if (this.closeTimer !== undefined) clearTimeout(this.closeTimer);
    this.queue = [];
    this.queuedBytes = 0;
    this.abort.abort();
    this.events.close(code, reason);
  }
}

/** The HTTP transport's URL for a ws://, wss://, http:// or https:// URL: the same host, `path` (default /http). */
export function httpUrlOf(url: URL, path = '/http'): URL {
  const out = new URL(url);
  if (out.protocol === 'ws:') out.protocol = 'http:';
  else if (out.protocol === 'wss:') out.protocol = 'https:';
  if (url.protocol === 'ws:' || url.protocol === 'wss:') out.pathname = path;
  out.search = '';
  out.hash = '';
  return out;
}
