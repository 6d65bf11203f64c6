/**
 * The exporters' network side in the addon (OTEL_NODE_EBPF_EXPORT_THREAD=native), for metrics and for the spans of
 * `register`'s tracing: OpenTelemetry's export delegate and a serializer on the application's thread (for metrics
 * src/otlp/metrics-encoder.ts, for spans OpenTelemetry's), and a transport whose request leaves from a native thread
 * (native/http.cc) instead of Node's `http` module.
 *
 * Why: an exporter that sends through `http` passes its own request, socket and response objects through the Node
 * functions that the application's requests run (streams, sockets, OutgoingMessage). V8 then throws their optimised
 * code away and compiles slower code for more shapes: a small HTTP server ran at 84-91 % of its throughput with
 * the SDK exporting every 10 s (docs/benchmark.md, "Shared CPU"). A worker thread avoids that for 12-15 MB; the
 * addon's thread costs no V8 isolate.
 *
 * Plain `http://` endpoints with http/protobuf or http/json only: TLS and gRPC stay with OpenTelemetry's exporters.
 * Endpoint, headers, compression and timeout come from the same OTEL_EXPORTER_OTLP_* variables, read by
 * OpenTelemetry's own configuration code; retries follow its exporters (below).
 */
import { createOtlpNetworkExportDelegate, OTLPExporterBase, OTLPExporterError } from '@opentelemetry/otlp-exporter-base';
import type { ExportResponse, IExporterTransport, IOtlpExportDelegate } from '@opentelemetry/otlp-exporter-base';
import type { OTLPMetricExporterOptions } from '@opentelemetry/exporter-metrics-otlp-http';
import type { PushMetricExporter, ResourceMetrics } from '@opentelemetry/sdk-metrics';
import type { ReadableSpan, SpanExporter } from '@opentelemetry/sdk-trace-base';
import type { OtlpProtocol } from './config';
import { warnOnce } from './diag';
import { BpfError, HttpPostResult, loadAddon, NativeAddon } from './native';
import { VERSION } from './version';

