// Service-to-service RPC over a few long connections (Node only).
export {
  type CallOptions,
  RpcClient,
  type RpcClientOptions,
  type RpcStats,
} from './client.js';
export { BatchingTcpLink, batchingDialer } from './link.js';
export {
  type CallToken,
  type MethodStats,
  type MonitorOptions,
  type MonitorStats,
  RpcMonitor,
  type SlowCall,
} from './monitor.js';
export {
  type AcquireOptions,
  ConnectionPool,
  type Lease,
  PoolClosedError,
  PoolFullError,
  type PoolOptions,
  type PoolStats,
  PoolTimeoutError,
} from './pool.js';
export {
  type HandlerHost,
  invalid,
  type MethodHandler,
  RpcServer,
  type RpcServerOptions,
  type Validator,
} from './server.js';
export {
  type Caller,
  defineService,
  type InputOf,
  type MethodDef,
  type MethodOptions,
  type Methods,
  method,
  type OutputOf,
  type Service,
  type ServiceClient,
  type ServiceImpl,
} from './service.js';
