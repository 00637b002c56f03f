import cluster, { type Worker } from 'node:cluster';
import { servePrimary } from './ipc.js';
import { LocalRegistry } from './registry.js';

export interface PrimaryOptions {
  workers: number;
  /** Relay broker messages and hold the registry for the workers (no Redis). */
  ipc: boolean;
  /** Where the primary's own lines go. Default stdout. */
  print?: (line: string) => void;
  /** Reload: ms old workers keep serving their connections before telling them to reconnect. Default 30 s. */
  drainTimeout?: number;
  /** Stop: ms a worker has to close before it is killed. Default 10 s. */
  stopTimeout?: number;
  /** SIGTERM: ms each worker stays up, unready, before it closes (it is killed this much later too). Default 0. */
  shutdownGrace?: number;
  /** Why a reload must be refused (e.g. a store that lives in the worker), or undefined. */
  reloadRefused?: string;
  /** Called once, when every worker of the first generation listens. */
  onReady?: () => void;
}

/** Sent by a worker (process.send) once its gateway and admin API listen. */
export const WORKER_READY = { pylon: 'worker-ready' } as const;

/** Sent by the primary to a worker of an older generation: stop accepting, drain, then exit. */
export interface DrainMessage {
  pylon: 'drain';
  /** ms to serve the open connections before closing them with `reconnect_elsewhere`. */
  timeout: number;
}

export function isDrainMessage(m: unknown): m is DrainMessage {
  return (m as { pylon?: unknown } | null)?.pylon === 'drain';
}

/** The index of this worker (0 …), or undefined in the primary or without workers. */
export function workerIndex(): number | undefined {
  if (!cluster.isWorker) return undefined;
  const n = Number(process.env.PYLON_WORKER_INDEX);
  return Number.isInteger(n) ? n : undefined;
}

interface Slot {
  worker: Worker;
  index: number;
  generation: number;
  ready: boolean;
  /** Told to drain (an older generation): its exit is expected. */
  draining: boolean;
}

/**
 * `pylon start --workers N` (and `start -d`), primary side: forks N workers running the same
 * command (they share the listening ports through node:cluster, connections spread round-robin),
 * relays their cluster messages and holds their registry when there is no Redis, restarts a
 * worker that dies, prints "ready" once every worker listens, and on SIGINT/SIGTERM stops them
 * all (each closes its connections with `reconnect_elsewhere`) before exiting.
 *
 * SIGHUP or SIGUSR2 reloads with no refused connection: N workers of the next generation are
 * forked (new code, config file read again) while the old ones serve on; once every new worker
 * listens, the old ones are told to drain: they close their listeners (the primary's shared
 * socket then hands every new connection to the new workers), serve their open connections
 * until they close or `drainTimeout` passes, tell the rest to reconnect elsewhere (4001), and
 * exit. If a new worker dies before it listens, the reload is abandoned and the old generation
 * keeps serving.
 */
