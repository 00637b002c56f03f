import { msgpackCodec } from '../protocol/msgpack-codec.js';
import { protoCodec } from '../protocol/proto-codec.js';
import { registerCodec } from '../protocol/registry.js';
import { PylonClient } from './client.js';
import { nodeDialer } from './transport-node.js';
import type { ClientOptions } from './types.js';

export type { CodecName } from '../protocol/codec.js';
export { DISCONNECT, type DisconnectInfo, shouldReconnect } from '../protocol/disconnect.js';
export { ERROR_CODES, PylonError, TimeoutError } from '../protocol/errors.js';
export { type BackoffOptions, backoffDelay } from './backoff.js';
export { PylonClient } from './client.js';
export type { ClientLink, ClientLinkEvents, Dialer, DialOptions } from './link.js';
export type {
  ClientEvents,
  ClientOptions,
  CloseEvent,
  PushHandler,
  PushMeta,
  ReconnectOptions,
  RequestOptions,
  Welcome,
} from './types.js';
export { RESERVED_EVENTS } from './types.js';

registerCodec(msgpackCodec);
registerCodec(protoCodec);

/**
 * Connect to a Pylon gateway at a `tcp://host:port` or `ws://host:port/ws` URL and wait for
 * its `welcome`. Rejects if that first attempt fails; later drops reconnect by themselves.
 */
export async function connect(url: string | URL, options: ClientOptions = {}): Promise<PylonClient> {
  const client = new PylonClient(new URL(url), options, nodeDialer);
  await client.start();
  return client;
}
