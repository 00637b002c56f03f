import { VERSION } from '../gateway/version.js';

/**
 * The OpenAPI 3.1 description of the admin HTTP API, served at GET /openapi.json. Written by
 * hand; test/admin-extra.test.ts checks that every route of the server appears here.
 */

const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const str = { type: 'string' };
const nonEmpty = { type: 'string', minLength: 1 };
const int = { type: 'integer', minimum: 0 };
const strings = { type: 'array', items: nonEmpty };

const json = (schema: object, description = 'OK') => ({
  description,
  content: { 'application/json': { schema } },
});
const body = (name: string) => ({ required: true, content: { 'application/json': { schema: ref(name) } } });
const errors = (...codes: number[]) =>
  Object.fromEntries(
    codes.map((c) => [String(c), { $ref: `#/components/responses/${ERROR_NAMES[c] ?? 'Error'}` }]),
  );

const ERROR_NAMES: Record<number, string> = {
  400: 'BadRequest',
  401: 'Unauthorized',
  409: 'Conflict',
  413: 'TooLarge',
  415: 'UnsupportedMediaType',
};

const pageParams = (what: string) => [
  {
    name: 'after',
    in: 'query',
    schema: str,
    description: `The last ${what} of the previous page (its \`next\`).`,
  },
  { name: 'limit', in: 'query', schema: { type: 'integer', minimum: 1, maximum: 1000, default: 100 } },
];

const qos1 = {
  type: 'object',
  properties: {
    stored: int,
    sent: int,
    redelivered: int,
    acked: int,
    deadLetters: int,
    undelivered: int,
    deliveredAfterNotify: int,
    unwatched: int,
  },
  required: [
    'stored',
    'sent',
    'redelivered',
    'acked',
    'deadLetters',
    'undelivered',
    'deliveredAfterNotify',
    'unwatched',
  ],
};

const nodeStatsProps = {
  node: { type: 'string', description: 'hostname:pid unless configured' },
  uptime: { type: 'number', description: 'seconds since the process started' },
  connections: int,
  users: int,
  labels: int,
  messagesIn: int,
  messagesOut: int,
  pushesDropped: { ...int, description: 'qos-0 pushes dropped for backpressure' },
  slowConsumers: int,
  authFailures: int,
  qos1,
  resumable: int,
  store: {
    type: 'object',
    description: 'The qos-1 store: ok is false while one of its calls failed in the last 30 s.',
    properties: { ok: { type: 'boolean' }, errors: int, error: { type: 'string' } },
    required: ['ok', 'errors'],
  },
  history: {
    type: 'object',
    description: 'Label histories kept for $history: labels, and their estimated bytes.',
    properties: { labels: int, bytes: int },
    required: ['labels', 'bytes'],
  },
};

