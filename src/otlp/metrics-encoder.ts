/**
 * An OTLP/protobuf encoder for metrics (ExportMetricsServiceRequest) whose cost per export does not depend on how
 * warm V8 is. What repeats from one export to the next is encoded once and copied after that: the resource, each
 * scope, each metric's name, description and unit, each set of attributes, a histogram's bounds. Per export, only
 * numbers are written (and the keys of what was kept looked up).
 *
 * Why: OpenTelemetry's serializer writes every string a character at a time, twice (a pass to size, a pass to
 * write). An export every 10 s never gets that code compiled before the application's requests have waited for it:
 * 2.2 ms in one piece on the application's thread, half of it waiting for compiles (docs/benchmark.md).
 *
 * The output is byte for byte what OpenTelemetry's ProtobufMetricsSerializer writes for the same data (same field
 * order, minimal varints; test/metrics-encoder.test.js compares them), so a collector cannot tell them apart.
 */
import type { HrTime } from '@opentelemetry/api';
import { ValueType } from '@opentelemetry/api';
import type { IExportMetricsServiceResponse, ISerializer } from '@opentelemetry/otlp-transformer';
import {
  AggregationTemporality,
  DataPoint,
  DataPointType,
  ExponentialHistogram,
  Histogram,
  MetricData,
  ResourceMetrics,
  ScopeMetrics,
} from '@opentelemetry/sdk-metrics';

const enum Wire {
  VARINT = 0,
  I64 = 1,
  LEN = 2,
}

const tag = (field: number, wire: Wire) => (field << 3) | wire;

/** A growing buffer of protobuf. Length-delimited fields reserve one byte for their length and move if it needs more. */
class Writer {
  bytes: Uint8Array;
  private view: DataView;
  pos = 0;

  constructor(size: number) {
    this.bytes = new Uint8Array(size);
    this.view = new DataView(this.bytes.buffer);
  }

  private room(n: number): void {
    if (this.pos + n <= this.bytes.length) return;
    let size = this.bytes.length * 2;
    while (size < this.pos + n) size *= 2;
    const bytes = new Uint8Array(size);
    bytes.set(this.bytes.subarray(0, this.pos));
    this.bytes = bytes;
    this.view = new DataView(bytes.buffer);
  }

  /** A varint of a non-negative integer below 2^53, or of a negative one as int64 (ten bytes). */
  varint(value: number): void {
    this.room(10);
    if (value >= 0 && value <= 0xffffffff) {
      let v = value >>> 0;
      while (v > 0x7f) {
        this.bytes[this.pos++] = (v & 0x7f) | 0x80;
        v >>>= 7;
      }
      this.bytes[this.pos++] = v;
      return;
    }
    let [low, high] = int64(value);
    while (high > 0 || low > 0x7f) {
      this.bytes[this.pos++] = (low & 0x7f) | 0x80;
      low = ((low >>> 7) | (high << 25)) >>> 0;
      high >>>= 7;
    }
    this.bytes[this.pos++] = low;
  }

  tag(field: number, wire: Wire): void {
    this.varint(tag(field, wire));
  }

  fixed64(low: number, high: number): void {
    this.room(8);
    this.view.setUint32(this.pos, low, true);
    this.view.setUint32(this.pos + 4, high, true);
    this.pos += 8;
  }

  /** A non-negative integer below 2^53 (a count) as fixed64. */
  count(value: number): void {
    this.fixed64(value >>> 0, (value / 0x100000000) >>> 0);
  }

  /**
   * Counts as a packed repeated fixed64, its length first: for a histogram's buckets, one loop of byte stores (each
   * a DataView call costs about a microsecond until V8 compiles this, and an export every 10 s waits long for that).
   */
  packedCounts(counts: readonly number[]): void {
    this.varint(counts.length * 8);
    this.room(counts.length * 8);
    const bytes = this.bytes;
    let pos = this.pos;
    for (const c of counts) {
      const low = c >>> 0;
      const high = (c / 0x100000000) >>> 0;
      bytes[pos] = low;
      bytes[pos + 1] = low >>> 8;
      bytes[pos + 2] = low >>> 16;
      bytes[pos + 3] = low >>> 24;
      bytes[pos + 4] = high;
      bytes[pos + 5] = high >>> 8;
      bytes[pos + 6] = high >>> 16;
      bytes[pos + 7] = high >>> 24;
      pos += 8;
    }
    this.pos = pos;
  }

