// Builds the admin dashboard into dist/web (served by the admin HTTP server at `/`): the page's
// own files from web/ (html, css, js, as they are: plain ES modules, no bundler) and uPlot's
// ESM build and stylesheet from node_modules into dist/web/vendor/. Nothing is fetched from a
// CDN at run time: the page loads only what is in dist/web.
import { copyFileSync, existsSync, mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const src = join(root, 'web');
const out = join(root, 'dist', 'web');
const vendor = join(out, 'vendor');

rmSync(out, { recursive: true, force: true });
mkdirSync(vendor, { recursive: true });

let files = 0;
let bytes = 0;
const copy = (from, to) => {
  copyFileSync(from, to);
  files++;
  bytes += statSync(to).size;
};

for (const name of readdirSync(src)) {
  if (/\.(html|css|js|svg|ico)$/.test(name)) copy(join(src, name), join(out, name));
}

// uPlot: its "main" is dist/uPlot.cjs.js; the ESM build and the stylesheet sit beside it.
const uplotDist = dirname(createRequire(import.meta.url).resolve('uplot'));
for (const name of ['uPlot.esm.js', 'uPlot.min.css']) copy(join(uplotDist, name), join(vendor, name));
const license = join(uplotDist, '..', 'LICENSE');
if (existsSync(license)) copy(license, join(vendor, 'uPlot.LICENSE.txt'));

console.log(`web: dashboard ${files} files, ${(bytes / 1024).toFixed(1)} KiB in dist/web`);
