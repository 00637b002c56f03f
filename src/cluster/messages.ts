import { Packr } from 'msgpackr';
import type { Operation } from '../gateway/cluster-link.js';
import type { HandedSession } from '../gateway/types.js';

/**
 * What the nodes of a cluster say to each other: one tagged union, keyed by `t`. Every message
 * names its `origin` (the sending node's id), so a node drops what it sent itself when a
 * channel echoes it back (Redis pub/sub delivers to every subscriber, the sender included).
 */
export type ClusterMessage =
  /** Run this operation on this node's connections (ClusterNode.run). */
  | { t: 'op'; op: Operation; origin: string }
  /** qos 1: messages were stored for these users (shared store); send them (delivery.notify). */
  | { t: 'qos1'; users: string[]; origin: string; trace?: Qos1Trace }
  /** The sending node goes away: its clients may resume these sessions here (gateway.adoptSessions). */
  | { t: 'sessions'; sessions: HandedSession[]; origin: string };

/** The push a qos-1 nudge is for and its traceparent (tracing on): the receiving node's delivery spans join its trace. */
export interface Qos1Trace {
  push: string;
  traceparent: string;
}

export type ClusterMessageType = ClusterMessage['t'];

const TYPES: ReadonlySet<string> = new Set<ClusterMessageType>(['op', 'qos1', 'sessions']);
const OPS: ReadonlySet<string> = new Set<Operation['op']>(['push', 'kick', 'labels', 'deny', 'post']);

// MessagePack maps with string keys, no records: JSON values and Uint8Array data (bin) survive,
// and any language can read what is on the wire.
const packr = new Packr({ useRecords: false, moreTypes: false });

/** The bytes of a message, as they travel on the broker. */
export function encodeMessage(m: ClusterMessage): Uint8Array {
  return packr.pack(m);
}

/** Reads what `encodeMessage` wrote; throws on anything that is not a cluster message. */
export function decodeMessage(bytes: Uint8Array): ClusterMessage {
  const m = packr.unpack(bytes) as Partial<ClusterMessage> | null;
  if (typeof m !== 'object' || m === null || typeof m.t !== 'string' || !TYPES.has(m.t)) {
    throw new Error('cluster: not a cluster message');
  }
  if (typeof m.origin !== 'string') throw new Error('cluster: message without origin');
  if (m.t === 'op') {
    const op = m.op as Partial<Operation> | undefined;
    if (typeof op !== 'object' || op === null || typeof op.op !== 'string' || !OPS.has(op.op))
      throw new Error('cluster: not an operation');
    if (op.op === 'push') (op as { data: unknown }).data = plainBytes(op.data, 0);
    if (op.op === 'post') (op as { messages: unknown }).messages = plainBytes(op.messages, 0);
  }
  return m as ClusterMessage;
}

/**
 * msgpackr hands `bin` back as Buffers over the input: give the gateway plain Uint8Arrays of
 * their own (a JSON client sees a Buffer and a Uint8Array differently), at any depth.
 */
function plainBytes(v: unknown, depth: number): unknown {
  if (v instanceof Uint8Array) return v.constructor === Uint8Array ? v : new Uint8Array(v);
  if (typeof v !== 'object' || v === null || depth > 64) return v;
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) v[i] = plainBytes(v[i], depth + 1);
  } else {
    const o = v as Record<string, unknown>;
    for (const k of Object.keys(o)) o[k] = plainBytes(o[k], depth + 1);
  }
  return v;
}

/**
 * Channel names under a prefix: one per node, one for every node, one per label (a node
 * subscribes to a label's channel while it holds members of the label).
 */
export function channels(prefix: string): {
  all: string;
  node(id: string): string;
  label(label: string): string;
} {
  return {
    all: `${prefix}all`,
    node: (id) => `${prefix}node:${id}`,
    label: (label) => `${prefix}label:${label}`,
  };
}
