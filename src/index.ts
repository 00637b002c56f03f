// Pylon's public server API. Everything not exported here is internal.

export { type AlertingLogger, type AlertOptions, alertingLogger } from './api/alerts.js';
export {
  type AdminOptions,
  type AdminServer,
  AdminService,
  ApiKeys,
  createAdminMetrics,
  startAdmin,
  storeLatencyHistogram,
  timeStore,
} from './api/index.js';
export { signBody, type WebhookOptions, type WebhookStats, Webhooks } from './api/webhooks.js';
export type { DeliveryOptions } from './delivery/delivery.js';
export { type AuthMeta, devValidator, type Identity, TokenExpired, type Validator } from './gateway/auth.js';
export type { ClusterLink, ClusterNode } from './gateway/cluster-link.js';
export { Connection, type ConnectionState } from './gateway/connection.js';
export { createGateway, Gateway } from './gateway/gateway.js';
export { type JwtOptions, jwtValidator, readJwksFile } from './gateway/jwt.js';
export type {
  GatewayOptions,
  KeepaliveOptions,
  ListenOptions,
  MqttListenOptions,
  RateLimitOptions,
  WsListenOptions,
} from './gateway/options.js';
export { DEFAULT_KEEPALIVE } from './gateway/options.js';
export type { ResumeOptions } from './gateway/resume.js';
export type { Context, Handler, Middleware } from './gateway/router.js';
export type {
  GatewayAddresses,
  GatewayEvents,
  GatewayStats,
  HandedSession,
  PushOptions,
  PushResult,
} from './gateway/types.js';
export { VERSION } from './gateway/version.js';
export type { LabelQuery, Target } from './hub/member.js';
export { createLogger, type Logger, type LogLevel } from './log/logger.js';
export { type BudgetLimits, DEFAULT_BUDGET_LIMITS } from './net/budget.js';
export type { Codec, CodecName } from './protocol/codec.js';
export {
  DISCONNECT,
  type DisconnectInfo,
  type DisconnectName,
  disconnectName,
  shouldReconnect,
} from './protocol/disconnect.js';
export { type Envelope, KINDS, type Kind, type WireError } from './protocol/envelope.js';
export { ERROR_CODES, type ErrorCode, ProtocolError, PylonError, TimeoutError } from './protocol/errors.js';
export { codecs, getCodec } from './protocol/index.js';
export {
  type DeadLetter,
  type DeadReason,
  MemoryStore,
  type MessageStore,
  type NewMessage,
  openStore,
  RedisStore,
  SqliteStore,
  type StoredMessage,
  type StoreOptions,
  type StoreStats,
} from './store/index.js';
export { type Clock, FakeClock, systemClock } from './timer/clock.js';
export type { WheelTimer } from './timer/wheel.js';
export { type OtlpTracing, otlpTracing } from './trace/otlp.js';
export type { TracingOption } from './trace/tracing.js';
