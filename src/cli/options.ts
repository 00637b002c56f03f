import { type Command, InvalidArgumentError, Option } from 'commander';

/**
 * Every option of `pylon start` in one table: each is a flag (`--ws-port`), an environment
 * variable (`PYLON_WS_PORT`) and a config-file key (`ws-port`), with one parser and one set of
 * allowed values for all three. Precedence: flag, then environment, then config file, then default.
 */
export interface OptionSpec {
  /** Flag and config key, kebab-case. */
  key: string;
  kind: 'int' | 'string' | 'bool' | 'choice' | 'list';
  /** Shown in --help and in the example config. */
  help: string;
  /** Section of the example config file. */
  section: string;
  default?: number | string | boolean | string[];
  min?: number;
  max?: number;
  choices?: readonly string[];
  /** Environment variable, when not PYLON_ + the key in upper snake case. */
  env?: string;
  /** Masked by `pylon config print`. */
  secret?: boolean;
  /** The value's name in --help: `--ws-port <port>`. */
  arg?: string;
}

export const OPTIONS: readonly OptionSpec[] = [
  // listeners
  { key: 'host', kind: 'string', section: 'listen', default: '127.0.0.1', help: 'address to bind' },
  {
    key: 'ws-port',
    kind: 'int',
    section: 'listen',
    default: 8080,
    min: 0,
    max: 65535,
    arg: 'port',
    help: 'WebSocket port (path /ws; the chat page at /)',
  },
  {
    key: 'tcp-port',
    kind: 'int',
    section: 'listen',
    default: 8081,
    min: 0,
    max: 65535,
    arg: 'port',
    help: 'TCP port (4-byte length framing)',
  },
  {
    key: 'mqtt-port',
    kind: 'int',
    section: 'listen',
    default: -1,
    min: -1,
    max: 65535,
    arg: 'port',
    help: 'MQTT 3.1.1 and 5.0 port (docs/mqtt.md; 1883 is the usual one); -1 turns it off',
  },
  // connections
  {
    key: 'keepalive-interval',
    kind: 'int',
    section: 'connections',
    default: 30,
    min: 0,
    max: 86_400,
    arg: 'seconds',
    help: 'ping a connection idle this long; 0 turns keepalive off',
  },
  {
    key: 'keepalive-timeout',
    kind: 'int',
    section: 'connections',
    default: 75,
    min: 1,
    max: 86_400,
    arg: 'seconds',
    help: 'close a connection idle this long (not less than keepalive-interval)',
  },
  {
    key: 'ws-compression',
    kind: 'bool',
    section: 'connections',
    default: false,
    help: 'permessage-deflate with WebSocket clients that offer it (messages of 1 KiB and more; a broadcast is compressed once)',
  },
  {
    key: 'http-transport',
    kind: 'bool',
    section: 'connections',
    default: true,
    help: 'Pylon over HTTP on the WebSocket port (POST /http, GET /stream) for clients whose network breaks WebSocket; false turns it off',
  },
  {
    key: 'max-connections',
    kind: 'int',
    section: 'connections',
    default: 100_000,
    min: 1,
    max: 10_000_000,
    arg: 'n',
    help: 'connections per process; more are refused (TCP closed, WebSocket 503)',
  },
  {
    key: 'max-connections-per-ip',
    kind: 'int',
    section: 'connections',
    default: 10_000,
    min: 1,
    max: 10_000_000,
    arg: 'n',
    help: 'connections per remote address and process; more are refused (WebSocket 429)',
  },
  {
    key: 'max-connections-per-user',
    kind: 'int',
    section: 'connections',
    default: 100,
    min: 1,
    max: 10_000_000,
    arg: 'n',
    help: 'connections one user may hold on a process; one more is closed at its handshake (4010)',
  },
  {
    key: 'user-rate-limit',
    kind: 'int',
    section: 'connections',
    default: 2000,
    min: 0,
    max: 10_000_000,
    arg: 'frames',
    help: "frames per second of all a user's connections on a process (burst twice it); over it the sending connection is closed (4006); 0 turns it off",
  },
  {
    key: 'fanout-max-backlog',
    kind: 'int',
    section: 'connections',
    default: 100,
    min: 0,
    max: 3_600_000,
    arg: 'ms',
    help: 'refuse a broadcast (429) while those waiting would take longer than this to write; 0: no bound',
  },
  {
    key: 'max-frame',
    kind: 'int',
    section: 'connections',
    default: 65_536,
    min: 64,
    max: 64 * 1_048_576,
    arg: 'bytes',
    help: 'largest frame (WebSocket: message) a client may send; pushes to clients are not limited by it',
  },
  {
    key: 'max-partial-bytes',
    kind: 'int',
    section: 'connections',
    default: 64 * 1_048_576,
    min: 65_536,
    max: 64 * 1024 * 1_048_576,
    arg: 'bytes',
    help: 'bytes of unfinished frames all connections may hold together; over it the largest holders are closed (4008)',
  },
  {
    key: 'frame-timeout',
    kind: 'int',
    section: 'connections',
    default: 15,
    min: 1,
    max: 3600,
    arg: 'seconds',
    help: 'a frame that has begun must be whole within this long, or its connection is closed (4009)',
  },
  {
    key: 'max-outbound-bytes',
    kind: 'int',
    section: 'connections',
    default: 512 * 1_048_576,
    min: 1_048_576,
    max: 64 * 1024 * 1_048_576,
    arg: 'bytes',
    help: 'bytes queued for writing on all connections together; over it the largest are closed as slow consumers (4004)',
  },
  {
    key: 'trusted-proxies',
    kind: 'list',
    section: 'connections',
    default: [],
    arg: 'addresses',
    help: 'reverse proxies (IP addresses or CIDR ranges, comma-separated) whose X-Forwarded-For gives a WebSocket client its address',
  },
  {
    key: 'duplicate-login',
    kind: 'choice',
    section: 'connections',
    default: 'allow',
    choices: ['allow', 'replace'],
    arg: 'policy',
    help: 'a second login of a user: allow (multi-device) or replace the older',
  },
  // auth
  {
    key: 'auth',
    kind: 'choice',
    section: 'auth',
    choices: ['dev', 'jwt', 'none'],
    arg: 'mode',
    help: 'token check: dev (token = user id; the default on loopback), jwt, none (anonymous)',
  },
  {
    key: 'jwt-secret',
    kind: 'string',
    section: 'auth',
    secret: true,
    arg: 'secret',
    help: 'HS256 shared secret',
  },
  { key: 'jwt-public-key', kind: 'string', section: 'auth', arg: 'file', help: 'RS256 public key, PEM file' },
  { key: 'jwt-jwks', kind: 'string', section: 'auth', arg: 'file', help: 'JWKS file with RS256 keys' },
  { key: 'jwt-issuer', kind: 'string', section: 'auth', arg: 'iss', help: 'required iss claim' },
  { key: 'jwt-audience', kind: 'string', section: 'auth', arg: 'aud', help: 'required aud claim' },
  // store and cluster
  {
    key: 'store',
    kind: 'string',
    section: 'store and cluster',
    default: 'sqlite:./data/pylon.db',
    arg: 'spec',
    help: 'where qos-1 messages wait: memory, sqlite:<path>, redis://host:port, or redis://a:7000,redis://b:7001,… (a Redis Cluster)',
  },
  {
    key: 'store-check',
    kind: 'bool',
    section: 'store and cluster',
    default: true,
    help: 'check a SQLite store file at start (PRAGMA quick_check) and refuse a damaged one; false skips it for huge files',
  },
  {
    key: 'redis',
    kind: 'string',
    section: 'store and cluster',
    secret: true,
    arg: 'url',
    help: 'join a cluster through this Redis (redis://host:port), or a Redis Cluster (its seeds, comma-separated); also the store unless store is set',
  },
  {
    key: 'redis-cluster',
    kind: 'bool',
    section: 'store and cluster',
    default: false,
    help: 'the one redis URL is a seed of a Redis Cluster (several comma-separated URLs always are)',
  },
  {
    key: 'workers',
    kind: 'int',
    section: 'store and cluster',
    default: 1,
    min: 1,
    max: 256,
    arg: 'n',
    help: 'worker processes sharing the ports (without redis they talk through the primary process)',
  },
  // admin
  {
    key: 'admin-host',
    kind: 'string',
    section: 'admin API',
    default: '127.0.0.1',
    arg: 'host',
    help: 'address of the admin API',
  },
  {
    key: 'admin-port',
    kind: 'int',
    section: 'admin API',
    default: 9090,
    min: -1,
    max: 65535,
    arg: 'port',
    help: 'admin HTTP port (status, push, dashboard); -1 turns the admin API off',
  },
  {
    key: 'grpc-port',
    kind: 'int',
    section: 'admin API',
    default: 9091,
    min: -1,
    max: 65535,
    arg: 'port',
    help: 'admin gRPC port; -1 turns it off',
  },
  {
    key: 'admin-key',
    kind: 'list',
    section: 'admin API',
    default: [],
    env: 'PYLON_ADMIN_KEYS',
    secret: true,
    arg: 'key',
    help: 'admin API key (repeat the flag or comma-separate; none: loopback only)',
  },
  {
    key: 'admin-tail',
    kind: 'bool',
    section: 'admin API',
    default: false,
    help: "serve GET /v1/tail: the live traffic of one user or label (the dashboard's live tail), behind the admin key",
  },
  {
    key: 'admin-open-health',
    kind: 'bool',
    section: 'admin API',
    default: false,
    help: 'serve the probes (/healthz, /livez, /readyz), /metrics and /openapi.json without a key',
  },
  // webhooks
  {
    key: 'webhook-connect',
    kind: 'string',
    section: 'webhooks',
    arg: 'url',
    help: 'POST connect events here',
  },
  {
    key: 'webhook-disconnect',
    kind: 'string',
    section: 'webhooks',
    arg: 'url',
    help: 'POST disconnect events here',
  },
  {
    key: 'webhook-undelivered',
    kind: 'string',
    section: 'webhooks',
    arg: 'url',
    help: 'POST qos-1 messages unacknowledged after undelivered-after (and their later acks) here',
  },
  {
    key: 'undelivered-after',
    kind: 'int',
    section: 'webhooks',
    default: 30,
    min: 1,
    max: 86_400,
    arg: 'seconds',
    help: 'a qos-1 message still unacknowledged this long after it was stored is reported undelivered',
  },
  {
    key: 'webhook-upstream',
    kind: 'string',
    section: 'webhooks',
    arg: 'url',
    help: 'forward client messages of webhook-types here',
  },
  {
    key: 'webhook-types',
    kind: 'list',
    section: 'webhooks',
    default: [],
    arg: 'types',
    help: 'message types forwarded to webhook-upstream (comma-separated)',
  },
  {
    key: 'webhook-secret',
    kind: 'string',
    section: 'webhooks',
    secret: true,
    arg: 'secret',
    help: 'sign webhook bodies (x-pylon-signature)',
  },
  {
    key: 'alert-webhook',
    kind: 'string',
    section: 'webhooks',
    arg: 'url',
    help: 'POST warn and error log events here (rate-limited)',
  },
  // operations
  {
    key: 'otel-endpoint',
    kind: 'string',
    section: 'operations',
    arg: 'url',
    help: 'export OpenTelemetry spans over OTLP/HTTP to this collector (e.g. http://127.0.0.1:4318); off when unset',
  },
  {
    key: 'log-level',
    kind: 'choice',
    section: 'operations',
    default: 'info',
    choices: ['debug', 'info', 'warn', 'error', 'silent'],
    arg: 'level',
    help: 'log level',
  },
  {
    key: 'log-format',
    kind: 'choice',
    section: 'operations',
    default: 'auto',
    choices: ['auto', 'text', 'json'],
    arg: 'format',
    help: 'text lines for a person or JSON lines for a machine; auto: text when stderr is a terminal',
  },
  {
    key: 'pid-file',
    kind: 'string',
    section: 'operations',
    default: './pylon.pid',
    arg: 'file',
    help: 'written by start -d (and by a foreground start when set); read by stop, reload, restart, status',
  },
  {
    key: 'log-file',
    kind: 'string',
    section: 'operations',
    default: './pylon.log',
    arg: 'file',
    help: 'where start -d writes its output (appended)',
  },
  {
    key: 'drain-timeout',
    kind: 'int',
    section: 'operations',
    default: 30,
    min: 0,
    max: 86_400,
    arg: 'seconds',
    help: 'reload: old workers serve their connections this long, then tell them to reconnect (4001)',
  },
  {
    key: 'stop-timeout',
    kind: 'int',
    section: 'operations',
    default: 10,
    min: 1,
    max: 3600,
    arg: 'seconds',
    help: 'stop: time to close connections and flush the store before the process is forced out',
  },
  {
    key: 'shutdown-grace',
    kind: 'int',
    section: 'operations',
    default: 0,
    min: 0,
    max: 3600,
    arg: 'seconds',
    help: 'SIGTERM: answer /readyz 503 and keep serving this long (so a load balancer stops sending) before closing connections; SIGINT does not wait',
  },
];

