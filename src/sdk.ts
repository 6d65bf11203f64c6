/**
 * start(): a complete pipeline (kernel telemetry → MetricProducer → periodic reader → OTLP exporter), configured
 * by the standard OTEL_* environment; and createMetricProducer() for an application that has its own pipeline.
 */
import { readFileSync } from 'fs';
import { arch, hostname } from 'os';
import { isMainThread } from 'worker_threads';
import { DiagConsoleLogger, DiagLogLevel, diag } from '@opentelemetry/api';
import type { AttributeValue } from '@opentelemetry/api';
import type { Resource } from '@opentelemetry/resources';
import type { OTLPMetricExporterOptions } from '@opentelemetry/exporter-metrics-otlp-http';
import type { MeterProvider, PushMetricExporter } from '@opentelemetry/sdk-metrics';
import type { ExportResponse } from '@opentelemetry/otlp-exporter-base';
import { IN_WORKER, sources, useKernelTelemetry } from './active';
import { ExportThread, ResolvedConfig, resolveConfig, StartOptions } from './config';
import { warnOnce } from './diag';
import { reportFailuresOnce } from './export-failures';
import type { ExportControl } from './export-native';
import type { EbpfStatus } from './kernel';
import type { KernelMetricProducer } from './producer';
import { sendUntil } from './exit-send';
import { exportInNextTurn } from './turns';
import { VERSION } from './version';
import type { Tracing } from './tracing';
import type { TcpInfoReading } from './spans';
import { ownIo } from './own-io';

// The pipeline's modules are required when start() or createMetricProducer() needs them, not when this module
// loads: with OTEL_SDK_DISABLED=true, `register` loads none of them, and without tracing, nothing of tracing.

export interface EbpfHandle {
  /** What is attached, with which hook, and why anything is not. */
  status(): EbpfStatus & {
    exporter?: { protocol: string; endpoint?: string; thread?: ExportThread };
    /**
     * With OTEL_TRACES_EXPORTER=otlp: the span exporter's protocol and where it sends from, and how the span processor
     * reads the kernel's per-connection counters (KernelSpanProcessor#reading).
     */
    tracing?: { protocol: string; thread: 'main' | 'native'; tcpInfo: TcpInfoReading };
  };
  /** Exports what the kernel has counted so far. Never rejects. */
  forceFlush(): Promise<void>;
  /** Exports the last values, then detaches the probes. Idempotent; never rejects. */
  shutdown(): Promise<void>;
}

/** The exporter, and the thread it sends from: `native` falls back to `main` where the addon cannot send. */
function createExporter(config: ResolvedConfig): { exporter: PushMetricExporter; thread: ExportThread; control: ExportControl } {
  const { AggregationTemporalityPreference } = require('@opentelemetry/exporter-metrics-otlp-http') as typeof import('@opentelemetry/exporter-metrics-otlp-http');
  const { AggregationType } = require('@opentelemetry/sdk-metrics') as typeof import('@opentelemetry/sdk-metrics');
  const TEMPORALITY = {
    cumulative: AggregationTemporalityPreference.CUMULATIVE,
    delta: AggregationTemporalityPreference.DELTA,
    lowmemory: AggregationTemporalityPreference.LOWMEMORY,
  };
  const options: OTLPMetricExporterOptions = {
    temporalityPreference: TEMPORALITY[config.temporality],
    aggregationPreference: () =>
      config.histogramAggregation === 'base2_exponential_bucket_histogram'
        ? { type: AggregationType.EXPONENTIAL_HISTOGRAM }
        : { type: AggregationType.DEFAULT },
    ...(config.endpoint ? { url: config.endpoint } : {}),
  };
  // the last export of a process that exits without a turn of the event loop, where the addon cannot send it
  const { exitOnly, metricsExitSender } = require('./exit-send') as typeof import('./exit-send');
  if (config.exportThread === 'worker') {
    const { createWorkerMetricExporter } = require('./export-thread') as typeof import('./export-thread');
    return {
      exporter: createWorkerMetricExporter(config.protocol, options),
      thread: 'worker',
      control: exitOnly(metricsExitSender(config.protocol, options.url)),
    };
  }
  const { createNativeMetricExporter } = require('./export-native') as typeof import('./export-native');
  const native = createNativeMetricExporter(config.protocol, options);
  if (native && config.exportThread === 'native') return { ...native, thread: 'native' };
  // OpenTelemetry's exporter on the application's thread; the addon still sends the last export of a process that
  // exits without a turn of the event loop where it can (http://), a worker thread elsewhere (gRPC, https://)
  return {
    exporter: createMainThreadExporter(config.protocol, options),
    thread: 'main',
    control: exitOnly(native ? native.control.exportSync : metricsExitSender(config.protocol, options.url)),
  };
}

