// How busy the machine was with other work during a measurement window (Linux /proc): the CPU
// used by every process minus the benchmark's own. Other jobs on a 2-core machine change every
// figure, so each window records it and the run warns when it was not negligible.
import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';

function systemJiffies() {
  try {
    const f = readFileSync('/proc/stat', 'utf8');
    const cols = f.slice(0, f.indexOf('\n')).trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal
    const idle = cols[3] + (cols[4] ?? 0);
    const total = cols.slice(0, 8).reduce((a, b) => a + b, 0);
    return { busy: total - idle, total };
  } catch {
    return undefined;
  }
}

function processJiffies(pid) {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    // fields 14 and 15 of stat (utime, stime) are 11 and 12 after the command name
    return Number(f[11]) + Number(f[12]);
  } catch {
    return 0;
  }
}

/**
 * Starts a probe over the given pids (plus this process). `end()` returns the cores used by
 * other processes on average over the window, and by ours; undefined where /proc is missing.
 */
export function loadProbe(pids) {
  const all = [process.pid, ...pids];
  const s0 = systemJiffies();
  const o0 = all.reduce((a, p) => a + processJiffies(p), 0);
  return {
    end() {
      const s1 = systemJiffies();
      if (!s0 || !s1) return undefined;
      const o1 = all.reduce((a, p) => a + processJiffies(p), 0);
      const total = s1.total - s0.total;
      if (total <= 0) return undefined;
      const cores = cpus().length;
      const ours = o1 - o0;
      const others = Math.max(0, s1.busy - s0.busy - ours);
      const round = (x) => Math.round(x * 100) / 100;
      return { otherCores: round((others / total) * cores), ourCores: round((ours / total) * cores) };
    },
  };
}
