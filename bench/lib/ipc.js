// Control of the benchmark's child processes over Node's IPC channel: the parent calls commands
// and awaits their answers (each with a timeout); a child serves them. Every child started here is
// tracked so that an error, a timeout or Ctrl-C kills all of them and nothing is left running.
import { fork } from 'node:child_process';

const children = new Set();

/** A forked child that answers `call(cmd, args)` with `{ id, ok, result | error }`. */
export class Child {
  /**
   * @param {string} name for messages
   * @param {string} file module to fork
   * @param {{ args?: string[], execArgv?: string[], env?: Record<string, string>, log?: number }} [options]
   *   `log`: a file descriptor for the child's stdout and stderr (default: this process's).
   */
  constructor(name, file, options = {}) {
    this.name = name;
    this.nextId = 0;
    this.pending = new Map();
    this.listeners = new Map();
    this.exited = false;
    this.proc = fork(file, options.args ?? [], {
      execArgv: options.execArgv ?? [],
      env: { ...process.env, ...options.env },
      stdio: ['ignore', options.log ?? 'inherit', options.log ?? 'inherit', 'ipc'],
      serialization: 'advanced',
    });
    children.add(this);
    this.exit = new Promise((resolve) => {
      this.proc.once('exit', (code, signal) => {
        this.exited = true;
        children.delete(this);
        const err = new Error(`${this.name} exited (code ${code}, signal ${signal})`);
        for (const p of this.pending.values()) {
          clearTimeout(p.timer);
          p.reject(err);
        }
        this.pending.clear();
        resolve({ code, signal });
      });
    });
    this.proc.on('error', () => {});
    this.proc.on('message', (m) => this.onMessage(m));
  }

  onMessage(m) {
    if (m && typeof m.event === 'string') {
      const fn = this.listeners.get(m.event);
      if (fn) fn(m.data);
      return;
    }
    const p = this.pending.get(m?.id);
    if (!p) return;
    this.pending.delete(m.id);
    clearTimeout(p.timer);
    if (m.ok) p.resolve(m.result);
    else p.reject(new Error(`${this.name} ${p.cmd}: ${m.error}`));
  }

  /** Resolves with the child's first `event` message of that name. */
  once(event, timeoutMs) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.listeners.delete(event);
        reject(new Error(`${this.name}: no "${event}" within ${timeoutMs} ms`));
      }, timeoutMs);
      // Settling twice is harmless: an exit after the event changes nothing.
      this.exit.then(({ code, signal }) => {
        clearTimeout(timer);
        reject(new Error(`${this.name} exited (code ${code}, signal ${signal}) before "${event}"`));
      });
      this.listeners.set(event, (data) => {
        clearTimeout(timer);
        this.listeners.delete(event);
        resolve(data);
      });
    });
  }

  /** Runs `cmd` in the child; rejects after `timeoutMs` or if the child exits first. */
  call(cmd, args = {}, timeoutMs = 30_000) {
    if (this.exited) return Promise.reject(new Error(`${this.name} has exited`));
    const id = ++this.nextId;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`${this.name} ${cmd}: no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer, cmd });
      this.proc.send({ id, cmd, args });
    });
  }

  /** Asks the child to exit; kills it if it has not after `graceMs`. */
  async stop(graceMs = 5_000) {
    if (this.exited) return;
    this.call('exit', {}, graceMs).catch(() => {});
    const timer = setTimeout(() => this.kill(), graceMs);
    await this.exit;
    clearTimeout(timer);
  }

  kill() {
    if (!this.exited) this.proc.kill('SIGKILL');
  }
}

/** Kills every child still running (errors, Ctrl-C). */
export function killAll() {
  for (const c of children) c.kill();
}

/** How many children are still running. */
export function running() {
  return children.size;
}

/**
 * Child side: answers the parent's commands with `handlers[cmd](args)` (sync or async). `exit`
 * is built in. The child exits when the parent goes away (the IPC channel closes).
 * @param {Record<string, (args: any) => unknown>} handlers
 */
export function serve(handlers) {
  process.on('disconnect', () => process.exit(0));
  process.on('message', async (m) => {
    if (m.cmd === 'exit') {
      try {
        await handlers.exit?.();
      } finally {
        process.send?.({ id: m.id, ok: true, result: null }, () => process.exit(0));
        // A parent that is gone cannot take the answer: exit anyway.
        setTimeout(() => process.exit(0), 1_000).unref();
      }
      return;
    }
    const fn = handlers[m.cmd];
    try {
      if (!fn) throw new Error(`unknown command "${m.cmd}"`);
      const result = await fn(m.args ?? {});
      process.send?.({ id: m.id, ok: true, result: result ?? null });
    } catch (err) {
      process.send?.({ id: m.id, ok: false, error: err instanceof Error ? err.stack : String(err) });
    }
  });
}

/** Child side: a one-way event to the parent. */
export function emit(event, data) {
  process.send?.({ event, data });
}
