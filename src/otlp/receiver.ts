/**
 * A small, real OTLP receiver: OTLP/gRPC (MetricsService/Export, TraceService/Export) and OTLP/HTTP (POST /v1/metrics,
 * /v1/traces with protobuf or JSON bodies, gzip or not). It decodes every request and keeps it as flat records that
 * are easy to assert on (ReceivedPoint, ReceivedSpan). The tests use it to check what the SDK's exporters send; the
 * demo uses it to print a summary.
 */
import { EventEmitter } from 'node:events';
import * as http from 'node:http';
import * as https from 'node:https';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { promisify } from 'node:util';
import * as zlib from 'node:zlib';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

export type Protocol = 'grpc' | 'http/protobuf' | 'http/json';
export type Signal = 'metrics' | 'traces';

/** An attribute value: OTLP's AnyValue. 64-bit integers become JS numbers; an empty AnyValue is null. */
export type AttrValue = string | number | boolean | null | Uint8Array | AttrValue[] | { [key: string]: AttrValue };
export type Attributes = Record<string, AttrValue>;
/**
 * Request headers with lowercased names; gRPC metadata as plain strings (binary `-bin` values in base64). grpc-js
 * removes grpc-encoding, grpc-accept-encoding, grpc-timeout, te and content-type from the metadata it hands over.
 */
export type Headers = Record<string, string>;

export type MetricType = 'sum' | 'gauge' | 'histogram' | 'exponentialHistogram' | 'summary';
export type Temporality = 'delta' | 'cumulative';

export interface ExponentialBuckets {
  offset: number;
  bucketCounts: number[];
}

/** Where a received point or span came from: the request and its resource and instrumentation scope. */
export interface ReceivedOrigin {
  protocol: Protocol;
  headers: Headers;
  resource: Attributes;
  /** Instrumentation scope name. */
  scope: string;
  scopeVersion: string;
}

/** One data point of one metric, with everything around it (request, resource, scope, metric) flattened in. */
export interface ReceivedPoint extends ReceivedOrigin {
  name: string;
  unit: string;
  description: string;
  type: MetricType;
  /** Sums, histograms and exponential histograms. */
  temporality?: Temporality;
  /** Sums only. */
  monotonic?: boolean;
  attributes: Attributes;
  startTimeUnixNano: bigint;
  timeUnixNano: bigint;
  /** Sums and gauges (as_double or as_int). */
  value?: number;
  /** Histograms, exponential histograms and summaries. */
  count?: number;
  sum?: number;
  min?: number;
  max?: number;
  /** Explicit-bucket histograms: bucketCounts.length === explicitBounds.length + 1. */
  bucketCounts?: number[];
  explicitBounds?: number[];
  /** Exponential histograms. */
  scale?: number;
  zeroCount?: number;
  positive?: ExponentialBuckets;
  negative?: ExponentialBuckets;
  /** Summaries. */
  quantiles?: { quantile: number; value: number }[];
}

export type SpanKindName = 'unspecified' | 'internal' | 'server' | 'client' | 'producer' | 'consumer';
export type StatusCodeName = 'unset' | 'ok' | 'error';

export interface ReceivedSpanEvent {
  name: string;
  timeUnixNano: bigint;
  attributes: Attributes;
}

export interface ReceivedSpan extends ReceivedOrigin {
  name: string;
  kind: SpanKindName;
  /** Lowercase hex: 32 digits for trace ids, 16 for span ids; parentSpanId is '' for a root span. */
  traceId: string;
  spanId: string;
  parentSpanId: string;
  traceState: string;
  startTimeUnixNano: bigint;
  endTimeUnixNano: bigint;
  attributes: Attributes;
  events: ReceivedSpanEvent[];
  status: { code: StatusCodeName; message: string };
}

/** One export request as received, body decoded (protobuf bodies to the camelCase object form of the message). */
export interface ReceivedRequest {
  protocol: Protocol;
  signal: Signal;
  headers: Headers;
  body: unknown;
  /** Date.now() at arrival. */
  receivedAt: number;
}

