/** Settings that several parts of the gateway read (plain types: this file imports nothing). */

export interface KeepaliveOptions {
  /** A connection that sent nothing for this long gets a ping (ms). Default 30 s. */
  interval: number;
  /** A connection that sent nothing for this long is closed with keepalive_timeout (ms). Default 75 s. */
  timeout: number;
}

export interface RateLimitOptions {
  /** Frames per second one connection may send, sustained. */
  rate: number;
  /** Frames it may send in a burst above the rate. */
  burst: number;
}
