import type { Context } from '../gateway/router.js';
import { PylonError } from '../protocol/errors.js';
import type { CallOptions } from './client.js';
import { type HandlerHost, RpcServer, type Validator } from './server.js';

/** One method of a service: input I, answer O. Build it with `method()`. */
export interface MethodDef<I, O> {
  /** Run on the server before the handler; a throw answers BAD_REQUEST. */
  readonly validate: Validator<I> | undefined;
  /** Run on the client over the answer; a throw rejects the call with BAD_RESPONSE. */
  readonly result: Validator<O> | undefined;
  /** Calls may be retried (see CallOptions.idempotent). */
  readonly idempotent: boolean;
  /** ms for each attempt; default: the client's. */
  readonly timeout: number | undefined;
  /** Type carrier only: never set. */
  readonly types?: { input: I; output: O };
  /** The same method answering O: `method(schema.parse).returns<number>()` (with an optional answer check). */
  returns<R>(result?: Validator<R>): MethodDef<I, R>;
}

export interface MethodOptions<O> {
  idempotent?: boolean;
  timeout?: number;
  result?: Validator<O>;
}

/**
 * A method taking I and answering O: `method<{ a: number; b: number }, number>()`, or with a
 * validator whose return type gives I: `method(AddSchema.parse).returns<number>()`.
 */
export function method<I = void, O = unknown>(
  validate?: Validator<I>,
  options: MethodOptions<O> = {},
): MethodDef<I, O> {
  const { idempotent = false, timeout, result } = options;
  return {
    validate,
    result,
    idempotent,
    timeout,
    returns: <R>(check?: Validator<R>) => method<I, R>(validate, { idempotent, timeout, result: check }),
  };
}

export type Methods = Record<string, MethodDef<unknown, unknown>>;
export type InputOf<D> = D extends MethodDef<infer I, unknown> ? I : never;
export type OutputOf<D> = D extends MethodDef<unknown, infer O> ? O : never;

/** What the server implements: one function per method (may be async). */
export type ServiceImpl<M extends Methods> = {
  [K in keyof M]: (
    input: InputOf<M[K]>,
    ctx: Context<InputOf<M[K]>>,
  ) => OutputOf<M[K]> | Promise<OutputOf<M[K]>>;
};

/** What a caller gets: one async function per method; the input may be left out when it may be undefined. */
export type ServiceClient<M extends Methods> = {
  [K in keyof M]: undefined extends InputOf<M[K]>
    ? (input?: InputOf<M[K]>, options?: CallOptions) => Promise<OutputOf<M[K]>>
    : (input: InputOf<M[K]>, options?: CallOptions) => Promise<OutputOf<M[K]>>;
};

/** Anything that calls: an RpcClient. */
export interface Caller {
  call<T = unknown>(method: string, data?: unknown, options?: CallOptions): Promise<T>;
}

export interface Service<M extends Methods> {
  /** The prefix of the wire names ("calc" gives "calc.add"), if any. */
  readonly name: string | undefined;
  readonly methods: M;
  /** The request type a method travels as. */
  wireName(key: keyof M & string): string;
  /** Register `impl` on a gateway (or an RpcServer): one handler per method, inputs validated. */
  serve(host: HandlerHost | RpcServer, impl: ServiceImpl<M>): void;
  /** Typed stubs over an RpcClient. */
  client(rpc: Caller): ServiceClient<M>;
}

/**
 * A typed service: the same definition gives the server its handlers' types and the callers their
 * stubs, so `await calc.add({ a: 1, b: 2 })` is a number and a wrong input is a compile error.
 *
 * ```ts
 * const Calc = defineService({ add: method<{ a: number; b: number }, number>() }, { name: 'calc' });
 * Calc.serve(gateway, { add: ({ a, b }) => a + b });
 * const calc = Calc.client(rpc);
 * ```
 */
export function defineService<M extends Methods>(methods: M, options: { name?: string } = {}): Service<M> {
  const name = options.name;
  const wireName = (key: string): string => (name === undefined ? key : `${name}.${key}`);
  return {
    name,
    methods,
    wireName,
    serve(host, impl) {
      const server = host instanceof RpcServer ? host : new RpcServer(host);
      for (const [key, def] of Object.entries(methods)) {
        const fn = impl[key];
        if (typeof fn !== 'function') throw new TypeError(`service: no implementation of "${key}"`);
        server.method(wireName(key), fn.bind(impl) as (data: unknown, ctx: Context) => unknown, def.validate);
      }
    },
    client(rpc) {
      const stubs: Record<string, (input?: unknown, options?: CallOptions) => Promise<unknown>> = {};
      for (const [key, def] of Object.entries(methods)) {
        const wire = wireName(key);
        const defaults: CallOptions = { idempotent: def.idempotent };
        if (def.timeout !== undefined) defaults.timeout = def.timeout;
        const check = def.result;
        stubs[key] = (input, options) => {
          const p = rpc.call(wire, input, options === undefined ? defaults : { ...defaults, ...options });
          return check === undefined ? p : p.then((answer) => checkAnswer(wire, check, answer));
        };
      }
      return stubs as ServiceClient<M>;
    },
  };
}

function checkAnswer<O>(wire: string, check: Validator<O>, answer: unknown): O {
  try {
    return check(answer);
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    throw new PylonError('BAD_RESPONSE', `${wire}: ${message.slice(0, 500)}`, { cause: err });
  }
}