export interface ReceiverOptions {
  /** Interface to listen on; default 127.0.0.1. */
  host?: string;
  /** 0 (the default) picks an ephemeral port. */
  grpcPort?: number;
  httpPort?: number;
  /** PEM key and certificate: both servers speak TLS (https://, gRPC over TLS). */
  tls?: { key: string | Buffer; cert: string | Buffer };
}

export interface ReceiverAddress {
  grpcPort: number;
  httpPort: number;
  /** http://host:port (https:// with TLS): what OTEL_EXPORTER_OTLP_ENDPOINT takes for protocol grpc. */
  grpcEndpoint: string;
  /** http://host:port (https:// with TLS), without /v1/...: what OTEL_EXPORTER_OTLP_ENDPOINT takes for http/protobuf and http/json. */
  httpEndpoint: string;
}

/**
 * Where the schema is: src/otlp/proto relative to the package root, from both dist/otlp (compiled) and src/otlp
 * (the .proto files are not copied by tsc; package.json "files" ships them).
 */
export const PROTO_DIR = path.resolve(__dirname, '../../src/otlp/proto');

const METRICS_SERVICE = 'opentelemetry.proto.collector.metrics.v1.MetricsService';
const TRACE_SERVICE = 'opentelemetry.proto.collector.trace.v1.TraceService';
const MAX_BODY_BYTES = 64 * 1024 * 1024;

interface ExportMethod {
  service: protoLoader.ServiceDefinition;
  decode(buf: Buffer): unknown;
  encodeEmptyResponse(): Buffer;
}

let schema: Record<Signal, ExportMethod> | undefined;

function loadSchema(): Record<Signal, ExportMethod> {
  if (schema) return schema;
  const def = protoLoader.loadSync(['metrics_service.proto', 'trace_service.proto'], {
    includeDirs: [PROTO_DIR],
    // 64-bit integers as decimal strings (converted by the normalizer, like OTLP/JSON's), enums as numbers, absent
    // fields left out (the normalizer supplies defaults, as it must for JSON too), oneof members as set.
    longs: String,
    enums: Number,
    defaults: false,
    oneofs: true,
  });
  const method = (serviceName: string): ExportMethod => {
    const service = def[serviceName] as protoLoader.ServiceDefinition;
    const exp = service.Export;
    return {
      service,
      decode: (buf) => exp.requestDeserialize(buf),
      encodeEmptyResponse: () => exp.responseSerialize({}),
    };
  };
  schema = { metrics: method(METRICS_SERVICE), traces: method(TRACE_SERVICE) };
  return schema;
}

// ---------------------------------------------------------------------------------------------------------------
// Normalization. Input is the camelCase object form of an Export*ServiceRequest, from protobuf (proto-loader) or
// from OTLP/JSON: 64-bit integers as strings or numbers, enums as numbers (or names), ids as bytes or hex strings.
// Field names are looked up in lowerCamelCase and, failing that, in the proto's snake_case.

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array);
}

function get(o: unknown, camel: string): unknown {
  if (!isObj(o)) return undefined;
  const v = o[camel];
  if (v !== undefined && v !== null) return v;
  const snake = o[camel.replace(/[A-Z]/g, (c) => '_' + c.toLowerCase())];
  return snake === null ? undefined : snake;
}

function list(v: unknown): unknown[] {
  return Array.isArray(v) ? v : [];
}

function toNum(v: unknown): number | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'number') return v;
  if (typeof v === 'string') return Number(v);
  if (typeof v === 'bigint') return Number(v);
  if (typeof v === 'boolean') return v ? 1 : 0;
  if (isObj(v) && typeof v.low === 'number' && typeof v.high === 'number') {
    // A Long that slipped through.
    const unsigned = v.unsigned === true;
    return (unsigned ? v.high >>> 0 : v.high) * 2 ** 32 + (v.low >>> 0);
  }
  return Number(v);
}

