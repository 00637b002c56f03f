// The bench's calls to the gateway's admin HTTP API: `/v1/stats` for the server's connections and
// memory, `/v1/push` for the broadcast and qos-1 workloads.

/** What the bench reads of one node in `/v1/stats`. */
export interface NodeReading {
  /** The node's id (or name). */
  key: string;
  /** Seconds since the node's process started, when it made this report; NaN if not given. */
  uptime: number;
  connections: number;
  /** Bytes; undefined when the node does not report its process. */
  rss?: number;
  heapUsed?: number;
}

/** The sum over the nodes of `/v1/stats`. */
export interface ServerReading {
  nodes: number;
  connections: number;
  /** Sum of the nodes' RSS, or null when a node does not report `process`. */
  rss: number | null;
  heapUsed: number | null;
}

/**
 * The freshest report of every node across several `/v1/stats` answers received after some
 * moment. With several worker processes each answer holds the answering node's live figures and
 * the others' last heartbeat (up to ~5 s old, and HTTP keep-alive may keep asking the same
 * worker). A node's figures are fresh once it answered itself, or once its report changed (a new
 * heartbeat) since the first answer of this view.
 */
export class ServerView {
  private readonly best = new Map<string, NodeReading>();
  private readonly first = new Map<string, number>();
  private readonly fresh = new Set<string>();
  private current: string[] = [];

  /** One answer: its nodes, and the key of the node that answered (its figures are live). */
  add(nodes: NodeReading[], own: string | undefined): void {
    this.current = nodes.map((n) => n.key);
    for (const n of nodes) {
      const prev = this.best.get(n.key);
      if (prev === undefined || !(n.uptime <= prev.uptime)) this.best.set(n.key, n);
      const first = this.first.get(n.key);
      if (first === undefined) this.first.set(n.key, n.uptime);
      if (
        n.key === own ||
        nodes.length === 1 ||
        !Number.isFinite(n.uptime) ||
        (first !== undefined && n.uptime !== first)
      ) {
        this.fresh.add(n.key);
      }
    }
  }

  /** Every current node has fresh figures. */
  isFresh(): boolean {
    return this.current.every((k) => this.fresh.has(k));
  }

  reading(): ServerReading {
    const nodes = this.current.map((k) => this.best.get(k)!);
    let rss: number | null = nodes.length === 0 ? null : 0;
    let heapUsed: number | null = nodes.length === 0 ? null : 0;
    let connections = 0;
    for (const n of nodes) {
      connections += n.connections;
      rss = rss === null || n.rss === undefined ? null : rss + n.rss;
      heapUsed = heapUsed === null || n.heapUsed === undefined ? null : heapUsed + n.heapUsed;
    }
    return { nodes: nodes.length, connections, rss, heapUsed };
  }
}

export interface PushAnswer {
  targeted: number;
  stored: number;
}

export class AdminClient {
  private readonly base: string;
  private readonly headers: Record<string, string>;

  constructor(url: string, key: string | undefined) {
    this.base = url.replace(/\/+$/, '').replace(/\/v1$/, '');
    this.headers = { 'content-type': 'application/json' };
    if (key !== undefined && key !== '') this.headers.authorization = `Bearer ${key}`;
  }

  private async call(
    method: 'GET' | 'POST',
    path: string,
    body?: unknown,
    timeoutMs = 10_000,
  ): Promise<unknown> {
    const res = await fetch(`${this.base}${path}`, {
      method,
      headers: this.headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs),
    });
    const text = await res.text();
    if (!res.ok) {
      throw new Error(`admin ${method} ${path}: HTTP ${res.status} ${text.slice(0, 200)}`);
    }
    try {
      return JSON.parse(text) as unknown;
    } catch {
      throw new Error(`admin ${method} ${path}: not JSON: ${text.slice(0, 200)}`);
    }
  }

  /** The nodes of `/v1/stats` (the answer itself when it has no `nodes`), into `view`. */
  async stats(view: ServerView = new ServerView()): Promise<ServerView> {
    const body = (await this.call('GET', '/v1/stats')) as Record<string, unknown>;
    const list = Array.isArray(body.nodes) ? (body.nodes as unknown[]) : [body];
    const own = typeof body.id === 'string' ? body.id : typeof body.node === 'string' ? body.node : undefined;
    view.add(list.map(readNode), own);
    return view;
  }

  async push(body: Record<string, unknown>): Promise<PushAnswer> {
    const r = (await this.call('POST', '/v1/push', body)) as Record<string, unknown>;
    return {
      targeted: typeof r.targeted === 'number' ? r.targeted : 0,
      stored: typeof r.stored === 'number' ? r.stored : 0,
    };
  }
}

function readNode(v: unknown, i: number): NodeReading {
  const n = (typeof v === 'object' && v !== null ? v : {}) as Record<string, unknown>;
  const key = typeof n.id === 'string' ? n.id : typeof n.node === 'string' ? n.node : `#${i}`;
  const out: NodeReading = {
    key,
    uptime: typeof n.uptime === 'number' ? n.uptime : Number.NaN,
    connections: typeof n.connections === 'number' ? n.connections : 0,
  };
  const p = n.process;
  if (typeof p === 'object' && p !== null) {
    const proc = p as Record<string, unknown>;
    if (typeof proc.rss === 'number') out.rss = proc.rss;
    if (typeof proc.heapUsed === 'number') out.heapUsed = proc.heapUsed;
  }
  return out;
}
