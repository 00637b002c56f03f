import { hostname } from 'node:os';
import { alertingLogger } from '../api/alerts.js';
import { startAdmin } from '../api/index.js';
import { isLoopbackHost, isLoopbackOrigin } from '../api/keys.js';
import { Webhooks } from '../api/webhooks.js';
import {
  announceWorkerReady,
  type ClusterFlags,
  clusterStore,
  inWorker,
  openCluster,
  runAsPrimary,
} from '../cluster/cli.js';
import { isDrainMessage } from '../cluster/workers.js';
import { createGateway } from '../gateway/gateway.js';
import { createLogger, type LogLevel } from '../log/logger.js';
import { openStore } from '../store/index.js';
import { otlpTracing } from '../trace/otlp.js';
import { redisHost } from '../util/redis.js';
import { type AuthFlags, isLoopback, resolveAuth } from './auth.js';
import { chatOptions, installChat } from './chat.js';
import { DAEMON_ENV, DAEMON_READY } from './daemon.js';
import { installEcho } from './echo.js';
import { claimPidFile } from './pidfile.js';
import { staticHandler } from './static.js';

export interface StartFlags extends AuthFlags, ClusterFlags {
  host: string;
  wsPort: number;
  tcpPort: number;
  mqttPort: number;
  keepaliveInterval: number;
  keepaliveTimeout: number;
  logLevel: LogLevel;
  logFormat: 'auto' | 'text' | 'json';
  duplicateLogin: 'allow' | 'replace';
  store: string;
  storeCheck: boolean;
  adminHost: string;
  adminPort: number;
  grpcPort: number;
  adminKey: string[];
  adminOpenHealth: boolean;
  adminTail: boolean;
  webhookConnect?: string;
  webhookDisconnect?: string;
  webhookUndelivered?: string;
  /** Seconds. */
  undeliveredAfter: number;
  webhookUpstream?: string;
  webhookTypes: string[];
  webhookSecret?: string;
  alertWebhook?: string;
  otelEndpoint?: string;
  maxConnections: number;
  wsCompression: boolean;
  httpTransport: boolean;
  fanoutMaxBacklog: number;
  maxConnectionsPerIp: number;
  maxConnectionsPerUser: number;
  userRateLimit: number;
  maxFrame: number;
  maxPartialBytes: number;
  /** Seconds. */
  frameTimeout: number;
  maxOutboundBytes: number;
  trustedProxies: string[];
  /** Seconds. */
  drainTimeout: number;
  stopTimeout: number;
  /** Seconds SIGTERM keeps serving, unready, before the stop. */
  shutdownGrace: number;
  pidFile: string;
  logFile: string;
  /** Whether --pid-file was set (a foreground start writes the file only then). */
  pidFileExplicit?: boolean;
}

