import type { Logger } from '../log/logger.js';
import type { DisconnectName } from '../protocol/disconnect.js';
import type { Envelope } from '../protocol/envelope.js';
import { PylonError } from '../protocol/errors.js';
import { getCodec } from '../protocol/index.js';
import { type AuthMeta, checkIdentity, IdentityTooLong, TokenExpired, type Validator } from './auth.js';
import type { Connection } from './connection.js';
import type { Refusal, TokenInfo } from './denials.js';
import { isThenable } from './dispatch.js';
import { checkRoom, type LabelLimits, type LabelTotals } from './labels.js';
import { positionOf } from './one-way.js';
import type { KeepaliveOptions } from './options.js';
import type { ResumeResult } from './resume.js';
import { VERSION } from './version.js';

/** What the handshake needs from the gateway. */
export interface HandshakeHost {
  readonly logger: Logger;
  readonly keepalive: KeepaliveOptions | undefined;
  readonly handshake: {
    validate: Validator | undefined;
    maxFrame: number;
    labels: LabelLimits;
    duplicateLogin: 'allow' | 'replace';
  };
  disconnect(conn: Connection, name: DisconnectName, reason?: string): void;
  /** Registers the connection (hub, keepalive) and emits connect. */
  openConnection(conn: Connection): void;
  /**
   * Resume the session the hello asked for (labels back, missed pushes to replay), and give a
   * new session id. A promise when labels the client had subscribed must pass authorizeSub again.
   */
  resume(conn: Connection): ResumeResult | Promise<ResumeResult>;
  /** Start qos-1 delivery to the connection (what waits in its user's inbox goes out). */
  attachDelivery(conn: Connection): void;
  /** The user's open connections (for the duplicate-login policy). */
  connectionsOf(user: string): Connection[];
  /** The hub's string for a label it holds (see Hub.intern). */
  internLabel(label: string): string;
  authFailure(): void;
  /** Why a connection of this user with this token is refused (a ban, a revocation), or undefined. */
  refusal(user: string | undefined, token: TokenInfo | undefined): Refusal | undefined;
  /** Count the connection against its user's bounds; false when the user holds as many as allowed. */
  takeSlot(conn: Connection): boolean;
  /** The labels the process holds (a new connection's labels must fit). */
  readonly labelTotals: LabelTotals;
}

/**
 * `hello`: picks the codec (TCP), takes the token, and either opens the connection or starts
 * authentication. On WebSocket the hello is optional and only asks for the welcome.
 */
export function hello(host: HandshakeHost, conn: Connection, env: Envelope): void {
  const data = env.data;
  if (data !== undefined && data !== null && (typeof data !== 'object' || Array.isArray(data))) {
    host.disconnect(conn, 'bad_hello', 'hello data must be an object');
    return;
  }
  const fields = (data ?? {}) as Record<string, unknown>;
  const wanted = fields.codec ?? conn.codec.name;
  // The connection's own codec (MQTT's is per connection, not in the registry), or one by name.
  const codec =
    wanted === conn.codec.name ? conn.codec : typeof wanted === 'string' ? getCodec(wanted) : undefined;
  if (codec === undefined) {
    host.disconnect(conn, 'bad_hello', `unknown codec "${String(wanted)}"`);
    return;
  }
  if (conn.transport === 'http' && codec !== conn.codec) {
    host.disconnect(conn, 'bad_hello', 'over HTTP the codec is JSON');
    return;
  }
  if (conn.transport === 'ws' && codec !== conn.codec) {
    host.disconnect(conn, 'bad_hello', 'on WebSocket the codec is set by the subprotocol or ?codec=');
    return;
  }
  if (fields.token != null && typeof fields.token !== 'string') {
    host.disconnect(conn, 'bad_hello', 'hello token must be a string');
    return;
  }
  if (fields.session != null && typeof fields.session !== 'string') {
    host.disconnect(conn, 'bad_hello', 'hello session must be a string');
    return;
  }
  conn.resumeFrom = (fields.session as string | null | undefined) ?? undefined;
  conn.helloSeen = true;
  conn.codec = codec;
  // Only TCP is still in 'handshake' here: WebSocket authenticated at the upgrade.
  if (conn.state === 'handshake' && host.handshake.validate !== undefined) {
    const token = (fields.token as string | null | undefined) ?? undefined;
    authenticate(host, conn, token, {
      transport: conn.transport,
      remoteAddress: conn.remoteAddress,
      headers: {},
    });
    return;
  }
  complete(host, conn);
}

