import { pino } from 'pino';

/** The logging surface Pylon uses: pino's, so a pino logger can be passed as is. */
export interface Logger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  /** Write out what is buffered (pino's flush). */
  flush?(): void;
}

export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';

/**
 * One JSON line per event, to stderr (stdout stays the application's), written asynchronously in
 * 4 KiB batches so that logging connects and disconnects does not cost a write(2) each. With
 * `format: 'text'`, a line a person reads in a terminal instead: `12:04:05.120 INFO  msg key=value`.
 */
export function createLogger(level: LogLevel = 'info', format: 'json' | 'text' = 'json'): Logger {
  const dest = pino.destination({ dest: 2, sync: false, minLength: format === 'text' ? 0 : 4096 });
  if (format === 'json') return pino({ level, base: { name: 'pylon' } }, dest);
  const logger = pino({ level, base: undefined }, { write: (line: string) => dest.write(textLine(line)) });
  logger.flush = () => dest.flushSync();
  return logger;
}

const LEVELS: Record<number, string> = {
  10: 'TRACE',
  20: 'DEBUG',
  30: 'INFO ',
  40: 'WARN ',
  50: 'ERROR',
  60: 'FATAL',
};

/** A pino JSON line as `time LEVEL msg key=value …` (an error's message and first stack line). */
export function textLine(json: string): string {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return json;
  }
  const { time, level, msg, err, ...rest } = o;
  const t = new Date(typeof time === 'number' ? time : Date.now()).toISOString().slice(11, 23);
  let line = `${t} ${LEVELS[level as number] ?? String(level)} ${msg ?? ''}`;
  for (const [k, v] of Object.entries(rest)) line += ` ${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`;
  if (err !== undefined && typeof err === 'object' && err !== null) {
    const e = err as { message?: string; stack?: string };
    line += ` err=${JSON.stringify(e.message ?? '')}`;
    const at = e.stack?.split('\n')[1]?.trim();
    if (at) line += ` (${at})`;
  }
  return `${line}\n`;
}
