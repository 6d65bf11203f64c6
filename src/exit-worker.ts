/**
 * The worker thread of src/exit-send.ts: sends one serialised OTLP request with OpenTelemetry's own configuration of
 * the signal's exporter (endpoint, headers, TLS files, compression from the OTEL_EXPORTER_OTLP_* variables), one
 * attempt, and writes the outcome into the shared buffer that the exiting thread waits on. Never throws: a failure is
 * an outcome too, so that the waiting thread does not wait out its bound for nothing.
 */
import { workerData } from 'worker_threads';
import type { ExportResponse } from '@opentelemetry/otlp-exporter-base';
import { EXIT_STATE, ExitRequest, writeOutcome } from './exit-send';
import { otlpHttpConfig, userAgentOf } from './export-native';

// as OpenTelemetry's gRPC exporters name them (exporter-metrics-otlp-grpc, exporter-trace-otlp-grpc)
const GRPC_SERVICE = {
  METRICS: { name: 'MetricsExportService', path: '/opentelemetry.proto.collector.metrics.v1.MetricsService/Export', component: 'otlp_grpc_metric_exporter' },
  TRACES: { name: 'TraceExportService', path: '/opentelemetry.proto.collector.trace.v1.TraceService/Export', component: 'otlp_grpc_span_exporter' },
} as const;

/** The request's bytes as they are: the exiting thread serialised them. */
const asIs = { serializeRequest: (body: Uint8Array) => body, deserializeResponse: () => ({}) };
/** The exporters' self-observability counts items; this process ends before anything could read them. */
const noCount = { countItems: () => 0 };

function sendGrpc(request: ExitRequest): Promise<ExportResponse> {
  const grpcBase = require('@opentelemetry/otlp-grpc-exporter-base') as typeof import('@opentelemetry/otlp-grpc-exporter-base');
  const config = grpcBase.convertLegacyOtlpGrpcOptions(request.url ? { url: request.url } : {}, request.signal);
  config.timeoutMillis = request.timeoutMs;
  const service = GRPC_SERVICE[request.signal];
  // no retrying transport in OpenTelemetry's gRPC delegate: one attempt
  const delegate = grpcBase.createOtlpGrpcExportDelegate(config, asIs, service.component, noCount as never, undefined, service.name, service.path);
  return new Promise(resolve =>
    delegate.export(request.body, result => resolve(result.code === 0 ? { status: 'success' } : { status: 'failure', error: result.error ?? new Error('the export failed') })),
  );
}

async function sendHttp(request: ExitRequest): Promise<ExportResponse> {
  const config = otlpHttpConfig(request.signal, request.protocol, request.url ? { url: request.url } : {});
  const url = new URL(config.url);
  const transport = (url.protocol === 'https:' ? require('https') : require('http')) as typeof import('https');
  const agent = await config.agentFactory(url.protocol);
  const gzip = config.compression === 'gzip';
  const body = gzip ? (require('zlib') as typeof import('zlib')).gzipSync(request.body) : request.body;
  const headers: Record<string, string | number> = {
    ...(await config.headers()),
    'Content-Length': body.length,
    'User-Agent': userAgentOf(config),
    ...(gzip ? { 'Content-Encoding': 'gzip' } : {}),
  };
  return new Promise(resolve => {
    const req = transport.request(url, { method: 'POST', headers, agent, timeout: request.timeoutMs }, res => {
      res.resume();
      // one attempt: an answer to retry later is a failure too
      const status = res.statusCode ?? 0;
      if (status >= 200 && status <= 299) resolve({ status: 'success' });
      else resolve({ status: 'failure', error: new Error(`the OTLP endpoint answered HTTP ${status}`) });
    });
    req.on('timeout', () => req.destroy(new Error(`no answer from ${url.host} within ${request.timeoutMs} ms`)));
    req.on('error', error => resolve({ status: 'failure', error }));
    req.end(body);
  });
}

const request = workerData as ExitRequest;
const state = new Int32Array(request.shared, 0, 2);
(async () => (request.protocol === 'grpc' ? sendGrpc(request) : sendHttp(request)))()
  .catch((error: Error): ExportResponse => ({ status: 'failure', error }))
  .then(response =>
    response.status === 'success'
      ? writeOutcome(request.shared, EXIT_STATE.SUCCESS, '')
      : writeOutcome(request.shared, EXIT_STATE.FAILURE, response.error?.message ?? 'the export failed'),
  )
  .finally(() => Atomics.notify(state, 0));
