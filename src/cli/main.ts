#!/usr/bin/env node
import { Command } from 'commander';
import { VERSION } from '../gateway/version.js';
import { addBenchOptions, bench } from './bench-command.js';
import { applyConfig, effectiveConfig, exampleConfig, formatConfig } from './config.js';
import { formatStatus, readStatus, reloadInstance, stopInstance } from './control.js';
import { DAEMON_ENV, daemonize } from './daemon.js';
import { addServerOptions } from './options.js';
import { type StartFlags, start } from './start.js';

const program = new Command('pylon')
  .description('Long-connection server and push/IM gateway')
  .version(VERSION);

/** Adds the server options and reads the config file before the action runs. */
function serverCommand(name: string, description: string): Command {
  const command = addServerOptions(program.command(name).description(description));
  command.hook('preAction', (cmd) => {
    try {
      cmd.setOptionValue('configFile', applyConfig(cmd));
    } catch (err) {
      cmd.error(`pylon: ${(err as Error).message}`);
    }
    const f = cmd.opts();
    if (f.keepaliveInterval > 0 && f.keepaliveTimeout < f.keepaliveInterval) {
      cmd.error(
        `pylon: keepalive-timeout (${f.keepaliveTimeout}) must not be less than keepalive-interval (${f.keepaliveInterval})`,
      );
    }
  });
  return command;
}

function fail(err: unknown, what: string): never {
  process.stderr.write(`pylon: ${what}: ${(err as Error).message}\n`);
  process.exit(1);
}

/** The arguments a background `pylon start` gets: the command's own, without -d and the control flags. */
function startArgs(): string[] {
  return process.argv.slice(3).filter((a) => a !== '-d' && a !== '--daemon' && a !== '--force');
}

async function background(flags: StartFlags): Promise<void> {
  const pid = await daemonize({ pidFile: flags.pidFile, logFile: flags.logFile, args: startArgs() });
  process.stdout.write(
    `pylon: started in the background, pid ${pid} (pid file ${flags.pidFile}, log ${flags.logFile})\n`,
  );
}

serverCommand('start', 'run the gateway (TCP + WebSocket, built-in echo and chat, admin API)')
  .option('-d, --daemon', 'run in the background: pid file, output appended to the log file')
  .action(async (flags, command: Command) => {
    const startFlags = {
      ...flags,
      storeExplicit: command.getOptionValueSource('store') !== 'default',
      pidFileExplicit: command.getOptionValueSource('pidFile') !== 'default',
    };
    try {
      if (flags.daemon && process.env[DAEMON_ENV] !== '1') await background(startFlags);
      else await start(startFlags);
    } catch (err) {
      fail(err, 'could not start');
    }
  });

serverCommand(
  'stop',
  'stop the instance started from this directory and config: clients are told to reconnect elsewhere',
)
  .option('--force', 'kill what is left after the stop timeout')
  .action(async (flags) => {
    try {
      const result = await stopInstance(flags, {
        force: flags.force,
        print: (l) => process.stdout.write(`${l}\n`),
      });
      process.stdout.write(
        `pylon: ${result === 'not running' ? `not running (no live process in ${flags.pidFile})` : result}\n`,
      );
    } catch (err) {
      fail(err, 'stop');
    }
  });

serverCommand('restart', 'stop (if running), then start in the background with the same flags')
  .option('--force', 'kill what is left after the stop timeout')
  .action(async (flags, command: Command) => {
    try {
      const result = await stopInstance(flags, {
        force: flags.force,
        print: (l) => process.stdout.write(`${l}\n`),
      });
      process.stdout.write(`pylon: ${result}\n`);
      await background({ ...flags, storeExplicit: command.getOptionValueSource('store') !== 'default' });
    } catch (err) {
      fail(err, 'restart');
    }
  });

serverCommand(
  'reload',
  'new workers with the new code and config take over; old ones drain (no connection refused)',
).action(async (flags) => {
  try {
    await reloadInstance(flags, (l) => process.stdout.write(`${l}\n`));
  } catch (err) {
    fail(err, 'reload');
  }
});

serverCommand('status', 'each worker or node: pid, uptime, connections, users, messages/s, memory, loop lag')
  .option('--json', 'print JSON')
  .action(async (flags) => {
    const s = await readStatus(flags);
    process.stdout.write(flags.json ? `${JSON.stringify(s, null, 2)}\n` : formatStatus(s));
    process.exitCode = s.error === undefined ? 0 : s.running ? 1 : 3;
  });

addBenchOptions(
  serverCommand('bench', 'load-test the running instance: N connections, then idle, echo, broadcast or qos1'),
).action(async (flags) => {
  try {
    await bench(flags);
  } catch (err) {
    fail(err, 'bench');
  }
});

const config = program.command('config').description('the effective configuration');
config.addCommand(
  addServerOptions(new Command('print'))
    .description('print every option, its value and where it came from (flag, env, config file, default)')
    .option('--json', 'print JSON')
    .hook('preAction', (cmd) => {
      try {
        cmd.setOptionValue('configFile', applyConfig(cmd));
      } catch (err) {
        cmd.error(`pylon: ${(err as Error).message}`);
      }
    })
    .action((flags, command: Command) => {
      const options = effectiveConfig(command, flags.configFile);
      if (flags.json) {
        const out = Object.fromEntries(
          options.map((o) => [o.key, { value: o.secret && o.value ? '***' : o.value, source: o.source }]),
        );
        process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
      } else process.stdout.write(formatConfig(options));
    }),
);
config
  .command('example')
  .description('print an example config file with every option and its default')
  .action(() => {
    process.stdout.write(exampleConfig());
  });

program.parseAsync(process.argv);
