import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { devValidator, type Validator } from '../gateway/auth.js';
import { jwtValidator, readJwksFile } from '../gateway/jwt.js';

export type AuthMode = 'dev' | 'jwt' | 'none';

export interface AuthFlags {
  auth?: AuthMode;
  jwtSecret?: string;
  jwtPublicKey?: string;
  jwtJwks?: string;
  jwtIssuer?: string;
  jwtAudience?: string;
}

/** Whether `host` only accepts connections from this machine. */
export function isLoopback(host: string): boolean {
  if (host === 'localhost') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  return host === '::1';
}

/**
 * The validate hook `pylon start` uses. Without --auth it is dev mode on loopback, and an error
 * anywhere else: a gateway open to a network must say how it checks tokens.
 */
export async function resolveAuth(
  flags: AuthFlags,
  host: string,
  warn: (line: string) => void,
): Promise<{ mode: AuthMode; validate: Validator | undefined }> {
  const mode = flags.auth ?? (isLoopback(host) ? 'dev' : undefined);
  if (mode === undefined) {
    throw new Error(
      `--auth is required when binding to ${host} (not loopback): use --auth jwt with --jwt-secret, --jwt-public-key or --jwt-jwks, or --auth none for anonymous connections`,
    );
  }
  if (mode === 'none') return { mode, validate: undefined };
  if (mode === 'dev') {
    warn('*****************************************************************************');
    warn('* WARNING: --auth dev: every token is accepted as the user id, unchecked.   *');
    warn('* For development only. Never expose this gateway to a network.             *');
    warn('*****************************************************************************');
    return { mode, validate: devValidator() };
  }
  const validate = await jwtValidator({
    secret: flags.jwtSecret,
    publicKey: flags.jwtPublicKey !== undefined ? readFileSync(flags.jwtPublicKey, 'utf8') : undefined,
    jwks: flags.jwtJwks !== undefined ? readJwksFile(flags.jwtJwks) : undefined,
    issuer: flags.jwtIssuer,
    audience: flags.jwtAudience,
  });
  return { mode, validate };
}
