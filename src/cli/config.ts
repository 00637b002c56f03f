import { existsSync, readFileSync } from 'node:fs';
import { extname } from 'node:path';
import type { Command } from 'commander';
import { parse as parseToml } from 'smol-toml';
import { parse as parseYaml } from 'yaml';
import { attrOf, envOf, OPTIONS, type OptionSpec, type OptionValue, parseValue } from './options.js';

/** The config files looked for in the working directory when --config is not given. */
export const DEFAULT_CONFIG_FILES = ['pylon.yaml', 'pylon.yml', 'pylon.toml'];

/** The config file to read: --config / PYLON_CONFIG, else the first default file present, else none. */
export function configFile(explicit: string | undefined): string | undefined {
  if (explicit !== undefined) {
    if (!existsSync(explicit)) throw new Error(`config file ${explicit} not found`);
    return explicit;
  }
  return DEFAULT_CONFIG_FILES.find((f) => existsSync(f));
}

/**
 * Reads and checks a config file: YAML (.yaml, .yml, .json) or TOML (.toml), a flat map of the
 * option keys (`ws-port: 8080`). Throws one Error listing every problem, each naming the key and
 * what it allows.
 */
export function readConfig(file: string): Map<string, OptionValue> {
  const text = readFileSync(file, 'utf8');
  let doc: unknown;
  try {
    doc = extname(file) === '.toml' ? parseToml(text) : parseYaml(text);
  } catch (err) {
    const format = extname(file) === '.toml' ? 'TOML' : 'YAML';
    throw new Error(`${file}: not valid ${format}: ${(err as Error).message.split('\n')[0]}`);
  }
  if (doc === null || doc === undefined) return new Map();
  if (typeof doc !== 'object' || Array.isArray(doc)) {
    throw new Error(`${file}: expected a map of option keys (like "ws-port: 8080"), got ${typeof doc}`);
  }
  const values = new Map<string, OptionValue>();
  const problems: string[] = [];
  for (const [key, raw] of Object.entries(doc as Record<string, unknown>)) {
    const spec = OPTIONS.find((o) => o.key === key);
    if (spec === undefined) {
      const near = suggest(key);
      problems.push(`unknown key "${key}"${near ? ` (did you mean "${near}"?)` : ''}`);
      continue;
    }
    if (raw === null) continue; // "key:" with no value: as if absent
    try {
      values.set(key, parseValue(spec, raw));
    } catch (err) {
      problems.push((err as Error).message);
    }
  }
  if (problems.length > 0) {
    const more = problems.length > 1 ? `${problems.length} problems:\n  ` : '';
    throw new Error(`${file}: ${more}${problems.join('\n  ')}`);
  }
  return values;
}

/**
 * Before a command runs: fills every option still at its default (not given as a flag nor in
 * the environment) from the config file, so that flags win over the environment, which wins over
 * the file, which wins over the defaults. Returns the file read, if any.
 */
export function applyConfig(command: Command): string | undefined {
  applyEnvBooleans(command);
  const file = configFile(command.getOptionValue('config') as string | undefined);
  if (file === undefined) return undefined;
  for (const [key, value] of readConfig(file)) {
    const attr = attrOf(key);
    const source = command.getOptionValueSource(attr);
    if (source === undefined || source === 'default') command.setOptionValueWithSource(attr, value, 'config');
  }
  return file;
}

/** The boolean options from their environment variables: true/1 or false/0, anything else is an error. */
function applyEnvBooleans(command: Command): void {
  for (const spec of OPTIONS) {
    const raw = process.env[envOf(spec)];
    if (spec.kind !== 'bool' || raw === undefined) continue;
    const attr = attrOf(spec.key);
    const source = command.getOptionValueSource(attr);
    if (source !== undefined && source !== 'default') continue;
    try {
      command.setOptionValueWithSource(attr, parseValue(spec, raw), 'env');
    } catch (err) {
      throw new Error(`${envOf(spec)}: ${(err as Error).message}`);
    }
  }
}

