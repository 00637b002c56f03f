#!/usr/bin/env node
// Fails when the modules of src/ import each other in a circle (type-only imports count: they
// tie the files together for a reader as much as value imports do), and when a folder of src/
// imports a folder that imports it. Prints each circle found.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';

const root = resolve('src');
const files = [];
(function walk(dir) {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p);
    else if (p.endsWith('.ts')) files.push(p);
  }
})(root);

const IMPORT = /(?:^|\n)\s*(?:import|export)\s[^'"]*?from\s+['"](\.[^'"]+)['"]/g;
const graph = new Map();
for (const f of files) {
  const deps = new Set();
  for (const m of readFileSync(f, 'utf8').matchAll(IMPORT)) {
    const target = resolve(dirname(f), m[1].replace(/\.js$/, '.ts'));
    if (files.includes(target)) deps.add(target);
  }
  graph.set(f, deps);
}

const rel = (f) => relative(root, f);
let failed = false;

// File cycles: Tarjan's strongly connected components.
let index = 0;
const stack = [];
const info = new Map();
function strong(v) {
  info.set(v, { index, low: index, on: true });
  index++;
  stack.push(v);
  for (const w of graph.get(v)) {
    if (!info.has(w)) {
      strong(w);
      info.get(v).low = Math.min(info.get(v).low, info.get(w).low);
    } else if (info.get(w).on) info.get(v).low = Math.min(info.get(v).low, info.get(w).index);
  }
  if (info.get(v).low === info.get(v).index) {
    const group = [];
    let w;
    do {
      w = stack.pop();
      info.get(w).on = false;
      group.push(w);
    } while (w !== v);
    if (group.length > 1) {
      failed = true;
      console.error(`import circle of ${group.length} files: ${group.map(rel).sort().join(', ')}`);
    }
  }
}
for (const f of files) if (!info.has(f)) strong(f);

// Folder cycles: src/<folder> -> src/<folder>.
const folderOf = (f) => rel(f).split('/')[0];
const folders = new Map();
for (const [f, deps] of graph) {
  const a = folderOf(f);
  if (!a.includes('.'))
    for (const d of deps) {
      const b = folderOf(d);
      if (b !== a && !b.includes('.')) {
        if (!folders.has(a)) folders.set(a, new Set());
        folders.get(a).add(b);
      }
    }
}
for (const [a, deps] of folders) {
  for (const b of deps) {
    if (a < b && folders.get(b)?.has(a)) {
      failed = true;
      console.error(`folders import each other: src/${a} <-> src/${b}`);
    }
  }
}
if (failed) process.exit(1);
console.log(`no import circles among ${files.length} files of src/`);