/** The camelCase attribute commander gives a key: `ws-port` → `wsPort`. */
export function attrOf(key: string): string {
  return key.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}

export function envOf(spec: OptionSpec): string {
  return spec.env ?? `PYLON_${spec.key.toUpperCase().replace(/-/g, '_')}`;
}

export type OptionValue = number | string | boolean | string[];

/**
 * Parses and checks one value for `spec`, from a flag, the environment or a config file. Throws
 * an Error naming the key and the allowed values.
 */
export function parseValue(spec: OptionSpec, raw: unknown, previous?: OptionValue): OptionValue {
  const name = spec.key;
  const shown = typeof raw === 'string' ? `"${raw}"` : JSON.stringify(raw);
  switch (spec.kind) {
    case 'int': {
      const n =
        typeof raw === 'number' ? raw : typeof raw === 'string' && raw.trim() !== '' ? Number(raw) : NaN;
      if (!Number.isInteger(n) || n < (spec.min ?? -Infinity) || n > (spec.max ?? Infinity)) {
        throw new Error(`${name} must be an integer from ${spec.min} to ${spec.max}, got ${shown}`);
      }
      return n;
    }
    case 'choice': {
      if (typeof raw !== 'string' || !spec.choices?.includes(raw)) {
        throw new Error(`${name} must be one of ${spec.choices?.join(', ')}, got ${shown}`);
      }
      return raw;
    }
    case 'bool': {
      if (typeof raw === 'boolean') return raw;
      if (raw === 'true' || raw === '1') return true;
      if (raw === 'false' || raw === '0') return false;
      throw new Error(`${name} must be true or false, got ${shown}`);
    }
    case 'list': {
      const items = Array.isArray(raw) ? raw : typeof raw === 'string' ? raw.split(',') : undefined;
      if (items === undefined || !items.every((i) => typeof i === 'string')) {
        throw new Error(
          `${name} must be a list of strings (in quotes when they look like numbers), got ${shown}`,
        );
      }
      const values = items.map((i) => i.trim()).filter(Boolean);
      return Array.isArray(previous) ? [...previous, ...values] : values;
    }
    default: {
      // A YAML number is not read back as written (00123 → 123, 0x10 → 16): secrets and names must be quoted.
      if (typeof raw === 'number')
        throw new Error(`${name} must be a string: write it in quotes, got ${shown}`);
      if (typeof raw !== 'string' || raw === '')
        throw new Error(`${name} must be a non-empty string, got ${shown}`);
      return raw;
    }
  }
}

