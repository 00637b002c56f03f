/**
 * Error codes carried in `res.error.code` (and thrown locally as PylonError). One table, stable
 * strings: clients switch on them, so a code is never renamed.
 */
export const ERROR_CODES = {
  BAD_REQUEST: 'the request is malformed (missing type, bad data)',
  NOT_FOUND: 'no handler for this type',
  FORBIDDEN: 'the connection may not do this',
  UNAUTHORIZED: 'authentication is missing or was refused',
  TIMEOUT: 'no answer within the time allowed',
  TOO_MANY_REQUESTS: 'too many requests in flight or per second',
  UNAVAILABLE: 'the link is closed or not connected',
  INTERNAL: 'the handler failed; details are in the server log',
  PROTOCOL: 'the peer sent bytes that are not protocol v1',
  FRAME_TOO_LARGE: 'a frame is larger than the maximum frame size',
  CANCELLED: 'the caller cancelled the request',
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

/** An error with a stable string code. A thrown PylonError in a handler becomes the `res.error`. */
export class PylonError extends Error {
  override name = 'PylonError';
  readonly code: ErrorCode | (string & {});
  constructor(code: ErrorCode | (string & {}), message?: string, options?: { cause?: unknown }) {
    super(message ?? (ERROR_CODES as Record<string, string>)[code] ?? code, options);
    this.code = code;
  }
}

/** Bytes that cannot be a frame or an envelope. The connection that sent them is closed. */
export class ProtocolError extends PylonError {
  override name = 'ProtocolError';
  constructor(
    message: string,
    code: 'PROTOCOL' | 'FRAME_TOO_LARGE' = 'PROTOCOL',
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
  }
}

/** A request that got no answer in time. */
export class TimeoutError extends PylonError {
  override name = 'TimeoutError';
  constructor(message = 'request timed out') {
    super('TIMEOUT', message);
  }
}
