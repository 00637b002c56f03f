import type { Gateway } from '../gateway/gateway.js';

/**
 * The built-in echo of `pylon start`: a request of type "echo" is answered with its data, and
 * a one-way message of type "Echo" is pushed back as it came (the hotpot way).
 */
export function installEcho(gateway: Gateway): void {
  gateway.handle('echo', (data) => data);
  gateway.handle('Echo', (data, ctx) => {
    ctx.connection.send('Echo', data);
  });
}
