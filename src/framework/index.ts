/**
 * Pylon's framework face (workerman/goes and hotpot style), beside the envelope gateway: servers
 * by URL scheme speaking any protocol in raw mode, UDP, groups with a serial mailbox, and a
 * worker-thread pool for CPU-heavy work.
 */

import { httpProtocol } from './http.js';
import { frameProtocol, lengthProtocol, lineProtocol } from './protocol.js';

export { clientAddress } from '../net/proxy.js';
export { CLOSE, type CloseInfo, type CloseName, Connection, type TransportKind } from './connection.js';
export { intoGroup, leaveGroupsOnDisconnect } from './gateway.js';
export { Group, type GroupOptions, groupOf, leaveGroup } from './group.js';
export {
  encodeResponse,
  HttpError,
  type HttpProtocolOptions,
  type HttpReply,
  type HttpRequest,
  type HttpResponse,
  httpProtocol,
  jsonResponse,
} from './http.js';
export {
  type FrameProtocolOptions,
  frameProtocol,
  type LengthProtocolOptions,
  type LineProtocolOptions,
  lengthProtocol,
  lineProtocol,
  type Protocol,
  ProtocolError,
} from './protocol.js';
export { createServer, type Scheme, Server, type ServerAddress, type ServerOptions } from './server.js';
export { sharedPool, type Work, WorkerPool, type WorkerPoolOptions } from './worker-pool.js';

/** The built-in protocols by their short names: `protocols.line({ maxLength: 1024 })`. */
export const protocols = {
  frame: frameProtocol,
  line: lineProtocol,
  length: lengthProtocol,
  http: httpProtocol,
} as const;
