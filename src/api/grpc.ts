import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { Logger } from '../log/logger.js';
import { PylonError } from '../protocol/errors.js';
import type { AdminService, KickInput, PushInput, RevokeInput } from './admin-service.js';
import type { ApiKeys } from './keys.js';

/**
 * The admin service over gRPC (service pylon.v1.Admin, proto/pylon/v1/admin.proto). Requests are
 * turned into the service's plain inputs (JSON text fields parsed), outputs into the proto's
 * snake_case fields. Credentials: metadata `authorization: Bearer <key>`. Plain-text HTTP/2:
 * serve it on loopback or a private network, or behind a TLS proxy.
 */

/** The published schema; also in the npm package (`proto/`). */
export const ADMIN_PROTO_PATH = fileURLToPath(new URL('../../proto/pylon/v1/admin.proto', import.meta.url));

/** How the server loads the schema; a client in Node loads it the same way. */
export const PROTO_LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: Number,
  enums: String,
  defaults: false,
  oneofs: false,
};

/** The client constructor of pylon.v1.Admin (its `.service` is the service definition). */
export function loadAdminProto(): grpc.ServiceClientConstructor {
  const definition = protoLoader.loadSync(ADMIN_PROTO_PATH, PROTO_LOADER_OPTIONS);
  const root = grpc.loadPackageDefinition(definition) as unknown as {
    pylon: { v1: { Admin: grpc.ServiceClientConstructor } };
  };
  return root.pylon.v1.Admin;
}

export interface GrpcOptions {
  host: string;
  /** 0: a free port. */
  port: number;
  keys: ApiKeys;
  logger: Logger;
  /** Largest request message, bytes. Default 1 MiB. */
  maxMessage?: number;
}

export interface GrpcAdmin {
  port: number;
  /** Stop accepting, let calls in flight finish (at most `graceMs`), then cut the rest. */
  close(graceMs?: number): Promise<void>;
}

const STATUS: Record<string, grpc.status> = {
  BAD_REQUEST: grpc.status.INVALID_ARGUMENT,
  UNAUTHORIZED: grpc.status.UNAUTHENTICATED,
  NOT_FOUND: grpc.status.NOT_FOUND,
  FORBIDDEN: grpc.status.PERMISSION_DENIED,
  TOO_MANY_REQUESTS: grpc.status.RESOURCE_EXHAUSTED,
  UNAVAILABLE: grpc.status.UNAVAILABLE,
};

/** The gRPC status of a PylonError code (others: INTERNAL). */
export function grpcStatus(code: string): grpc.status {
  return STATUS[code] ?? grpc.status.INTERNAL;
}

type Req = Record<string, unknown>;

