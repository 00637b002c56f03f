import type { Registry } from 'prom-client';
import { PylonError } from '../protocol/errors.js';
import type { AdminService, ConnectionsInput, KickInput, PushInput, RevokeInput } from './admin-service.js';
import { RESPONDED, type Route } from './http.js';
import { openApiDocument } from './openapi.js';
import { profilingRoutes } from './profiling.js';

/**
 * The admin HTTP routes: each turns path, query and body into the service's plain input. More
 * routes can be appended to the table (startAdmin's `routes` option).
 */
export function adminRoutes(service: AdminService, registry: Registry): Route[] {
  return [
    // 503 {"error": {"code": "UNAVAILABLE", "message": <reason>}} while a cluster's broker or registry is down.
    { method: 'GET', path: '/healthz', access: 'health', handler: () => service.health() },
    // Liveness: 200 while the event loop answers. Readiness: 503 while starting, stopping
    // (SIGTERM's grace), draining, or with the store or the cluster failing.
    { method: 'GET', path: '/livez', access: 'health', handler: () => service.live() },
    { method: 'GET', path: '/readyz', access: 'health', handler: () => service.ready() },
    {
      method: 'GET',
      path: '/metrics',
      access: 'health',
      async handler({ res }) {
        const text = await registry.metrics();
        res.writeHead(200, { 'content-type': registry.contentType, 'cache-control': 'no-store' });
        res.end(text);
        return RESPONDED;
      },
    },
    { method: 'GET', path: '/openapi.json', access: 'health', handler: () => openApiDocument },
    {
      method: 'POST',
      path: '/v1/push',
      // An Idempotency-Key header is the body's idempotencyKey (the body may not give another).
      // A traceparent header makes the push's spans children of the caller's (tracing on).
      handler: ({ req, body }) => {
        const tp = req.headers.traceparent;
        const call = typeof tp === 'string' ? { traceparent: tp } : {};
        const key = req.headers['idempotency-key'];
        if (typeof key !== 'string') return service.push(body as PushInput, call);
        const b = (body ?? {}) as Record<string, unknown>;
        if (b.idempotencyKey !== undefined && b.idempotencyKey !== key)
          throw new PylonError('BAD_REQUEST', 'idempotencyKey: differs from the Idempotency-Key header');
        return service.push({ ...b, idempotencyKey: key } as unknown as PushInput, call);
      },
    },
    { method: 'POST', path: '/v1/kick', handler: ({ body }) => service.kick(body as KickInput) },
    { method: 'GET', path: '/v1/stats', handler: () => service.stats() },
    {
      // Clients call it before connecting: open when openHealth is set, like /healthz.
      method: 'GET',
      path: '/v1/dispatch',
      access: 'health',
      handler: ({ query }) => {
        const user = query.get('user');
        return service.dispatch(user === null ? {} : { user });
      },
    },
    {
      method: 'GET',
      path: '/v1/users/{id}',
      handler: ({ params }) => service.getUser({ user: params.id as string }),
    },
    {
      method: 'POST',
      path: '/v1/users/{id}/ban',
      handler: ({ params, body }) =>
        service.ban(withPath(body, { user: params.id as string }) as { user: string }),
    },
    {
      method: 'DELETE',
      path: '/v1/users/{id}/ban',
      handler: ({ params }) => service.unban({ user: params.id as string }),
    },
    { method: 'POST', path: '/v1/revocations', handler: ({ body }) => service.revoke(body as RevokeInput) },
    {
      method: 'GET',
      path: '/v1/connections',
      handler: ({ query }) => {
        const input: ConnectionsInput = pageQuery(query);
        for (const k of ['user', 'label', 'transport', 'address'] as const) {
          const v = query.get(k);
          if (v !== null) input[k] = v;
        }
        return service.listConnections(input);
      },
    },
    {
      method: 'POST',
      path: '/v1/users/{id}/labels',
      handler: ({ params, body }) =>
        service.updateUserLabels(withPath(body, { user: params.id as string }) as { user: string }),
    },
    {
      method: 'GET',
      path: '/v1/labels',
      handler: ({ query }) => service.listLabels(pageQuery(query)),
    },
    {
      method: 'GET',
      path: '/v1/labels/{label}',
      handler: ({ params, query }) =>
        service.getLabel({ ...pageQuery(query), label: params.label as string }),
    },
    {
      method: 'GET',
      path: '/v1/labels/{label}/presence',
      handler: ({ params, query }) =>
        service.labelPresence({ limit: pageQuery(query).limit, label: params.label as string }),
    },
    {
      method: 'GET',
      path: '/v1/labels/{label}/history',
      handler: ({ params, query }) => {
        const since = query.get('since');
        return service.labelHistory({
          label: params.label as string,
          limit: pageQuery(query).limit,
          since:
            since === null
              ? undefined
              : /^\d{1,15}$/.test(since)
                ? Number(since)
                : (since as unknown as number),
        });
      },
    },
    ...profilingRoutes(),
  ];
}

/** The body (an object, or nothing) with the values taken from the path; the body may not repeat them. */
function withPath(body: unknown, fromPath: Record<string, string>): Record<string, unknown> {
  if (body === undefined) return { ...fromPath };
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new PylonError('BAD_REQUEST', 'body: must be a JSON object');
  }
  for (const k of Object.keys(fromPath)) {
    if (k in body) throw new PylonError('BAD_REQUEST', `${k}: unknown field (it is in the path)`);
  }
  return { ...(body as Record<string, unknown>), ...fromPath };
}

/** `after` and `limit` from the query string; a limit that is not digits is passed on as text, to be refused by name. */
function pageQuery(query: URLSearchParams): { after?: string; limit?: number } {
  const out: { after?: string; limit?: number } = {};
  const after = query.get('after');
  if (after !== null) out.after = after;
  const limit = query.get('limit');
  if (limit !== null) out.limit = /^\d{1,9}$/.test(limit) ? Number(limit) : (limit as unknown as number);
  return out;
}
