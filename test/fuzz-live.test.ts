import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { installEcho } from '../src/cli/echo.js';
import { connect, type PylonClient } from '../src/client/index.js';
import { DISCONNECT, devValidator, type Gateway } from '../src/index.js';
import { frame } from '../src/protocol/framing.js';
import { RawTcp, startGateway, stopAll } from './support/gateway.js';

// Runs per property: a few hundred in CI; `npm run fuzz` sets PYLON_FUZZ_RUNS=100000.
const RUNS = Number(process.env.PYLON_FUZZ_RUNS ?? 300);
const KNOWN_CODES = new Set<number>(Object.values(DISCONNECT).map((d) => d.code));
const enc = new TextEncoder();

let gateway: Gateway;
let tcpUrl: string;
let wsUrl: string;
let witness: PylonClient;
const unhandled: unknown[] = [];
const onUnhandled = (reason: unknown) => unhandled.push(reason);

beforeAll(async () => {
  process.on('unhandledRejection', onUnhandled);
  const g = await startGateway({
    validate: devValidator(),
    authorizeSub: (_c, label) => label.length < 64,
    handshakeTimeout: 2000,
    maxFrame: 64 * 1024,
    rateLimit: false,
    userRateLimit: false,
  });
  ({ gateway, tcpUrl, wsUrl } = g);
  installEcho(gateway);
  gateway.handle('boom', () => {
    throw new Error('handler bug');
  });
  gateway.handle('join', (label, ctx) => ctx.connection.join(String(label)));
  gateway.on('error', () => {});
  witness = await connect(tcpUrl, { token: 'witness', reconnect: false });
});

afterAll(async () => {
  process.off('unhandledRejection', onUnhandled);
  await witness.close();
  await stopAll();
});

/** After the fuzz case: the gateway still serves others, and the connection ended, if it did, with a documented code. */
async function checkAfter(raw: RawTcp): Promise<void> {
  await expect(witness.request('echo', 'ok', { timeout: 3000 })).resolves.toBe('ok');
  const kicks = raw.frames
    .map((f) => {
      try {
        return JSON.parse(new TextDecoder().decode(f)) as { kind?: string; data?: { code?: number } };
      } catch {
        return undefined;
      }
    })
    .filter((m) => m?.kind === 'kick');
  for (const k of kicks) expect(KNOWN_CODES.has(k?.data?.code as number)).toBe(true);
  raw.destroy();
}

const anyValue = fc.oneof(
  fc.string(),
  fc.integer(),
  fc.constant(null),
  fc.boolean(),
  fc.dictionary(fc.string(), fc.string()),
);
const kind = fc.constantFrom(
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
  'nope',
);
const envelope = fc.record(
  {
    kind,
    id: fc.oneof(fc.integer({ min: -2, max: 5 }), fc.constant(2 ** 40), fc.string()),
    seq: fc.oneof(fc.integer({ min: -1, max: 1e9 }), fc.double()),
    type: fc.oneof(fc.constantFrom('echo', 'Echo', 'boom', 'join', 'missing'), fc.string({ maxLength: 300 })),
    qos: fc.oneof(fc.constantFrom(0, 1, 2), fc.string()),
    data: fc.oneof(
      anyValue,
      fc.record({ labels: fc.array(fc.string({ maxLength: 300 }), { maxLength: 5 }) }),
    ),
  },
  { requiredKeys: ['kind'] },
);

describe('live gateway under hostile input', () => {
  it('random byte streams on TCP: never a crash, only documented closes, others unaffected', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.uint8Array({ maxLength: 64 }), { maxLength: 6 }),
        fc.boolean(),
        async (chunks, hello) => {
          const raw = await RawTcp.open(tcpUrl);
          if (hello) raw.sendJson({ kind: 'hello', data: { token: 'fuzz' } });
          for (const c of chunks) raw.write(c);
          await new Promise((r) => setImmediate(r));
          await checkAfter(raw);
        },
      ),
      { numRuns: RUNS },
    );
  }, 600_000);

  it('random envelope sequences after hello: every req answered by id or a documented close', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(envelope, { minLength: 1, maxLength: 12 }), async (envs) => {
        const raw = await RawTcp.open(tcpUrl);
        raw.sendJson({ kind: 'hello', data: { token: 'fuzz' } });
        for (const e of envs) raw.write(frame(enc.encode(JSON.stringify(e))));
        raw.sendJson({ kind: 'req', id: 4242, type: 'echo', data: 'last' });
        await raw.until((r) => r.closed || r.json().some((m) => m.id === 4242), 5000);
        if (!raw.closed) {
          // Still open: every well-formed request got its answer, matched by id.
          const answered = new Set(
            raw
              .json()
              .filter((m) => m.kind === 'res')
              .map((m) => m.id),
          );
          for (const e of envs) {
            const wellFormed =
              e.kind === 'req' &&
              Number.isInteger(e.id) &&
              (e.id as number) >= 0 &&
              typeof e.type === 'string' &&
              e.type.length <= 256;
            if (wellFormed) expect(answered.has(e.id)).toBe(true);
          }
        }
        await checkAfter(raw);
      }),
      { numRuns: RUNS },
    );
  }, 600_000);

  it('random WebSocket messages, text and binary: never a crash', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.oneof(
            fc.string({ maxLength: 80 }),
            fc.uint8Array({ maxLength: 80 }),
            envelope.map((e) => JSON.stringify(e)),
          ),
          {
            maxLength: 6,
          },
        ),
        async (messages) => {
          const ws = new WebSocket(`${wsUrl}?token=fuzz`);
          ws.on('error', () => {});
          await new Promise<void>((resolve) => {
            ws.on('open', () => resolve());
            ws.on('close', () => resolve());
          });
          for (const m of messages) if (ws.readyState === WebSocket.OPEN) ws.send(m);
          await new Promise((r) => setImmediate(r));
          ws.terminate();
          await expect(witness.request('echo', 'ok', { timeout: 3000 })).resolves.toBe('ok');
        },
      ),
      { numRuns: Math.max(50, Math.floor(RUNS / 3)) },
    );
  }, 600_000);

  it('leaves no connection, pending request or rejection behind', async () => {
    await expect.poll(() => gateway.connections.size, { timeout: 10_000 }).toBe(1);
    expect(gateway.connectionsOf('witness')[0]?.pending).toBe(0);
    expect(unhandled).toEqual([]);
  });
});
