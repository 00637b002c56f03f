import { pino } from 'pino';

/** The logging surface Pylon uses: pino's, so a pino logger can be passed as is. */
export interface Logger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';

/** One JSON line per event, to stderr (stdout stays the application's). */
export function createLogger(level: LogLevel = 'info'): Logger {
  return pino({ level, base: { name: 'pylon' } }, pino.destination(2));
}
