/**
 * A client of Pylon's HTTP transport written from PROTOCOL.md with nothing but fetch: what a
 * client in another language would do. Opens a session (POST with the hello, read the stream),
 * posts envelopes, keeps what arrived (as parsed JSON, with the SSE event ids).
 */
export class HttpPeer {
  readonly messages: Array<Record<string, unknown>> = [];
  /** The SSE `id:` in force for each message, in step with `messages` (SSE only). */
  readonly ids: string[] = [];
  session = '';
  status = 0;
  ended = false;
  private waiters: Array<() => void> = [];
  private readonly abort = new AbortController();

  private constructor(
    readonly base: string,
    readonly format: 'sse' | 'ndjson',
  ) {}

  /** `POST {base}/http` with `hello` (an envelope) as the body; or, with `get`, `GET {base}{get}` (a one-way stream). */
  static async open(
    base: string,
    options: { hello?: unknown; format?: 'sse' | 'ndjson'; get?: string; headers?: Record<string, string> },
  ): Promise<HttpPeer> {
    const format = options.format ?? 'sse';
    const peer = new HttpPeer(base, format);
    const headers: Record<string, string> = {
      accept: format === 'sse' ? 'text/event-stream' : 'application/x-ndjson',
      ...options.headers,
    };
    const res = await fetch(options.get ? base + options.get : `${base}/http`, {
      method: options.get ? 'GET' : 'POST',
      headers,
      body: options.get ? undefined : JSON.stringify(options.hello ?? { kind: 'hello', data: {} }),
      signal: peer.abort.signal,
    });
    peer.status = res.status;
    peer.session = res.headers.get('x-pylon-session') ?? '';
    if (res.body === null || res.status !== 200) {
      peer.ended = true;
      peer.error = await res.text();
      return peer;
    }
    void peer.read(res.body);
    return peer;
  }

  error = '';

  private async read(body: ReadableStream<Uint8Array>): Promise<void> {
    const decoder = new TextDecoder();
    let text = '';
    let id = '';
    let data: string[] = [];
    try {
      for await (const chunk of body) {
        text += decoder.decode(chunk, { stream: true });
        let nl = text.indexOf('\n');
        while (nl >= 0) {
          const line = text.slice(0, nl).replace(/\r$/, '');
          text = text.slice(nl + 1);
          if (this.format === 'ndjson') {
            if (line.length > 0) this.take(line, '');
          } else if (line === '') {
            if (data.length > 0) this.take(data.join('\n'), id);
            data = [];
          } else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
          else if (line.startsWith('id:')) id = line.slice(3).replace(/^ /, '');
          nl = text.indexOf('\n');
        }
      }
    } catch {
      // aborted or broken: ended
    }
    this.ended = true;
    this.wake();
  }

  private take(json: string, id: string): void {
    this.messages.push(JSON.parse(json) as Record<string, unknown>);
    this.ids.push(id);
    this.wake();
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** POST envelopes to the session (one JSON per line) at `base` (another node's, for a cluster). */
  async send(envelopes: unknown[], base = this.base, session = this.session): Promise<Response> {
    return fetch(`${base}/http/send`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-ndjson', 'x-pylon-session': session },
      body: envelopes.map((e) => JSON.stringify(e)).join('\n'),
    });
  }

  /** Messages of one kind (and push type). */
  of(kind: string, type?: string): Array<Record<string, unknown>> {
    return this.messages.filter((m) => m.kind === kind && (type === undefined || m.type === type));
  }

  async until(predicate: (self: HttpPeer) => boolean, ms = 5000): Promise<void> {
    const end = Date.now() + ms;
    while (!predicate(this)) {
      if (this.ended && !predicate(this))
        throw new Error(`stream ended; got ${JSON.stringify(this.messages)}`);
      const left = end - Date.now();
      if (left <= 0) throw new Error(`condition not met in ${ms} ms; got ${JSON.stringify(this.messages)}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Drop the stream as a client whose network went away would. */
  drop(): void {
    this.abort.abort();
  }
}