export interface EffectiveOption {
  key: string;
  value: OptionValue | undefined;
  /** flag, env (with its variable), config (with its file) or default. */
  source: string;
  secret: boolean;
}

/** What `pylon config print` shows: every option, its value and where the value came from. */
export function effectiveConfig(command: Command, file: string | undefined): EffectiveOption[] {
  return OPTIONS.map((spec) => {
    const attr = attrOf(spec.key);
    const source = command.getOptionValueSource(attr);
    const from =
      source === 'cli'
        ? 'flag'
        : source === 'env'
          ? `env ${envOf(spec)}`
          : source === 'config'
            ? `config ${file}`
            : 'default';
    return {
      key: spec.key,
      value: command.getOptionValue(attr) as OptionValue | undefined,
      source: from,
      secret: spec.secret === true,
    };
  });
}

/** The effective config as YAML that `--config` reads back, each line commented with its source. */
export function formatConfig(options: EffectiveOption[]): string {
  const lines: string[] = [];
  for (const o of options) {
    let value: string;
    if (o.value === undefined) value = '';
    else if (o.secret && (Array.isArray(o.value) ? o.value.length > 0 : o.value !== '')) value = '"***"';
    else if (Array.isArray(o.value)) value = `[${o.value.map((v) => JSON.stringify(v)).join(', ')}]`;
    else if (typeof o.value === 'string') value = JSON.stringify(o.value);
    else value = String(o.value);
    const line = value === '' ? `# ${o.key}:` : `${o.key}: ${value}`;
    lines.push(`${line.padEnd(44)} # ${o.source}`);
  }
  return `${lines.join('\n')}\n`;
}

/** The example config file: every option with its default, commented, by section. */
export function exampleConfig(): string {
  const out = [
    '# Pylon config file: every option of `pylon start`, with its default.',
    '# Precedence: command-line flag, then environment variable (PYLON_…), then this file, then the default.',
    '# `pylon start` reads ./pylon.yaml (or .yml, .toml) by itself, or the file given with --config.',
    '# `pylon config print` shows the effective values and where each came from.',
  ];
  let section = '';
  for (const spec of OPTIONS) {
    if (spec.section !== section) {
      section = spec.section;
      out.push('', `# ---- ${section} ----`);
    }
    out.push(`# ${spec.help}${describeAllowed(spec)} (env ${envOf(spec)})`);
    if (spec.default === undefined) out.push(`# ${spec.key}:`);
    else if (Array.isArray(spec.default)) out.push(`${spec.key}: []`);
    else
      out.push(
        `${spec.key}: ${typeof spec.default === 'string' ? JSON.stringify(spec.default) : spec.default}`,
      );
  }
  return `${out.join('\n')}\n`;
}

function describeAllowed(spec: OptionSpec): string {
  if (spec.kind === 'choice') return `; one of ${spec.choices?.join(', ')}`;
  if (spec.kind === 'int') return `; ${spec.min} to ${spec.max}`;
  if (spec.kind === 'list') return '; a list';
  if (spec.kind === 'bool') return '; true or false';
  return '';
}

/** The option key closest to a misspelt one: same after normalising case and separators, or at most 2 edits away. */
function suggest(key: string): string | undefined {
  const norm = key
    .replace(/([a-z])([A-Z])/g, '$1-$2')
    .replace(/[_.\s]/g, '-')
    .toLowerCase();
  const exact = OPTIONS.find((o) => o.key === norm);
  if (exact) return exact.key;
  let best: { key: string; d: number } | undefined;
  for (const o of OPTIONS) {
    const d = distance(norm, o.key);
    if (d <= 2 && (best === undefined || d < best.d)) best = { key: o.key, d };
  }
  return best?.key;
}

function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0] as number;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = row[j] as number;
      row[j] = Math.min(
        (row[j] as number) + 1,
        (row[j - 1] as number) + 1,
        prev + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
      prev = cur;
    }
  }
  return row[b.length] as number;
}