function toBig(v: unknown): bigint {
  if (v === undefined || v === null || v === '') return 0n;
  if (typeof v === 'bigint') return v;
  if (typeof v === 'number') return BigInt(Math.trunc(v));
  if (typeof v === 'string') return BigInt(v);
  const n = toNum(v);
  return n === undefined || Number.isNaN(n) ? 0n : BigInt(Math.trunc(n));
}

function toStr(v: unknown): string {
  return v === undefined || v === null ? '' : String(v);
}

function toBytes(v: unknown): Buffer {
  if (v instanceof Uint8Array) return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  if (typeof v === 'string') return Buffer.from(v, 'base64');
  if (Array.isArray(v)) return Buffer.from(v as number[]);
  return Buffer.alloc(0);
}

/** Trace and span ids: bytes in protobuf, hex in OTLP/JSON (base64, the generic protobuf-JSON form, accepted too). */
function toHexId(v: unknown): string {
  if (v === undefined || v === null) return '';
  if (typeof v === 'string') {
    if (/^[0-9a-fA-F]*$/.test(v) && v.length % 2 === 0) return v.toLowerCase();
    return Buffer.from(v, 'base64').toString('hex');
  }
  return toBytes(v).toString('hex');
}

/** An enum field: a number, or its name as the protobuf JSON mapping also allows. */
function toEnum(v: unknown, names: readonly string[]): number {
  if (typeof v === 'string' && !/^-?\d+$/.test(v)) {
    const i = names.indexOf(v);
    return i < 0 ? 0 : i;
  }
  return toNum(v) ?? 0;
}

function anyValue(v: unknown): AttrValue {
  if (!isObj(v)) return null;
  let x: unknown;
  if ((x = get(v, 'stringValue')) !== undefined) return toStr(x);
  if ((x = get(v, 'boolValue')) !== undefined) return x === true || x === 'true';
  if ((x = get(v, 'intValue')) !== undefined) return toNum(x) ?? 0;
  if ((x = get(v, 'doubleValue')) !== undefined) return toNum(x) ?? 0;
  if ((x = get(v, 'arrayValue')) !== undefined) return list(get(x, 'values')).map(anyValue);
  if ((x = get(v, 'kvlistValue')) !== undefined) return attributes(get(x, 'values'));
  if ((x = get(v, 'bytesValue')) !== undefined) return toBytes(x);
  return null;
}

function attributes(kvs: unknown): Attributes {
  const out: Attributes = {};
  for (const kv of list(kvs)) out[toStr(get(kv, 'key'))] = anyValue(get(kv, 'value'));
  return out;
}

const TEMPORALITY_NAMES = [
  'AGGREGATION_TEMPORALITY_UNSPECIFIED',
  'AGGREGATION_TEMPORALITY_DELTA',
  'AGGREGATION_TEMPORALITY_CUMULATIVE',
] as const;

function temporality(v: unknown): Temporality | undefined {
  const t = toEnum(v, TEMPORALITY_NAMES);
  return t === 1 ? 'delta' : t === 2 ? 'cumulative' : undefined;
}

function numbers(v: unknown): number[] {
  return list(v).map((x) => toNum(x) ?? 0);
}

function expBuckets(v: unknown): ExponentialBuckets {
  return { offset: toNum(get(v, 'offset')) ?? 0, bucketCounts: numbers(get(v, 'bucketCounts')) };
}

/** count, and sum, min and max when present (all three are optional in histogram points). */
function distribution(dp: unknown): Pick<ReceivedPoint, 'count' | 'sum' | 'min' | 'max'> {
  const out: Pick<ReceivedPoint, 'count' | 'sum' | 'min' | 'max'> = { count: toNum(get(dp, 'count')) ?? 0 };
  for (const key of ['sum', 'min', 'max'] as const) {
    const v = toNum(get(dp, key));
    if (v !== undefined) out[key] = v;
  }
  return out;
}

