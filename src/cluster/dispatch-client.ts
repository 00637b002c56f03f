import { connect, type PylonClient } from '../client/index.js';
import type { ClientOptions } from '../client/types.js';

export interface DispatcherOptions extends ClientOptions {
  /** Asked for by the dispatcher so the user's current (or last) node comes first. */
  user?: string;
  /** Which of each node's addresses to use. Default 'ws'. */
  transport?: 'ws' | 'tcp';
  /** Headers for the dispatcher request (e.g. an Authorization the admin API needs). */
  dispatchHeaders?: Record<string, string>;
  /** Time for the dispatcher to answer (ms). Default 5 s. */
  dispatchTimeout?: number;
}

interface DispatchAnswer {
  nodes?: Array<{ node: string; wsUrl?: string; tcpUrl?: string }>;
}

/**
 * Connect through a dispatcher (`GET /v1/dispatch` of any node's admin API) instead of a fixed
 * gateway: asks it for the live gateways (the user's current or last node first, then the least
 * loaded) and connects to the first that answers, trying them in order. Rejects with every
 * attempt's error when none does.
 *
 * The returned client reconnects to the gateway it got (where a flash disconnect resumes its
 * session). If that gateway is gone for good, call this again for a fresh list.
 */
export async function connectViaDispatcher(
  dispatchUrl: string | URL,
  options: DispatcherOptions = {},
): Promise<PylonClient> {
  const { user, transport = 'ws', dispatchHeaders, dispatchTimeout = 5000, ...clientOptions } = options;
  const url = new URL(dispatchUrl);
  if (user !== undefined) url.searchParams.set('user', user);
  const res = await fetch(url, {
    headers: { accept: 'application/json', ...dispatchHeaders },
    signal: AbortSignal.timeout(dispatchTimeout),
  });
  if (!res.ok) throw new Error(`dispatcher ${url.origin}${url.pathname} answered ${res.status}`);
  const answer = (await res.json()) as DispatchAnswer;
  const urls = (answer.nodes ?? [])
    .map((n) => (transport === 'tcp' ? n.tcpUrl : n.wsUrl))
    .filter((u): u is string => typeof u === 'string');
  if (urls.length === 0) throw new Error(`dispatcher listed no ${transport} gateway`);
  const failures: string[] = [];
  for (const u of urls) {
    try {
      return await connect(u, clientOptions);
    } catch (err) {
      failures.push(`${u}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  throw new Error(`no gateway answered: ${failures.join('; ')}`);
}
