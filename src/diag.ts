/**
 * The SDK's own messages. They go to the OpenTelemetry diag logger (component "otel-node-ebpf"); when the
 * application has not installed one, warnings go to stderr instead, so that a missing privilege is never silent.
 * Each message is said once per process: telemetry must not flood the host's logs.
 */
import { diag } from '@opentelemetry/api';

const logger = diag.createComponentLogger({ namespace: 'otel-node-ebpf' });
const said = new Set<string>();

/** Whether anyone called diag.setLogger (the API keeps its registry on a global symbol per major version). */
function diagLoggerInstalled(): boolean {
  const registry = (globalThis as Record<symbol, { diag?: unknown } | undefined>)[Symbol.for('opentelemetry.js.api.1')];
  return registry?.diag !== undefined;
}

export function warnOnce(message: string, key: string = message): void {
  if (said.has(key)) return;
  said.add(key);
  warn(message);
}

/** A warning said every time: for a state that changes (an endpoint that fails, then works again), said per change. */
export function warn(message: string): void {
  if (diagLoggerInstalled()) logger.warn(message);
  else process.stderr.write(`otel-node-ebpf: ${message}\n`);
}

export function debug(message: string): void {
  logger.debug(message);
}

/** For tests: forget what was said. */
export function resetWarnings(): void {
  said.clear();
}
