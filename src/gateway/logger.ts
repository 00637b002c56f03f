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
 * 4 KiB batches so that logging connects and disconnects does not cost a write(2) each.
 */
export function createLogger(level: LogLevel = 'info'): Logger {
  const dest = pino.destination({ dest: 2, sync: false, minLength: 4096 });
  return pino({ level, base: { name: 'pylon' } }, dest);
}
