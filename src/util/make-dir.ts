import { mkdirSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';

/**
 * `mkdir -p` that always ends: creates `dir` and its missing parents one level at a time and
 * throws an Error naming the directory when one cannot be made. (Node's recursive mkdirSync
 * loops forever where a parent cannot hold directories, e.g. under /proc.)
 */
export function makeDir(dir: string): void {
  const missing: string[] = [];
  let at = resolve(dir);
  for (;;) {
    const kind = kindOf(at);
    if (kind === 'dir') break;
    if (kind === 'other') throw new Error(`${at} exists and is not a directory`);
    missing.push(at);
    const up = dirname(at);
    if (up === at) break;
    at = up;
  }
  for (let i = missing.length - 1; i >= 0; i--) {
    const d = missing[i] as string;
    try {
      mkdirSync(d);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST' && kindOf(d) === 'dir') continue;
      throw new Error(`cannot create directory ${d}: ${(err as Error).message}`, { cause: err });
    }
  }
}

function kindOf(path: string): 'dir' | 'other' | 'none' {
  try {
    return statSync(path).isDirectory() ? 'dir' : 'other';
  } catch {
    return 'none';
  }
}