/** Adds every option of the table to `command` (flags with their environment variables and defaults). */
export function addServerOptions(command: Command): Command {
  for (const spec of OPTIONS) {
    // A boolean that defaults to true is turned off by its --no- flag.
    const flag =
      spec.kind === 'bool'
        ? spec.default === true
          ? `--no-${spec.key}`
          : `--${spec.key}`
        : `--${spec.key} <${spec.arg ?? 'value'}>`;
    const help = spec.kind === 'bool' ? `${spec.help} [env: ${envOf(spec)}=true|false]` : spec.help;
    const option = new Option(flag, help);
    // Commander would take any value of a boolean's variable (even "false") as true: applyEnvBooleans reads them.
    if (spec.kind !== 'bool') option.env(envOf(spec));
    if (spec.kind === 'choice') option.choices(spec.choices ?? []);
    else if (spec.kind !== 'bool' && spec.kind !== 'string') {
      option.argParser((value: string, previous: unknown) => {
        try {
          // A list's default ([]) is not a previous value of the flag.
          const prev = previous === spec.default ? undefined : (previous as OptionValue | undefined);
          return parseValue(spec, value, prev);
        } catch (err) {
          throw new InvalidArgumentError((err as Error).message);
        }
      });
    }
    if (spec.default !== undefined) option.default(spec.default);
    command.addOption(option);
  }
  command.addOption(
    new Option(
      '--config <file>',
      'config file, YAML or TOML (default: ./pylon.yaml, .yml or .toml if present)',
    ).env('PYLON_CONFIG'),
  );
  return command;
}
