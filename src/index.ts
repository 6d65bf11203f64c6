export { start, createMetricProducer } from './sdk';
export type { EbpfHandle, ProducerHandle } from './sdk';
export type { EbpfStatus } from './kernel';
export type { ProbeStatus, Attempt, Hook } from './probes';
export type { StartOptions, AttachMode, OtlpProtocol, TemporalityPreference, HistogramAggregation } from './config';
export { KernelMetricProducer } from './producer';
export { BpfError } from './native';
export { METRICS, ATTRS, VALUES, SCOPE_NAME } from './semconv';
