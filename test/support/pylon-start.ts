import { Child } from './process.js';

/** `pylon start` from dist on free ports (no gRPC), with `args` after; logs at warn, admin on a free port. */
export function startPylon(args: string[] = []): Child {
  return new Child(
    process.execPath,
    ['dist/cli/main.js', 'start', '--ws-port', '0', '--tcp-port', '0', '--grpc-port', '-1', ...args],
    { PYLON_LOG_LEVEL: 'warn', PYLON_ADMIN_PORT: '0' },
  );
}

/** The admin API's base URL and the TCP listener's URL, from what `pylon start` prints. */
export async function addressesOf(cli: Child): Promise<{ admin: string; tcp: string }> {
  const admin = (await cli.waitFor(/admin API on (http:\/\/\S+)\/v1\//))[1] as string;
  const tcp = (await cli.waitFor(/TCP on (tcp:\/\/\S+)/))[1] as string;
  return { admin, tcp };
}

/** POST /v1/push with `body`; resolves with the HTTP status. */
export async function adminPush(admin: string, body: unknown): Promise<number> {
  const res = await fetch(`${admin}/v1/push`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  await res.arrayBuffer();
  return res.status;
}