/**
 * OpenTelemetry's exporter for `protocol` on the application's thread. Protobuf (gRPC, http/protobuf) with the SDK's
 * encoder (src/otlp/metrics-encoder.ts) in OpenTelemetry's own export delegate: the same bytes, less of the
 * application's time at each export.
 */
function createMainThreadExporter(protocol: ResolvedConfig['protocol'], options: OTLPMetricExporterOptions): PushMetricExporter {
  // Loaded on demand: only the chosen transport's dependencies are required.
  const { OTLPMetricExporterBase, OTLPMetricExporter } = require('@opentelemetry/exporter-metrics-otlp-http') as typeof import('@opentelemetry/exporter-metrics-otlp-http');
  if (protocol === 'http/json') return new OTLPMetricExporter(options);
  const { MetricsExporterMetricsHelper } = require('@opentelemetry/otlp-transformer') as typeof import('@opentelemetry/otlp-transformer');
  const { MetricsEncoder } = require('./otlp/metrics-encoder') as typeof import('./otlp/metrics-encoder');
  if (protocol === 'grpc') {
    const grpc = require('@opentelemetry/otlp-grpc-exporter-base') as typeof import('@opentelemetry/otlp-grpc-exporter-base');
    const config = grpc.convertLegacyOtlpGrpcOptions(options, 'METRICS');
    const service = ['MetricsExportService', '/opentelemetry.proto.collector.metrics.v1.MetricsService/Export'] as const;
    const delegate = grpc.createOtlpGrpcExportDelegate(config, new MetricsEncoder(), 'otlp_grpc_metric_exporter', MetricsExporterMetricsHelper, undefined, ...service);
    return new OTLPMetricExporterBase(delegate, options);
  }
  const { createOtlpHttpExportDelegate } = require('@opentelemetry/otlp-exporter-base/node-http') as typeof import('@opentelemetry/otlp-exporter-base/build/src/index-node-http');
  const { otlpHttpConfig } = require('./export-native') as typeof import('./export-native');
  const config = otlpHttpConfig('METRICS', protocol, options);
  return new OTLPMetricExporterBase(createOtlpHttpExportDelegate(config, new MetricsEncoder(), 'otlp_http_metric_exporter', MetricsExporterMetricsHelper, undefined), options);
}

function endpointOf(config: ResolvedConfig): string | undefined {
  if (config.endpoint) return config.endpoint;
  // OpenTelemetry skips a variable whose URL does not parse (it logs that itself), and so does this
  const url = (name: string) => {
    const value = process.env[name];
    if (!value) return undefined;
    try {
      new URL(value);
      return value;
    } catch {
      return undefined;
    }
  };
  const metrics = url('OTEL_EXPORTER_OTLP_METRICS_ENDPOINT');
  if (metrics) return metrics;
  const base = url('OTEL_EXPORTER_OTLP_ENDPOINT');
  if (config.protocol === 'grpc') return base ?? 'http://localhost:4317';
  return base ? `${base.replace(/\/$/, '')}/v1/metrics` : 'http://localhost:4318/v1/metrics';
}