/** The items (metrics or spans) of a request, each with its resource and scope: ResourceX > ScopeX > items. */
function* walk(
  body: unknown,
  resourceKey: string,
  scopeKey: string,
  itemKey: string,
): Generator<[Omit<ReceivedOrigin, 'protocol' | 'headers'>, unknown]> {
  for (const r of list(get(body, resourceKey))) {
    const resource = attributes(get(get(r, 'resource'), 'attributes'));
    for (const sc of list(get(r, scopeKey))) {
      const scopeObj = get(sc, 'scope');
      const origin = { resource, scope: toStr(get(scopeObj, 'name')), scopeVersion: toStr(get(scopeObj, 'version')) };
      for (const item of list(get(sc, itemKey))) yield [origin, item];
    }
  }
}

export function normalizeMetrics(body: unknown, protocol: Protocol, headers: Headers): ReceivedPoint[] {
  const out: ReceivedPoint[] = [];
  for (const [origin, m] of walk(body, 'resourceMetrics', 'scopeMetrics', 'metrics')) {
    const base = {
      protocol,
      headers,
      ...origin,
      name: toStr(get(m, 'name')),
      unit: toStr(get(m, 'unit')),
      description: toStr(get(m, 'description')),
    };
    const point = (type: MetricType, dp: unknown, extra: Partial<ReceivedPoint>): ReceivedPoint => ({
      ...base,
      type,
      ...extra,
      attributes: attributes(get(dp, 'attributes')),
      startTimeUnixNano: toBig(get(dp, 'startTimeUnixNano')),
      timeUnixNano: toBig(get(dp, 'timeUnixNano')),
    });
    const numberValue = (dp: unknown): number | undefined => toNum(get(dp, 'asDouble')) ?? toNum(get(dp, 'asInt'));
    let data: unknown;
    if ((data = get(m, 'sum')) !== undefined) {
      const t = temporality(get(data, 'aggregationTemporality'));
      const monotonic = get(data, 'isMonotonic') === true;
      for (const dp of list(get(data, 'dataPoints'))) {
        out.push(point('sum', dp, { temporality: t, monotonic, value: numberValue(dp) }));
      }
    } else if ((data = get(m, 'gauge')) !== undefined) {
      for (const dp of list(get(data, 'dataPoints'))) out.push(point('gauge', dp, { value: numberValue(dp) }));
    } else if ((data = get(m, 'histogram')) !== undefined) {
      const t = temporality(get(data, 'aggregationTemporality'));
      for (const dp of list(get(data, 'dataPoints'))) {
        out.push(
          point('histogram', dp, {
            temporality: t,
            ...distribution(dp),
            bucketCounts: numbers(get(dp, 'bucketCounts')),
            explicitBounds: numbers(get(dp, 'explicitBounds')),
          }),
        );
      }
    } else if ((data = get(m, 'exponentialHistogram')) !== undefined) {
      const t = temporality(get(data, 'aggregationTemporality'));
      for (const dp of list(get(data, 'dataPoints'))) {
        out.push(
          point('exponentialHistogram', dp, {
            temporality: t,
            ...distribution(dp),
            scale: toNum(get(dp, 'scale')) ?? 0,
            zeroCount: toNum(get(dp, 'zeroCount')) ?? 0,
            positive: expBuckets(get(dp, 'positive')),
            negative: expBuckets(get(dp, 'negative')),
          }),
        );
      }
    } else if ((data = get(m, 'summary')) !== undefined) {
      for (const dp of list(get(data, 'dataPoints'))) {
        out.push(
          point('summary', dp, {
            count: toNum(get(dp, 'count')) ?? 0,
            sum: toNum(get(dp, 'sum')) ?? 0,
            quantiles: list(get(dp, 'quantileValues')).map((q) => ({
              quantile: toNum(get(q, 'quantile')) ?? 0,
              value: toNum(get(q, 'value')) ?? 0,
            })),
          }),
        );
      }
    }
  }
  return out;
}

const SPAN_KIND_NAMES = [
  'SPAN_KIND_UNSPECIFIED',
  'SPAN_KIND_INTERNAL',
  'SPAN_KIND_SERVER',
  'SPAN_KIND_CLIENT',
  'SPAN_KIND_PRODUCER',
  'SPAN_KIND_CONSUMER',
] as const;
const SPAN_KINDS: readonly SpanKindName[] = ['unspecified', 'internal', 'server', 'client', 'producer', 'consumer'];
const STATUS_CODE_NAMES = ['STATUS_CODE_UNSET', 'STATUS_CODE_OK', 'STATUS_CODE_ERROR'] as const;
const STATUS_CODES: readonly StatusCodeName[] = ['unset', 'ok', 'error'];

