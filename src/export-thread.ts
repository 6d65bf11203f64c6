/**
 * The metrics exporter's network side on a worker thread of its own (OTEL_NODE_EBPF_EXPORT_THREAD=worker).
 *
 * Why: an OTLP exporter on the application's thread sends its requests through the same Node functions as the
 * application's own traffic (streams, sockets, OutgoingMessage). V8 then sees more object shapes there, throws away
 * the optimised code of those functions and compiles slower code for all shapes: a small HTTP server ran at 84-91 %
 * of its throughput with the SDK exporting every 10 s, 96-98 % without exporting, and the same POST sent from a worker
 * thread cost nothing measurable (docs/benchmark.md, "Shared CPU"). A worker is a V8 isolate of its own.
 *
 * Split: the application's thread collects and serialises (OTLPMetricExporterBase, the OpenTelemetry serializers),
 * and hands the bytes over (transferred, not copied). The worker runs OpenTelemetry's own export delegate for the
 * protocol (HTTP or gRPC; endpoint, headers, compression, timeout and retries from the same OTEL_* variables) with a
 * serializer that passes the bytes through. The worker holds the process open only while an export is in flight, so
 * the last export at exit or SIGTERM still leaves.
 */
import * as path from 'path';
import { Worker } from 'worker_threads';
import type { ExportResult } from '@opentelemetry/core';
import type { IOtlpExportDelegate } from '@opentelemetry/otlp-exporter-base';
import type { OTLPMetricExporterOptions } from '@opentelemetry/exporter-metrics-otlp-http';
import type { PushMetricExporter, ResourceMetrics } from '@opentelemetry/sdk-metrics';
import type { OtlpProtocol } from './config';
import { warnOnce } from './diag';

/** What the application's thread sends the worker. */
export type ToWorker = { id: number; bytes: Uint8Array } | { shutdown: true };
/** What the worker answers: an export's result (ExportResultCode), or that it shut down. */
export type FromWorker = { id: number; code: number; error?: string } | { shutdownDone: true };
/** The worker's configuration (workerData). */
export interface WorkerConfig {
  protocol: OtlpProtocol;
  url?: string;
}

const FAILED = 1; // ExportResultCode.FAILED

class WorkerExportDelegate implements IOtlpExportDelegate<ResourceMetrics> {
  private worker?: Worker;
  private nextId = 1;
  private readonly pending = new Map<number, (result: ExportResult) => void>();
  private idle: (() => void)[] = [];
  private shutDown?: Promise<void>;

  constructor(
    private readonly config: WorkerConfig,
    private readonly serializer: { serializeRequest(request: ResourceMetrics): Uint8Array | undefined },
  ) {}

  /** Started at the first export: a process that never exports never pays for the thread. */
  private start(): Worker {
    if (this.worker) return this.worker;
    // execArgv []: not the application's --require/--import preloads (NODE_OPTIONS' still run: register starts
    // nothing outside the main thread)
    const worker = new Worker(path.join(__dirname, 'export-worker.js'), { workerData: this.config, execArgv: [] });
    worker.unref();
    worker.on('message', (m: FromWorker) => {
      if (!('id' in m)) return;
      const done = this.pending.get(m.id);
      this.pending.delete(m.id);
      this.settled();
      done?.({ code: m.code, error: m.error === undefined ? undefined : new Error(m.error) });
    });
    worker.on('error', err => warnOnce(`metrics export thread: ${err.message}`, 'export-thread-error'));
    worker.on('exit', () => {
      this.worker = undefined;
      for (const [id, done] of this.pending) {
        this.pending.delete(id);
        done({ code: FAILED, error: new Error('the metrics export thread exited') });
      }
      this.settled();
    });
    this.worker = worker;
    return worker;
  }

  private settled(): void {
    if (this.pending.size > 0) return;
    this.worker?.unref();
    for (const resolve of this.idle.splice(0)) resolve();
  }

  export(metrics: ResourceMetrics, resultCallback: (result: ExportResult) => void): void {
    if (this.shutDown) return resultCallback({ code: FAILED, error: new Error('the exporter is shut down') });
    let bytes: Uint8Array | undefined;
    try {
      bytes = this.serializer.serializeRequest(metrics);
    } catch (err) {
      return resultCallback({ code: FAILED, error: err as Error });
    }
    if (!bytes) return resultCallback({ code: FAILED, error: new Error('the metrics could not be serialised') });
    let worker: Worker;
    try {
      worker = this.start();
    } catch (err) {
      return resultCallback({ code: FAILED, error: err as Error });
    }
    const id = this.nextId++;
    this.pending.set(id, resultCallback);
    worker.ref(); // an export in flight keeps the process open, as the main-thread exporter's socket does
    // the serializer's bytes may be a view of a larger buffer: transfer a copy of exactly them
    const own = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength ? bytes : bytes.slice();
    worker.postMessage({ id, bytes: own } satisfies ToWorker, [own.buffer as ArrayBuffer]);
  }

  forceFlush(): Promise<void> {
    return this.pending.size === 0 ? Promise.resolve() : new Promise(resolve => this.idle.push(resolve));
  }

  shutdown(): Promise<void> {
    this.shutDown ??= (async () => {
      await this.forceFlush();
      const worker = this.worker;
      if (!worker) return;
      worker.ref();
      const exited = new Promise<void>(resolve => worker.once('exit', () => resolve()));
      worker.postMessage({ shutdown: true } satisfies ToWorker);
      // the delegate's shutdown closes its connections and the thread ends; whatever it left open cannot hold the
      // application's exit for more than a second
      const timer = setTimeout(() => void worker.terminate(), 1000);
      timer.unref();
      await exited;
      clearTimeout(timer);
    })();
    return this.shutDown;
  }

  setMetrics(): void {}
}

/** A PushMetricExporter for `protocol` whose requests leave from a worker thread (see the file's comment). */
export function createWorkerMetricExporter(protocol: OtlpProtocol, options: OTLPMetricExporterOptions): PushMetricExporter {
  const { OTLPMetricExporterBase } = require('@opentelemetry/exporter-metrics-otlp-http') as typeof import('@opentelemetry/exporter-metrics-otlp-http');
  const { JsonMetricsSerializer } = require('@opentelemetry/otlp-transformer') as typeof import('@opentelemetry/otlp-transformer');
  const { MetricsEncoder } = require('./otlp/metrics-encoder') as typeof import('./otlp/metrics-encoder');
  const serializer = protocol === 'http/json' ? JsonMetricsSerializer : new MetricsEncoder();
  return new OTLPMetricExporterBase(new WorkerExportDelegate({ protocol, url: options.url }, serializer), options);
}