export async function startGrpc(service: AdminService, options: GrpcOptions): Promise<GrpcAdmin> {
  const { keys, logger } = options;
  const server = new grpc.Server({
    'grpc.max_receive_message_length': options.maxMessage ?? 1024 * 1024,
  });

  const unary =
    (
      method: string,
      run: (req: Req, meta: grpc.Metadata) => Promise<object>,
    ): grpc.handleUnaryCall<Req, object> =>
    (call, callback) => {
      const auth = call.metadata.get('authorization')[0];
      if (!keys.allows(typeof auth === 'string' ? auth : undefined)) {
        logger.debug({ method, remote: call.getPeer() }, 'admin grpc: unauthenticated');
        callback({
          code: grpc.status.UNAUTHENTICATED,
          details: 'a valid API key is required (metadata authorization: Bearer <key>)',
        });
        return;
      }
      Promise.resolve()
        .then(() => run(call.request, call.metadata))
        .then(
          (out) => callback(null, snakeKeys(out) as object),
          (err: unknown) => callback(toStatus(err, method, logger)),
        );
    };

  server.addService(loadAdminProto().service, {
    // A traceparent in the metadata: the push's spans join the caller's trace (tracing on).
    Push: unary('Push', (r, meta) => {
      const tp = meta.get('traceparent')[0];
      return service.push(pushInput(r), typeof tp === 'string' ? { traceparent: tp } : {});
    }),
    Kick: unary('Kick', (r) =>
      service.kick(defined({ user: r.user, connection: r.connection, reason: r.reason }) as KickInput),
    ),
    Stats: unary('Stats', () => service.stats()),
    GetUser: unary('GetUser', (r) => service.getUser({ user: r.user as string })),
    UpdateUserLabels: unary('UpdateUserLabels', (r) =>
      service.updateUserLabels(defined({ user: r.user, add: r.add, remove: r.remove }) as { user: string }),
    ),
    ListLabels: unary('ListLabels', (r) => service.listLabels(defined({ after: r.after, limit: r.limit }))),
    GetLabel: unary('GetLabel', (r) =>
      service.getLabel(defined({ label: r.label, after: r.after, limit: r.limit }) as { label: string }),
    ),
    BanUser: unary('BanUser', (r) =>
      service.ban(defined({ user: r.user, duration: r.duration, reason: r.reason }) as { user: string }),
    ),
    UnbanUser: unary('UnbanUser', (r) => service.unban({ user: r.user as string })),
    RevokeToken: unary('RevokeToken', (r) =>
      service.revoke(
        defined({
          jti: r.jti,
          user: r.user,
          issuedBefore: r.issued_before,
          duration: r.duration,
          reason: r.reason,
        }) as RevokeInput,
      ),
    ),
    GetLabelPresence: unary('GetLabelPresence', (r) =>
      service.labelPresence(defined({ label: r.label, limit: r.limit }) as { label: string }),
    ),
    GetLabelHistory: unary('GetLabelHistory', async (r) => {
      const h = await service.labelHistory(
        defined({ label: r.label, limit: r.limit, since: r.since }) as { label: string },
      );
      return {
        ...h,
        messages: h.messages.map((m) => ({
          type: m.type,
          data_json: m.data === undefined ? '' : JSON.stringify(m.data),
          binary: m.binary === undefined ? undefined : Buffer.from(m.binary, 'base64'),
          at: m.at,
          pos: m.pos,
        })),
      };
    }),
    ListConnections: unary('ListConnections', (r) =>
      service.listConnections(
        defined({
          user: r.user,
          label: r.label,
          transport: r.transport,
          address: r.address,
          after: r.after,
          limit: r.limit,
        }),
      ),
    ),
  });

  const host =
    options.host.includes(':') && !options.host.startsWith('[') ? `[${options.host}]` : options.host;
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(`${host}:${options.port}`, grpc.ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    );
  });

  return {
    port,
    close: (graceMs = 2000) =>
      new Promise<void>((resolve) => {
        const timer = setTimeout(() => server.forceShutdown(), graceMs);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      }),
  };
}

function toStatus(err: unknown, method: string, logger: Logger): Partial<grpc.StatusObject> {
  if (err instanceof PylonError) {
    const code = grpcStatus(err.code);
    if (code === grpc.status.INTERNAL) logger.error({ err, method }, 'admin grpc: call failed');
    return { code, details: err.message };
  }
  logger.error({ err, method }, 'admin grpc: call failed');
  return { code: grpc.status.INTERNAL, details: 'internal error; see the server log' };
}

/** A PushRequest as the service's PushInput: data_json and variants_json parsed. */
function pushInput(r: Req): PushInput {
  const input: Record<string, unknown> = defined({
    to: targetOf(r.to),
    type: r.type,
    qos: r.qos,
    ttl: r.ttl,
    rate: r.rate,
    idempotencyKey: r.idempotency_key,
  });
  if (typeof r.data_json === 'string' && r.data_json.length > 0)
    input.data = parseJson(r.data_json, 'data_json');
  const variants = r.variants_json as Record<string, string> | undefined;
  if (variants !== undefined && Object.keys(variants).length > 0) {
    const v: Record<string, unknown> = {};
    for (const [label, text] of Object.entries(variants))
      v[label] = parseJson(text, `variants_json.${label}`);
    input.variants = v;
  }
  return input as unknown as PushInput;
}

/** The oneof Target message as the service's target object (the set member only; none: refused by name). */
function targetOf(to: unknown): unknown {
  if (typeof to !== 'object' || to === null) return undefined;
  const t = to as Req;
  if (t.users !== undefined) return { users: (t.users as { users?: string[] }).users ?? [] };
  if (t.labels !== undefined) return { labels: { ...(t.labels as Req) } };
  return defined({ user: t.user, connection: t.connection, all: t.all });
}

function parseJson(text: string, field: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new PylonError('BAD_REQUEST', `${field}: invalid JSON`);
  }
}

/** `o` without its undefined values. */
function defined(o: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) if (v !== undefined) out[k] = v;
  return out;
}

/** camelCase keys to the proto's snake_case, deeply (outputs have no user-chosen keys). */
function snakeKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(snakeKeys);
  if (typeof value !== 'object' || value === null || value instanceof Uint8Array) return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    if (v !== undefined) out[k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)] = snakeKeys(v);
  }
  return out;
}
