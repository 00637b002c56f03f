import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import type { Gateway } from '../gateway/gateway.js';
import type { Logger } from '../log/logger.js';
import { listenOn } from '../net/listen.js';
import { AdminService } from './admin-service.js';
import { DisconnectLog, dashboardFallback, dashboardRoutes } from './dashboard.js';
import { type GrpcAdmin, startGrpc } from './grpc.js';
import { createHttpServer, DEFAULT_MAX_BODY, type Fallback, type Route } from './http.js';
import { ApiKeys, assertBindable } from './keys.js';
import { createAdminMetrics } from './metrics.js';
import { adminRoutes } from './routes.js';
import { StatsStream } from './stats-stream.js';
import { tailRoute } from './tail.js';

/**
 * The admin API of a gateway: business systems push, kick and look at users and labels over
 * HTTP JSON and gRPC (one service, src/api/admin-service.ts), Prometheus scrapes /metrics, and
 * operators take CPU profiles and heap snapshots of the running process.
 *
 * ```ts
 * const gateway = createGateway({ tcp: { port: 8081 } });
 * await gateway.listen();
 * const admin = await startAdmin(gateway, { keys: [process.env.PYLON_ADMIN_KEY!], host: '0.0.0.0' });
 * ```
 */

export interface AdminOptions {
  /** Address of both servers. Default 127.0.0.1. Anything but loopback needs `keys`. */
  host?: string;
  /** HTTP port. Default 9090; 0: a free port. */
  httpPort?: number;
  /** gRPC port. Default 9091; 0: a free port; false: no gRPC server. */
  grpcPort?: number | false;
  /** API keys (Authorization: Bearer <key>), at least 16 characters each; any of them is accepted. */
  keys?: string[];
  /** Serve /healthz, /metrics and /openapi.json without a key. Default false. */
  openHealth?: boolean;
  /** Largest request body (HTTP) or message (gRPC), bytes. Default 1 MiB. */
  maxBody?: number;
  /** Handles HTTP requests no route matches (e.g. the dashboard's static files); does its own auth. */
  fallback?: Fallback;
  /**
   * Serve the dashboard's static files at `/` (built into dist/web) when no `fallback` is given.
   * Default true; a string: the directory to serve them from. Its data needs the key like the API.
   */
  dashboard?: boolean | string;
  /** More HTTP routes, after the built-in ones. */
  routes?: Route[];
  /** Serve `GET /v1/tail` (the live traffic of one user or label; the dashboard's live tail). Default false. */
  tail?: boolean;
  /** The metrics registry, if the caller already registered metrics in it (e.g. storeLatencyHistogram). */
  registry?: Registry;
  /** Node id in stats. Default hostname:pid. */
  node?: string;
  /** Default: the gateway's logger. */
  logger?: Logger;
}

export interface AdminServer {
  http: AddressInfo;
  grpc?: { port: number };
  metrics: Registry;
  service: AdminService;
  /** Stop both servers (and the event-loop monitor). The gateway is not closed. */
  close(): Promise<void>;
}

export async function startAdmin(gateway: Gateway, options: AdminOptions = {}): Promise<AdminServer> {
  const host = options.host ?? '127.0.0.1';
  const keys = new ApiKeys(options.keys ?? []);
  assertBindable(host, keys);
  const logger = options.logger ?? gateway.logger;
  const maxBody = options.maxBody ?? DEFAULT_MAX_BODY;
  const serviceOptions = options.node === undefined ? { logger } : { logger, node: options.node };
  const service = new AdminService(gateway, serviceOptions);
  const metrics = createAdminMetrics(gateway, options.registry);
  const disconnects = new DisconnectLog(gateway);
  const dashboard = options.dashboard ?? true;
  // The dashboard's charts start from the last minutes: sampled always while it is served.
  const stream = new StatsStream(service, disconnects, { history: dashboard !== false });
  const fallback =
    options.fallback ??
    (dashboard === false ? undefined : dashboardFallback(dashboard === true ? undefined : dashboard));
  const httpOptions = {
    routes: [
      ...adminRoutes(service, metrics.registry),
      ...dashboardRoutes(disconnects),
      stream.route(),
      ...(options.tail === true ? [tailRoute(gateway)] : []),
      ...(options.routes ?? []),
    ],
    keys,
    openHealth: options.openHealth ?? false,
    maxBody,
    logger,
    ...(fallback ? { fallback } : {}),
  };
  const server = createHttpServer(httpOptions);
  let grpc: GrpcAdmin | undefined;
  try {
    const http = await listenOn(server, options.httpPort ?? 9090, host);
    if (options.grpcPort !== false) {
      grpc = await startGrpc(service, {
        host,
        port: options.grpcPort ?? 9091,
        keys,
        logger,
        maxMessage: maxBody,
      });
    }
    logger.info(
      {
        http: `http://${formatHost(host)}:${http.port}`,
        grpc: grpc?.port,
        keys: keys.required ? 'required' : 'none',
      },
      'admin API listening',
    );
    let closing: Promise<void> | undefined;
    return {
      http,
      ...(grpc ? { grpc: { port: grpc.port } } : {}),
      metrics: metrics.registry,
      service,
      close: () => {
        stream.close();
        disconnects.close();
        closing ??= Promise.all([closeHttp(server), grpc?.close()]).then(() => metrics.close());
        return closing;
      },
    };
  } catch (err) {
    stream.close();
    disconnects.close();
    metrics.close();
    if (server.listening) await closeHttp(server);
    throw err;
  }
}

function closeHttp(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeIdleConnections();
    // Requests in flight (a CPU profile) get a moment, then their sockets are cut.
    setTimeout(() => server.closeAllConnections(), 2000).unref();
  });
}

function formatHost(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

export { AdminService, type AdminServiceOptions } from './admin-service.js';
export { ADMIN_PROTO_PATH, loadAdminProto, PROTO_LOADER_OPTIONS } from './grpc.js';
export { type Fallback, RESPONDED, type Route, type RouteContext } from './http.js';
export { ApiKeys } from './keys.js';
export { createAdminMetrics, storeLatencyHistogram, timeStore } from './metrics.js';
export { openApiDocument } from './openapi.js';
