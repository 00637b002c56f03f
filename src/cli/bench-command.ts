import { writeFileSync } from 'node:fs';
import { type Command, InvalidArgumentError, Option } from 'commander';
import { formatReport, progressLine, runBench } from './bench/index.js';
import type { BenchProgress } from './bench/types.js';
import { adminBase } from './control.js';

function int(name: string, min: number) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < min)
      throw new InvalidArgumentError(`${name} must be an integer ≥ ${min}`);
    return n;
  };
}

/**
 * `pylon bench`: load-tests the instance the same flags and config file describe (its TCP or
 * WebSocket listener and its admin API), from as many client processes as the connections need.
 */
export function addBenchOptions(command: Command): Command {
  return command
    .addOption(
      new Option('-n, --connections <n>', 'connections to open')
        .default(10_000)
        .argParser(int('--connections', 1)),
    )
    .addOption(
      new Option('-w, --workload <name>', 'what the connections do once open')
        .choices(['idle', 'echo', 'broadcast', 'qos1'])
        .default('idle'),
    )
    .addOption(
      new Option('--duration <seconds>', 'how long the workload runs')
        .default(10)
        .argParser(int('--duration', 0)),
    )
    .addOption(
      new Option('--connect-rate <n>', 'new connections per second (0: as fast as possible)')
        .default(0)
        .argParser(int('--connect-rate', 0)),
    )
    .addOption(
      new Option(
        '--rate <n>',
        'broadcast and qos1: pushes per second; echo: requests per second per connection',
      ).argParser(int('--rate', 1)),
    )
    .addOption(new Option('--payload <bytes>', 'payload size').default(64).argParser(int('--payload', 0)))
    .addOption(
      new Option(
        '--per-process <n>',
        'connections per client process (a process holds at most 20,000 files here)',
      )
        .default(15_000)
        .argParser(int('--per-process', 1)),
    )
    .addOption(new Option('--transport <t>', 'tcp or ws').choices(['tcp', 'ws']).default('tcp'))
    .addOption(
      new Option(
        '--source <addresses>',
        'loopback source addresses, comma-separated (default 127.0.0.2, …)',
      ).argParser((v: string) => v.split(',').filter(Boolean)),
    )
    .option('--json [file]', 'print the report as JSON (or write it to the file and print the text)')
    .option('--no-progress', 'no progress bar');
}

// biome-ignore lint/suspicious/noExplicitAny: commander's parsed options
export async function bench(flags: any): Promise<void> {
  const connectHost = flags.host === '0.0.0.0' ? '127.0.0.1' : flags.host === '::' ? '::1' : flags.host;
  const hostPart = connectHost.includes(':') ? `[${connectHost}]` : connectHost;
  const admin = adminBase(flags);
  const tty = process.stderr.isTTY === true;
  let lastLine = 0;
  const progress = (p: BenchProgress) => {
    if (!flags.progress) return;
    if (tty) process.stderr.write(`\r${progressLine(p)}\x1b[K`);
    else if (Date.now() - lastLine >= 2000) {
      lastLine = Date.now();
      process.stderr.write(`${progressLine(p)}\n`);
    }
  };
  const report = await runBench({
    tcp: `${hostPart}:${flags.tcpPort}`,
    ws: `ws://${hostPart}:${flags.wsPort}/ws`,
    transport: flags.transport,
    admin: admin === undefined ? undefined : { url: admin, key: flags.adminKey[0] },
    connections: flags.connections,
    connectRate: flags.connectRate,
    workload: flags.workload,
    duration: flags.duration,
    rate: flags.rate,
    payload: flags.payload,
    perProcess: flags.perProcess,
    sourceAddresses: flags.source,
    progress,
    log: (line) => process.stderr.write(`${tty ? '\r\x1b[K' : ''}${line}\n`),
  });
  if (tty && flags.progress) process.stderr.write('\r\x1b[K');
  if (flags.json === true) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  else {
    if (typeof flags.json === 'string') writeFileSync(flags.json, `${JSON.stringify(report, null, 2)}\n`);
    process.stdout.write(formatReport(report));
  }
}