const schemas = {
  Error: {
    type: 'object',
    properties: {
      error: {
        type: 'object',
        properties: {
          code: { type: 'string', examples: ['BAD_REQUEST'] },
          message: { type: 'string', examples: ['to.labels.all: must be an array of strings'] },
        },
        required: ['code', 'message'],
      },
    },
    required: ['error'],
  },
  LabelQuery: {
    type: 'object',
    description: 'Connections with every `all` label, at least one `any` label (when given), no `not` label.',
    properties: { all: strings, any: strings, not: strings },
    additionalProperties: false,
  },
  Target: {
    description: 'Who a push is for: exactly one key.',
    oneOf: [
      { type: 'object', properties: { user: nonEmpty }, required: ['user'], additionalProperties: false },
      { type: 'object', properties: { users: strings }, required: ['users'], additionalProperties: false },
      {
        type: 'object',
        properties: { connection: nonEmpty },
        required: ['connection'],
        additionalProperties: false,
      },
      {
        type: 'object',
        properties: { labels: ref('LabelQuery') },
        required: ['labels'],
        additionalProperties: false,
      },
      {
        type: 'object',
        properties: { all: { const: true } },
        required: ['all'],
        additionalProperties: false,
      },
    ],
  },
  PushRequest: {
    type: 'object',
    properties: {
      to: ref('Target'),
      type: { type: 'string', minLength: 1, maxLength: 256 },
      data: { description: 'Any JSON value.' },
      qos: { enum: [0, 1], default: 0 },
      ttl: {
        type: 'number',
        exclusiveMinimum: 0,
        description: 'qos 1: ms the message may wait for its ack.',
      },
      variants: {
        type: 'object',
        additionalProperties: true,
        description: 'qos 0: label -> data; a connection gets the variant of its first label that has one.',
      },
      rate: {
        type: 'number',
        exclusiveMinimum: 0,
        description: 'qos 0: pace the fan-out to this many connections per second; the call answers at once.',
      },
      idempotencyKey: {
        type: 'string',
        minLength: 1,
        maxLength: 256,
        description:
          'accepted once per key within 24 h across the cluster; a repeat answers the first result with duplicate: true (also the Idempotency-Key header)',
      },
    },
    required: ['to', 'type'],
    additionalProperties: false,
  },
  PushResponse: {
    type: 'object',
    properties: {
      id: str,
      targeted: int,
      stored: { ...int, description: 'qos 1: users stored for' },
      duplicate: { type: 'boolean', description: 'a repeat of an idempotency key: the first push’s result' },
    },
    required: ['id', 'targeted'],
  },
  KickRequest: {
    type: 'object',
    properties: { user: nonEmpty, connection: nonEmpty, reason: { type: 'string', maxLength: 256 } },
    oneOf: [{ required: ['user'] }, { required: ['connection'] }],
    additionalProperties: false,
  },
  KickResponse: { type: 'object', properties: { kicked: int }, required: ['kicked'] },
  NodeStats: { type: 'object', properties: nodeStatsProps, required: Object.keys(nodeStatsProps) },
  Stats: {
    type: 'object',
    description:
      "This node's stats, and every node's in `nodes` (this one without a cluster; each live node of a cluster, as last reported).",
    properties: {
      ...nodeStatsProps,
      id: { type: 'string', description: 'cluster: node id (the prefix of its connection ids)' },
      nodes: { type: 'array', items: ref('NodeStats') },
      cluster: ref('ClusterTotals'),
    },
    required: [...Object.keys(nodeStatsProps), 'nodes'],
  },
  ClusterTotals: {
    type: 'object',
    description: 'Present when the gateway is part of a cluster (pylon start --redis or --workers).',
    properties: {
      nodes: { ...int, description: 'live nodes' },
      connections: { ...int, description: 'open connections across the live nodes' },
      online: { ...int, description: 'distinct users online across the live nodes' },
      labels: { type: 'object', additionalProperties: int, description: 'connections per label' },
      status: ref('ClusterStatus'),
      error: { type: 'string', description: 'the registry could not be read' },
    },
    required: ['nodes', 'connections', 'online', 'labels', 'status'],
  },
  ClusterStatus: {
    type: 'object',
    properties: {
      node: str,
      up: { type: 'boolean', description: 'broker and registry reachable' },
      reason: str,
      broker: ref('BackendHealth'),
      registry: ref('BackendHealth'),
      outages: int,
      published: int,
      received: int,
      publishFailures: int,
      registryFailures: int,
      resyncs: int,
    },
    required: ['node', 'up', 'broker', 'registry'],
  },
  BackendHealth: {
    type: 'object',
    properties: { up: { type: 'boolean' }, reason: str, since: { type: 'string', format: 'date-time' } },
    required: ['up', 'since'],
  },
  Dispatch: {
    type: 'object',
    properties: {
      user: str,
      nodes: {
        type: 'array',
        description: "Try in order: the user's current (or last) node first, then the least loaded.",
        items: {
          type: 'object',
          properties: {
            node: str,
            name: str,
            wsUrl: str,
            tcpUrl: str,
            connections: int,
            current: { const: true },
            previous: { const: true },
          },
          required: ['node', 'name', 'connections'],
        },
      },
    },
    required: ['nodes'],
  },
  ConnectionInfo: {
    type: 'object',
    properties: {
      id: str,
      user: str,
      transport: { enum: ['tcp', 'ws', 'http'] },
      codec: {
        enum: ['json', 'msgpack', 'proto', 'mqtt', 'mqtt5'],
        description: 'mqtt and mqtt5: an MQTT 3.1.1 or 5.0 client (docs/mqtt.md), on transport tcp',
      },
      remoteAddress: str,
      labels: strings,
      connectedAt: { type: 'string', format: 'date-time' },
      buffered: { ...int, description: 'bytes written to it that its socket has not taken yet' },
      device: str,
      version: str,
    },
    required: ['id', 'transport', 'codec', 'remoteAddress', 'labels', 'connectedAt', 'buffered'],
  },
  UserInfo: {
    type: 'object',
    properties: {
      user: str,
      online: { type: 'boolean' },
      connections: { type: 'array', items: ref('ConnectionInfo') },
      banned: {
        type: 'object',
        description: 'the ban in force, if any',
        properties: { until: { type: 'string', format: 'date-time' }, reason: str },
        required: ['until'],
      },
    },
    required: ['user', 'online', 'connections'],
  },
  BanRequest: {
    type: 'object',
    properties: {
      duration: { type: 'number', exclusiveMinimum: 0, description: 'ms; default 24 h, at most 10 years' },
      reason: { type: 'string', maxLength: 256, description: 'told to the connections it closes' },
    },
    additionalProperties: false,
  },
  BanResponse: {
    type: 'object',
    properties: {
      user: str,
      until: { type: 'string', format: 'date-time' },
      kicked: { ...int, description: 'connections this node closed (the other nodes close theirs)' },
    },
    required: ['user', 'until', 'kicked'],
  },
  UnbanResponse: {
    type: 'object',
    properties: { user: str, unbanned: { type: 'boolean', description: 'false: it was not banned' } },
    required: ['user', 'unbanned'],
  },
  RevokeRequest: {
    type: 'object',
    properties: {
      jti: { ...nonEmpty, maxLength: 256, description: 'the token id (JWT jti)' },
      user: { ...nonEmpty, maxLength: 256 },
      issuedBefore: {
        type: ['string', 'number'],
        description:
          'with user: tokens issued before this time (ISO 8601 or ms since the epoch); default now',
      },
      duration: {
        type: 'number',
        exclusiveMinimum: 0,
        description: 'ms; default 24 h (your tokens’ lifetime)',
      },
      reason: { type: 'string', maxLength: 256 },
    },
    oneOf: [{ required: ['jti'] }, { required: ['user'] }],
    additionalProperties: false,
  },
  RevokeResponse: {
    type: 'object',
    properties: {
      jti: str,
      user: str,
      issuedBefore: { type: 'string', format: 'date-time' },
      until: { type: 'string', format: 'date-time' },
      closed: { ...int, description: 'connections this node closed' },
    },
    required: ['until', 'closed'],
  },
  ConnectionList: {
    type: 'object',
    properties: {
      node: { ...str, description: 'the node that answered: its connections only' },
      connections: { type: 'array', items: ref('ConnectionInfo') },
      next: { ...str, description: 'pass as `after` for the next page' },
    },
    required: ['node', 'connections'],
  },
  LabelsChange: {
    type: 'object',
    properties: { add: strings, remove: strings },
    additionalProperties: false,
  },
  LabelsChanged: {
    type: 'object',
    properties: { connections: { ...int, description: 'open connections of the user changed' } },
    required: ['connections'],
  },
  LabelList: {
    type: 'object',
    properties: {
      labels: {
        type: 'array',
        items: { type: 'object', properties: { label: str, count: int }, required: ['label', 'count'] },
      },
      next: str,
    },
    required: ['labels'],
  },
  LabelPage: {
    type: 'object',
    properties: {
      label: str,
      count: int,
      members: {
        type: 'array',
        items: { type: 'object', properties: { connection: str, user: str }, required: ['connection'] },
      },
      next: str,
    },
    required: ['label', 'count', 'members'],
  },
  LabelPresence: {
    type: 'object',
    properties: {
      label: str,
      count: {
        ...int,
        description: 'Users present on this node (a user with several connections counts once).',
      },
      users: { type: 'array', items: str, description: 'The first `limit` of them, sorted.' },
    },
    required: ['label', 'count', 'users'],
  },
  LabelHistory: {
    type: 'object',
    properties: {
      label: str,
      epoch: {
        ...str,
        description: 'Changes when the history started again; empty when the label has none.',
      },
      last: { ...int, description: 'Position of the newest entry in this epoch (0: none).' },
      messages: {
        type: 'array',
        description: 'Oldest first.',
        items: {
          type: 'object',
          properties: {
            type: str,
            data: {},
            binary: { ...str, description: 'Binary data (a binary push), as base64; `data` is absent.' },
            at: { ...int, description: 'ms since the epoch' },
            pos: int,
          },
          required: ['type', 'at', 'pos'],
        },
      },
    },
    required: ['label', 'epoch', 'last', 'messages'],
  },
  CpuProfile: {
    type: 'object',
    description: 'A .cpuprofile (Chrome DevTools format).',
    properties: {
      nodes: { type: 'array' },
      samples: { type: 'array', items: { type: 'integer' } },
      timeDeltas: { type: 'array', items: { type: 'integer' } },
      startTime: { type: 'number' },
      endTime: { type: 'number' },
    },
    required: ['nodes', 'samples', 'startTime', 'endTime'],
  },
};