  double(value: number): void {
    this.room(8);
    this.view.setFloat64(this.pos, value, true);
    this.pos += 8;
  }

  /** The last time written, as fixed64's words: a collection's points share their start and end times. */
  private lastTime?: HrTime;
  private lastTimeWords: [number, number] = [0, 0];

  /** Nanoseconds since the epoch as fixed64, exactly (seconds · 10^9 passes 2^53 in 1970 + 104 days). */
  time(time: HrTime): void {
    if (time !== this.lastTime) {
      // seconds = s16 · 2^16 + s0, so seconds · 10^9 + nanos = (s16 · 10^9) · 2^16 + (s0 · 10^9 + nanos), each part below 2^53
      const [seconds, nanos] = time;
      const upper = Math.floor(seconds / 0x10000) * 1e9;
      const lower = (upper % 0x10000) * 0x10000 + (seconds % 0x10000) * 1e9 + nanos;
      this.lastTimeWords = [lower >>> 0, (Math.floor(upper / 0x10000) + Math.floor(lower / 0x100000000)) >>> 0];
      this.lastTime = time;
    }
    this.fixed64(this.lastTimeWords[0], this.lastTimeWords[1]);
  }

  raw(bytes: Uint8Array): void {
    this.room(bytes.length);
    this.bytes.set(bytes, this.pos);
    this.pos += bytes.length;
  }

  string(value: string): void {
    const bytes = utf8.encode(value);
    this.varint(bytes.length);
    this.raw(bytes);
  }

  /** A length-delimited field: its tag, then what `write` writes, after its length (one byte reserved, moved if more). */
  message(field: number, write: () => void): void {
    this.tag(field, Wire.LEN);
    this.room(1);
    const at = this.pos++;
    write();
    const length = this.pos - at - 1;
    const size = varintSize(length);
    if (size > 1) {
      this.room(size - 1);
      this.bytes.copyWithin(at + size, at + 1, this.pos);
      this.pos += size - 1;
    }
    let v = length;
    let p = at;
    while (v > 0x7f) {
      this.bytes[p++] = (v & 0x7f) | 0x80;
      v >>>= 7;
    }
    this.bytes[p] = v;
  }

  /** A copy of what was written: what a cache keeps. */
  copy(): Uint8Array {
    return this.bytes.slice(0, this.pos);
  }
}

const utf8 = new TextEncoder();

function varintSize(v: number): number {
  let size = 1;
  while (v > 0x7f) {
    v >>>= 7;
    size++;
  }
  return size;
}

/** An integer as the low and high words of its int64 two's complement (beyond ±2^63 it wraps). */
function int64(value: number): [number, number] {
  const magnitude = Math.abs(value);
  let low = magnitude >>> 0;
  let high = (magnitude / 0x100000000) >>> 0;
  if (value < 0) {
    low = ~low >>> 0;
    high = ~high >>> 0;
    low = (low + 1) >>> 0;
    if (low === 0) high = (high + 1) >>> 0;
  }
  return [low, high];
}

// int64's range: an integer in it is AnyValue.int_value, anything else double_value
const INT64_MIN = -(2 ** 63);
const INT64_MAX_EXCLUSIVE = 2 ** 63;

