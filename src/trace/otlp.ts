import type { TracerProvider } from '@opentelemetry/api';

export interface OtlpTracing {
  provider: TracerProvider;
  /** Sends what is still batched, then stops the exporter. */
  shutdown(): Promise<void>;
}

/**
 * A tracer provider that exports over OTLP/HTTP (JSON) to `endpoint`: the collector's base URL
 * (`http://collector:4318`, to which `/v1/traces` is added) or the full traces URL. Spans are
 * batched (the SDK's BatchSpanProcessor: at most 2,048 waiting, sent every 5 s or 512 at a time;
 * `OTEL_BSP_*` variables change that). The SDK is loaded only here, when tracing is asked for.
 */
export async function otlpTracing(
  endpoint: string,
  resource: { serviceName?: string; instance?: string } = {},
): Promise<OtlpTracing> {
  const url = new URL(endpoint);
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new TypeError(`otel endpoint: not http(s): ${endpoint}`);
  if (!url.pathname.endsWith('/v1/traces')) url.pathname = `${url.pathname.replace(/\/$/, '')}/v1/traces`;
  const [{ BasicTracerProvider, BatchSpanProcessor }, { OTLPTraceExporter }, { resourceFromAttributes }] =
    await Promise.all([
      import('@opentelemetry/sdk-trace-base'),
      import('@opentelemetry/exporter-trace-otlp-http'),
      import('@opentelemetry/resources'),
    ]);
  const attributes: Record<string, string> = { 'service.name': resource.serviceName ?? 'pylon' };
  if (resource.instance !== undefined) attributes['service.instance.id'] = resource.instance;
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes(attributes),
    spanProcessors: [new BatchSpanProcessor(new OTLPTraceExporter({ url: url.toString() }))],
  });
  return { provider, shutdown: () => provider.shutdown() };
}
