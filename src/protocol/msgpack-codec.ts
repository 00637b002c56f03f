import { type Options, Packr } from 'msgpackr';
import type { Codec } from './codec.js';
import type { Envelope } from './envelope.js';
import { ProtocolError, PylonError } from './errors.js';
import { toEnvelope } from './validate.js';

/**
 * The MessagePack codec (WebSocket binary frames, subprotocol "pylon.v1.msgpack"). The envelope is
 * a plain, standard MessagePack map with the JSON field names ("kind", "id", ...), readable by any
 * language's msgpack library. Binary data is a msgpack bin and decodes to a Uint8Array.
 *
 * What msgpackr 2.x does with buffers (read in its pack.js / unpack.js, checked in the tests):
 *
 * - encode: `pack()` writes into a module-level slab (an 8 KiB Buffer.allocUnsafeSlow in Node,
 *   shared by every Packr in the process) and returns `target.subarray(start, end)`. Without the
 *   REUSE_BUFFER_MODE / RESET_BUFFER_MODE flags the write position only moves forward, and a new slab
 *   is allocated when less than 2 KiB is left, so a later pack() does not overwrite an earlier
 *   result. The result is still a view: in Node it is a Buffer (whose .slice() is a view, not a copy),
 *   `.buffer` is the whole shared slab holding other frames' bytes (transferring it to a worker would
 *   detach msgpackr's own buffer), and keeping one small frame (e.g. a qos 1 push waiting for its
 *   ack) keeps the whole slab alive. So `encode` copies it into an exact-size plain Uint8Array: one
 *   memcpy of a small frame buys a result that is safe to keep, transfer or slice.
 * - decode: a msgpack bin is returned as `src.subarray()` (aliasing the input frame) unless
 *   `copyBuffers: true`, which copies with Uint8Array.prototype.slice; we set it. That slice follows
 *   the input's species, so a Buffer input would give Buffer data: the input is re-viewed as a plain
 *   Uint8Array first (no copy), and binary data is always a plain Uint8Array.
 * - trailing bytes after the envelope: `unpack()` already throws ("Data read, but end of buffer not
 *   reached") outside sequential mode, so trailing garbage is rejected at no extra cost.
 */

const options: Options = {
  // Plain msgpack maps, not msgpackr's record extension (which other languages cannot read).
  useRecords: false,
  mapsAsObjects: true,
  // fixmap/map16/map32 as needed: smaller small maps, and no 65,535-key limit on data objects.
  variableMapSize: true,
  // Decoded binary data is a copy, never a view of the input frame.
  copyBuffers: true,
  // undefined (inside data) is written as nil, not as msgpackr's ext 0, which is not standard.
  encodeUndefinedAsNil: true,
  // No msgpackr reference/cycle extensions from peers (cyclic data would break every consumer).
  structuredClone: false,
};
// 64-bit ints (other languages' encoders may write small ids or seqs as uint64) decode to a number
// when within +-2^53 and to a BigInt beyond (then id/seq fail validation). msgpackr implements 'auto',
// but its typings only list 'bigint' | 'number' | 'string'.
(options as { int64AsType?: string }).int64AsType = 'auto';

const packr = new Packr(options);

export const msgpackCodec: Codec = {
  name: 'msgpack',
  binary: true,
  encode(envelope: Envelope): Uint8Array {
    const error = envelope.error;
    const wire: Record<string, unknown> = { kind: envelope.kind };
    if (envelope.id !== undefined) wire.id = envelope.id;
    const seq = envelope.seq;
    // msgpackr writes integers of 2^32 and above as float64, which typed decoders in other languages
    // (Go, Rust) refuse for an integer field; as a BigInt it is written as a msgpack int64.
    if (seq !== undefined) wire.seq = seq > 0xffff_ffff && Number.isSafeInteger(seq) ? BigInt(seq) : seq;
    if (envelope.type !== undefined) wire.type = envelope.type;
    if (envelope.qos !== undefined) wire.qos = envelope.qos;
    if (envelope.data !== undefined) wire.data = envelope.data;
    if (error !== undefined) wire.error = { code: error.code, message: error.message };
    let packed: Uint8Array;
    try {
      packed = packr.pack(wire);
    } catch (err) {
      throw new PylonError(
        'BAD_REQUEST',
        `data cannot be encoded as MessagePack: ${(err as Error).message}`,
        {
          cause: err,
        },
      );
    }
    // Copy out of msgpackr's shared slab (see the note at the top).
    return new Uint8Array(packed);
  },
  decode(bytes: Uint8Array): Envelope {
    if (bytes.length === 0) throw new ProtocolError('empty msgpack frame');
    const src =
      bytes.constructor === Uint8Array
        ? bytes
        : new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    let raw: unknown;
    try {
      raw = packr.unpack(src);
    } catch (err) {
      throw new ProtocolError(
        `invalid msgpack frame: ${(err as Error)?.message ?? String(err)}`,
        'PROTOCOL',
        {
          cause: err,
        },
      );
    }
    return toEnvelope(raw);
  },
};
