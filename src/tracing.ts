/**
 * Tracing for `register`: when OTEL_TRACES_EXPORTER asks for OTLP, a NodeTracerProvider exports the application's
 * spans (HTTP and gRPC instrumentation, loaded before the application) with KernelSpanProcessor's attributes.
 * Applications with their own tracing add KernelSpanProcessor to it instead (README "Kernel-enriched spans").
 */
import { TraceFlags } from '@opentelemetry/api';
import type { ExportResult } from '@opentelemetry/core';
import type { Resource } from '@opentelemetry/resources';
import type { ReadableSpan, Span, SpanExporter, SpanProcessor } from '@opentelemetry/sdk-trace-base';
import type { ExportResponse } from '@opentelemetry/otlp-exporter-base';
import type { ResolvedConfig } from './config';
import type { SpanExportControl } from './export-native';
import { reportFailuresOnce } from './export-failures';
import { sendUntil } from './exit-send';
import type { KernelSpanProcessor } from './spans';

export interface Tracing {
  processor: KernelSpanProcessor;
  /** Where the span exporter sends from (OTEL_NODE_EBPF_EXPORT_THREAD; `native` falls back to `main`). */
  thread: 'main' | 'native';
  forceFlush(): Promise<void>;
  /** Rejects with OpenTelemetry's TimeoutError when the spans' final export takes longer than `timeoutMillis`. */
  shutdown(timeoutMillis: number): Promise<void>;
  /**
   * For a process that exits without a turn of the event loop: sends the spans that ended and were not exported yet,
   * on this thread, which it blocks (at most timeoutMs; again only after "retry later", see sendUntil), with
   * `resource` as their resource: from the addon (http://) or a worker thread (gRPC, https://; src/exit-send.ts).
   */
  lastExport: (resource: Resource, timeoutMs: number) => ExportResponse | undefined;
}

/**
 * The spans that ended and that the batch processor has not handed to its exporter yet: what a process that exits
 * without a turn of the event loop (process.exit(), an uncaught exception) would lose, as the batch processor sends
 * every 5 s (OTEL_BSP_SCHEDULE_DELAY). Sampled spans only and at most the processor's queue (OTEL_BSP_MAX_QUEUE_SIZE),
 * as the batch processor keeps them: placed before it, this set takes and drops the same spans in the same order, and
 * stays equal to its queue. A span leaves the set when the batch processor hands it to the exporter (see
 * handedOver): one that is in flight when the process exits is not sent twice.
 */
class UnexportedSpans implements SpanProcessor {
  readonly spans = new Set<ReadableSpan>();

  constructor(private readonly max: number) {}

  onStart(_span: Span): void {}

  onEnd(span: ReadableSpan): void {
    if ((span.spanContext().traceFlags & TraceFlags.SAMPLED) !== 0 && this.spans.size < this.max) this.spans.add(span);
  }

  /** The exporter, whose export first takes its spans out of the set. */
  handedOver(exporter: SpanExporter): SpanExporter {
    const send = exporter.export.bind(exporter);
    exporter.export = (spans: ReadableSpan[], resultCallback: (result: ExportResult) => void) => {
      for (const span of spans) this.spans.delete(span);
      send(spans, resultCallback);
    };
    return exporter;
  }

  forceFlush(): Promise<void> {
    return Promise.resolve();
  }

  shutdown(): Promise<void> {
    return Promise.resolve();
  }
}

/** The span as it is, but for its resource. */
function withResource(span: ReadableSpan, resource: Resource): ReadableSpan {
  return span.resource === resource ? span : Object.create(span, { resource: { value: resource } });
}

/** The batch span processor's own default (OTEL_BSP_MAX_QUEUE_SIZE). */
const DEFAULT_MAX_QUEUE_SIZE = 2048;

function createSpanExporter(config: ResolvedConfig): { exporter: SpanExporter; thread: 'main' | 'native'; control: SpanExportControl } {
  const { createNativeSpanExporter } = require('./export-native') as typeof import('./export-native');
  const native = createNativeSpanExporter(config.tracesProtocol);
  if (native && config.exportThread === 'native') return { ...native, thread: 'native' };
  // OpenTelemetry's exporter on the application's thread; as for the metrics (src/sdk.ts), the spans of a process
  // that exits without a turn of the event loop leave from the addon where it can send (http://), from a worker
  // thread elsewhere (gRPC, https://)
  const { exitOnly, spansExitSender } = require('./exit-send') as typeof import('./exit-send');
  return {
    exporter: createMainThreadSpanExporter(config.tracesProtocol),
    thread: 'main',
    control: exitOnly(native ? native.control.exportSync : spansExitSender(config.tracesProtocol)),
  };
}

