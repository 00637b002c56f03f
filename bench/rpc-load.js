// How much CPU other processes use (Linux /proc), so that a window measured on a busy machine is
// flagged rather than trusted: on 2 cores, one other busy process changes every figure.
import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';

function system() {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0];
    const cols = line.trim().split(/\s+/).slice(1, 9).map(Number);
    const idle = cols[3] + (cols[4] ?? 0);
    const total = cols.reduce((a, b) => a + b, 0);
    return { busy: total - idle, total };
  } catch {
    return undefined;
  }
}

function processTicks(pid) {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return Number(f[11]) + Number(f[12]); // utime + stime
  } catch {
    return 0;
  }
}

/**
 * Starts measuring; the returned function gives the cores used on average by processes other
 * than `pids` and this one since the start (undefined without /proc). Read it before the
 * measured processes exit.
 */
export function cpuOfOthers(pids) {
  const all = [process.pid, ...pids];
  const s0 = system();
  const o0 = all.reduce((a, p) => a + processTicks(p), 0);
  return () => {
    const s1 = system();
    if (!s0 || !s1 || s1.total <= s0.total) return undefined;
    const ours = all.reduce((a, p) => a + processTicks(p), 0) - o0;
    const others = Math.max(0, s1.busy - s0.busy - ours);
    return Math.round((others / (s1.total - s0.total)) * cpus().length * 100) / 100;
  };
}

/** Waits (at most `maxMs`) until other processes use under 0.2 core over half a second. */
export async function waitQuiet(maxMs) {
  const deadline = Date.now() + maxMs;
  while (Date.now() < deadline) {
    const probe = cpuOfOthers([]);
    await new Promise((r) => setTimeout(r, 500));
    const used = probe();
    if (used === undefined || used < 0.2) return;
  }
}