function anyValue(w: Writer, value: unknown): void {
  switch (typeof value) {
    case 'string':
      w.tag(1, Wire.LEN);
      w.string(value);
      return;
    case 'boolean':
      w.tag(2, Wire.VARINT);
      w.varint(value ? 1 : 0);
      return;
    case 'number':
      if (Number.isInteger(value) && value >= INT64_MIN && value < INT64_MAX_EXCLUSIVE) {
        w.tag(3, Wire.VARINT);
        w.varint(value);
      } else {
        w.tag(4, Wire.I64);
        w.double(value);
      }
      return;
  }
  if (value instanceof Uint8Array) {
    w.tag(7, Wire.LEN);
    w.varint(value.length);
    w.raw(value);
  } else if (Array.isArray(value)) {
    w.message(5, () => {
      for (const item of value) w.message(1, () => anyValue(w, item));
    });
  } else if (typeof value === 'object' && value !== null) {
    w.message(6, () => keyValues(w, value as Record<string, unknown>, 1));
  }
  // undefined, null, functions, symbols: an empty AnyValue, as OpenTelemetry's serializer writes
}

/** Each own enumerable property as a KeyValue in `field`. */
function keyValues(w: Writer, attributes: Record<string, unknown>, field: number): void {
  for (const key in attributes) {
    if (!Object.prototype.hasOwnProperty.call(attributes, key)) continue;
    w.message(field, () => {
      w.tag(1, Wire.LEN);
      w.string(key);
      w.message(2, () => anyValue(w, attributes[key]));
    });
  }
}

/**
 * The key of a set of attributes whose encoding can be kept, or undefined: JSON is exact for strings, booleans and
 * finite numbers (in the order the encoder visits them), and nothing else is kept.
 */
function attributesKey(attributes: Record<string, unknown>): string | undefined {
  for (const key in attributes) {
    const value = attributes[key];
    const type = typeof value;
    if (type !== 'string' && type !== 'boolean' && !(type === 'number' && Number.isFinite(value))) return undefined;
  }
  return JSON.stringify(attributes);
}

/**
 * Encodings kept from one export to the next: what an export did not use is gone after the next one, so the cache
 * holds at most two exports' worth of distinct keys.
 */
class Kept {
  private current = new Map<string, Uint8Array>();
  private previous = new Map<string, Uint8Array>();

  get(key: string, encode: (w: Writer) => void): Uint8Array {
    let bytes = this.current.get(key);
    if (bytes) return bytes;
    bytes = this.previous.get(key);
    if (!bytes) {
      const w = new Writer(256);
      encode(w);
      bytes = w.copy();
    }
    this.current.set(key, bytes);
    return bytes;
  }

  /** The end of an export. */
  age(): void {
    this.previous = this.current;
    this.current = new Map();
  }
}

const DATA_FIELD: Record<DataPointType, number> = {
  [DataPointType.GAUGE]: 5,
  [DataPointType.SUM]: 7,
  [DataPointType.HISTOGRAM]: 9,
  [DataPointType.EXPONENTIAL_HISTOGRAM]: 10,
};

const PROTO_TEMPORALITY: Record<AggregationTemporality, number> = {
  [AggregationTemporality.DELTA]: 1,
  [AggregationTemporality.CUMULATIVE]: 2,
};

export class MetricsEncoder implements ISerializer<ResourceMetrics, IExportMetricsServiceResponse> {
  private readonly attributeSets = new Kept();
  /** Metric headers (name, description, unit) and scopes. */
  private readonly headers = new Kept();
  private readonly resources = new WeakMap<object, Uint8Array>();
  /** Packed explicit bounds, kept with the array they come from (a histogram's bounds are one array for its life). */
  private readonly bounds = new WeakMap<readonly number[], Uint8Array>();
  /** The size of the last request: the next one starts with a buffer about that large. */
  private lastSize = 4096;

  serializeRequest(request: ResourceMetrics): Uint8Array {
    const w = new Writer(this.lastSize + (this.lastSize >>> 2));
    try {
      w.message(1, () => this.resourceMetrics(w, request));
    } finally {
      this.attributeSets.age();
      this.headers.age();
    }
    this.lastSize = w.pos;
    return w.bytes.subarray(0, w.pos);
  }

  deserializeResponse(data: Uint8Array): IExportMetricsServiceResponse {
    const { ProtobufMetricsSerializer } = require('@opentelemetry/otlp-transformer') as typeof import('@opentelemetry/otlp-transformer');
    return ProtobufMetricsSerializer.deserializeResponse(data);
  }

