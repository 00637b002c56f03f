// Summarizes V8 CPU profiles written by `npm run bench -- --cpu-prof`: the functions with the most
// self time and the most inclusive time, within the measured windows only (run.js writes them
// next to each profile as <name>.windows.json; the connect phase and warm-ups are left out).
//   node bench/profile.js <file.cpuprofile | dir> [--top N] [--all] [--label echo]
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';

const args = process.argv.slice(2);
const flag = (name) => args.includes(name);
const option = (name, fallback) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : fallback;
};
const top = Number(option('--top', 25));
const labelFilter = option('--label', undefined);
const targets = args.filter((a, i) => !a.startsWith('--') && !['--top', '--label'].includes(args[i - 1]));
if (targets.length === 0) {
  console.error('usage: node bench/profile.js <file.cpuprofile | dir> [--top N] [--all] [--label L]');
  process.exit(2);
}

const files = targets.flatMap((t) =>
  statSync(t).isDirectory()
    ? readdirSync(t)
        .filter((f) => f.endsWith('.cpuprofile'))
        .sort()
        .map((f) => join(t, f))
    : [t],
);

const cwd = `file://${process.cwd()}/`;
function frameKey(cf) {
  const name = cf.functionName || '(anonymous)';
  if (!cf.url) return name;
  const url = cf.url.startsWith(cwd) ? cf.url.slice(cwd.length) : cf.url.replace(/^node:/, 'node:');
  return `${name} ${url}:${cf.lineNumber + 1}`;
}

function summarize(file) {
  const profile = JSON.parse(readFileSync(file, 'utf8'));
  const sidecar = file.replace(/\.cpuprofile$/, '.windows.json');
  let windows = [];
  if (!flag('--all') && existsSync(sidecar)) {
    windows = JSON.parse(readFileSync(sidecar, 'utf8'));
    if (labelFilter) windows = windows.filter((w) => w.label.startsWith(labelFilter));
  }
  const byId = new Map();
  const parent = new Map();
  for (const n of profile.nodes) {
    byId.set(n.id, n);
    for (const c of n.children ?? []) parent.set(c, n.id);
  }
  const self = new Map();
  const inclusive = new Map();
  let t = profile.startTime;
  let total = 0;
  let counted = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    t += profile.timeDeltas[i];
    const dt = profile.timeDeltas[i + 1] ?? 0;
    if (windows.length > 0 && !windows.some((w) => t >= w.startUs && t <= w.endUs)) continue;
    total += dt;
    counted++;
    const node = byId.get(profile.samples[i]);
    const key = frameKey(node.callFrame);
    self.set(key, (self.get(key) ?? 0) + dt);
    const seen = new Set();
    for (let id = node.id; id !== undefined; id = parent.get(id)) {
      const k = frameKey(byId.get(id).callFrame);
      if (k === '(root)' || seen.has(k)) continue;
      seen.add(k);
      inclusive.set(k, (inclusive.get(k) ?? 0) + dt);
    }
  }
  const pct = (us) => `${((100 * us) / total).toFixed(1).padStart(5)} %`;
  const ms = (us) => `${(us / 1000).toFixed(0).padStart(6)} ms`;
  console.log(`\n## ${basename(file)}`);
  console.log(
    windows.length > 0
      ? `${counted} samples, ${(total / 1000).toFixed(0)} ms in ${windows.length} window(s): ` +
          windows.map((w) => w.label).join(', ')
      : `${counted} samples, ${(total / 1000).toFixed(0)} ms (whole profile)`,
  );
  console.log('\nself time:');
  for (const [k, us] of [...self].sort((a, b) => b[1] - a[1]).slice(0, top))
    console.log(`  ${pct(us)} ${ms(us)}  ${k}`);
  console.log('\ninclusive time:');
  for (const [k, us] of [...inclusive].sort((a, b) => b[1] - a[1]).slice(0, top))
    console.log(`  ${pct(us)} ${ms(us)}  ${k}`);
}

for (const f of files) summarize(f);
