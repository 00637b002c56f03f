import { readFileSync } from 'node:fs';
import type { Server } from 'node:net';
import type { SecureContextOptions } from 'node:tls';

/** Certificate files of a tls:// or wss:// listener (PEM). */
export interface TlsFiles {
  cert: string;
  key: string;
  /** CA bundle, for chains the clients do not know. */
  ca?: string;
}

/** Reads the files (again, on reload: a renewed certificate needs no restart). */
export function readTls(files: TlsFiles): SecureContextOptions {
  const ctx: SecureContextOptions = { cert: readFileSync(files.cert), key: readFileSync(files.key) };
  if (files.ca !== undefined) ctx.ca = readFileSync(files.ca);
  return ctx;
}

/** Re-reads the files into a listening TLS server; new connections use them, open ones keep theirs. */
export function reloadTls(server: Server | undefined, files: TlsFiles | undefined): void {
  if (files && server && 'setSecureContext' in server) {
    (server as Server & { setSecureContext(o: SecureContextOptions): void }).setSecureContext(readTls(files));
  }
}