export function normalizeSpans(body: unknown, protocol: Protocol, headers: Headers): ReceivedSpan[] {
  const out: ReceivedSpan[] = [];
  for (const [origin, s] of walk(body, 'resourceSpans', 'scopeSpans', 'spans')) {
    const status = get(s, 'status');
    out.push({
      protocol,
      headers,
      ...origin,
      name: toStr(get(s, 'name')),
      kind: SPAN_KINDS[toEnum(get(s, 'kind'), SPAN_KIND_NAMES)] ?? 'unspecified',
      traceId: toHexId(get(s, 'traceId')),
      spanId: toHexId(get(s, 'spanId')),
      parentSpanId: toHexId(get(s, 'parentSpanId')),
      traceState: toStr(get(s, 'traceState')),
      startTimeUnixNano: toBig(get(s, 'startTimeUnixNano')),
      endTimeUnixNano: toBig(get(s, 'endTimeUnixNano')),
      attributes: attributes(get(s, 'attributes')),
      events: list(get(s, 'events')).map((e) => ({
        name: toStr(get(e, 'name')),
        timeUnixNano: toBig(get(e, 'timeUnixNano')),
        attributes: attributes(get(e, 'attributes')),
      })),
      status: {
        code: STATUS_CODES[toEnum(get(status, 'code'), STATUS_CODE_NAMES)] ?? 'unset',
        message: toStr(get(status, 'message')),
      },
    });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------

function hostPort(host: string, port: number): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]:${port}` : `${host}:${port}`;
}

function metadataToHeaders(md: grpc.Metadata): Headers {
  const out: Headers = {};
  for (const [k, v] of Object.entries(md.getMap())) {
    out[k.toLowerCase()] = typeof v === 'string' ? v : Buffer.from(v).toString('base64');
  }
  return out;
}

function httpHeaders(req: http.IncomingMessage): Headers {
  const out: Headers = {};
  for (const [k, v] of Object.entries(req.headers)) {
    if (v !== undefined) out[k.toLowerCase()] = Array.isArray(v) ? v.join(', ') : v;
  }
  return out;
}

const gunzip = promisify(zlib.gunzip);
const inflate = promisify(zlib.inflate);

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

function readBody(req: http.IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY_BYTES) {
        reject(new HttpError(413, `body larger than ${MAX_BODY_BYTES} bytes`));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

async function decompress(body: Buffer, encoding: string | undefined): Promise<Buffer> {
  switch ((encoding ?? 'identity').trim().toLowerCase()) {
    case '':
    case 'identity':
      return body;
    case 'gzip':
    case 'x-gzip':
      return gunzip(body, { maxOutputLength: MAX_BODY_BYTES });
    case 'deflate':
      return inflate(body, { maxOutputLength: MAX_BODY_BYTES });
    default:
      throw new HttpError(415, `unsupported Content-Encoding: ${encoding}`);
  }
}

const HTTP_PATHS = new Map<string, Signal>([
  ['/v1/metrics', 'metrics'],
  ['/v1/traces', 'traces'],
]);

type Waiter = () => void;

/**
 * Events: 'metrics' (points: ReceivedPoint[], request: ReceivedRequest) and 'spans' (spans: ReceivedSpan[], request)
 * once per export request, after the request is recorded.
 */
export class OtlpReceiver extends EventEmitter {
  private grpcServer: grpc.Server | undefined;
  private httpServer: http.Server | undefined;
  private readonly log: ReceivedRequest[] = [];
  private receivedPoints: ReceivedPoint[] = [];
  private receivedSpans: ReceivedSpan[] = [];
  private counts: Record<Protocol, number> = { grpc: 0, 'http/protobuf': 0, 'http/json': 0 };
  private readonly waiters = new Set<Waiter>();

  async start(options: ReceiverOptions = {}): Promise<ReceiverAddress> {
    if (this.grpcServer || this.httpServer) throw new Error('OtlpReceiver already started');
    const host = options.host ?? '127.0.0.1';
    const methods = loadSchema();
    try {
      const grpcPort = await this.startGrpc(host, options.grpcPort ?? 0, methods, options.tls);
      const httpPort = await this.startHttp(host, options.httpPort ?? 0, methods, options.tls);
      const scheme = options.tls ? 'https' : 'http';
      return {
        grpcPort,
        httpPort,
        grpcEndpoint: `${scheme}://${hostPort(host, grpcPort)}`,
        httpEndpoint: `${scheme}://${hostPort(host, httpPort)}`,
      };
    } catch (err) {
      await this.stop();
      throw err;
    }
  }

  async stop(): Promise<void> {
    const grpcServer = this.grpcServer;
    const httpServer = this.httpServer;
    this.grpcServer = undefined;
    this.httpServer = undefined;
    await Promise.all([
      grpcServer &&
        new Promise<void>((resolve) => {
          const force = setTimeout(() => {
            grpcServer.forceShutdown();
            resolve();
          }, 1000);
          grpcServer.tryShutdown(() => {
            clearTimeout(force);
            resolve();
          });
        }),
      httpServer &&
        new Promise<void>((resolve) => {
          httpServer.close(() => resolve());
          httpServer.closeAllConnections();
        }),
    ]);
  }

  /** Every data point received so far, in arrival order. */
  points(): ReceivedPoint[] {
    return this.receivedPoints.slice();
  }

  /** Every span received so far, in arrival order. */
  spans(): ReceivedSpan[] {
    return this.receivedSpans.slice();
  }

  /** Export requests received so far, by protocol (metrics and traces together). */
  get requests(): Record<Protocol, number> {
    return { ...this.counts };
  }

  /** The requests themselves, decoded but not flattened. */
  receivedRequests(): ReceivedRequest[] {
    return this.log.slice();
  }

  /** Distinct metric names received so far, sorted. */
  metricNames(): string[] {
    return [...new Set(this.receivedPoints.map((p) => p.name))].sort();
  }

  clear(): void {
    this.log.length = 0;
    this.receivedPoints = [];
    this.receivedSpans = [];
    this.counts = { grpc: 0, 'http/protobuf': 0, 'http/json': 0 };
  }

  /**
   * Resolves with the predicate's first truthy result; the predicate runs now and again after every request.
   * Rejects after timeoutMs, listing the metric names received so far, or as soon as the predicate throws.
   */
  waitFor<T>(predicate: () => T | undefined | null | false, timeoutMs = 10_000): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const check: Waiter = () => {
        let result: T | undefined | null | false;
        try {
          result = predicate();
        } catch (err) {
          settle();
          reject(err);
          return;
        }
        if (result) {
          settle();
          resolve(result);
        }
      };
      let settled = false;
      const settle = (): void => {
        settled = true;
        this.waiters.delete(check);
        if (timer) clearTimeout(timer);
      };
      check();
      if (settled) return;
      this.waiters.add(check);
      timer = setTimeout(() => {
        settle();
        const c = this.counts;
        const names = this.metricNames();
        reject(
          new Error(
            `OtlpReceiver.waitFor: timed out after ${timeoutMs} ms; ` +
              `requests: grpc ${c.grpc}, http/protobuf ${c['http/protobuf']}, http/json ${c['http/json']}; ` +
              `metrics received so far: ${names.length ? names.join(', ') : '(none)'}; ` +
              `spans: ${this.receivedSpans.length}`,
          ),
        );
      }, timeoutMs);
    });
  }

  private record(signal: Signal, protocol: Protocol, headers: Headers, body: unknown): () => void {
    const request: ReceivedRequest = { protocol, signal, headers, body, receivedAt: Date.now() };
    // Normalize first: a malformed body is refused without leaving a partial record.
    const points = signal === 'metrics' ? normalizeMetrics(body, protocol, headers) : [];
    const spans = signal === 'traces' ? normalizeSpans(body, protocol, headers) : [];
    this.log.push(request);
    this.counts[protocol]++;
    this.receivedPoints.push(...points);
    this.receivedSpans.push(...spans);
    // Returned so that the caller answers the exporter first, then notifies.
    return () => {
      if (signal === 'metrics') this.emit('metrics', points, request);
      else this.emit('spans', spans, request);
      for (const w of [...this.waiters]) w();
    };
  }

  private startGrpc(host: string, port: number, methods: Record<Signal, ExportMethod>, tls: ReceiverOptions['tls']): Promise<number> {
    const server = new grpc.Server({ 'grpc.max_receive_message_length': MAX_BODY_BYTES });
    for (const signal of ['metrics', 'traces'] as const) {
      const handler: grpc.handleUnaryCall<unknown, unknown> = (call, callback) => {
        let notify: () => void;
        try {
          notify = this.record(signal, 'grpc', metadataToHeaders(call.metadata), call.request);
        } catch (err) {
          callback({ code: grpc.status.INVALID_ARGUMENT, details: `cannot decode: ${(err as Error).message}` });
          return;
        }
        callback(null, {});
        notify();
      };
      server.addService(methods[signal].service as unknown as grpc.ServiceDefinition, { Export: handler });
    }
    this.grpcServer = server;
    return new Promise((resolve, reject) => {
      const credentials = tls
        ? grpc.ServerCredentials.createSsl(null, [{ private_key: Buffer.from(tls.key), cert_chain: Buffer.from(tls.cert) }])
        : grpc.ServerCredentials.createInsecure();
      server.bindAsync(hostPort(host, port), credentials, (err, boundPort) =>
        err ? reject(err) : resolve(boundPort),
      );
    });
  }

  private startHttp(host: string, port: number, methods: Record<Signal, ExportMethod>, tls: ReceiverOptions['tls']): Promise<number> {
    const handler = (req: http.IncomingMessage, res: http.ServerResponse) => {
      this.handleHttp(req, res, methods).catch((err: unknown) => {
        const status = err instanceof HttpError ? err.status : 400;
        if (!res.headersSent) {
          res.writeHead(status, { 'content-type': 'text/plain' });
        }
        res.end(`${(err as Error).message}\n`);
      });
    };
    const server = tls ? https.createServer({ key: tls.key, cert: tls.cert }, handler) : http.createServer(handler);
    this.httpServer = server;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve((server.address() as AddressInfo).port);
      });
    });
  }

  private async handleHttp(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    methods: Record<Signal, ExportMethod>,
  ): Promise<void> {
    const signal = HTTP_PATHS.get((req.url ?? '').split('?')[0]);
    if (!signal) throw new HttpError(404, `not found: ${req.url}; OTLP/HTTP paths are /v1/metrics and /v1/traces`);
    if (req.method !== 'POST') throw new HttpError(405, `method ${req.method} not allowed; use POST`);
    const contentType = (req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
    let protocol: Protocol;
    if (contentType === 'application/x-protobuf' || contentType === 'application/protobuf') protocol = 'http/protobuf';
    else if (contentType === 'application/json') protocol = 'http/json';
    else throw new HttpError(415, `unsupported Content-Type: ${contentType || '(none)'}`);

    const raw = await readBody(req);
    const body = await decompress(raw, req.headers['content-encoding']);
    let decoded: unknown;
    try {
      decoded = protocol === 'http/json' ? JSON.parse(body.toString('utf8')) : methods[signal].decode(body);
    } catch (err) {
      throw new HttpError(400, `cannot decode ${protocol} body: ${(err as Error).message}`);
    }
    const notify = this.record(signal, protocol, httpHeaders(req), decoded);
    const response = protocol === 'http/json' ? Buffer.from('{}') : methods[signal].encodeEmptyResponse();
    res.writeHead(200, { 'content-type': contentType, 'content-length': response.length });
    res.end(response);
    notify();
  }
}