/** OTEL_LOG_LEVEL's values (the enum's own keys: DiagLogLevel['0'] is the string 'NONE'). */
const LOG_LEVELS = ['NONE', 'ERROR', 'WARN', 'INFO', 'DEBUG', 'VERBOSE', 'ALL'] as const;

/** Installs a console diag logger at OTEL_LOG_LEVEL (default warn) unless the application has one. */
function ensureDiagLogger(): void {
  const registry = (globalThis as Record<symbol, { diag?: unknown } | undefined>)[Symbol.for('opentelemetry.js.api.1')];
  if (registry?.diag) return;
  const value = process.env.OTEL_LOG_LEVEL?.trim() ?? '';
  const level = LOG_LEVELS.find(l => l === value.toUpperCase());
  diag.setLogger(new DiagConsoleLogger(), { logLevel: DiagLogLevel[level ?? 'WARN'], suppressOverrideMessage: true });
  if (value !== '' && !level) warnOnce(`OTEL_LOG_LEVEL="${value}" is not one of ${LOG_LEVELS.join(', ')}; using WARN`);
}

/** The longest a process that calls process.exit() waits for its last export. */
const EXIT_EXPORT_MAX_MS = 2000;
/** The longest a shutdown waits for the final exports: a SIGTERM's grace period (Kubernetes: 30 s) is not for a dead collector. */
const FINAL_EXPORT_MAX_MS = 5000;

/**
 * A shutdown that stopped waiting (OpenTelemetry's TimeoutError, of its metrics SDK or of its core) has nothing to
 * say: the exporter's own failure is reported once by reportFailuresOnce, with the endpoint and what to check.
 */
function timedOut(err: unknown): boolean {
  const { TimeoutError: MetricsTimeout } = require('@opentelemetry/sdk-metrics') as typeof import('@opentelemetry/sdk-metrics');
  const { TimeoutError: CoreTimeout } = require('@opentelemetry/core') as typeof import('@opentelemetry/core');
  return err instanceof MetricsTimeout || err instanceof CoreTimeout;
}

/**
 * The resource as it is now: a process can exit before a detector's asynchronous attributes (the host's id) settled,
 * and reading them then makes OpenTelemetry log an error per read.
 */
function settled(resource: Resource): Resource {
  if (!resource.asyncAttributesPending) return resource;
  const { resourceFromAttributes } = require('@opentelemetry/resources') as typeof import('@opentelemetry/resources');
  const attributes: Record<string, AttributeValue> = {};
  for (const [k, v] of resource.getRawAttributes()) {
    if (v != null && typeof (v as PromiseLike<unknown>).then !== 'function') attributes[k] ??= v as AttributeValue;
  }
  return resourceFromAttributes(attributes);
}

/** One export at exit: what it says (once) when it did not succeed (`what` names it, and its endpoint). Never throws. */
function exitExport(what: string, send: () => ExportResponse | undefined): void {
  let failure: string | undefined;
  try {
    const result = send();
    if (result && result.status !== 'success') failure = result.error?.message ?? 'the endpoint asked to retry later';
  } catch (err) {
    failure = (err as Error).message;
  }
  if (failure !== undefined) warnOnce(`the last ${what} failed: ${failure}`);
}

/**
 * The 'exit' event's exports (see flushOnExit), on this thread, within one bound: what the producer has now, then the
 * spans that ended and were not exported yet. Never throws.
 */
function lastExportsWith(
  control: ExportControl | undefined,
  producer: KernelMetricProducer,
  tracing: Tracing | undefined,
  resource: Resource,
  config: ResolvedConfig,
  endpoint: string | undefined,
): (() => void) | undefined {
  const spans = tracing?.lastExport;
  if (!control && !spans) return undefined;
  return () => {
    const deadline = Date.now() + Math.min(config.exportTimeoutMillis, EXIT_EXPORT_MAX_MS);
    const now = settled(resource);
    if (control) {
      exitExport(`metrics export to ${endpoint}`, () => {
        const { resourceMetrics } = producer.collectNow();
        if (resourceMetrics.scopeMetrics.length === 0) return undefined; // nothing to send (see KernelMetricProducer)
        resourceMetrics.resource = now;
        return sendUntil(deadline, timeoutMs => control.exportSync(resourceMetrics, timeoutMs));
      });
    }
    if (spans && deadline > Date.now()) exitExport('span export', () => spans(now, deadline - Date.now()));
  };
}

