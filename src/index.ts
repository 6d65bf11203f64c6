/**
 * The package's entry: `import { start } from 'otel-node-ebpf'`. start() and createMetricProducer() load the
 * pipeline's modules when they run (src/sdk.ts), and the two classes below load theirs when first used, so that
 * importing the package costs its own few modules: an application that only calls start() (or runs with
 * OTEL_SDK_DISABLED=true) loads neither the tracing instrumentation nor, when disabled, the metrics SDK.
 */
import type * as Producer from './producer';
import type * as Spans from './spans';

export { start, createMetricProducer } from './sdk';
export type { EbpfHandle, ProducerHandle } from './sdk';
export type { EbpfStatus } from './kernel';
export type { ProbeStatus, Attempt, Hook } from './probes';
export type { StartOptions, AttachMode, OtlpProtocol, TemporalityPreference, HistogramAggregation, KernelStatsMode } from './config';
export { BpfError } from './native';
export { METRICS, ATTRS, SPAN_ATTRS, VALUES, SCOPE_NAME } from './semconv';
export type { KernelSpanProcessorOptions } from './spans';

export declare const KernelMetricProducer: typeof Producer.KernelMetricProducer;
export type KernelMetricProducer = Producer.KernelMetricProducer;
export declare const KernelSpanProcessor: typeof Spans.KernelSpanProcessor;
export type KernelSpanProcessor = Spans.KernelSpanProcessor;

const lazy = {
  get KernelMetricProducer() {
    return (require('./producer') as typeof Producer).KernelMetricProducer;
  },
  get KernelSpanProcessor() {
    return (require('./spans') as typeof Spans).KernelSpanProcessor;
  },
};
// The form in which tsc writes re-exports, which Node's detection of a CommonJS module's named exports reads: ES
// modules can `import { KernelSpanProcessor } from 'otel-node-ebpf'`.
Object.defineProperty(exports, 'KernelMetricProducer', { enumerable: true, get: function () { return lazy.KernelMetricProducer; } });
Object.defineProperty(exports, 'KernelSpanProcessor', { enumerable: true, get: function () { return lazy.KernelSpanProcessor; } });