const errorResponse = (description: string) => json(ref('Error'), description);

const paths = {
  '/v1/push': {
    post: {
      operationId: 'Push',
      summary: 'Push to a user, users, a connection, labels or everyone',
      parameters: [
        {
          name: 'traceparent',
          in: 'header',
          schema: str,
          description: "W3C trace context: with tracing on, the push's spans are children of the caller's",
        },
      ],
      requestBody: body('PushRequest'),
      responses: { 200: json(ref('PushResponse')), ...errors(400, 401, 413, 415) },
    },
  },
  '/v1/kick': {
    post: {
      operationId: 'Kick',
      summary: 'Close the connections of a user, or one connection, with `kicked` (4503)',
      requestBody: body('KickRequest'),
      responses: { 200: json(ref('KickResponse')), ...errors(400, 401, 413, 415) },
    },
  },
  '/v1/stats': {
    get: {
      operationId: 'Stats',
      summary: 'Counters and gauges',
      responses: { 200: json(ref('Stats')), ...errors(401) },
    },
  },
  '/v1/dispatch': {
    get: {
      operationId: 'Dispatch',
      summary:
        "Gateway addresses for a client to try, ordered by load, the user's current or last node first",
      security: [{}, { bearer: [] }],
      parameters: [{ name: 'user', in: 'query', schema: nonEmpty }],
      responses: { 200: json(ref('Dispatch')), ...errors(400, 401) },
    },
  },
  '/v1/users/{id}': {
    get: {
      operationId: 'GetUser',
      summary: "A user's open connections (an unknown user is offline)",
      parameters: [{ name: 'id', in: 'path', required: true, schema: nonEmpty }],
      responses: { 200: json(ref('UserInfo')), ...errors(400, 401) },
    },
  },
  '/v1/users/{id}/ban': {
    post: {
      operationId: 'BanUser',
      summary:
        'Ban a user: its connections on every node closed with `banned` (4508), new ones refused until the ban ends',
      parameters: [{ name: 'id', in: 'path', required: true, schema: nonEmpty }],
      requestBody: body('BanRequest'),
      responses: { 200: json(ref('BanResponse')), ...errors(400, 401, 413, 415, 429, 503) },
    },
    delete: {
      operationId: 'UnbanUser',
      summary: "Lift a user's ban on every node",
      parameters: [{ name: 'id', in: 'path', required: true, schema: nonEmpty }],
      responses: { 200: json(ref('UnbanResponse')), ...errors(400, 401, 503) },
    },
  },
  '/v1/revocations': {
    post: {
      operationId: 'RevokeToken',
      summary:
        'Revoke a token by id, or the tokens of a user issued before a time: connections using them closed with `token_revoked` (4509), refused at every handshake and resume',
      requestBody: body('RevokeRequest'),
      responses: { 200: json(ref('RevokeResponse')), ...errors(400, 401, 413, 415, 429, 503) },
    },
  },
  '/v1/connections': {
    get: {
      operationId: 'ListConnections',
      summary: "This node's open connections in the order they were accepted, filtered, a page at a time",
      parameters: [
        { name: 'user', in: 'query', schema: nonEmpty },
        { name: 'label', in: 'query', schema: nonEmpty },
        { name: 'transport', in: 'query', schema: { enum: ['tcp', 'ws', 'http'] } },
        { name: 'address', in: 'query', schema: str, description: 'an IP address or a CIDR range' },
        ...pageParams('connection id'),
      ],
      responses: { 200: json(ref('ConnectionList')), ...errors(400, 401) },
    },
  },
  '/v1/users/{id}/labels': {
    post: {
      operationId: 'UpdateUserLabels',
      summary: 'Add and remove labels on every open connection of a user',
      parameters: [{ name: 'id', in: 'path', required: true, schema: nonEmpty }],
      requestBody: body('LabelsChange'),
      responses: { 200: json(ref('LabelsChanged')), ...errors(400, 401, 413, 415) },
    },
  },
  '/v1/labels': {
    get: {
      operationId: 'ListLabels',
      summary: 'Labels with their connection counts, in name order, a page at a time',
      parameters: pageParams('label'),
      responses: { 200: json(ref('LabelList')), ...errors(400, 401) },
    },
  },
  '/v1/labels/{label}': {
    get: {
      operationId: 'GetLabel',
      summary: 'One label: its count and a page of its connections, in connection-id order',
      parameters: [
        { name: 'label', in: 'path', required: true, schema: nonEmpty },
        ...pageParams('connection id'),
      ],
      responses: { 200: json(ref('LabelPage')), ...errors(400, 401) },
    },
  },
  '/v1/labels/{label}/presence': {
    get: {
      operationId: 'GetLabelPresence',
      summary: 'Who is in a label on this node, by user, as clients read it with $presence',
      parameters: [
        { name: 'label', in: 'path', required: true, schema: nonEmpty },
        { name: 'limit', in: 'query', schema: { type: 'integer', minimum: 1, maximum: 1000, default: 100 } },
      ],
      responses: { 200: json(ref('LabelPresence')), ...errors(400, 401) },
    },
  },
  '/v1/labels/{label}/history': {
    get: {
      operationId: 'GetLabelHistory',
      summary:
        'The last pushes kept for a label with a history rule, oldest first, as clients read them with $history',
      parameters: [
        { name: 'label', in: 'path', required: true, schema: nonEmpty },
        { name: 'limit', in: 'query', schema: { type: 'integer', minimum: 1, maximum: 1000, default: 50 } },
        {
          name: 'since',
          in: 'query',
          schema: { type: 'integer', minimum: 0, default: 0 },
          description: 'Only entries after this position.',
        },
      ],
      responses: { 200: json(ref('LabelHistory')), ...errors(400, 401) },
    },
  },
  '/v1/debug/cpu-profile': {
    post: {
      operationId: 'CpuProfile',
      summary: 'Sample the CPU of the running process for `seconds`; answers a .cpuprofile',
      parameters: [
        { name: 'seconds', in: 'query', schema: { type: 'integer', minimum: 1, maximum: 60, default: 10 } },
      ],
      responses: { 200: json(ref('CpuProfile')), ...errors(400, 401, 409) },
    },
  },
  '/v1/debug/heap-snapshot': {
    post: {
      operationId: 'HeapSnapshot',
      summary: 'A .heapsnapshot of the running process, streamed (pauses the event loop meanwhile)',
      responses: { 200: json({ type: 'object' }, 'A V8 heap snapshot'), ...errors(401, 409) },
    },
  },
  '/healthz': {
    get: {
      operationId: 'Health',
      summary:
        'Liveness (open without a key when openHealth is set); 503 with the reason while a cluster broker or registry is down',
      security: [{}, { bearer: [] }],
      responses: {
        200: json({
          type: 'object',
          properties: { ok: { const: true }, cluster: ref('ClusterStatus') },
          required: ['ok'],
        }),
        503: { $ref: '#/components/responses/Error' },
        ...errors(401),
      },
    },
  },
  '/livez': {
    get: {
      operationId: 'Live',
      summary:
        'Liveness for an orchestrator: 200 while the process serves its event loop (open without a key when openHealth is set)',
      security: [{}, { bearer: [] }],
      responses: {
        200: json({ type: 'object', properties: { ok: { const: true } }, required: ['ok'] }),
        ...errors(401),
      },
    },
  },
  '/readyz': {
    get: {
      operationId: 'Ready',
      summary:
        'Readiness for a load balancer: 503 with the reasons while starting, stopping (the grace after SIGTERM), draining, or with the store or the cluster failing (open without a key when openHealth is set)',
      security: [{}, { bearer: [] }],
      responses: {
        200: json({ type: 'object', properties: { ready: { const: true } }, required: ['ready'] }),
        503: { $ref: '#/components/responses/Error' },
        ...errors(401),
      },
    },
  },
  '/metrics': {
    get: {
      operationId: 'Metrics',
      summary: 'Prometheus metrics (open without a key when openHealth is set)',
      security: [{}, { bearer: [] }],
      responses: {
        200: { description: 'Prometheus text format', content: { 'text/plain': { schema: str } } },
        ...errors(401),
      },
    },
  },
  '/openapi.json': {
    get: {
      operationId: 'OpenApi',
      summary: 'This document (open without a key when openHealth is set)',
      security: [{}, { bearer: [] }],
      responses: { 200: json({ type: 'object' }), ...errors(401) },
    },
  },
};

export const openApiDocument = {
  openapi: '3.1.0',
  info: {
    title: 'Pylon admin API',
    version: VERSION,
    description:
      'Drive a Pylon gateway: push, kick, stats, users and labels. The same service is served over ' +
      'gRPC (proto/pylon/v1/admin.proto). Errors are `{"error": {"code", "message"}}`; a 400 names ' +
      'the field that is wrong.',
  },
  security: [{ bearer: [] }],
  paths,
  components: {
    securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'An admin API key' } },
    schemas,
    responses: {
      Error: errorResponse('Error'),
      BadRequest: errorResponse('Malformed input; the message names the field'),
      Unauthorized: errorResponse('No valid API key'),
      Conflict: errorResponse('A profile is already running'),
      TooLarge: errorResponse('Body over the limit (default 1 MiB)'),
      UnsupportedMediaType: errorResponse('The body is not application/json'),
    },
  },
} as const;
