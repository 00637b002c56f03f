/**
 * Disconnect codes: why a connection was closed, and whether the client should come back. One
 * table for everything that closes a connection, on the gateway and on framework servers. The
 * same number is the WebSocket close code and the `code` of a `kick` frame on TCP.
 *
 * Ranges (checkable without the table): 4000-4499 reconnect (with backoff),
 * 4500-4999 do not reconnect (terminal). 1000 is a normal close by the client.
 */
export const DISCONNECT = {
  normal: { code: 1000, reconnect: false, text: 'closed by the client' },
  closed: { code: 1000, reconnect: false, text: 'closed by the server application' },
  going_away: {
    code: 1001,
    reconnect: true,
    text: 'the peer went away (a browser page closed or navigated away; never sent by the server)',
  },
  connection_lost: { code: 1006, reconnect: true, text: 'the link dropped without a close (never sent)' },
  shutdown: { code: 4000, reconnect: true, text: 'server shutting down' },
  reconnect_elsewhere: {
    code: 4001,
    reconnect: true,
    text: 'server draining: reconnect (possibly elsewhere)',
  },
  keepalive_timeout: { code: 4002, reconnect: true, text: 'no frame received within the keepalive timeout' },
  handshake_timeout: { code: 4003, reconnect: true, text: 'hello not completed in time' },
  slow_consumer: { code: 4004, reconnect: true, text: 'client did not read fast enough' },
  internal_error: { code: 4005, reconnect: true, text: 'internal server error' },
  rate_limited: { code: 4006, reconnect: true, text: 'too many messages' },
  overloaded: { code: 4007, reconnect: true, text: 'too many connections: try again later' },
  buffers_full: {
    code: 4008,
    reconnect: true,
    text: 'the server holds too many bytes of unfinished frames: try again later',
  },
  frame_timeout: { code: 4009, reconnect: true, text: 'a frame was started and not finished in time' },
  too_many_user_connections: {
    code: 4010,
    reconnect: true,
    text: 'the user holds as many connections as the server allows: try again later',
  },
  token_expired: {
    code: 4011,
    reconnect: true,
    text: 'the token expired before it was refreshed: fetch a new token, then reconnect',
  },
  protocol_error: { code: 4500, reconnect: false, text: 'bytes that are not protocol v1' },
  frame_too_large: { code: 4501, reconnect: false, text: 'frame larger than the maximum frame size' },
  unauthorized: { code: 4502, reconnect: false, text: 'authentication refused' },
  kicked: { code: 4503, reconnect: false, text: 'kicked by the server' },
  replaced: { code: 4504, reconnect: false, text: 'replaced by a newer login of the same user' },
  forbidden: { code: 4505, reconnect: false, text: 'not allowed' },
  bad_hello: { code: 4506, reconnect: false, text: 'hello missing or malformed, or codec unknown' },
  identity_too_long: {
    code: 4507,
    reconnect: false,
    text: 'the user id, device or version is longer than the server allows',
  },
  banned: { code: 4508, reconnect: false, text: 'the user is banned' },
  token_revoked: {
    code: 4509,
    reconnect: false,
    text: 'the token was revoked: connect again only with a new token',
  },
} as const;

export type DisconnectName = keyof typeof DISCONNECT;

export interface DisconnectInfo {
  code: number;
  /** The name from the table (e.g. "keepalive_timeout"), or "unknown". */
  name: string;
  reason: string;
  reconnect: boolean;
}

/** Code -> name; 1000 is "normal" (the first of the names that share it). */
const BY_CODE = new Map<number, DisconnectName>();
for (const name of Object.keys(DISCONNECT) as DisconnectName[]) {
  if (!BY_CODE.has(DISCONNECT[name].code)) BY_CODE.set(DISCONNECT[name].code, name);
}

export function disconnectName(code: number): string {
  return BY_CODE.get(code) ?? 'unknown';
}

/** Should a client reconnect after this code? Unknown codes follow the ranges. */
export function shouldReconnect(code: number): boolean {
  const name = BY_CODE.get(code);
  if (name) return DISCONNECT[name].reconnect;
  if (code >= 4500 && code <= 4999) return false;
  return true;
}

export function disconnectInfo(name: DisconnectName, reason?: string): DisconnectInfo {
  const d = DISCONNECT[name];
  return { code: d.code, name, reason: reason ?? d.text, reconnect: d.reconnect };
}
