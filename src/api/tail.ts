import type { Gateway } from '../gateway/gateway.js';
import type { TapFilter } from '../gateway/taps.js';
import { PylonError } from '../protocol/errors.js';
import { RESPONDED, type Route } from './http.js';

/** A tail ends by itself after this long (ms): nobody forgets one open for days. */
const MAX_TAIL_MS = 10 * 60_000;
/** A reader this far behind (bytes unsent) misses events until it catches up. */
const MAX_BUFFERED = 64 * 1024;

/**
 * `GET /v1/tail?user=<id>` or `?label=<label>`: the live traffic of one user or label on this
 * node, as Server-Sent Events (one `data:` line of JSON per event, a TapEvent). Off unless
 * `startAdmin({ tail: true })` (`pylon start --admin-tail`); authenticated like every route.
 * Bounded: 16 taps per process, 10 minutes per tail, a slow reader skips events.
 */
export function tailRoute(gateway: Gateway): Route {
  return {
    method: 'GET',
    path: '/v1/tail',
    handler: ({ query, res }) => {
      const user = query.get('user');
      const label = query.get('label');
      if ((user === null) === (label === null))
        throw new PylonError('BAD_REQUEST', 'query: needs exactly one of user, label');
      const value = (user ?? label) as string;
      if (value.length === 0 || value.length > 256)
        throw new PylonError(
          'BAD_REQUEST',
          `${user !== null ? 'user' : 'label'}: must be 1 to 256 characters`,
        );
      const filter: TapFilter = user !== null ? { user } : { label: label as string };
      const close = gateway.tap(filter, (e) => {
        if (res.writableLength <= MAX_BUFFERED) res.write(`data: ${JSON.stringify(e)}\n\n`);
      });
      res.writeHead(200, {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-store',
        'x-content-type-options': 'nosniff',
        'x-accel-buffering': 'no',
      });
      res.write(': tail open\n\n');
      const timer = setTimeout(() => res.end(), MAX_TAIL_MS);
      timer.unref();
      res.once('close', () => {
        clearTimeout(timer);
        close();
      });
      return RESPONDED;
    },
  };
}
