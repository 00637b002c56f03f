import { spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { makeDir } from '../util/make-dir.js';
import { runningPid } from './pidfile.js';

/** Set by `start -d` in the background process it launches. */
export const DAEMON_ENV = 'PYLON_DAEMON';
/** What the background process sends the launching command once every worker listens. */
export const DAEMON_READY = { pylon: 'daemon-ready' } as const;

export interface DaemonOptions {
  pidFile: string;
  logFile: string;
  /** The `pylon start` arguments for the background process (without -d). */
  args: string[];
  /** ms to wait for it to listen. Default 60 s. */
  readyTimeout?: number;
  print?: (line: string) => void;
}

/**
 * `pylon start -d`: refuses when the pid file names a live Pylon, then starts `pylon start` again
 * in a new session (no terminal; it outlives this command) with its output appended to the log
 * file, waits until every worker listens and returns its pid. The background process writes
 * the pid file itself (and removes it when it exits). If it exits before it is ready, the error
 * is the end of its log.
 */
export function daemonize(o: DaemonOptions): Promise<number> {
  const running = runningPid(o.pidFile);
  if (running !== undefined) {
    return Promise.reject(
      new Error(
        `already running: pid ${running} (pid file ${resolve(o.pidFile)}); use pylon stop or pylon restart`,
      ),
    );
  }
  makeDir(dirname(resolve(o.logFile)));
  const logStart = fileSize(o.logFile);
  const log = openSync(o.logFile, 'a');
  const main = process.argv[1] as string;
  const child = spawn(process.execPath, [...process.execArgv, main, 'start', ...o.args], {
    detached: true,
    stdio: ['ignore', log, log, 'ipc'],
    env: { ...process.env, [DAEMON_ENV]: '1' },
  });
  closeSync(log);
  return new Promise<number>((resolvePid, reject) => {
    const timer = setTimeout(() => {
      fail(`not ready within ${(o.readyTimeout ?? 60_000) / 1000} s`);
      child.kill('SIGTERM');
    }, o.readyTimeout ?? 60_000);
    const fail = (why: string) => {
      clearTimeout(timer);
      const tail = readFileSync(o.logFile)
        .subarray(logStart)
        .toString('utf8')
        .trim()
        .split('\n')
        .slice(-15)
        .join('\n');
      reject(new Error(`${why}${tail ? `; the end of ${o.logFile}:\n${tail}` : ''}`));
    };
    child.once('exit', (code, signal) => fail(`the background process exited (${signal ?? code})`));
    child.on('message', (m: unknown) => {
      if ((m as { pylon?: string } | null)?.pylon !== DAEMON_READY.pylon) return;
      clearTimeout(timer);
      child.removeAllListeners('exit');
      child.disconnect();
      child.unref();
      resolvePid(child.pid as number);
    });
  });
}

function fileSize(file: string): number {
  try {
    return statSync(file).size;
  } catch {
    return 0;
  }
}