  private resourceMetrics(w: Writer, { resource, scopeMetrics }: ResourceMetrics): void {
    // A resource whose detectors have finished does not change: its encoding is kept with it. One whose detectors
    // have not may still change: it is encoded anew.
    let bytes = this.resources.get(resource);
    if (!bytes) {
      const r = new Writer(1024);
      resourceField(r, resource);
      bytes = r.copy();
      if (!resource.asyncAttributesPending) this.resources.set(resource, bytes);
    }
    w.raw(bytes);
    for (const scope of scopeMetrics) w.message(2, () => this.scopeMetrics(w, scope));
    schemaUrl(w, resource, 3);
  }

  private scopeMetrics(w: Writer, { scope, metrics }: ScopeMetrics): void {
    const encodeScope = (s: Writer) => {
      s.message(1, () => {
        s.tag(1, Wire.LEN);
        s.string(scope.name);
        if (scope.version) {
          s.tag(2, Wire.LEN);
          s.string(scope.version);
        }
        const { attributes, droppedAttributesCount } = scope as { attributes?: Record<string, unknown>; droppedAttributesCount?: number };
        if (attributes) keyValues(s, attributes, 3);
        if (droppedAttributesCount) {
          s.tag(4, Wire.VARINT);
          s.varint(droppedAttributesCount);
        }
      });
    };
    if ('attributes' in scope || 'droppedAttributesCount' in scope) encodeScope(w);
    else w.raw(this.headers.get(`scope\0${scope.name}\0${scope.version ?? ''}`, encodeScope));
    for (const metric of metrics) w.message(2, () => this.metric(w, metric));
    schemaUrl(w, scope, 3);
  }

  private metric(w: Writer, metric: MetricData): void {
    const { name, description, unit } = metric.descriptor;
    w.raw(
      this.headers.get(`metric\0${name}\0${description}\0${unit}`, h => {
        h.tag(1, Wire.LEN);
        h.string(name);
        if (description) {
          h.tag(2, Wire.LEN);
          h.string(description);
        }
        if (unit) {
          h.tag(3, Wire.LEN);
          h.string(unit);
        }
      }),
    );
    // Metric.data: gauge (5), sum (7), histogram (9) or exponential_histogram (10); in each, data_points (1), then
    // aggregation_temporality (2) but in a gauge, then is_monotonic (3) in a sum
    const type = metric.dataPointType;
    w.message(DATA_FIELD[type], () => {
      if (type === DataPointType.HISTOGRAM) for (const point of metric.dataPoints) this.histogramPoint(w, point);
      else if (type === DataPointType.EXPONENTIAL_HISTOGRAM) for (const point of metric.dataPoints) this.exponentialPoint(w, point);
      else {
        const isInt = metric.descriptor.valueType === ValueType.INT;
        for (const point of metric.dataPoints) this.numberPoint(w, point, isInt);
      }
      const temporality = PROTO_TEMPORALITY[metric.aggregationTemporality] ?? 0;
      if (type !== DataPointType.GAUGE && temporality !== 0) {
        w.tag(2, Wire.VARINT);
        w.varint(temporality);
      }
      if (type === DataPointType.SUM && metric.isMonotonic) {
        w.tag(3, Wire.VARINT);
        w.varint(1);
      }
    });
  }

  /** A data point's attributes as KeyValues in `field`: copied when this set was encoded by this or the last export. */
  private attributes(w: Writer, attributes: Record<string, unknown> | undefined, field: number): void {
    if (!attributes) return;
    const key = attributesKey(attributes);
    if (key === undefined) keyValues(w, attributes, field);
    else w.raw(this.attributeSets.get(`${field}\0${key}`, a => keyValues(a, attributes, field)));
  }

