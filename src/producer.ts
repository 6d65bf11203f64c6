/**
 * A MetricProducer over the kernel's aggregates. The kernel keeps cumulative counters and log2 histograms; this
 * turns them into OpenTelemetry data with the temporality and histogram aggregation that were asked for. Delta points
 * are differences of the same cumulative values, so they always add up to the cumulative ones.
 *
 * Use it inside an existing pipeline: `new PeriodicExportingMetricReader({ exporter, metricProducers: [producer] })`.
 */
import { Attributes, HrTime, ValueType } from '@opentelemetry/api';
import { hrTime } from '@opentelemetry/core';
import { emptyResource } from '@opentelemetry/resources';
import {
  AggregationTemporality,
  CollectionResult,
  DataPointType,
  MetricData,
  MetricProducer,
} from '@opentelemetry/sdk-metrics';
import type { Log2Histogram } from './bpf-layout';
import type { KernelMetric } from './collector';
import type { HistogramAggregation, TemporalityPreference } from './config';
import { subtract, toExplicit, toExponential } from './histogram';
import { SCOPE_NAME } from './semconv';
import { nextTurn, runInTurns, runSteps, Steps } from './turns';
import { VERSION } from './version';

export interface ProducerOptions {
  temporality: TemporalityPreference;
  histogramAggregation: HistogramAggregation;
}

/** A source of kernel metrics whose collection comes in steps. */
export interface SteppedSource {
  collectSteps(): Steps<KernelMetric[]>;
}

type Previous = { time: HrTime; value?: number; hist?: Log2Histogram };

function attributesKey(name: string, attrs: Attributes): string {
  return name + '\u0000' + JSON.stringify(Object.keys(attrs).sort().map(k => [k, attrs[k]]));
}

export class KernelMetricProducer implements MetricProducer {
  private readonly startTime: HrTime = hrTime();
  private readonly previous = new Map<string, Previous>();
  private inFlight: Promise<unknown> = Promise.resolve();

  /**
   * `source`: a function that collects at once, or something that collects in steps (src/turns.ts; the SDK's
   * KernelTelemetry), whose steps collect() then runs one per turn of the event loop.
   */
  constructor(
    private readonly source: (() => KernelMetric[]) | SteppedSource,
    private readonly options: ProducerOptions,
  ) {}

  /** Counters and histograms: delta for `delta` and `lowmemory` (they are synchronous-style measurements). */
  private temporalityOf(kind: KernelMetric['kind']): AggregationTemporality {
    if (kind === 'gauge' || this.options.temporality === 'cumulative') return AggregationTemporality.CUMULATIVE;
    return AggregationTemporality.DELTA;
  }

  async collect(): Promise<CollectionResult> {
    const source = this.source;
    if (typeof source === 'function') return this.collectNow();
    // One collection at a time (a forced flush during a periodic one): their steps interleaved, a later reading could
    // be converted before an earlier one, and a delta come out negative.
    const run = this.inFlight.then(() => this.collectInTurns(source));
    this.inFlight = run.catch(() => {});
    return run;
  }

  private async collectInTurns(source: SteppedSource): Promise<CollectionResult> {
    const errors: unknown[] = [];
    let metrics: KernelMetric[] = [];
    try {
      metrics = await runInTurns(source.collectSteps());
    } catch (err) {
      errors.push(err);
    }
    await nextTurn(); // the conversion is a step of its own
    return this.result(metrics, errors);
  }

  /** collect(), synchronously: for the last export of a process that is exiting (src/sdk.ts). */
  collectNow(): CollectionResult {
    const errors: unknown[] = [];
    let metrics: KernelMetric[] = [];
    try {
      metrics = typeof this.source === 'function' ? this.source() : runSteps(this.source.collectSteps());
    } catch (err) {
      errors.push(err);
    }
    return this.result(metrics, errors);
  }

  private result(metrics: KernelMetric[], errors: unknown[]): CollectionResult {
    const now = hrTime();
    // A metric without points is left out, as OpenTelemetry's SDK leaves out an instrument that recorded nothing: its
    // name, description and unit would be serialised on the application's thread for nothing. And a scope without
    // metrics (nothing attached: no privileges) is left out too, so that OpenTelemetry's reader, which skips a
    // collection without scopes, sends no request with nothing in it.
    const data = metrics.map(m => this.convert(m, now)).filter(m => m.dataPoints.length > 0);
    return {
      resourceMetrics: {
        // The reader replaces this with its MeterProvider's resource.
        resource: emptyResource(),
        scopeMetrics: data.length > 0 ? [{ scope: { name: SCOPE_NAME, version: VERSION }, metrics: data }] : [],
      },
      errors,
    };
  }

  private convert(m: KernelMetric, now: HrTime): MetricData {
    const temporality = this.temporalityOf(m.kind);
    const delta = temporality === AggregationTemporality.DELTA;
    const descriptor = { name: m.name, description: m.description, unit: m.unit, valueType: ValueType.DOUBLE };
    type Point = { startTime: HrTime; endTime: HrTime; attributes: Attributes; value: number | Log2Histogram };
    const points = m.points.flatMap((p): Point[] => {
      // the series' last reading: only a delta needs it (and the key, which costs a sort and a JSON string per point)
      const key = delta ? attributesKey(m.name, p.attributes) : '';
      const prev = delta ? this.previous.get(key) : undefined;
      const startTime = delta ? (prev?.time ?? this.startTime) : this.startTime;
      if ('value' in p) {
        if (delta) this.previous.set(key, { time: now, value: p.value });
        const value = delta ? p.value - (prev?.value ?? 0) : p.value;
        if (delta && value === 0 && m.kind === 'counter') return [];
        return [{ startTime, endTime: now, attributes: p.attributes, value }];
      }
      if (delta) this.previous.set(key, { time: now, hist: p.hist });
      const h = delta ? subtract(p.hist, prev?.hist) : p.hist;
      if (delta && h.slots.every(c => c === 0)) return [];
      return [{ startTime, endTime: now, attributes: p.attributes, value: h }];
    });

    if (m.kind === 'gauge') {
      return { descriptor, aggregationTemporality: temporality, dataPointType: DataPointType.GAUGE, dataPoints: points as never };
    }
    if (m.kind === 'counter') {
      return {
        descriptor,
        aggregationTemporality: temporality,
        dataPointType: DataPointType.SUM,
        isMonotonic: true,
        dataPoints: points as { startTime: HrTime; endTime: HrTime; attributes: Attributes; value: number }[],
      };
    }
    const hists = points as { startTime: HrTime; endTime: HrTime; attributes: Attributes; value: Log2Histogram }[];
    if (this.options.histogramAggregation === 'base2_exponential_bucket_histogram') {
      return {
        descriptor,
        aggregationTemporality: temporality,
        dataPointType: DataPointType.EXPONENTIAL_HISTOGRAM,
        dataPoints: hists.map(p => ({ ...p, value: toExponential(p.value) })),
      };
    }
    return {
      descriptor,
      aggregationTemporality: temporality,
      dataPointType: DataPointType.HISTOGRAM,
      dataPoints: hists.map(p => ({ ...p, value: toExplicit(p.value) })),
    };
  }
}
