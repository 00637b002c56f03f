import type { AddressInfo, Server } from 'node:net';

/** `server.listen(port, host)` as a promise of the bound address (rejects on EADDRINUSE and the like). */
export function listenOn(server: Server, port: number, host?: string): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve(server.address() as AddressInfo);
    });
  });
}
