import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { OPTIONS } from '../src/cli/options.js';

// The config file, the environment and the flags, read by the built CLI in a directory of its own.
const MAIN = resolve('dist/cli/main.js');
const dir = mkdtempSync(join(tmpdir(), 'pylon-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function pylon(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; out: string; err: string }> {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('PYLON_')));
  return new Promise((done) => {
    execFile(
      process.execPath,
      [MAIN, ...args],
      { cwd: dir, env: { ...clean, ...env }, timeout: 30_000 },
      (error, out, err) => done({ code: error ? ((error as { code?: number }).code ?? 1) : 0, out, err }),
    );
  });
}

type Printed = Record<string, { value: unknown; source: string }>;
const printed = async (args: string[], env: Record<string, string> = {}) => {
  const r = await pylon(['config', 'print', '--json', ...args], env);
  expect(r.err).toBe('');
  return JSON.parse(r.out) as Printed;
};

describe('config file, environment and flags', () => {
  it('takes a flag over the environment over ./pylon.yaml over the default, and says where each came from', async () => {
    writeFileSync(
      join(dir, 'pylon.yaml'),
      'ws-port: 7001\ntcp-port: 7002\nlog-level: warn\nadmin-key: [k1, k2]\nwebhook-types: a,b\n',
    );
    const c = await printed(['--log-level', 'error'], { PYLON_TCP_PORT: '7003' });
    expect(c['ws-port']).toEqual({ value: 7001, source: 'config pylon.yaml' });
    expect(c['tcp-port']).toEqual({ value: 7003, source: 'env PYLON_TCP_PORT' });
    expect(c['log-level']).toEqual({ value: 'error', source: 'flag' });
    expect(c['admin-port']).toEqual({ value: 9090, source: 'default' });
    expect(c['webhook-types']).toEqual({ value: ['a', 'b'], source: 'config pylon.yaml' });
    // Secrets are not printed.
    expect(c['admin-key']).toEqual({ value: '***', source: 'config pylon.yaml' });
    const text = await pylon(['config', 'print']);
    expect(text.out).toMatch(/^ws-port: 7001 +# config pylon\.yaml$/m);
    expect(text.out).not.toMatch(/k1/);
    rmSync(join(dir, 'pylon.yaml'));
  });

  it('reads TOML with --config', async () => {
    writeFileSync(join(dir, 'p.toml'), 'ws-port = 7101\nworkers = 3\nduplicate-login = "replace"\n');
    const c = await printed(['--config', 'p.toml']);
    expect(c['ws-port']?.value).toBe(7101);
    expect(c.workers?.value).toBe(3);
    expect(c['duplicate-login']?.value).toBe('replace');
  });

  it('refuses a bad file naming every bad key and what it allows; start refuses it too', async () => {
    writeFileSync(
      join(dir, 'bad.yaml'),
      'ws_port: 7001\nauth: magic\nworkers: 0\nadmin-port: "x"\nduplicate-login: [allow]\n',
    );
    for (const command of [['config', 'print'], ['start']]) {
      const r = await pylon([...command, '--config', 'bad.yaml']);
      expect(r.code).toBe(1);
      expect(r.err).toMatch(/bad\.yaml: 5 problems/);
      expect(r.err).toMatch(/unknown key "ws_port" \(did you mean "ws-port"\?\)/);
      expect(r.err).toMatch(/auth must be one of dev, jwt, none, got "magic"/);
      expect(r.err).toMatch(/workers must be an integer from 1 to 256, got 0/);
      expect(r.err).toMatch(/admin-port must be an integer from -1 to 65535, got "x"/);
      expect(r.err).toMatch(/duplicate-login must be one of allow, replace/);
    }
    writeFileSync(join(dir, 'broken.yaml'), 'ws-port: [1,\n');
    const broken = await pylon(['start', '--config', 'broken.yaml']);
    expect(broken.code).toBe(1);
    expect(broken.err).toMatch(/broken\.yaml: not valid YAML/);
    const missing = await pylon(['start', '--config', 'nope.yaml']);
    expect(missing.err).toMatch(/config file nope\.yaml not found/);
    const env = await pylon(['config', 'print'], { PYLON_WS_PORT: 'eighty' });
    expect(env.code).toBe(1);
    expect(env.err).toMatch(/ws-port must be an integer from 0 to 65535, got "eighty"/);
  });

  it('the example config lists every option with its default, reads back as the defaults, and is the one shipped', async () => {
    const example = (await pylon(['config', 'example'])).out;
    expect(readFileSync('pylon.example.yaml', 'utf8')).toBe(example);
    for (const spec of OPTIONS) expect(example).toMatch(new RegExp(`^(# )?${spec.key}:`, 'm'));
    writeFileSync(join(dir, 'example.yaml'), example);
    const fromFile = await printed(['--config', 'example.yaml']);
    const defaults = await printed([]);
    for (const spec of OPTIONS) {
      expect(fromFile[spec.key]?.value, spec.key).toEqual(defaults[spec.key]?.value);
      if (spec.default !== undefined && !(Array.isArray(spec.default) && spec.default.length === 0))
        expect(fromFile[spec.key]?.source, spec.key).toBe('config example.yaml');
    }
  });

  it('reads a boolean from the environment as true/1 or false/0 only', async () => {
    expect((await printed([], { PYLON_ADMIN_OPEN_HEALTH: 'false' }))['admin-open-health']).toEqual({
      value: false,
      source: 'env PYLON_ADMIN_OPEN_HEALTH',
    });
    expect((await printed([], { PYLON_ADMIN_OPEN_HEALTH: '1' }))['admin-open-health']?.value).toBe(true);
    const bad = await pylon(['config', 'print'], { PYLON_ADMIN_OPEN_HEALTH: 'maybe' });
    expect(bad.code).toBe(1);
    expect(bad.err).toMatch(/PYLON_ADMIN_OPEN_HEALTH: admin-open-health must be true or false, got "maybe"/);
  });

  it('refuses a secret or key the file would read as a number (00123456 would become 123456)', async () => {
    writeFileSync(
      join(dir, 'num.yaml'),
      'jwt-secret: 00123456\nadmin-key: [0x10, "ok"]\njwt-audience: "0777"\n',
    );
    const r = await pylon(['config', 'print', '--config', 'num.yaml']);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/jwt-secret must be a string: write it in quotes, got 123456/);
    expect(r.err).toMatch(/admin-key must be a list of strings \(in quotes when they look like numbers\)/);
    expect(r.err).not.toMatch(/jwt-audience/);
  });
});
