import { existsSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

// npm test builds first: these check what a browser would load.
describe('browser build of the client SDK', () => {
  for (const file of ['pylon-client.js', 'pylon-client.full.js']) {
    it(`${file} is one ESM file without Node built-ins`, () => {
      const path = `dist/browser/${file}`;
      expect(existsSync(path)).toBe(true);
      const code = readFileSync(path, 'utf8');
      expect(code).not.toMatch(/from\s*["']node:|require\(["'](net|tls|fs|ws)["']\)/);
      expect(code).toMatch(/export\s*\{/);
    });
  }

  it('the JSON-only build stays small (sizes are reported in dist/browser/sizes.json)', () => {
    const sizes = JSON.parse(readFileSync('dist/browser/sizes.json', 'utf8'));
    expect(sizes['pylon-client.js'].gzipped).toBeLessThan(sizes['pylon-client.full.js'].gzipped);
  });
});