/**
 * The end of the handshake: resume (when asked), welcome, register, replay what the session
 * missed, then start qos-1 delivery — in that order, so the client has its welcome before any
 * push — and read on. A WebSocket client that sent no hello is only registered (no welcome, no
 * qos 1). A resume that must ask authorizeSub again waits for it, reading paused.
 */
function complete(host: HandshakeHost, conn: Connection): void {
  if (!conn.helloSeen) {
    host.openConnection(conn);
    readOn(host, conn);
    return;
  }
  const resumed = host.resume(conn);
  if (!isThenable(resumed)) {
    finish(host, conn, resumed);
    return;
  }
  const open = conn.state === 'open';
  if (!open) {
    conn.state = 'auth';
    conn.link.pause();
  }
  resumed.then(
    (r) => {
      if (conn.state === (open ? 'open' : 'auth')) finish(host, conn, r);
    },
    (err: unknown) => {
      host.logger.error({ err, conn: conn.id }, 'resume failed');
      host.disconnect(conn, 'internal_error', 'resume failed');
    },
  );
}

function finish(host: HandshakeHost, conn: Connection, resumed: ResumeResult): void {
  // A ban or revocation that came while the resume was read.
  const refused = conn.user === undefined ? undefined : host.refusal(conn.user, conn.token);
  if (refused !== undefined) {
    host.disconnect(conn, refused.name, refused.reason);
    return;
  }
  // A one-way stream's position counts only with the session it came with: an id of an unknown
  // or ended session (a restart, a forgery) acknowledges nothing.
  if (conn.oneWay !== undefined && !resumed.resumed) {
    conn.oneWay.seen = 0;
    conn.oneWay.written = 0;
  }
  welcome(host, conn, resumed);
  if (conn.state !== 'open') host.openConnection(conn);
  if (conn.state !== 'open') return; // closed by a connect listener
  for (const frame of resumed.replay) conn.deliver(frame, 0);
  host.attachDelivery(conn);
  readOn(host, conn);
}

/** Read again: the frames that arrived meanwhile waited in the link, and come first. */
function readOn(_host: HandshakeHost, conn: Connection): void {
  if (conn.state === 'open') conn.link.resume();
}

function welcome(host: HandshakeHost, conn: Connection, resumed: ResumeResult): void {
  const ka = host.keepalive;
  const data: Record<string, unknown> = {
    connection: conn.id,
    server: `pylon/${VERSION}`,
    codec: conn.codec.name,
    maxFrame: host.handshake.maxFrame,
    heartbeat: ka ? { interval: ka.interval, timeout: ka.timeout } : null,
  };
  if (conn.user !== undefined) data.user = conn.user;
  if (conn.labels !== undefined) data.labels = [...conn.labels];
  // HTTP: the session id POSTs go to (a one-way reader cannot read the response header).
  const httpSession = (conn.link as { session?: unknown }).session;
  if (conn.transport === 'http' && typeof httpSession === 'string') data.httpSession = httpSession;
  if (conn.session !== undefined) {
    data.session = conn.session;
    data.resumed = resumed.resumed;
    if (resumed.resumed) data.recovered = resumed.recovered;
  }
  // A one-way stream's welcome carries its first position (the SSE event id).
  if (conn.oneWay !== undefined) conn.link.eventId = positionOf(conn.session, conn.oneWay);
  conn.write({ kind: 'welcome', data });
}

