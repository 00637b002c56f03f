import { constants, deflateRawSync, inflateRawSync } from 'node:zlib';
import { ProtocolError } from '../protocol/errors.js';

/**
 * permessage-deflate (RFC 7692), server side, shaped for broadcasts: the server never keeps a
 * compression context between messages (`server_no_context_takeover`, always answered), so a
 * message compresses to the same bytes for every connection and a broadcast is compressed once
 * (OutFrame.wsDeflated), not once per socket as ws does. What a client compresses is inflated
 * with at most a small window of history per connection: an offer is accepted only with
 * `client_no_context_takeover` (no history) or `client_max_window_bits` (answered with at most
 * `clientMaxWindowBits`, so the history kept is at most 2^bits bytes; browsers offer it).
 */

export interface DeflateOptions {
  /** Messages shorter than this (bytes) go uncompressed. Default 1024. */
  threshold: number;
  /** zlib level, 1 (fast) to 9. Default 1: broadcasts are compressed on the hot path. */
  level: number;
  /** Largest window a client may compress with when it keeps its context (9 to 15). Default 10 (1 KiB). */
  clientMaxWindowBits: number;
}

export const DEFAULT_DEFLATE: DeflateOptions = { threshold: 1024, level: 1, clientMaxWindowBits: 10 };

/** What was agreed with one client. */
export interface Deflate {
  /** The Sec-WebSocket-Extensions answer. */
  response: string;
  /** Window the server compresses with (the client may ask for less). */
  serverBits: number;
  /** Window of the client's compressor: 0 when it resets its context every message. */
  clientBits: number;
  /** The client's last 2^clientBits bytes, as the next message's inflate dictionary. */
  history: Buffer | undefined;
}

/** The first permessage-deflate offer of `header` this server accepts, or undefined. */
export function negotiate(header: string | undefined, o: DeflateOptions): Deflate | undefined {
  if (header === undefined || header.length > 4096) return undefined;
  for (const offer of header.split(',')) {
    const [name, ...params] = offer.split(';').map((p) => p.trim());
    if (name !== 'permessage-deflate') continue;
    const seen = new Map<string, string | true>();
    let valid = true;
    for (const p of params) {
      const eq = p.indexOf('=');
      const key = (eq < 0 ? p : p.slice(0, eq)).trim();
      const value =
        eq < 0
          ? true
          : p
              .slice(eq + 1)
              .trim()
              .replace(/^"(.*)"$/, '$1');
      if (seen.has(key)) valid = false;
      seen.set(key, value);
    }
    if (!valid) continue;
    let serverBits = 15;
    let clientBits: number | undefined;
    for (const [key, value] of seen) {
      if (key === 'server_no_context_takeover' && value === true) continue;
      if (key === 'client_no_context_takeover' && value === true) continue;
      if (key === 'server_max_window_bits' && typeof value === 'string' && bits(value) !== undefined) {
        serverBits = bits(value) as number;
        continue;
      }
      if (key === 'client_max_window_bits' && (value === true || bits(value) !== undefined)) {
        clientBits = Math.min(o.clientMaxWindowBits, value === true ? 15 : (bits(value) as number));
        continue;
      }
      valid = false;
    }
    if (!valid) continue;
    const parts = ['permessage-deflate', 'server_no_context_takeover'];
    if (serverBits < 15) parts.push(`server_max_window_bits=${serverBits}`);
    if (seen.has('client_no_context_takeover')) {
      parts.push('client_no_context_takeover');
      return { response: parts.join('; '), serverBits, clientBits: 0, history: undefined };
    }
    if (clientBits === undefined) continue; // a full 32 KiB of history per connection: not offered
    parts.push(`client_max_window_bits=${clientBits}`);
    return { response: parts.join('; '), serverBits, clientBits, history: undefined };
  }
  return undefined;
}

function bits(v: string): number | undefined {
  if (!/^(9|1[0-5])$/.test(v)) return undefined;
  const n = Number(v);
  // zlib's raw deflate has no 8-bit window (it uses 9): 8 is refused rather than answered wrong.
  return n >= 9 && n <= 15 ? n : undefined;
}

const TRAILER = Buffer.from([0x00, 0x00, 0xff, 0xff]);

/** One message compressed on its own (no context kept), the trailing 00 00 ff ff removed (§7.2.1). */
export function deflateMessage(payload: Uint8Array, level: number, windowBits: number): Buffer {
  const out = deflateRawSync(payload, { level, windowBits, finishFlush: constants.Z_SYNC_FLUSH });
  return out.subarray(0, out.length - 4);
}

/**
 * A compressed message of the client, inflated with the history its compressor kept; never more
 * than `max` bytes (a small frame that inflates to gigabytes closes the link as frame_too_large).
 */
export function inflateMessage(d: Deflate, data: Uint8Array, max: number): Buffer {
  const input = Buffer.concat([data, TRAILER]);
  let out: Buffer;
  try {
    out = inflateRawSync(input, {
      windowBits: d.clientBits === 0 ? 15 : d.clientBits,
      finishFlush: constants.Z_SYNC_FLUSH,
      maxOutputLength: max,
      ...(d.history !== undefined && d.history.length > 0 ? { dictionary: d.history } : {}),
    });
  } catch (err) {
    if ((err as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE' || err instanceof RangeError)
      throw new ProtocolError(`a compressed message inflating to more than ${max} bytes`, 'FRAME_TOO_LARGE');
    throw new ProtocolError(`a compressed message that does not inflate: ${(err as Error).message}`);
  }
  if (d.clientBits > 0) {
    const keep = 1 << d.clientBits;
    const h = d.history === undefined ? out : Buffer.concat([d.history, out]);
    const tail = h.subarray(Math.max(0, h.length - keep));
    // A buffer of its own (not a slice of Node's 8 KiB pool, which one connection would pin).
    if (d.history === undefined || d.history.length !== tail.length)
      d.history = Buffer.allocUnsafeSlow(tail.length);
    tail.copy(d.history);
  }
  return out;
}