export function runPrimary(options: PrimaryOptions): Promise<void> {
  const print = options.print ?? ((line: string) => process.stdout.write(`${line}\n`));
  const drainTimeout = options.drainTimeout ?? 30_000;
  const stopTimeout = options.stopTimeout ?? 10_000;
  const grace = options.shutdownGrace ?? 0;
  cluster.setupPrimary({ serialization: 'advanced' });
  const served = options.ipc ? servePrimary(new LocalRegistry()) : undefined;
  const slots = new Set<Slot>();
  let current = 1;
  let stopping = false;
  let announced = false;
  let reloading: Promise<void> | undefined;
  let failed = false;

  return new Promise<void>((resolve) => {
    const finish = () => {
      if (slots.size > 0) return;
      print('pylon: stopped');
      if (failed) process.exitCode = 1;
      resolve();
    };

    const fork = (index: number, generation: number): Slot => {
      const worker = cluster.fork({
        PYLON_WORKER_INDEX: String(index),
        PYLON_GENERATION: String(generation),
      });
      const slot: Slot = { worker, index, generation, ready: false, draining: false };
      slots.add(slot);
      served?.add(worker);
      worker.on('message', (m: unknown) => {
        if ((m as { pylon?: string } | null)?.pylon !== WORKER_READY.pylon) return;
        slot.ready = true;
        const live = [...slots].filter((s) => s.generation === current && s.ready);
        if (!announced && generation === current && live.length === options.workers) {
          announced = true;
          print(`pylon: ready (${options.workers} workers, Ctrl-C stops)`);
          options.onReady?.();
        }
      });
      worker.on('exit', (code, signal) => {
        slots.delete(slot);
        if (stopping) return finish();
        if (slot.draining) {
          print(`pylon: worker ${index} of generation ${generation} drained and exited`);
          return;
        }
        if (generation !== current) return; // a new worker that failed during a reload: reload() reports it
        if (!announced) {
          // The first generation cannot start (a port in use, a bad config): do not loop.
          print(`pylon: worker ${index} exited (${signal ?? code}) before it listened; stopping`);
          stopping = true;
          failed = true;
          for (const s of slots) s.worker.process.kill('SIGTERM');
          return finish();
        }
        print(`pylon: worker ${index} exited (${signal ?? code}); starting it again in 1 s`);
        // Not unref'd: with every worker gone, this timer is what keeps the primary alive.
        setTimeout(() => {
          if (!stopping && generation === current) fork(index, current);
        }, 1000);
      });
      return slot;
    };

    const reload = async () => {
      const next = current + 1;
      print(`pylon: reload: starting ${options.workers} worker(s) of generation ${next}`);
      const fresh = Array.from({ length: options.workers }, (_, i) => fork(i, next));
      const failure = await allReady(fresh, 60_000);
      if (stopping) return;
      if (failure !== undefined) {
        for (const s of fresh) if (!s.worker.isDead()) s.worker.process.kill('SIGKILL');
        print(`pylon: reload failed: ${failure}; generation ${current} keeps serving`);
        return;
      }
      const old = [...slots].filter((s) => s.generation === current);
      current = next;
      for (const s of old) {
        s.draining = true;
        // A worker not yet listening (restarted after a crash) may not handle the message yet.
        if (s.ready && s.worker.isConnected())
          s.worker.send({ pylon: 'drain', timeout: drainTimeout } satisfies DrainMessage);
        else s.worker.process.kill('SIGTERM');
        // A worker that does not finish its drain and its close in time is killed.
        setTimeout(
          () => {
            if (slots.has(s)) s.worker.process.kill('SIGKILL');
          },
          drainTimeout + stopTimeout + 5000,
        ).unref();
      }
      print(
        `pylon: reloaded: generation ${next} serving (${fresh.length} worker(s)); ${old.length} old worker(s) draining, at most ${Math.round(drainTimeout / 1000)} s`,
      );
    };

    for (let i = 0; i < options.workers; i++) fork(i, current);
    print(
      `pylon: primary ${process.pid}, ${options.workers} worker(s)${options.ipc ? ' (cluster through this process)' : ''}`,
    );

    const onReload = (signal: NodeJS.Signals) => {
      if (stopping) return;
      if (!announced) {
        print(`pylon: ${signal}: not ready yet; reload ignored`);
        return;
      }
      if (options.reloadRefused !== undefined) {
        print(`pylon: ${signal}: reload refused: ${options.reloadRefused}`);
        return;
      }
      if (reloading !== undefined) {
        print(`pylon: ${signal}: a reload is already under way`);
        return;
      }
      reloading = reload().finally(() => {
        reloading = undefined;
      });
    };
    const stop = (signal: NodeJS.Signals) => {
      if (stopping) {
        print('pylon: forced exit');
        for (const s of slots) s.worker.process.kill('SIGKILL');
        process.exit(1);
      }
      stopping = true;
      print(`pylon: ${signal}, stopping ${slots.size} worker(s)`);
      if (slots.size === 0) resolve();
      // The same signal: a worker waits its shutdown grace on SIGTERM only.
      for (const s of slots) s.worker.process.kill(signal);
      setTimeout(
        () => {
          for (const s of slots) s.worker.process.kill('SIGKILL');
        },
        (signal === 'SIGTERM' ? grace : 0) + stopTimeout + 5000,
      ).unref();
    };
    process.on('SIGINT', () => stop('SIGINT'));
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGHUP', () => onReload('SIGHUP'));
    process.on('SIGUSR2', () => onReload('SIGUSR2'));
  });
}

/** Resolves undefined once every slot is ready, or why not (one exited first, or the time ran out). */
function allReady(slots: Slot[], timeoutMs: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => done(`new workers not ready within ${timeoutMs / 1000} s`), timeoutMs);
    const check = () => {
      if (slots.every((s) => s.ready && !s.worker.isDead())) done(undefined);
    };
    const exited = (s: Slot) => (code: number | null, signal: string | null) => {
      done(
        `new worker ${s.index} exited (${signal ?? code}) ${s.ready ? 'right after it listened' : 'before it listened'}`,
      );
    };
    const listeners = slots.map((s) => {
      const onExit = exited(s);
      const onMessage = () => setImmediate(check);
      s.worker.on('exit', onExit);
      s.worker.on('message', onMessage);
      return () => {
        s.worker.off('exit', onExit);
        s.worker.off('message', onMessage);
      };
    });
    let settled = false;
    function done(result: string | undefined) {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      for (const off of listeners) off();
      resolve(result);
    }
    check();
  });
}