/**
 * Runs the validate hook; the connection is registered only if it resolves to an identity.
 * Reading pauses meanwhile: frames the client pipelined wait in the link (counted in the
 * process-wide budget of unfinished frames) and are read, in order, once it is open.
 */
export function authenticate(
  host: HandshakeHost,
  conn: Connection,
  token: string | undefined,
  meta: AuthMeta,
): void {
  const validate = host.handshake.validate;
  if (validate === undefined) return;
  conn.state = 'auth';
  conn.link.pause();
  let result: unknown;
  try {
    result = validate(token, meta);
  } catch (err) {
    failed(host, conn, err);
    return;
  }
  if (isThenable(result)) {
    result.then(
      (identity) => accepted(host, conn, identity),
      (err: unknown) => failed(host, conn, err),
    );
  } else {
    accepted(host, conn, result);
  }
}

function accepted(host: HandshakeHost, conn: Connection, result: unknown): void {
  if (conn.state !== 'auth') return; // closed (or timed out) while validating
  if (result === null || result === undefined) {
    failed(host, conn, new PylonError('UNAUTHORIZED', 'token refused'));
    return;
  }
  let identity: ReturnType<typeof checkIdentity>;
  try {
    identity = checkIdentity(result, host.handshake.labels);
  } catch (err) {
    if (err instanceof IdentityTooLong) {
      host.authFailure();
      host.logger.info({ conn: conn.id, remote: conn.remoteAddress, reason: err.message }, 'auth failure');
      host.disconnect(conn, 'identity_too_long', err.message);
      return;
    }
    host.logger.error({ err, conn: conn.id }, 'validate returned a malformed identity');
    failed(host, conn, new PylonError('UNAUTHORIZED', 'identity refused'));
    return;
  }
  const refused = host.refusal(identity.user, identity.token);
  if (refused !== undefined) {
    host.authFailure();
    host.logger.info(
      { conn: conn.id, user: identity.user, remote: conn.remoteAddress, reason: refused.reason },
      'auth failure',
    );
    host.disconnect(conn, refused.name, refused.reason);
    return;
  }
  if (identity.labels && identity.labels.length > 0) {
    try {
      checkRoom(host.handshake.labels, host.labelTotals, undefined, identity.labels);
    } catch (err) {
      host.disconnect(conn, 'overloaded', (err as Error).message);
      return;
    }
  }
  conn.user = identity.user ?? undefined;
  conn.device = identity.device;
  conn.version = identity.version;
  conn.token = identity.token;
  if (identity.data) Object.assign(conn.data, identity.data);
  if (identity.labels && identity.labels.length > 0) {
    // One array for both until the labels change (label-ops copies it on write); each name is
    // the hub's own string when the label is already held, so a label is stored once.
    const labels = [...new Set(identity.labels)].map((l) => host.internLabel(l));
    conn.identityLabels = labels;
    conn.labels = labels;
  }
  if (host.handshake.duplicateLogin === 'replace' && identity.user !== undefined) {
    for (const older of host.connectionsOf(identity.user)) {
      host.disconnect(older, 'replaced', `replaced by connection ${conn.id}`);
    }
  }
  if (!host.takeSlot(conn)) {
    host.disconnect(conn, 'too_many_user_connections');
    return;
  }
  complete(host, conn);
}

function failed(host: HandshakeHost, conn: Connection, err: unknown): void {
  if (conn.state !== 'auth') return;
  host.authFailure();
  const reason = err instanceof PylonError ? err.message : 'token refused';
  if (!(err instanceof PylonError)) host.logger.error({ err, conn: conn.id }, 'validate hook failed');
  host.logger.info({ conn: conn.id, remote: conn.remoteAddress, reason }, 'auth failure');
  host.disconnect(conn, err instanceof TokenExpired ? 'token_expired' : 'unauthorized', reason);
}