/**
 * Flushes the last values when the process ends, without changing what the application does.
 *
 * An ending process (its event loop empty, process.exit(), an uncaught exception, an application's handler that
 * exits at once) has the `exit` event, where `lastExport` sends what is left synchronously, within one bound. Nothing
 * is started when the event loop empties ('beforeExit'): work started then would keep the process alive for as long
 * as a collector that does not answer makes it wait (the exporter's timeout, 10 s, not the shutdown's bound), and
 * would make Node emit 'beforeExit' again, to the application's listeners too.
 *
 * A signal that only we listen to: we shut down and raise it again, so that the process ends as it would have
 * without us (killed by the signal); a second one while the shutdown runs is raised at once (a second Ctrl-C).
 *
 * A signal that others listen to as well: they decide what happens, and they must decide as if we were not there.
 * Some listeners look: signal-exit (in many tools' dependencies) ends the process only when it is the signal's only
 * listener, and would wait for us as we would for it, the process never ending. So our listener comes first
 * (prepended), takes itself out of the list before the others run, sends what we have synchronously (one of them may
 * end the process before another turn; through the addon this takes a few ms, at most the exit export's bound), and
 * is back for the next signal once the others have run, if the process is still there.
 */
function flushOnExit(
  flush: () => Promise<void>,
  shutdown: () => Promise<void>,
  signals: boolean,
  lastExport?: () => void,
): () => void {
  let shuttingDown = false;
  let removed = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (shuttingDown) {
      // a second signal during the shutdown ends the process now, as it would have without us (unless the
      // application listens to this one: then it has just heard it)
      process.removeListener(signal, onSignal);
      if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
      return;
    }
    if (process.listenerCount(signal) > 1) {
      process.removeListener(signal, onSignal);
      if (lastExport) lastExport();
      else void flush();
      setImmediate(() => {
        if (!removed) process.prependListener(signal, onSignal);
      });
      return;
    }
    shuttingDown = true;
    void shutdown().finally(() => {
      process.removeListener(signal, onSignal);
      process.kill(process.pid, signal);
    });
  };
  if (lastExport) process.once('exit', lastExport);
  if (signals) {
    process.prependListener('SIGTERM', onSignal);
    process.prependListener('SIGINT', onSignal);
  }
  return () => {
    removed = true;
    if (lastExport) process.removeListener('exit', lastExport);
    if (signals) {
      process.removeListener('SIGTERM', onSignal);
      process.removeListener('SIGINT', onSignal);
    }
  };
}

const inert = (reason: string): EbpfHandle => ({
  status: () => ({ active: false, reason, kernelRelease: '', probes: [], kernelTime: 'off' }),
  forceFlush: async () => {},
  shutdown: async () => {},
});
const INERT = inert('disabled (OTEL_SDK_DISABLED)');

const inWorker = (api: string) => `${api} was called ${IN_WORKER}; nothing is started: call it in the main thread, or preload otel-node-ebpf/register`;

/**
 * Starts kernel telemetry for this process and exports it over OTLP. Never throws into the application (except
 * with `strict`): problems are logged once, with the fix, and status() says what is attached.
 */
export function start(options: StartOptions = {}): EbpfHandle {
  return ownIo(() => startWith(options, false));
}

/**
 * `register`'s start: from the environment, and with OpenTelemetry's console diag logger at OTEL_LOG_LEVEL unless
 * the application has one (OpenTelemetry's own messages, such as an exporter's, have nowhere to go otherwise), but
 * not when OTEL_SDK_DISABLED=true: a disabled SDK takes nothing global.
 */
