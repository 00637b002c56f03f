// What the connections of the idle workload keep on the heap: compares the heap snapshots that
// `npm run bench -- --heap-snapshot` writes before and after connecting, and lists the objects that
// are new in the second (V8 keeps object ids across snapshots of one process), by constructor, with
// their bytes per connection and what holds them.
//   node --max-old-space-size=8192 bench/heap.js <before.heapsnapshot> <after.heapsnapshot> [--per N] [--top N]
import { readFileSync } from 'node:fs';

const args = process.argv.slice(2);
const option = (name, fallback) => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : fallback;
};
const [beforeFile, afterFile] = args.filter((a, i) => !a.startsWith('--') && !args[i - 1]?.startsWith('--'));
if (!beforeFile || !afterFile) {
  console.error('usage: node bench/heap.js <before.heapsnapshot> <after.heapsnapshot> [--per N] [--top N]');
  process.exit(2);
}
const top = option('--top', 30);
const perFromName = /conns(\d+)/.exec(afterFile);
const per = option('--per', perFromName ? Number(perFromName[1]) : 1);

function load(file) {
  const s = JSON.parse(readFileSync(file, 'utf8'));
  const m = s.snapshot.meta;
  const nf = m.node_fields;
  const ef = m.edge_fields;
  return {
    nodes: s.nodes,
    edges: s.edges,
    strings: s.strings,
    nodeTypes: m.node_types[0],
    edgeTypes: m.edge_types[0],
    N: nf.length,
    E: ef.length,
    iType: nf.indexOf('type'),
    iName: nf.indexOf('name'),
    iId: nf.indexOf('id'),
    iSize: nf.indexOf('self_size'),
    iEdges: nf.indexOf('edge_count'),
    eType: ef.indexOf('type'),
    eName: ef.indexOf('name_or_index'),
    eTo: ef.indexOf('to_node'),
  };
}

/** A readable class for a node: constructor name for objects, the kind for everything else. */
function keyOf(h, i) {
  const type = h.nodeTypes[h.nodes[i + h.iType]];
  const name = h.strings[h.nodes[i + h.iName]];
  switch (type) {
    case 'object':
      return name;
    case 'closure':
      return `closure ${name || '(anonymous)'}`;
    case 'string':
    case 'concatenated string':
    case 'sliced string':
      return '(string)';
    case 'number':
      return '(heap number)';
    case 'array':
      return `(array ${name})`;
    case 'code':
      return '(code)';
    case 'hidden':
    case 'object shape':
      return `(${type} ${name.slice(0, 40)})`;
    default:
      return `(${type} ${name.slice(0, 40)})`;
  }
}

const before = load(beforeFile);
const oldIds = new Set();
for (let i = 0; i < before.nodes.length; i += before.N) oldIds.add(before.nodes[i + before.iId]);
before.nodes = null;
before.strings = null;

const h = load(afterFile);
const count = h.nodes.length / h.N;
const isNew = new Uint8Array(count);
const byKey = new Map();
let newBytes = 0;
for (let k = 0, i = 0; k < count; k++, i += h.N) {
  if (oldIds.has(h.nodes[i + h.iId])) continue;
  isNew[k] = 1;
  const key = keyOf(h, i);
  const size = h.nodes[i + h.iSize];
  newBytes += size;
  const e = byKey.get(key) ?? { count: 0, bytes: 0 };
  e.count++;
  e.bytes += size;
  byKey.set(key, e);
}
const ranked = [...byKey].sort((a, b) => b[1].bytes - a[1].bytes).slice(0, top);
const watched = new Set(ranked.map(([k]) => k));

// Retainers of the new objects of the top classes: which (class . edge) points at them.
const retainers = new Map();
const weak = h.edgeTypes.indexOf('weak');
for (let k = 0, i = 0, e = 0; k < count; k++, i += h.N) {
  const edges = h.nodes[i + h.iEdges];
  const fromKey = edges > 0 ? keyOf(h, i) : '';
  for (let j = 0; j < edges; j++, e += h.E) {
    if (h.edges[e + h.eType] === weak) continue;
    const to = h.edges[e + h.eTo];
    if (!isNew[to / h.N]) continue;
    const toKey = keyOf(h, to);
    if (!watched.has(toKey)) continue;
    const et = h.edgeTypes[h.edges[e + h.eType]];
    const nameOrIndex = h.edges[e + h.eName];
    const edgeName = et === 'element' || et === 'hidden' ? `[${et}]` : String(h.strings[nameOrIndex]);
    const r = retainers.get(toKey) ?? new Map();
    const label = `${fromKey}.${edgeName}`;
    r.set(label, (r.get(label) ?? 0) + 1);
    retainers.set(toKey, r);
  }
}

console.log(
  `new objects: ${(newBytes / 2 ** 20).toFixed(1)} MiB, ${(newBytes / per).toFixed(0)} bytes per connection ` +
    `(${per.toLocaleString('en-US')} connections); self sizes, not retained sizes\n`,
);
console.log('| class | count per conn | bytes per conn | held by (top 3) |');
console.log('|---|---|---|---|');
for (const [key, e] of ranked) {
  const held = [...(retainers.get(key) ?? new Map())]
    .sort((a, b) => b[1] - a[1])
    .slice(0, 3)
    .map(([l, n]) => `${l} ×${(n / per).toFixed(2)}`)
    .join('; ');
  console.log(`| ${key} | ${(e.count / per).toFixed(2)} | ${(e.bytes / per).toFixed(0)} | ${held} |`);
}
