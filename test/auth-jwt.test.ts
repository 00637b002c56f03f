import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportJWK, exportSPKI, generateKeyPair, SignJWT } from 'jose';
import { afterEach, describe, expect, it } from 'vitest';
import { connect } from '../src/client/index.js';
import { jwtValidator, readJwksFile } from '../src/index.js';
import { startGateway, stopAll } from './support/gateway.js';

afterEach(stopAll);

const SECRET = 'a-test-secret-of-enough-length';
const hs256 = (claims: Record<string, unknown>, secret = SECRET) =>
  new SignJWT(claims)
    .setProtectedHeader({ alg: 'HS256' })
    .setIssuedAt()
    .sign(new TextEncoder().encode(secret));

describe('JWT validator', () => {
  it('HS256: sub is the user, the labels claim sets labels, over TCP and WS', async () => {
    const { gateway, tcpUrl, wsUrl } = await startGateway({
      validate: await jwtValidator({ secret: SECRET }),
    });
    const token = await hs256({ sub: 'u42', labels: ['room_2018', 'version_v2'], version: '2.1.0' });
    const overTcp = await connect(tcpUrl, { token, reconnect: false });
    const overWs = await connect(wsUrl, { token, reconnect: false });
    expect(overTcp.welcome).toMatchObject({ user: 'u42', labels: ['room_2018', 'version_v2'] });
    expect(overWs.welcome).toMatchObject({ user: 'u42', labels: ['room_2018', 'version_v2'] });
    const [conn] = gateway.connectionsOf('u42');
    expect(conn?.version).toBe('2.1.0');
    expect(conn?.data.claims).toMatchObject({ sub: 'u42' });
    expect((await gateway.push({ labels: { all: ['room_2018', 'version_v2'] } }, 'x')).targeted).toBe(2);
  });

  it('refuses a wrong signature, a missing sub and a wrong issuer with 4502, an expired token with 4011 (get a new one)', async () => {
    const { tcpUrl } = await startGateway({
      validate: await jwtValidator({ secret: SECRET, issuer: 'pylon-test' }),
    });
    const attempts = {
      'wrong secret': await hs256({ sub: 'u', iss: 'pylon-test' }, 'another-secret-of-enough-length'),
      'no sub': await hs256({ iss: 'pylon-test' }),
      'wrong issuer': await hs256({ sub: 'u', iss: 'someone-else' }),
      garbage: 'not.a.jwt',
    };
    for (const [what, token] of Object.entries(attempts)) {
      await expect(connect(tcpUrl, { token, reconnect: false }), what).rejects.toThrow(/4502/);
    }
    const expired = await new SignJWT({ sub: 'u', iss: 'pylon-test' })
      .setProtectedHeader({ alg: 'HS256' })
      .setExpirationTime(Math.floor(Date.now() / 1000) - 3600)
      .sign(new TextEncoder().encode(SECRET));
    await expect(connect(tcpUrl, { token: expired, reconnect: false })).rejects.toThrow(/\(4011\)/);
  });

  it('RS256 with a PEM public key, and with a JWKS file (key picked by kid)', async () => {
    const { publicKey, privateKey } = await generateKeyPair('RS256');
    const sign = (kid?: string) =>
      new SignJWT({ sub: 'rsa-user' })
        .setProtectedHeader({ alg: 'RS256', ...(kid ? { kid } : {}) })
        .sign(privateKey);
    const pem = await exportSPKI(publicKey);
    const g1 = await startGateway({ validate: await jwtValidator({ publicKey: pem }) });
    const c1 = await connect(g1.wsUrl, { token: await sign(), reconnect: false });
    expect(c1.welcome?.user).toBe('rsa-user');

    const dir = mkdtempSync(join(tmpdir(), 'pylon-jwks-'));
    const file = join(dir, 'jwks.json');
    const other = await generateKeyPair('RS256');
    writeFileSync(
      file,
      JSON.stringify({
        keys: [
          { ...(await exportJWK(other.publicKey)), kid: 'old', alg: 'RS256', use: 'sig' },
          { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'RS256', use: 'sig' },
        ],
      }),
    );
    const g2 = await startGateway({ validate: await jwtValidator({ jwks: readJwksFile(file) }) });
    const c2 = await connect(g2.tcpUrl, { token: await sign('k1'), reconnect: false });
    expect(c2.welcome?.user).toBe('rsa-user');
    const forged = await new SignJWT({ sub: 'x' })
      .setProtectedHeader({ alg: 'RS256', kid: 'k1' })
      .sign(other.privateKey);
    await expect(connect(g2.tcpUrl, { token: forged, reconnect: false })).rejects.toThrow(/4502/);
  });

  it('rejects its own misconfiguration up front', async () => {
    await expect(jwtValidator({})).rejects.toThrow(/exactly one/);
    await expect(jwtValidator({ secret: 'short' })).rejects.toThrow(/at least 16/);
  });
});