export function startFromEnvironment(): EbpfHandle {
  return ownIo(() => startWith({}, true));
}

/** semconv's host.arch for Node's os.arch() (OpenTelemetry's host detector maps it the same way). */
const HOST_ARCH: Record<string, string> = { arm: 'arm32', ppc: 'ppc32', x64: 'amd64' };

/**
 * OpenTelemetry's host detector, but for where it reads the machine id: here, at start, inside the SDK's own I/O
 * (src/own-io.ts), rather than on the thread pool after start, where file.io counted /etc/machine-id (and the module
 * the detector imports for it) as the application's. The same attributes and the same files, in the same order.
 */
const hostDetector = {
  detect(): { attributes: Record<string, AttributeValue | undefined> } {
    let id: string | undefined;
    for (const file of ['/etc/machine-id', '/var/lib/dbus/machine-id']) {
      try {
        id = readFileSync(file, 'utf8').trim();
        break;
      } catch (err) {
        diag.debug(`error reading machine id: ${err}`);
      }
    }
    return { attributes: { 'host.name': hostname(), 'host.arch': HOST_ARCH[arch()] ?? arch(), 'host.id': id } };
  },
};

function startWith(options: StartOptions, diagLogger: boolean): EbpfHandle {
  const { config, warnings } = resolveConfig(options);
  if (!config.disabled && diagLogger) ensureDiagLogger();
  for (const w of warnings) warnOnce(w);
  if (config.disabled) return INERT;
  if (!isMainThread) {
    warnOnce(inWorker('start()'));
    return inert(IN_WORKER);
  }

  const { KernelTelemetry } = require('./kernel') as typeof import('./kernel');
  const { KernelMetricProducer } = require('./producer') as typeof import('./producer');
  const { defaultResource, detectResources, envDetector, processDetector, resourceFromAttributes } = require('@opentelemetry/resources') as typeof import('@opentelemetry/resources');
  const { MeterProvider, PeriodicExportingMetricReader } = require('@opentelemetry/sdk-metrics') as typeof import('@opentelemetry/sdk-metrics');
  const { startTracing } = require('./tracing') as typeof import('./tracing');
  const telemetry = new KernelTelemetry(config);
  telemetry.start(); // throws only in strict mode
  useKernelTelemetry(telemetry);
  const producer = new KernelMetricProducer(telemetry, config);
  let provider: MeterProvider;
  let tracing: Tracing | undefined;
  let exportThread: ExportThread | undefined;
  let lastExport: (() => void) | undefined;
  // resolved once, for the export's warnings and status()
  const endpoint = config.metricsExporter === 'none' ? undefined : endpointOf(config);
  let control: ExportControl | undefined;
  try {
    // As OpenTelemetry's NodeSDK makes it: service.name (unknown_service:<argv0> unless set) and telemetry.sdk.*,
    // then this distribution's name, then what the detectors find; an option's service name wins over all.
    const resource = defaultResource()
      .merge(resourceFromAttributes({ 'telemetry.distro.name': 'otel-node-ebpf', 'telemetry.distro.version': VERSION }))
      .merge(detectResources({ detectors: [envDetector, processDetector, hostDetector] }))
      .merge(config.serviceName ? resourceFromAttributes({ 'service.name': config.serviceName }) : null);
    const readers = [];
    if (config.metricsExporter !== 'none') {
      let exporter: PushMetricExporter;
      ({ exporter, thread: exportThread, control } = createExporter(config));
      exportInNextTurn(exporter); // serialising is a step of its own, after the collection's (src/turns.ts)
      reportFailuresOnce(exporter, 'metrics export', endpoint);
      readers.push(
        new PeriodicExportingMetricReader({
          exporter,
          exportIntervalMillis: config.exportIntervalMillis,
          exportTimeoutMillis: config.exportTimeoutMillis,
          metricProducers: [producer],
        }),
      );
    }
    provider = new MeterProvider({ resource, readers });
    try {
      tracing = startTracing(config, resource);
    } catch (err) {
      if (config.strict) throw err;
      warnOnce(`tracing could not be set up: ${(err as Error).message}; spans are not exported`);
    }
    lastExport = lastExportsWith(control, producer, tracing, resource, config, endpoint);
  } catch (err) {
    telemetry.shutdown();
    if (config.strict) throw err;
    warnOnce(`metrics export could not be set up: ${(err as Error).message}; kernel telemetry is off`);
    return INERT;
  }

  const swallow = (what: string) => (err: unknown) => warnOnce(`${what} failed: ${(err as Error)?.message ?? err}`, what);
  const swallowFinal = (what: string) => (err: unknown) => (timedOut(err) ? undefined : swallow(what)(err));
  let shutdownPromise: Promise<void> | undefined;
  const shutdown = (): Promise<void> => {
    if (shutdownPromise) return shutdownPromise;
    const bound = Math.min(config.exportTimeoutMillis, FINAL_EXPORT_MAX_MS);
    control?.shuttingDown();
    shutdownPromise = Promise.all([
      provider
        .shutdown({ timeoutMillis: bound })
        .catch(swallowFinal('final export'))
        // and the export it gave up on stops retrying, so that the process can end
        .finally(() => control?.end()),
      tracing?.shutdown(bound).catch(swallowFinal('final span export')),
    ])
      .then(() => {})
      .finally(() => {
        removeExitHooks();
        useKernelTelemetry(undefined);
        telemetry.shutdown();
      });
    return shutdownPromise;
  };
  const forceFlush = () =>
    Promise.all([provider.forceFlush().catch(swallow('export')), tracing?.forceFlush().catch(swallow('span export'))]).then(() => {});
  const removeExitHooks = flushOnExit(forceFlush, shutdown, config.flushOnSignals, lastExport);
  return {
    status: () => ({ ...telemetry.status(), exporter: config.metricsExporter === 'none' ? { protocol: 'none' } : { protocol: config.protocol, endpoint, thread: exportThread }, ...(tracing ? { tracing: { protocol: config.tracesProtocol, thread: tracing.thread, tcpInfo: { ...tracing.processor.reading } } } : {}) }),
    forceFlush,
    shutdown,
  };
}