/** Runs the gateway in the foreground until SIGINT/SIGTERM. */
export async function start(flags: StartFlags): Promise<void> {
  const daemon = process.env[DAEMON_ENV] === '1';
  if (!inWorker() && (daemon || flags.pidFileExplicit === true)) claimPidFile(flags.pidFile);
  // --workers N or start -d: this process only supervises the workers (each runs the rest of start()).
  const supervised = await runAsPrimary({
    ...flags,
    supervise: daemon,
    drainTimeout: flags.drainTimeout * 1000,
    stopTimeout: flags.stopTimeout * 1000,
    shutdownGrace: flags.shutdownGrace * 1000,
    onReady: () => {
      // Tell `start -d` we are up, then let it go (it exits; we keep running).
      if (daemon && process.send !== undefined && process.connected) {
        process.send(DAEMON_READY, () => {
          if (process.connected) process.disconnect();
        });
      }
    },
  });
  if (supervised) return;
  const format = flags.logFormat === 'auto' ? (process.stderr.isTTY ? 'text' : 'json') : flags.logFormat;
  const base = createLogger(flags.logLevel, format);
  const logger = flags.alertWebhook ? alertingLogger(base, { url: flags.alertWebhook }) : base;
  const auth = await resolveAuth(flags, flags.host, (line) => process.stderr.write(`${line}\n`));
  const store = await openStore(clusterStore(flags), {
    integrityCheck: flags.storeCheck,
    cluster: flags.redisCluster === true,
  });
  const cluster = await openCluster(flags);
  const otel = flags.otelEndpoint
    ? await otlpTracing(flags.otelEndpoint, { instance: `${hostname()}:${process.pid}` })
    : undefined;
  const gateway = createGateway({
    store,
    validate: auth.validate,
    duplicateLogin: flags.duplicateLogin,
    tcp: { port: flags.tcpPort, host: flags.host },
    ...(flags.mqttPort >= 0 ? { mqtt: { port: flags.mqttPort, host: flags.host } } : {}),
    ws: {
      port: flags.wsPort,
      host: flags.host,
      path: '/ws',
      httpHandler: staticHandler(),
      // Dev auth on loopback: only pages of this machine may open a WebSocket (a page elsewhere,
      // or one whose name was rebound to 127.0.0.1, could otherwise log in as anybody).
      ...(auth.mode === 'dev' && isLoopback(flags.host) ? { verify: loopbackPagesOnly } : {}),
      ...(flags.wsCompression ? { compression: true } : {}),
      ...(flags.httpTransport ? {} : { http: false as const }),
    },
    maxConnections: flags.maxConnections,
    maxConnectionsPerIp: flags.maxConnectionsPerIp,
    maxConnectionsPerUser: flags.maxConnectionsPerUser,
    userRateLimit:
      flags.userRateLimit > 0 ? { rate: flags.userRateLimit, burst: 2 * flags.userRateLimit } : false,
    maxFrame: flags.maxFrame,
    fanoutMaxBacklog: flags.fanoutMaxBacklog === 0 ? false : flags.fanoutMaxBacklog,
    maxPartialBytes: flags.maxPartialBytes,
    frameTimeout: flags.frameTimeout * 1000,
    maxOutboundBytes: flags.maxOutboundBytes,
    trustedProxies: flags.trustedProxies,
    delivery: { undeliveredAfter: flags.undeliveredAfter * 1000 },
    keepalive:
      flags.keepaliveInterval > 0
        ? { interval: flags.keepaliveInterval * 1000, timeout: flags.keepaliveTimeout * 1000 }
        : false,
    logger,
    ...chatOptions(),
    cluster,
    ...(otel ? { tracing: otel.provider } : {}),
  });
  installEcho(gateway);
  installChat(gateway);
  const webhooks =
    flags.webhookConnect || flags.webhookDisconnect || flags.webhookUndelivered || flags.webhookUpstream
      ? new Webhooks(gateway, {
          connect: flags.webhookConnect,
          disconnect: flags.webhookDisconnect,
          undelivered: flags.webhookUndelivered,
          upstream: flags.webhookUpstream
            ? { url: flags.webhookUpstream, types: flags.webhookTypes }
            : undefined,
          secret: flags.webhookSecret,
        }).start()
      : undefined;
  const addr = await gateway.listen();
  const admin =
    flags.adminPort >= 0
      ? await startAdmin(gateway, {
          host: flags.adminHost,
          httpPort: flags.adminPort,
          grpcPort: flags.grpcPort >= 0 ? flags.grpcPort : false,
          keys: flags.adminKey,
          openHealth: flags.adminOpenHealth,
          tail: flags.adminTail,
        })
      : undefined;
  const hostPart = (a: { address: string; family: string }) =>
    a.family === 'IPv6' ? `[${a.address}]` : a.address;
  if (addr.ws) {
    process.stdout.write(`pylon: WebSocket on ws://${hostPart(addr.ws)}:${addr.ws.port}/ws\n`);
    process.stdout.write(`pylon: chat on http://${hostPart(addr.ws)}:${addr.ws.port}/\n`);
  }
  if (addr.tcp) process.stdout.write(`pylon: TCP on tcp://${hostPart(addr.tcp)}:${addr.tcp.port}\n`);
  if (addr.mqtt) process.stdout.write(`pylon: MQTT on mqtt://${hostPart(addr.mqtt)}:${addr.mqtt.port}\n`);
  if (admin) {
    process.stdout.write(`pylon: admin API on http://${hostPart(admin.http)}:${admin.http.port}/v1/`);
    process.stdout.write(admin.grpc ? ` and gRPC on ${flags.adminHost}:${admin.grpc.port}\n` : '\n');
    if (flags.adminKey.length === 0) process.stdout.write('pylon: admin API without keys (loopback only)\n');
  }
  const storeSpec = clusterStore(flags);
  const storeShown = storeSpec.startsWith('redis') ? `redis at ${redisHost(storeSpec)}` : storeSpec;
  process.stdout.write(`pylon: auth ${auth.mode}, store ${storeShown}\n`);
  // Only the host: a Redis URL may carry a password.
  if (flags.redis !== undefined)
    process.stdout.write(
      `pylon: cluster through ${flags.redisCluster === true || flags.redis.includes(',') ? 'Redis Cluster' : 'Redis'} at ${redisHost(flags.redis)}\n`,
    );
  if (!announceWorkerReady()) process.stdout.write('pylon: ready (Ctrl-C stops)\n');

  // Worker and single process alike: stop on SIGINT/SIGTERM, closing every connection with
  // reconnect_elsewhere (4001) so clients come back (to another worker or node) at once.
  let stopping = false;
  let withdrawn: NodeJS.Timeout | undefined;
  const stop = (why: string) => {
    if (withdrawn !== undefined) {
      // A second signal during the grace: stop now.
      clearTimeout(withdrawn);
      withdrawn = undefined;
    } else if (stopping) {
      if (inWorker()) return; // the primary forwards signals and forces the exit if need be
      process.stdout.write('pylon: forced exit\n');
      process.exit(1);
    } else if (why === 'SIGTERM' && flags.shutdownGrace > 0) {
      // Unready first (/readyz 503), still serving and accepting, so the load balancer moves on.
      gateway.withdraw();
      process.stdout.write(
        `pylon: SIGTERM, not ready; serving ${gateway.connections.size} connection(s) ${flags.shutdownGrace} s more\n`,
      );
      withdrawn = setTimeout(() => {
        withdrawn = undefined;
        stop('grace over');
      }, flags.shutdownGrace * 1000);
      return;
    }
    stopping = true;
    gateway.withdraw();
    process.stdout.write(`pylon: ${why}, closing ${gateway.connections.size} connection(s)\n`);
    setTimeout(() => {
      process.stdout.write(`pylon: not stopped after ${flags.stopTimeout} s, forced exit\n`);
      process.exit(1);
    }, flags.stopTimeout * 1000).unref();
    gateway
      .close({ code: 'reconnect_elsewhere' })
      .then(() => admin?.close())
      .then(() => webhooks?.close(2000))
      .then(() => store.close())
      .then(() =>
        otel?.shutdown().catch((err: unknown) => logger.warn({ err }, 'tracing: last spans not sent')),
      )
      .then(
        () => {
          process.stdout.write('pylon: stopped\n');
          base.flush?.();
          process.exit(0);
        },
        (err: unknown) => {
          logger.error({ err }, 'close failed');
          process.exit(1);
        },
      );
  };
  // A worker of an older generation after a reload: no new connections; the open ones are served
  // until they close or the drain timeout passes, then told to reconnect elsewhere.
  const drain = async (timeout: number) => {
    if (stopping || gateway.draining) return;
    process.stdout.write(
      `pylon: draining ${gateway.connections.size} connection(s), at most ${Math.round(timeout / 1000)} s\n`,
    );
    await gateway.stopAccepting();
    await admin?.close().catch((err: unknown) => logger.warn({ err }, 'admin API close failed'));
    const deadline = Date.now() + timeout;
    while (gateway.connections.size > 0 && Date.now() < deadline && !stopping) await sleep(250);
    stop(gateway.connections.size === 0 ? 'drained' : 'drain timeout');
  };
  process.on('message', (m: unknown) => {
    if (isDrainMessage(m)) void drain(m.timeout);
  });
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
  if (inWorker())
    process.on('SIGHUP', () => {}); // the primary reloads; a worker goes on
  else {
    process.on('SIGHUP', () =>
      process.stdout.write(
        'pylon: SIGHUP ignored: a reload needs a supervising process (start with -d or --workers N)\n',
      ),
    );
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A WebSocket upgrade without an Origin (not a browser) or from a page of this machine. */
function loopbackPagesOnly(request: {
  headers: { origin?: string; host?: string };
}): boolean | { status: number; reason: string } {
  const { origin, host } = request.headers;
  // A page whose name was rebound to 127.0.0.1 sends its own name as Host (a same-origin GET
  // of the HTTP transport sends no Origin): refused too.
  if (host !== undefined && !isLoopbackHost(host)) {
    return { status: 403, reason: 'dev auth: only requests for 127.0.0.1, localhost or [::1] may connect' };
  }
  if (origin === undefined || isLoopbackOrigin(origin)) return true;
  return { status: 403, reason: 'dev auth: only pages served from this machine may connect' };
}