  /** NumberDataPoint, data_points (1) of Gauge and Sum. */
  private numberPoint(w: Writer, point: DataPoint<number>, isInt: boolean): void {
    w.message(1, () => {
      w.tag(2, Wire.I64);
      w.time(point.startTime);
      w.tag(3, Wire.I64);
      w.time(point.endTime);
      if (isInt) {
        w.tag(6, Wire.I64);
        const [low, high] = int64(point.value);
        w.fixed64(low, high);
      } else {
        w.tag(4, Wire.I64);
        w.double(point.value);
      }
      this.attributes(w, point.attributes, 7);
    });
  }

  /** HistogramDataPoint, data_points (1) of Histogram. */
  private histogramPoint(w: Writer, point: DataPoint<Histogram>): void {
    const h = point.value;
    w.message(1, () => {
      timesCountSum(w, point);
      const { counts, boundaries } = h.buckets;
      if (counts.length > 0) {
        w.tag(6, Wire.LEN);
        w.packedCounts(counts);
      }
      if (boundaries.length > 0) {
        let packed = this.bounds.get(boundaries);
        if (!packed) {
          const b = new Writer(boundaries.length * 8);
          for (const bound of boundaries) b.double(bound);
          packed = b.copy();
          this.bounds.set(boundaries, packed);
        }
        w.tag(7, Wire.LEN);
        w.varint(packed.length);
        w.raw(packed);
      }
      this.attributes(w, point.attributes, 9);
      optionalDouble(w, 11, h.min);
      optionalDouble(w, 12, h.max);
    });
  }

  /** ExponentialHistogramDataPoint, data_points (1) of ExponentialHistogram. */
  private exponentialPoint(w: Writer, point: DataPoint<ExponentialHistogram>): void {
    const h = point.value;
    w.message(1, () => {
      this.attributes(w, point.attributes, 1);
      timesCountSum(w, point);
      if (h.scale !== 0) {
        w.tag(6, Wire.VARINT);
        w.varint(((h.scale << 1) ^ (h.scale >> 31)) >>> 0);
      }
      w.tag(7, Wire.I64);
      w.count(h.zeroCount);
      exponentialBuckets(w, 8, h.positive);
      exponentialBuckets(w, 9, h.negative);
      optionalDouble(w, 12, h.min);
      optionalDouble(w, 13, h.max);
    });
  }
}

/** Fields 2 to 5 of both kinds of histogram point: start_time_unix_nano, time_unix_nano, count, sum (optional). */
function timesCountSum(w: Writer, { startTime, endTime, value }: DataPoint<{ count: number; sum?: number }>): void {
  w.tag(2, Wire.I64);
  w.time(startTime);
  w.tag(3, Wire.I64);
  w.time(endTime);
  w.tag(4, Wire.I64);
  w.count(value.count);
  optionalDouble(w, 5, value.sum);
}

/** ResourceMetrics.resource (1): attributes (1), dropped_attributes_count (2) written as 0, as OpenTelemetry does. */
function resourceField(w: Writer, resource: ResourceMetrics['resource']): void {
  w.message(1, () => {
    if (resource.attributes) keyValues(w, resource.attributes, 1);
    w.tag(2, Wire.VARINT);
    w.varint(0);
  });
}

/** ExponentialHistogramDataPoint.Buckets: offset (1, sint32), bucket_counts (2, packed uint64 varints). */
function exponentialBuckets(w: Writer, field: number, { offset, bucketCounts }: { offset: number; bucketCounts: number[] }): void {
  w.message(field, () => {
    if (offset !== 0) {
      w.tag(1, Wire.VARINT);
      w.varint(((offset << 1) ^ (offset >> 31)) >>> 0);
    }
    if (bucketCounts.length > 0) {
      w.message(2, () => {
        for (const c of bucketCounts) w.varint(c);
      });
    }
  });
}

function optionalDouble(w: Writer, field: number, value: number | undefined): void {
  if (value === undefined) return;
  w.tag(field, Wire.I64);
  w.double(value);
}

function schemaUrl(w: Writer, { schemaUrl }: { schemaUrl?: string }, field: number): void {
  if (!schemaUrl) return;
  w.tag(field, Wire.LEN);
  w.string(schemaUrl);
}
