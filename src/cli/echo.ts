import type { Gateway } from '../gateway/gateway.js';
import { PylonError } from '../protocol/errors.js';

/** Longest wait `echo.delay` accepts (ms). */
export const MAX_ECHO_DELAY = 10_000;

/**
 * The built-in echo of `pylon start`: a request of type "echo" is answered with its data, and
 * a one-way message of type "Echo" is pushed back as it came (the hotpot way). "echo.delay"
 * `{ms, data}` answers `data` after `ms` (0 to 10,000): for client authors to see answers come
 * back out of order and to reach the limit of requests in flight (TOO_MANY_REQUESTS).
 */
export function installEcho(gateway: Gateway): void {
  gateway.handle('echo', (data) => data);
  gateway.handle('Echo', (data, ctx) => {
    ctx.connection.send('Echo', data);
  });
  gateway.handle('echo.delay', (data) => {
    const ms = (data as { ms?: unknown } | null | undefined)?.ms;
    if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < 0 || ms > MAX_ECHO_DELAY)
      throw new PylonError('BAD_REQUEST', `data.ms: must be a number of ms from 0 to ${MAX_ECHO_DELAY}`);
    return new Promise((resolve) => {
      gateway.after(ms, () => resolve((data as { data?: unknown }).data));
    });
  });
}
