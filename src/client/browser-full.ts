// The browser SDK with every codec: JSON, MessagePack and Protobuf (larger; see docs).
import { msgpackCodec } from '../protocol/msgpack-codec.js';
import { protoCodec } from '../protocol/proto-codec.js';
import { registerCodec } from '../protocol/registry.js';

registerCodec(msgpackCodec);
registerCodec(protoCodec);

export * from './browser.js';
