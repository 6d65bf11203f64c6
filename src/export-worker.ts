/**
 * The worker thread of src/export-thread.ts: OpenTelemetry's export delegate for the protocol, fed bytes that the
 * application's thread serialised. Endpoint, headers, compression, timeout and retries come from the OTEL_*
 * variables exactly as for the exporters on the main thread (the worker sees the process's environment).
 */
import { parentPort, workerData } from 'worker_threads';
import type { ExportResult } from '@opentelemetry/core';
import type { FromWorker, ToWorker, WorkerConfig } from './export-thread';

const config = workerData as WorkerConfig;
const passThrough = {
  serializeRequest: (bytes: Uint8Array) => bytes,
  deserializeResponse: () => ({}), // partial-success details are not read back
};
const noItemCount = { name: 'metric_data_point' as const, countItems: () => 0 };

function createDelegate() {
  if (config.protocol === 'grpc') {
    const grpc = require('@opentelemetry/otlp-grpc-exporter-base') as typeof import('@opentelemetry/otlp-grpc-exporter-base');
    return grpc.createOtlpGrpcExportDelegate(
      grpc.convertLegacyOtlpGrpcOptions(config.url ? { url: config.url } : {}, 'METRICS'),
      passThrough,
      'otlp_grpc_metric_exporter',
      noItemCount,
      undefined,
      'MetricsExportService',
      '/opentelemetry.proto.collector.metrics.v1.MetricsService/Export',
    );
  }
  const http = require('@opentelemetry/otlp-exporter-base/node-http') as typeof import('@opentelemetry/otlp-exporter-base/build/src/index-node-http');
  const contentType = config.protocol === 'http/json' ? 'application/json' : 'application/x-protobuf';
  return http.createOtlpHttpExportDelegate(
    http.convertLegacyHttpOptions(config.url ? { url: config.url } : {}, 'METRICS', 'v1/metrics', { 'Content-Type': contentType }),
    passThrough,
    config.protocol === 'http/json' ? 'otlp_http_json_metric_exporter' : 'otlp_http_metric_exporter',
    noItemCount,
    undefined,
  );
}

const delegate = createDelegate();
const port = parentPort!;
port.on('message', (m: ToWorker) => {
  if ('shutdown' in m) {
    delegate.shutdown().finally(() => {
      port.postMessage({ shutdownDone: true } satisfies FromWorker);
      port.close();
    });
    return;
  }
  delegate.export(m.bytes, (result: ExportResult) => port.postMessage({ id: m.id, code: result.code, error: result.error?.message } satisfies FromWorker));
});
