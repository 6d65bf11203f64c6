/**
 * `node --require otel-node-ebpf/register app.js` (or `--import otel-node-ebpf/register` for ESM): starts kernel
 * telemetry from the OTEL_* environment before the application runs. Never throws, unless OTEL_NODE_EBPF_STRICT=true
 * asks for a loud failure.
 */
import { isMainThread } from 'worker_threads';
import { startFromEnvironment } from './sdk';

// Preloads (NODE_OPTIONS=--require ...) run in every worker thread too; the process's telemetry starts once, in the
// main thread.
if (isMainThread) {
  const handle = startFromEnvironment();
  // For the application (and tests) to inspect: globalThis[Symbol.for('otel-node-ebpf')].status()
  (globalThis as Record<symbol, unknown>)[Symbol.for('otel-node-ebpf')] = handle;
}