export interface ProducerHandle {
  /** Give this to your reader: `new PeriodicExportingMetricReader({ exporter, metricProducers: [handle.producer] })`. */
  producer: KernelMetricProducer;
  status(): EbpfStatus;
  /** Detaches the probes. Shut your MeterProvider down first, so that its last export still has the kernel values. */
  shutdown(): void;
}

/**
 * Kernel telemetry for an application that already has a MeterProvider (its own, or the NodeSDK's): no second
 * exporter. Temporality and histogram aggregation come from the options or the same environment variables.
 */
export function createMetricProducer(options: StartOptions = {}): ProducerHandle {
  const { config, warnings } = resolveConfig(options);
  for (const w of warnings) warnOnce(w);
  const { KernelTelemetry } = require('./kernel') as typeof import('./kernel');
  const { KernelMetricProducer } = require('./producer') as typeof import('./producer');
  const telemetry = new KernelTelemetry(config);
  const worker = !config.disabled && !isMainThread;
  if (worker) warnOnce(inWorker('createMetricProducer()'));
  else if (!config.disabled) ownIo(() => telemetry.start());
  useKernelTelemetry(telemetry);
  return {
    producer: new KernelMetricProducer(telemetry, config),
    status: () => (worker ? { ...telemetry.status(), active: false, reason: IN_WORKER } : telemetry.status()),
    shutdown: () => {
      // the span processors stop reading it too, as after start()'s shutdown
      if (sources === telemetry) useKernelTelemetry(undefined);
      telemetry.shutdown();
    },
  };
}
