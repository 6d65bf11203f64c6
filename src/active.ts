/**
 * The kernel telemetry that start() or createMetricProducer() runs, for every KernelSpanProcessor to read. A module of
 * its own, so that start() does not load the span processor (and OpenTelemetry's instrumentation package) when
 * tracing is off.
 */
import type { Capabilities } from './capabilities';

/** Where DNS and TLS records come from, and what the process may do (detected once, at start). */
export interface RecordSources {
  collectorsByName(): Map<string, unknown>;
  readonly caps: Capabilities;
}

export let sources: RecordSources | undefined;

/**
 * Why start(), createMetricProducer() and KernelSpanProcessor do nothing off the main thread. Kernel telemetry watches
 * the whole process, from its main thread: the addon's threads (an export in flight, a name's lookup, a teardown)
 * must not outlive the thread that started them, and Node unloads an addon with the worker that loaded it, their code
 * with it.
 */
export const IN_WORKER = 'in a worker thread: kernel telemetry watches the whole process from its main thread';
/**
 * The kernel sees this process's connections: the SDK's connection measurement (`tcp.bytes`) is attached. Without
 * it (no privileges, the measurement off or refused, no start() at all) spans are exported unchanged, although
 * TCP_INFO itself needs no privilege: a span carries what the SDK's own metrics carry, or nothing.
 */
export let kernelSees = false;

/** Called by start() and createMetricProducer(): their DNS and TLS collectors feed every KernelSpanProcessor. */
export function useKernelTelemetry(telemetry: (RecordSources & { status(): { probes: { name: string; attached: boolean }[] } }) | undefined): void {
  sources = telemetry;
  kernelSees = telemetry?.status().probes.some(p => p.name === 'tcp.bytes' && p.attached) ?? false;
}
