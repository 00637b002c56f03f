import { alertingLogger } from '../api/alerts.js';
import { startAdmin } from '../api/index.js';
import { Webhooks } from '../api/webhooks.js';
import {
  announceWorkerReady,
  type ClusterFlags,
  clusterStore,
  inWorker,
  openCluster,
  runAsPrimary,
} from '../cluster/cli.js';
import { createGateway } from '../gateway/gateway.js';
import { createLogger, type LogLevel } from '../gateway/logger.js';
import { openStore } from '../store/index.js';
import { type AuthFlags, resolveAuth } from './auth.js';
import { chatOptions, installChat } from './chat.js';
import { installEcho } from './echo.js';
import { staticHandler } from './static.js';

export interface StartFlags extends AuthFlags, ClusterFlags {
  host: string;
  wsPort: number;
  tcpPort: number;
  keepaliveInterval: number;
  keepaliveTimeout: number;
  logLevel: LogLevel;
  duplicateLogin: 'allow' | 'replace';
  store: string;
  adminHost: string;
  adminPort: number;
  grpcPort: number;
  adminKey: string[];
  adminOpenHealth: boolean;
  webhookConnect?: string;
  webhookDisconnect?: string;
  webhookUpstream?: string;
  webhookTypes: string[];
  webhookSecret?: string;
  alertWebhook?: string;
}

/** Runs the gateway in the foreground until SIGINT/SIGTERM. */
export async function start(flags: StartFlags): Promise<void> {
  // --workers N: this process only supervises the workers (each runs the rest of start()).
  if (await runAsPrimary(flags)) return;
  const base = createLogger(flags.logLevel);
  const logger = flags.alertWebhook ? alertingLogger(base, { url: flags.alertWebhook }) : base;
  const auth = await resolveAuth(flags, flags.host, (line) => process.stderr.write(`${line}\n`));
  const store = await openStore(clusterStore(flags));
  const cluster = await openCluster(flags);
  const gateway = createGateway({
    store,
    validate: auth.validate,
    duplicateLogin: flags.duplicateLogin,
    tcp: { port: flags.tcpPort, host: flags.host },
    ws: { port: flags.wsPort, host: flags.host, path: '/ws', httpHandler: staticHandler() },
    keepalive:
      flags.keepaliveInterval > 0
        ? { interval: flags.keepaliveInterval * 1000, timeout: flags.keepaliveTimeout * 1000 }
        : false,
    logger,
    ...chatOptions(),
    cluster,
  });
  installEcho(gateway);
  installChat(gateway);
  const webhooks =
    flags.webhookConnect || flags.webhookDisconnect || flags.webhookUpstream
      ? new Webhooks(gateway, {
          connect: flags.webhookConnect,
          disconnect: flags.webhookDisconnect,
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
        })
      : undefined;
  const hostPart = (a: { address: string; family: string }) =>
    a.family === 'IPv6' ? `[${a.address}]` : a.address;
  if (addr.ws) {
    process.stdout.write(`pylon: WebSocket on ws://${hostPart(addr.ws)}:${addr.ws.port}/ws\n`);
    process.stdout.write(`pylon: chat on http://${hostPart(addr.ws)}:${addr.ws.port}/\n`);
  }
  if (addr.tcp) process.stdout.write(`pylon: TCP on tcp://${hostPart(addr.tcp)}:${addr.tcp.port}\n`);
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
    process.stdout.write(`pylon: cluster through Redis at ${redisHost(flags.redis)}\n`);
  if (!announceWorkerReady()) process.stdout.write('pylon: ready (Ctrl-C stops)\n');

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) {
      if (inWorker()) return; // the primary forwards signals and forces the exit if need be
      process.stdout.write('pylon: forced exit\n');
      process.exit(1);
    }
    stopping = true;
    process.stdout.write(`pylon: ${signal}, closing ${gateway.connections.size} connection(s)\n`);
    gateway
      .close()
      .then(() => admin?.close())
      .then(() => webhooks?.close(2000))
      .then(() => store.close())
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
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
}

function redisHost(url: string): string {
  try {
    return new URL(url).host;
  } catch {
    return '(unparsable URL)';
  }
}
