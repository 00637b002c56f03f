import { readFileSync } from 'node:fs';
import { createLocalJWKSet, importSPKI, type JSONWebKeySet, type JWTPayload, jwtVerify } from 'jose';
import { PylonError } from '../protocol/errors.js';
import { type Identity, TokenExpired, type Validator } from './auth.js';

export interface JwtOptions {
  /** HS256 shared secret. */
  secret?: string;
  /** RS256 public key, PEM (SPKI). */
  publicKey?: string;
  /** A JWKS document (its keys are picked by `kid`). */
  jwks?: JSONWebKeySet;
  issuer?: string;
  audience?: string;
  /** Allowed clock skew, seconds. Default 30. */
  clockTolerance?: number;
}

/**
 * The built-in JWT validator: HS256 with a secret, or RS256 with a public key or a JWKS. `sub` is
 * the user id; a `labels` claim (array of strings) sets the labels; `device`, `version` claims
 * are copied; the other claims land in `connection.data.claims`; `jti`, `iat` and `exp` are the
 * identity's `token` (what revocations are checked against).
 */
export async function jwtValidator(options: JwtOptions): Promise<Validator> {
  const given = [options.secret, options.publicKey, options.jwks].filter((v) => v !== undefined).length;
  if (given !== 1) throw new TypeError('jwt: give exactly one of secret, publicKey, jwks');
  let key: Parameters<typeof jwtVerify>[1];
  let algorithms: string[];
  if (options.secret !== undefined) {
    if (options.secret.length < 16)
      throw new TypeError('jwt: the HS256 secret must be at least 16 characters');
    key = new TextEncoder().encode(options.secret);
    algorithms = ['HS256'];
  } else if (options.publicKey !== undefined) {
    key = await importSPKI(options.publicKey, 'RS256');
    algorithms = ['RS256'];
  } else {
    key = createLocalJWKSet(options.jwks as JSONWebKeySet);
    algorithms = ['RS256'];
  }
  const verifyOptions = {
    algorithms,
    issuer: options.issuer,
    audience: options.audience,
    clockTolerance: options.clockTolerance ?? 30,
  };
  return async (token) => {
    if (!token) throw new PylonError('UNAUTHORIZED', 'token missing');
    let payload: JWTPayload;
    try {
      // The key is either a key or a key-set function; jose takes both.
      ({ payload } = await jwtVerify(
        token,
        key as Parameters<typeof jwtVerify>[1] & CryptoKey,
        verifyOptions,
      ));
    } catch (err) {
      if ((err as { code?: string }).code === 'ERR_JWT_EXPIRED')
        throw new TokenExpired(`token expired: ${(err as Error).message}`, { cause: err });
      throw new PylonError('UNAUTHORIZED', `token refused: ${(err as Error).message}`, { cause: err });
    }
    if (typeof payload.sub !== 'string' || payload.sub.length === 0)
      throw new PylonError('UNAUTHORIZED', 'token has no sub');
    const identity: Identity = { user: payload.sub, data: { claims: payload } };
    const info: NonNullable<Identity['token']> = {};
    if (typeof payload.jti === 'string' && payload.jti.length > 0) {
      if (payload.jti.length > 256)
        throw new PylonError('UNAUTHORIZED', 'token jti longer than 256 characters');
      info.id = payload.jti;
    }
    if (typeof payload.iat === 'number') info.issuedAt = payload.iat * 1000;
    if (typeof payload.exp === 'number') info.expiresAt = payload.exp * 1000;
    identity.token = info;
    const labels = payload.labels;
    if (labels !== undefined) {
      if (!Array.isArray(labels) || !labels.every((l) => typeof l === 'string')) {
        throw new PylonError('UNAUTHORIZED', 'labels claim must be an array of strings');
      }
      identity.labels = labels as string[];
    }
    if (typeof payload.device === 'string') identity.device = payload.device;
    if (typeof payload.version === 'string') identity.version = payload.version;
    return identity;
  };
}

/** Reads a JWKS file (a JSON document with `keys`). */
export function readJwksFile(path: string): JSONWebKeySet {
  const doc = JSON.parse(readFileSync(path, 'utf8')) as JSONWebKeySet;
  if (!doc || !Array.isArray(doc.keys)) throw new TypeError(`${path}: not a JWKS document (no "keys" array)`);
  return doc;
}
