// The client SDK for browsers: the same API as in Node, over the browser's WebSocket.
import { PylonClient } from './client.js';
import { browserDialer } from './transport-browser.js';
import type { ClientOptions } from './types.js';

export { DISCONNECT, type DisconnectInfo, shouldReconnect } from '../protocol/disconnect.js';
export { ERROR_CODES, PylonError, TimeoutError } from '../protocol/errors.js';
export { PylonClient } from './client.js';
export type { ClientEvents, ClientOptions, CloseEvent, PushHandler, PushMeta, Welcome } from './types.js';

/** Connect to a gateway's ws:// or wss:// URL and wait for its welcome. */
export async function connect(url: string | URL, options: ClientOptions = {}): Promise<PylonClient> {
  const client = new PylonClient(new URL(url, globalThis.location?.href), options, browserDialer);
  await client.start();
  return client;
}