function createMainThreadSpanExporter(protocol: ResolvedConfig['tracesProtocol']): SpanExporter {
  // Loaded on demand: only the chosen transport's dependencies are required. Endpoint, headers, timeout and
  // compression come from the standard OTEL_EXPORTER_OTLP_(TRACES_)* variables, read by the exporter.
  switch (protocol) {
    case 'grpc': {
      const { OTLPTraceExporter } = require('@opentelemetry/exporter-trace-otlp-grpc') as typeof import('@opentelemetry/exporter-trace-otlp-grpc');
      return new OTLPTraceExporter();
    }
    case 'http/json': {
      const { OTLPTraceExporter } = require('@opentelemetry/exporter-trace-otlp-http') as typeof import('@opentelemetry/exporter-trace-otlp-http');
      return new OTLPTraceExporter();
    }
    default: {
      const { OTLPTraceExporter } = require('@opentelemetry/exporter-trace-otlp-proto') as typeof import('@opentelemetry/exporter-trace-otlp-proto');
      return new OTLPTraceExporter();
    }
  }
}

/**
 * Loaded with `--import` (an ES module application): the instrumentations see ES module imports, `node:http`
 * included, only through import-in-the-middle's loader hook, which @opentelemetry/instrumentation ships. It is
 * registered here, before the application's entry module loads. Not for `--require`: the hook runs the loader on a
 * thread of its own, which a CommonJS application does not need.
 */
function esmEntry(): boolean {
  const flags = [...process.execArgv, ...(process.env.NODE_OPTIONS ?? '').split(/\s+/)];
  return flags.some(flag => flag === '--import' || flag.startsWith('--import='));
}

function registerEsmHook(): void {
  const { register } = require('module') as { register?: (specifier: string, parentURL: string) => void };
  const { pathToFileURL } = require('url') as typeof import('url');
  if (!register) return; // Node < 20.6: engines says >= 20.6
  register('@opentelemetry/instrumentation/hook.mjs', pathToFileURL(__filename).href);
}

/** Starts tracing if OTEL_TRACES_EXPORTER=otlp; undefined otherwise. Throws only on a broken installation. */
export function startTracing(config: ResolvedConfig, resource: Resource): Tracing | undefined {
  if (config.tracesExporter !== 'otlp') return undefined;
  const { NodeTracerProvider, BatchSpanProcessor } = require('@opentelemetry/sdk-trace-node') as typeof import('@opentelemetry/sdk-trace-node');
  const { registerInstrumentations } = require('@opentelemetry/instrumentation') as typeof import('@opentelemetry/instrumentation');
  const { HttpInstrumentation } = require('@opentelemetry/instrumentation-http') as typeof import('@opentelemetry/instrumentation-http');
  const { GrpcInstrumentation } = require('@opentelemetry/instrumentation-grpc') as typeof import('@opentelemetry/instrumentation-grpc');
  const { KernelSpanProcessor } = require('./spans') as typeof import('./spans');
  const { callWithTimeout, getNumberFromEnv } = require('@opentelemetry/core') as typeof import('@opentelemetry/core');
  const processor = new KernelSpanProcessor({ disabled: !config.spans, tcpInfo: config.spansTcpInfo });
  const { exporter, thread, control } = createSpanExporter(config);
  reportFailuresOnce(exporter, 'span export', undefined);
  const unexported = new UnexportedSpans(getNumberFromEnv('OTEL_BSP_MAX_QUEUE_SIZE') ?? DEFAULT_MAX_QUEUE_SIZE);
  const provider = new NodeTracerProvider({
    resource,
    spanProcessors: [processor, unexported, new BatchSpanProcessor(unexported.handedOver(exporter))],
  });
  provider.register();
  if (esmEntry()) registerEsmHook();
  const unregister = registerInstrumentations({
    tracerProvider: provider,
    instrumentations: [new HttpInstrumentation(processor.httpInstrumentationConfig()), new GrpcInstrumentation(), processor.grpcInstrumentation()],
  });
  return {
    processor,
    thread,
    forceFlush: () => provider.forceFlush(),
    // as the metrics' final export (src/sdk.ts): a refused connection is not retried, and an export the bound gave
    // up on stops retrying
    shutdown: async timeoutMillis => {
      unregister();
      control.shuttingDown();
      try {
        await callWithTimeout(provider.shutdown(), timeoutMillis);
      } finally {
        control.end();
      }
    },
    lastExport: (spanResource, timeoutMs) => {
      if (unexported.spans.size === 0) return undefined;
      const spans = [...unexported.spans].map(span => withResource(span, spanResource));
      unexported.spans.clear();
      return sendUntil(Date.now() + timeoutMs, t => control.exportSync(spans, t));
    },
  };
}
