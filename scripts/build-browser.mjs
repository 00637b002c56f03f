// Bundles the browser client SDK (after tsc): dist/browser/pylon-client.js (JSON codec) and
// dist/browser/pylon-client.full.js (JSON, MessagePack, Protobuf), ESM, minified, and prints
// their sizes minified and gzipped.
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import * as esbuild from 'esbuild-wasm';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const out = join(root, 'dist', 'browser');
mkdirSync(out, { recursive: true });
const sizes = {};
for (const [entry, name] of [
  ['dist/client/browser.js', 'pylon-client.js'],
  ['dist/client/browser-full.js', 'pylon-client.full.js'],
]) {
  const result = await esbuild.build({
    entryPoints: [join(root, entry)],
    bundle: true,
    minify: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    write: false,
    legalComments: 'none',
  });
  const code = result.outputFiles[0].contents;
  writeFileSync(join(out, name), code);
  sizes[name] = { minified: code.length, gzipped: gzipSync(code).length };
}
writeFileSync(join(out, 'sizes.json'), `${JSON.stringify(sizes, null, 2)}\n`);
for (const [name, s] of Object.entries(sizes)) {
  console.log(
    `browser: ${name} ${(s.minified / 1024).toFixed(1)} KiB minified, ${(s.gzipped / 1024).toFixed(1)} KiB gzipped`,
  );
}
