import { startAdmin } from '../api/index.js';
import { createGateway } from '../gateway/gateway.js';
import { createLogger, type LogLevel } from '../gateway/logger.js';
import { openStore } from '../store/index.js';
import { type AuthFlags, resolveAuth } from './auth.js';
import { installEcho } from './echo.js';

export interface StartFlags extends AuthFlags {
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
}

/** Runs the gateway in the foreground until SIGINT/SIGTERM. */
export async function start(flags: StartFlags): Promise<void> {
  const logger = createLogger(flags.logLevel);
  const auth = await resolveAuth(flags, flags.host, (line) => process.stderr.write(`${line}\n`));
  const store = await openStore(flags.store);
  const gateway = createGateway({
    store,
    validate: auth.validate,
    duplicateLogin: flags.duplicateLogin,
    tcp: { port: flags.tcpPort, host: flags.host },
    ws: { port: flags.wsPort, host: flags.host, path: '/ws' },
    keepalive:
      flags.keepaliveInterval > 0
        ? { interval: flags.keepaliveInterval * 1000, timeout: flags.keepaliveTimeout * 1000 }
        : false,
    logger,
  });
  installEcho(gateway);
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
  if (addr.ws) process.stdout.write(`pylon: WebSocket on ws://${hostPart(addr.ws)}:${addr.ws.port}/ws\n`);
  if (addr.tcp) process.stdout.write(`pylon: TCP on tcp://${hostPart(addr.tcp)}:${addr.tcp.port}\n`);
  if (admin) {
    process.stdout.write(`pylon: admin API on http://${hostPart(admin.http)}:${admin.http.port}/v1/`);
    process.stdout.write(admin.grpc ? ` and gRPC on ${flags.adminHost}:${admin.grpc.port}\n` : '\n');
    if (flags.adminKey.length === 0) process.stdout.write('pylon: admin API without keys (loopback only)\n');
  }
  process.stdout.write(`pylon: auth ${auth.mode}, store ${flags.store}\n`);
  process.stdout.write('pylon: ready (Ctrl-C stops)\n');

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) {
      process.stdout.write('pylon: forced exit\n');
      process.exit(1);
    }
    stopping = true;
    process.stdout.write(`pylon: ${signal}, closing ${gateway.connections.size} connection(s)\n`);
    gateway
      .close()
      .then(() => admin?.close())
      .then(() => store.close())
      .then(
        () => {
          process.stdout.write('pylon: stopped\n');
          logger.flush?.();
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
