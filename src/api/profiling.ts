import type { ServerResponse } from 'node:http';
import { PylonError } from '../protocol/errors.js';
import { RESPONDED, type Route, type RouteContext } from './http.js';

/**
 * Profiles of the running process, through node:inspector (no restart, no --inspect flag):
 * - POST /v1/debug/cpu-profile?seconds=N (1..60, default 10): a `.cpuprofile` (Chrome DevTools
 *   format: `nodes`, `samples`, `timeDeltas`, `startTime`, `endTime`).
 * - POST /v1/debug/heap-snapshot: a `.heapsnapshot`, streamed as V8 produces its chunks.
 *
 * Both need the admin key (whatever openHealth says), and one runs at a time in the process:
 * another request meanwhile gets 409. A CPU profile lasts at most 60 s and stops early if the
 * client goes away. A heap snapshot pauses the event loop (every connection of the gateway)
 * while V8 walks the heap: seconds for a large heap, its size in JSON. Take one with care.
 */

export const MAX_PROFILE_SECONDS = 60;
export const DEFAULT_PROFILE_SECONDS = 10;

/** What is running now, process-wide (the inspector is one per process). */
let busy: string | undefined;

/** Throws CONFLICT while a profile or snapshot is running. */
function assertIdle(): void {
  if (busy !== undefined) throw new PylonError('CONFLICT', `a ${busy} is already running; try again later`);
}

function acquire(what: string): () => void {
  assertIdle();
  busy = what;
  return () => {
    busy = undefined;
  };
}

type PromiseSession = import('node:inspector/promises').Session;

async function openSession(): Promise<PromiseSession> {
  let Session: typeof import('node:inspector/promises').Session;
  try {
    ({ Session } = await import('node:inspector/promises'));
  } catch {
    throw new PylonError('UNAVAILABLE', 'node:inspector is not available in this Node build');
  }
  const session = new Session();
  session.connect();
  return session;
}

/** The `seconds` query parameter: an integer from 1 to 60, default 10. */
export function parseSeconds(value: string | null): number {
  if (value === null || value === '') return DEFAULT_PROFILE_SECONDS;
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < 1 || n > MAX_PROFILE_SECONDS) {
    throw new PylonError('BAD_REQUEST', `seconds: must be an integer from 1 to ${MAX_PROFILE_SECONDS}`);
  }
  return n;
}

/** Sample the CPU for `seconds` (less if `signal` aborts); resolves with the profile. */
export async function cpuProfile(seconds: number, signal?: AbortSignal): Promise<object> {
  const release = acquire('CPU profile');
  let session: PromiseSession | undefined;
  try {
    session = await openSession();
    await session.post('Profiler.enable');
    await session.post('Profiler.start');
    await sleep(seconds * 1000, signal);
    const { profile } = await session.post('Profiler.stop');
    await session.post('Profiler.disable');
    return profile;
  } finally {
    session?.disconnect();
    release();
  }
}

/**
 * Take a heap snapshot and give its JSON text to `write`, chunk by chunk, as V8 produces it.
 * V8 produces it in one synchronous pass, so the chunks are written out as the event loop
 * resumes.
 */
export async function heapSnapshot(write: (chunk: string) => void): Promise<void> {
  const release = acquire('heap snapshot');
  let session: PromiseSession | undefined;
  try {
    session = await openSession();
    session.on('HeapProfiler.addHeapSnapshotChunk', (m) => write(m.params.chunk));
    await session.post('HeapProfiler.takeHeapSnapshot', { reportProgress: false });
  } finally {
    session?.disconnect();
    release();
  }
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) {
      resolve();
      return;
    }
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}

function stamp(): string {
  return new Date().toISOString().replace(/[:.]/g, '-');
}

/** Aborts when the client goes away before the response is complete. */
function clientGone(res: ServerResponse): AbortSignal {
  const ac = new AbortController();
  res.once('close', () => {
    if (!res.writableFinished) ac.abort();
  });
  return ac.signal;
}

/** The two debug routes (access `key`: never open). */
export function profilingRoutes(): Route[] {
  return [
    {
      method: 'POST',
      path: '/v1/debug/cpu-profile',
      body: false,
      async handler({ res, query }: RouteContext) {
        const seconds = parseSeconds(query.get('seconds'));
        const signal = clientGone(res);
        const profile = await cpuProfile(seconds, signal);
        if (signal.aborted) return RESPONDED;
        res.setHeader('content-disposition', `attachment; filename="pylon-${stamp()}.cpuprofile"`);
        return profile;
      },
    },
    {
      method: 'POST',
      path: '/v1/debug/heap-snapshot',
      body: false,
      async handler({ res }: RouteContext) {
        assertIdle(); // before the headers go out: heapSnapshot takes the lock in this same turn
        res.writeHead(200, {
          'content-type': 'application/json',
          'content-disposition': `attachment; filename="pylon-${stamp()}.heapsnapshot"`,
          'cache-control': 'no-store',
        });
        await heapSnapshot((chunk) => res.write(chunk));
        res.end();
        return RESPONDED;
      },
    },
  ];
}
