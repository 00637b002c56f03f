import {
  type Attributes,
  type Context,
  defaultTextMapGetter,
  defaultTextMapSetter,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  type Tracer,
  type TracerProvider,
  trace,
} from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { PylonError } from '../protocol/errors.js';

/** What the `tracing` option takes: a tracer, or a provider to take one from (OpenTelemetry API). */
export type TracingOption = Tracer | TracerProvider;

const propagator = new W3CTraceContextPropagator();

/**
 * The gateway's spans, over the OpenTelemetry API. Without the `tracing` option there is no
 * Tracing object at all: each place that makes spans checks for it once, so tracing off costs
 * one comparison there and nothing else. Trace context crosses processes as a W3C
 * `traceparent` string (the admin API's header, a push's options in cluster messages).
 */
export class Tracing {
  readonly tracer: Tracer;

  constructor(option: TracingOption, version?: string) {
    this.tracer = 'getTracer' in option ? option.getTracer('pylon', version) : option;
  }

  /** The context a `traceparent` names; the root context for none or a malformed one. */
  parent(traceparent: string | undefined): Context {
    if (traceparent === undefined || traceparent.length > 128) return ROOT_CONTEXT;
    return propagator.extract(ROOT_CONTEXT, { traceparent }, defaultTextMapGetter);
  }

  start(name: string, attributes: Attributes, parent: Context, kind: SpanKind = SpanKind.INTERNAL): Span {
    return this.tracer.startSpan(name, { kind, attributes }, parent);
  }

  /** A span's context, as the parent of its children. */
  within(span: Span): Context {
    return trace.setSpan(ROOT_CONTEXT, span);
  }

  /** The `traceparent` that makes the receiver's spans children of `span`. */
  traceparent(span: Span): string | undefined {
    const carrier: Record<string, string> = {};
    propagator.inject(trace.setSpan(ROOT_CONTEXT, span), carrier, defaultTextMapSetter);
    return carrier.traceparent;
  }
}

/** Marks `span` failed with `err`, and ends it. */
export function failSpan(span: Span, err: unknown): void {
  const message = err instanceof Error ? err.message : String(err);
  if (err instanceof Error) span.recordException(err);
  span.setStatus({ code: SpanStatusCode.ERROR, message });
  span.end();
}

/** A request's span ends with its answer: the error's code if it failed, ERROR status if it was not a PylonError. */
export function endRequestSpan(span: Span, err: unknown, answered: boolean): void {
  if (!answered) span.setAttribute('pylon.answered', false);
  if (err !== undefined) {
    if (err instanceof PylonError) span.setAttribute('pylon.error.code', err.code);
    else {
      failSpan(span, err);
      return;
    }
  }
  span.end();
}

export { SpanKind };
