#!/usr/bin/env node
import { Command, InvalidArgumentError, Option } from 'commander';
import { VERSION } from '../gateway/version.js';
import { start } from './start.js';

function intArg(name: string, min: number, max: number) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < min || n > max) {
      throw new InvalidArgumentError(`${name} must be an integer from ${min} to ${max}, got "${value}"`);
    }
    return n;
  };
}

const program = new Command('pylon')
  .description('Long-connection server and push/IM gateway')
  .version(VERSION);

program
  .command('start')
  .description('run the gateway in the foreground (TCP + WebSocket, built-in echo)')
  .addOption(new Option('--host <host>', 'address to bind').env('PYLON_HOST').default('127.0.0.1'))
  .addOption(
    new Option('--ws-port <port>', 'WebSocket port (path /ws)')
      .env('PYLON_WS_PORT')
      .default(8080)
      .argParser(intArg('--ws-port', 0, 65535)),
  )
  .addOption(
    new Option('--tcp-port <port>', 'TCP port (4-byte length framing)')
      .env('PYLON_TCP_PORT')
      .default(8081)
      .argParser(intArg('--tcp-port', 0, 65535)),
  )
  .addOption(
    new Option('--keepalive-interval <seconds>', 'ping a connection idle this long; 0 turns keepalive off')
      .env('PYLON_KEEPALIVE_INTERVAL')
      .default(30)
      .argParser(intArg('--keepalive-interval', 0, 86_400)),
  )
  .addOption(
    new Option('--keepalive-timeout <seconds>', 'close a connection idle this long')
      .env('PYLON_KEEPALIVE_TIMEOUT')
      .default(75)
      .argParser(intArg('--keepalive-timeout', 1, 86_400)),
  )
  .addOption(
    new Option(
      '--auth <mode>',
      'token check: dev (token = user id; default on loopback), jwt, none (anonymous)',
    )
      .env('PYLON_AUTH')
      .choices(['dev', 'jwt', 'none']),
  )
  .addOption(new Option('--jwt-secret <secret>', 'HS256 shared secret (--auth jwt)').env('PYLON_JWT_SECRET'))
  .addOption(
    new Option('--jwt-public-key <file>', 'RS256 public key, PEM (--auth jwt)').env('PYLON_JWT_PUBLIC_KEY'),
  )
  .addOption(new Option('--jwt-jwks <file>', 'JWKS file with RS256 keys (--auth jwt)').env('PYLON_JWT_JWKS'))
  .addOption(new Option('--jwt-issuer <iss>', 'required iss claim').env('PYLON_JWT_ISSUER'))
  .addOption(new Option('--jwt-audience <aud>', 'required aud claim').env('PYLON_JWT_AUDIENCE'))
  .addOption(
    new Option(
      '--duplicate-login <policy>',
      'a second login of a user: allow (multi-device) or replace the older',
    )
      .env('PYLON_DUPLICATE_LOGIN')
      .choices(['allow', 'replace'])
      .default('allow'),
  )
  .addOption(
    new Option('--store <spec>', 'where qos-1 messages wait: memory, sqlite:<path>, redis://host:port')
      .env('PYLON_STORE')
      .default('sqlite:./data/pylon.db'),
  )
  .addOption(
    new Option(
      '--redis <url>',
      'join a cluster through this Redis (redis://host:port): pushes reach users on every node; also the store unless --store is given',
    ).env('PYLON_REDIS'),
  )
  .addOption(
    new Option(
      '--workers <n>',
      'worker processes on this machine, sharing the ports (without --redis they talk through the primary)',
    )
      .env('PYLON_WORKERS')
      .default(1)
      .argParser(intArg('--workers', 1, 256)),
  )
  .addOption(
    new Option('--admin-host <host>', 'address of the admin API')
      .env('PYLON_ADMIN_HOST')
      .default('127.0.0.1'),
  )
  .addOption(
    new Option('--admin-port <port>', 'admin HTTP port; -1 turns the admin API off')
      .env('PYLON_ADMIN_PORT')
      .default(9090)
      .argParser(intArg('--admin-port', -1, 65535)),
  )
  .addOption(
    new Option('--grpc-port <port>', 'admin gRPC port; -1 turns it off')
      .env('PYLON_GRPC_PORT')
      .default(9091)
      .argParser(intArg('--grpc-port', -1, 65535)),
  )
  .addOption(
    new Option('--admin-key <key>', 'admin API key (repeat for several; env: comma-separated)')
      .env('PYLON_ADMIN_KEYS')
      .default([])
      .argParser((value: string, previous: string[]) => [...previous, ...value.split(',').filter(Boolean)]),
  )
  .addOption(
    new Option('--admin-open-health', 'serve /healthz, /metrics and /openapi.json without a key').env(
      'PYLON_ADMIN_OPEN_HEALTH',
    ),
  )
  .addOption(new Option('--webhook-connect <url>', 'POST connect events here').env('PYLON_WEBHOOK_CONNECT'))
  .addOption(
    new Option('--webhook-disconnect <url>', 'POST disconnect events here').env('PYLON_WEBHOOK_DISCONNECT'),
  )
  .addOption(
    new Option('--webhook-upstream <url>', 'forward client messages of --webhook-types here').env(
      'PYLON_WEBHOOK_UPSTREAM',
    ),
  )
  .addOption(
    new Option('--webhook-types <types>', 'comma-separated message types forwarded to --webhook-upstream')
      .env('PYLON_WEBHOOK_TYPES')
      .default([])
      .argParser((value: string) => value.split(',').filter(Boolean)),
  )
  .addOption(
    new Option('--webhook-secret <secret>', 'sign webhook bodies (x-pylon-signature)').env(
      'PYLON_WEBHOOK_SECRET',
    ),
  )
  .addOption(
    new Option('--alert-webhook <url>', 'POST warn and error log events here (rate-limited)').env(
      'PYLON_ALERT_WEBHOOK',
    ),
  )
  .addOption(
    new Option('--log-level <level>', 'log level')
      .env('PYLON_LOG_LEVEL')
      .choices(['debug', 'info', 'warn', 'error', 'silent'])
      .default('info'),
  )
  .action(async (flags, command: Command) => {
    if (flags.keepaliveInterval > 0 && flags.keepaliveTimeout < flags.keepaliveInterval) {
      program.error(
        `--keepalive-timeout (${flags.keepaliveTimeout}) must not be less than --keepalive-interval (${flags.keepaliveInterval})`,
      );
    }
    try {
      await start({ ...flags, storeExplicit: command.getOptionValueSource('store') !== 'default' });
    } catch (err) {
      process.stderr.write(`pylon: could not start: ${(err as Error).message}\n`);
      process.exit(1);
    }
  });

program.parseAsync(process.argv);
