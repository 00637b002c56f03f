import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { makeDir } from '../util/make-dir.js';

/** Whether a process with this pid exists (and may be signalled by us). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * The pid the file names, if that process is alive and (where /proc tells) runs Pylon.
 * A stale file (dead process, or a pid reused by another program) reads as undefined.
 */
export function runningPid(file: string): number | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
  const pid = Number(text.trim());
  if (!Number.isInteger(pid) || pid <= 0 || !alive(pid)) return undefined;
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    if (!/pylon|cli\/main\.js/.test(cmdline)) return undefined;
  } catch {
    // No /proc (not Linux): trust the file.
  }
  return pid;
}

/**
 * Claims the pid file for this process: refuses when it names a live Pylon, replaces a stale one,
 * and removes it at exit (if it still names this process).
 */
export function claimPidFile(file: string): void {
  const other = runningPid(file);
  if (other !== undefined && other !== process.pid) {
    throw new Error(
      `already running: pid ${other} (pid file ${resolve(file)}); use pylon stop or pylon restart`,
    );
  }
  makeDir(dirname(resolve(file)));
  if (other === undefined) rmSync(file, { force: true }); // stale
  try {
    // Exclusive: of two starts racing for the file, one wins.
    writeFileSync(file, `${process.pid}\n`, { flag: 'wx' });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    throw new Error(`already running: another start claimed ${resolve(file)} at the same time`);
  }
  process.on('exit', () => {
    try {
      if (Number(readFileSync(file, 'utf8').trim()) === process.pid) rmSync(file);
    } catch {
      // already gone
    }
  });
}
