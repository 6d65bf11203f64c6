/**
 * The small interface every collector (sockets, and later runtime probes) implements: start, collect into
 * kernel-side cumulative values, stop. src/producer.ts turns what they collect into OpenTelemetry data.
 */
import type { Attributes } from '@opentelemetry/api';
import type { Log2Histogram } from './bpf-layout';
import type { ProbeRunStats, ProbeStatus } from './probes';
import type { Steps } from './turns';

/** A reading: a histogram a collector goes on counting into is handed out as a copy (the producer keeps it for the next delta). */
export type KernelPoint =
  | { attributes: Attributes; value: number }
  | { attributes: Attributes; hist: Log2Histogram };

/** Cumulative values since the collector started (counters, histograms) or current values (gauges). */
export interface KernelMetric {
  name: string;
  unit: string;
  description: string;
  kind: 'counter' | 'gauge' | 'histogram';
  points: KernelPoint[];
}

export interface Collector {
  readonly name: string;
  /** Loads and attaches; one measurement failing does not stop the others. Throws only if nothing can be loaded. */
  start(): void;
  collect(): KernelMetric[];
  /** The same as collect(), in steps (src/turns.ts), for a collector whose collection takes long enough to need them. */
  collectSteps?(): Steps<KernelMetric[]>;
  status(): ProbeStatus[];
  runStats(): Map<string, ProbeRunStats>;
  /** What its kernel side could not record so far, by `otel_node_ebpf.drop.reason` (cumulative counts). */
  dropped?(): [reason: string, count: number][];
  /** Detaches. Idempotent. */
  stop(): void;
}
