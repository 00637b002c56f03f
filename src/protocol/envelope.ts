/**
 * The one message shape of wire protocol v1. Every codec encodes exactly these fields, with these
 * names, so a JSON frame reads plainly: {"kind":"req","id":7,"type":"echo","data":{...}}.
 */
export const KINDS = [
  'hello',
  'welcome',
  'req',
  'res',
  'msg',
  'push',
  'ack',
  'ping',
  'pong',
  'sub',
  'unsub',
  'kick',
  'bye',
] as const;

export type Kind = (typeof KINDS)[number];

export interface WireError {
  code: string;
  message: string;
}

export interface Envelope {
  kind: Kind;
  /** Request id: set on req/res (and sub/unsub, which are answered by res). Unsigned 32-bit. */
  id?: number;
  /** Per-user push sequence (qos 1 pushes, acks). Safe integer. */
  seq?: number;
  /** Route name, e.g. "echo" or "chat.send". */
  type?: string;
  data?: unknown;
  error?: WireError;
  qos?: 0 | 1;
}

const KIND_SET: ReadonlySet<string> = new Set(KINDS);

export function isKind(value: unknown): value is Kind {
  return typeof value === 'string' && KIND_SET.has(value);
}

/** Largest request id; ids wrap to 1 after it. */
export const MAX_ID = 0xffff_ffff;
