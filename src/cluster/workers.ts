import cluster, { type Worker } from 'node:cluster';
import { servePrimary } from './ipc.js';
import { LocalRegistry } from './registry.js';

export interface PrimaryOptions {
  workers: number;
  /** Relay broker messages and hold the registry for the workers (no Redis). */
  ipc: boolean;
  /** Where the primary's own lines go. Default stdout. */
  print?: (line: string) => void;
}

/** Sent by a worker (process.send) once its gateway and admin API listen. */
export const WORKER_READY = { pylon: 'worker-ready' } as const;

/** The index of this worker (0 …), or undefined in the primary or without workers. */
export function workerIndex(): number | undefined {
  if (!cluster.isWorker) return undefined;
  const n = Number(process.env.PYLON_WORKER_INDEX);
  return Number.isInteger(n) ? n : undefined;
}

/**
 * `pylon start --workers N`, primary side: forks N workers running the same command (they share
 * the listening ports through node:cluster, connections spread round-robin), relays their
 * cluster messages and holds their registry when there is no Redis, restarts a worker that dies,
 * prints "ready" once every worker listens, and on SIGINT/SIGTERM stops them all (each closes
 * its connections with `shutdown`) before exiting.
 */
export function runPrimary(options: PrimaryOptions): Promise<void> {
  const print = options.print ?? ((line: string) => process.stdout.write(`${line}\n`));
  cluster.setupPrimary({ serialization: 'advanced' });
  const served = options.ipc ? servePrimary(new LocalRegistry()) : undefined;
  const running = new Map<number, Worker>();
  const ready = new Set<number>();
  let stopping = false;
  let announced = false;

  return new Promise<void>((resolve) => {
    const fork = (index: number) => {
      const w = cluster.fork({ PYLON_WORKER_INDEX: String(index) });
      running.set(index, w);
      served?.add(w);
      w.on('message', (m: unknown) => {
        if ((m as { pylon?: string } | null)?.pylon !== WORKER_READY.pylon) return;
        ready.add(index);
        if (!announced && ready.size === options.workers) {
          announced = true;
          print(`pylon: ready (${options.workers} workers, Ctrl-C stops)`);
        }
      });
      w.on('exit', (code, signal) => {
        running.delete(index);
        ready.delete(index);
        if (stopping) {
          if (running.size === 0) {
            print('pylon: stopped');
            resolve();
          }
          return;
        }
        print(`pylon: worker ${index} exited (${signal ?? code}); starting it again in 1 s`);
        setTimeout(() => {
          if (!stopping) fork(index);
        }, 1000);
      });
    };
    for (let i = 0; i < options.workers; i++) fork(i);
    print(
      `pylon: primary ${process.pid}, ${options.workers} workers${options.ipc ? ' (cluster through this process)' : ''}`,
    );

    const stop = (signal: NodeJS.Signals) => {
      if (stopping) {
        print('pylon: forced exit');
        for (const w of running.values()) w.process.kill('SIGKILL');
        process.exit(1);
      }
      stopping = true;
      print(`pylon: ${signal}, stopping ${running.size} worker(s)`);
      if (running.size === 0) resolve();
      for (const w of running.values()) w.process.kill('SIGTERM');
    };
    process.on('SIGINT', () => stop('SIGINT'));
    process.on('SIGTERM', () => stop('SIGTERM'));
  });
}