// What OpenTelemetry's HTTP exporters retry (is-export-retryable.ts, retrying-transport.ts)
const RETRYABLE_STATUS = new Set([429, 502, 503, 504]);
const RETRYABLE_ERRNO = new Set(['ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'ETIMEDOUT']);
const MAX_ATTEMPTS = 5;
const INITIAL_BACKOFF_MS = 1000;
const MAX_BACKOFF_MS = 5000;
const BACKOFF_MULTIPLIER = 1.5;
const JITTER = 0.2;

/** Retry-After: seconds, or an HTTP date (RFC 9110 10.2.3); undefined when absent or unreadable. */
function retryAfterMillis(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const seconds = Number(value);
  if (value.trim() !== '' && Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - Date.now());
}

interface Endpoint {
  host: string;
  port: string;
  /** Request line and the headers that do not change: Host, User-Agent, Content-Encoding, Connection. */
  fixedHead: string;
}

const headerSafe = (s: string) => !/[\r\n\0]/.test(s);

class NativeHttpTransport implements IExporterTransport {
  /** The request's head with the headers last resolved: what the synchronous last export sends. */
  private head?: string;
  /** Set by end(): no more retries; `wake` cuts the wait for one short. */
  private ended = false;
  private wake?: () => void;
  /** Set by shuttingDown(): a refused connection is not retried. */
  private final = false;

  constructor(
    private readonly addon: NativeAddon,
    private readonly endpoint: Endpoint,
    private readonly headers: () => Promise<Record<string, string>>,
    private readonly gzip: boolean,
  ) {
    this.headers().then(
      h => (this.head ??= this.headOf(h)),
      () => {},
    );
  }

  private headOf(headers: Record<string, string>): string {
    let head = this.endpoint.fixedHead;
    for (const [name, value] of Object.entries(headers)) {
      if (headerSafe(name) && headerSafe(String(value))) head += `${name}: ${value}\r\n`;
      else warnOnce(`OTLP header ${JSON.stringify(name)} has a line break in its name or value; it is not sent`, `header-${name}`);
    }
    return head;
  }

  async send(data: Uint8Array, timeoutMillis: number): Promise<ExportResponse> {
    const deadline = Date.now() + timeoutMillis;
    let backoff = INITIAL_BACKOFF_MS;
    for (let attempt = 1; ; attempt++) {
      const response = await this.once(data, deadline - Date.now());
      if (response.status !== 'retryable' || attempt === MAX_ATTEMPTS || this.ended) return response;
      if (this.final && (response.error as BpfError | undefined)?.code === 'ECONNREFUSED') return response;
      const wait = response.retryInMillis ?? backoff * (1 + (Math.random() * 2 - 1) * JITTER);
      backoff = Math.min(backoff * BACKOFF_MULTIPLIER, MAX_BACKOFF_MS);
      if (Date.now() + wait >= deadline) return response;
      await new Promise<void>(resolve => {
        const timer = setTimeout(resolve, wait);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wake = undefined;
      if (this.ended) return response;
    }
  }

  /**
   * No more retries, and none waited for: the SDK's shutdown gave up on this export (its bound passed), and the
   * process that is ending need not wait for it (OpenTelemetry's reader holds the event loop until it settles).
   */
  end(): void {
    this.ended = true;
    this.wake?.();
  }

  /**
   * The SDK is shutting down: nothing listens where a connection is refused, and a process that ends (SIGINT in a
   * terminal, a job without a collector) should not wait seconds for it. A server that asks to retry (429, 503) still
   * gets its retries, within the shutdown's bound.
   */
  shuttingDown(): void {
    this.final = true;
  }

  private async once(data: Uint8Array, timeoutMs: number): Promise<ExportResponse> {
    const head = (this.head = this.headOf(await this.headers()));
    try {
      return responseOf(await this.addon.httpPost({ ...this.endpoint, head, body: data, gzip: this.gzip, timeoutMs }));
    } catch (err) {
      return failureOf(err as BpfError);
    }
  }

  canSendSync(): boolean {
    return this.head !== undefined;
  }

  /**
   * One attempt on the calling thread, which it blocks (at most timeoutMs): for a process that is exiting. Undefined
   * when it cannot send: OpenTelemetry resolves the headers asynchronously, and a process that exits in the turn of
   * the event loop that started the SDK has not seen them yet (nor counted anything).
   */
  sendSync(data: Uint8Array, timeoutMs: number): ExportResponse | undefined {
    if (this.head === undefined) return undefined;
    try {
      return responseOf(this.addon.httpPostSync({ ...this.endpoint, head: this.head, body: data, gzip: this.gzip, timeoutMs }));
    } catch (err) {
      return failureOf(err as BpfError);
    }
  }

  shutdown(): void {}
}

function responseOf({ status, retryAfter, body }: HttpPostResult): ExportResponse {
  // the body goes to OpenTelemetry's export delegate, which reports a partial success as its HTTP transport's would
  if (status >= 200 && status <= 299) return body ? { status: 'success', data: body } : { status: 'success' };
  if (RETRYABLE_STATUS.has(status)) return { status: 'retryable', retryInMillis: retryAfterMillis(retryAfter) };
  // the error OpenTelemetry's HTTP transport gives, so that its exporter metrics record the status code
  return { status: 'failure', error: new OTLPExporterError(`the OTLP endpoint answered HTTP ${status}`, status) };
}

function failureOf(error: BpfError): ExportResponse {
  return RETRYABLE_ERRNO.has(error.code) ? { status: 'retryable', error } : { status: 'failure', error };
}

export type Signal = 'METRICS' | 'TRACES';

type NodeHttp = typeof import('@opentelemetry/otlp-exporter-base/build/src/index-node-http');

/**
 * OpenTelemetry's configuration of its OTLP/HTTP exporter for `signal` (the OTEL_EXPORTER_OTLP_* variables over
 * `userOptions`), as the SDK's own HTTP transports use it: this one's and src/exit-worker.ts's.
 */
export function otlpHttpConfig(signal: Signal, protocol: OtlpProtocol, userOptions: object): ReturnType<NodeHttp['convertLegacyHttpOptions']> {
  const nodeHttp = require('@opentelemetry/otlp-exporter-base/node-http') as NodeHttp;
  const contentType = protocol === 'http/json' ? 'application/json' : 'application/x-protobuf';
  return nodeHttp.convertLegacyHttpOptions(userOptions, signal, signal === 'METRICS' ? 'v1/metrics' : 'v1/traces', { 'Content-Type': contentType });
}

/** The User-Agent of the SDK's own transports: the application's prefix (OpenTelemetry's `userAgent` option), then ours. */
export function userAgentOf(config: { userAgent?: string }): string {
  return `${config.userAgent ? `${config.userAgent} ` : ''}otel-node-ebpf/${VERSION}`;
}

/**
 * OpenTelemetry's export delegate for `signal` with a transport through the addon, or undefined where the addon cannot
 * send (not a plain `http://` endpoint, gRPC, the addon not loadable): the caller uses OpenTelemetry's exporter then.
 */
function createNativeDelegate<Internal>(
  signal: Signal,
  protocol: OtlpProtocol,
  userOptions: object,
  serializers: Record<'json' | 'protobuf', import('@opentelemetry/otlp-transformer').ISerializer<Internal, unknown>>,
  helper: import('@opentelemetry/otlp-transformer').IExporterMetricsHelper<Internal>,
): { delegate: IOtlpExportDelegate<Internal>; transport: NativeHttpTransport; sendSync: (items: Internal, timeoutMs: number) => ExportResponse | undefined } | undefined {
  const addon = loadAddon();
  if (protocol === 'grpc' || addon instanceof BpfError) return undefined;
  const nodeHttp = require('@opentelemetry/otlp-exporter-base/node-http') as NodeHttp;
  const json = protocol === 'http/json';
  const config = otlpHttpConfig(signal, protocol, userOptions);
  let url: URL;
  try {
    url = new URL(config.url);
  } catch {
    return undefined;
  }
  if (url.protocol !== 'http:') return undefined;
  const gzip = config.compression === 'gzip';
  const fixedHead =
    `POST ${url.pathname}${url.search} HTTP/1.1\r\nHost: ${url.host}\r\nUser-Agent: ${userAgentOf(config)}\r\n` +
    (gzip ? 'Content-Encoding: gzip\r\n' : '') +
    'Connection: close\r\n';
  const endpoint = { host: url.hostname.replace(/^\[(.*)\]$/, '$1'), port: url.port || '80', fixedHead };
  // Content-Type is among OpenTelemetry's headers (the required ones), with the user's OTEL_EXPORTER_OTLP_HEADERS
  const transport = new NativeHttpTransport(addon, endpoint, config.headers, gzip);
  // the component type of OpenTelemetry's own exporters (their self-observability metrics)
  const component = `otlp_http${json ? '_json' : ''}_${signal === 'METRICS' ? 'metric' : 'span'}_exporter`;
  const serializer = json ? serializers.json : serializers.protobuf;
  const delegate = createOtlpNetworkExportDelegate(config, serializer, nodeHttp.createOtlpHttpExporterMetrics(component, helper, config.url, undefined), transport);
  const sendSync = (items: Internal, timeoutMs: number): ExportResponse | undefined => {
    if (!transport.canSendSync()) return undefined;
    const body = serializer.serializeRequest(items);
    return body ? transport.sendSync(body, timeoutMs) : { status: 'failure', error: new Error('the data could not be serialised') };
  };
  return { delegate, transport, sendSync };
}

/** What the SDK's shutdown does with an exporter's transport (src/sdk.ts, src/tracing.ts). */
export interface TransportControl {
  /** The shutdown began: a refused connection is not retried. */
  shuttingDown(): void;
  /** The shutdown gave up on the export in flight: no more retries. */
  end(): void;
}

/** The same for the metrics exporter, and its last export at exit. */
export interface ExportControl extends TransportControl {
  /**
   * The last export of a process that exits without a turn of the event loop: on the calling thread, which it blocks
   * (one attempt, at most timeoutMs). Undefined when it cannot send yet (see NativeHttpTransport.sendSync).
   */
  exportSync(resourceMetrics: ResourceMetrics, timeoutMs: number): ExportResponse | undefined;
}

const controlOf = (transport: NativeHttpTransport): TransportControl => ({ shuttingDown: () => transport.shuttingDown(), end: () => transport.end() });

/**
 * A PushMetricExporter whose requests leave from the addon's thread, and the control of its transport, or undefined
 * where it cannot send.
 */
export function createNativeMetricExporter(
  protocol: OtlpProtocol,
  options: OTLPMetricExporterOptions,
): { exporter: PushMetricExporter; control: ExportControl } | undefined {
  const transformer = require('@opentelemetry/otlp-transformer') as typeof import('@opentelemetry/otlp-transformer');
  const { OTLPMetricExporterBase } = require('@opentelemetry/exporter-metrics-otlp-http') as typeof import('@opentelemetry/exporter-metrics-otlp-http');
  const { MetricsEncoder } = require('./otlp/metrics-encoder') as typeof import('./otlp/metrics-encoder');
  const serializers = { json: transformer.JsonMetricsSerializer, protobuf: new MetricsEncoder() };
  const native = createNativeDelegate('METRICS', protocol, options, serializers, transformer.MetricsExporterMetricsHelper);
  if (!native) return undefined;
  const { delegate, sendSync, transport } = native;
  return {
    exporter: new OTLPMetricExporterBase(delegate, options),
    control: { exportSync: sendSync, ...controlOf(transport) },
  };
}

/** The same for the span exporter, and its last export at exit. */
export interface SpanExportControl extends TransportControl {
  /** As ExportControl.exportSync, for spans that ended and were not exported yet. */
  exportSync(spans: ReadableSpan[], timeoutMs: number): ExportResponse | undefined;
}

/** A SpanExporter whose requests leave from the addon's thread and its transport's control, or undefined where it cannot send. */
export function createNativeSpanExporter(protocol: OtlpProtocol): { exporter: SpanExporter; control: SpanExportControl } | undefined {
  const transformer = require('@opentelemetry/otlp-transformer') as typeof import('@opentelemetry/otlp-transformer');
  const serializers = { json: transformer.JsonTraceSerializer, protobuf: transformer.ProtobufTraceSerializer };
  const native = createNativeDelegate('TRACES', protocol, {}, serializers, transformer.TraceExporterMetricsHelper);
  return native && { exporter: new OTLPExporterBase(native.delegate), control: { exportSync: native.sendSync, ...controlOf(native.transport) } };
}
