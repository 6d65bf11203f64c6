/**
 * The last export of a process that exits without a turn of the event loop (process.exit(), an uncaught exception),
 * where the addon cannot send it (native/http.cc speaks plain HTTP/1.1 only): gRPC, `https://` endpoints, and
 * OTEL_NODE_EBPF_EXPORT_THREAD=worker. The exiting thread serialises the request with the exporter's serializer,
 * starts a worker thread that sends it (src/exit-worker.ts, with OpenTelemetry's configuration of the same exporter),
 * and blocks in Atomics.wait until the worker has its answer or the bound has passed. Node runs worker threads from
 * the `exit` event, and their own event loop does the network work that the exiting thread no longer can.
 *
 * Cost: nothing until the exit; then a worker's start and its modules: the process is gone 0.2–0.3 s after
 * process.exit() here, against 0.03–0.07 s through the addon (docs/benchmark.md, "Start and exit").
 */
import * as path from 'path';
import { Worker } from 'worker_threads';
import type { ExportResponse } from '@opentelemetry/otlp-exporter-base';
import type { ISerializer } from '@opentelemetry/otlp-transformer';
import type { OtlpProtocol } from './config';

/** What the worker is given (workerData). */
export interface ExitRequest {
  signal: 'METRICS' | 'TRACES';
  protocol: OtlpProtocol;
  /** The exporter's URL when the application set one in code (start({ endpoint })); otherwise the environment's. */
  url?: string;
  body: Uint8Array;
  timeoutMs: number;
  /** Int32 state, Int32 message length, then the message (UTF-8). */
  shared: SharedArrayBuffer;
}

export const EXIT_STATE = { PENDING: 0, SUCCESS: 1, FAILURE: 2 } as const;
const MESSAGE_OFFSET = 8;
const SHARED_BYTES = 1024;

/** The worker's outcome, into the shared buffer (the caller notifies). */
export function writeOutcome(shared: SharedArrayBuffer, state: number, message: string): void {
  const text = new Uint8Array(shared, MESSAGE_OFFSET);
  const { written } = new TextEncoder().encodeInto(message, text);
  const header = new Int32Array(shared, 0, 2);
  header[1] = written;
  Atomics.store(header, 0, state);
}

const WORKER = path.join(__dirname, 'exit-worker.js');

/**
 * A synchronous export of `signal`'s items through a worker thread: for the `exit` event only, as it blocks the
 * calling thread (at most timeoutMs). The serializer is the exporter's own (protobuf for gRPC and http/protobuf),
 * asked for at exit: the process's start loads nothing for this.
 */
export function exitSender<Items>(
  signal: ExitRequest['signal'],
  protocol: OtlpProtocol,
  serializer: () => ISerializer<Items, unknown>,
  url?: string,
): (items: Items, timeoutMs: number) => ExportResponse {
  return (items, timeoutMs) => {
    const body = serializer().serializeRequest(items);
    if (!body) return { status: 'failure', error: new Error('the data could not be serialised') };
    const shared = new SharedArrayBuffer(SHARED_BYTES);
    const request: ExitRequest = { signal, protocol, url, body, timeoutMs, shared };
    // no flags of the application's (its --require of this SDK among them: `register` does nothing off the main
    // thread anyway), and no output: nothing would print it while this thread waits
    const worker = new Worker(WORKER, { workerData: request, execArgv: [], stdout: true, stderr: true });
    worker.on('error', () => {}); // reported through the shared buffer
    const header = new Int32Array(shared, 0, 2);
    if (Atomics.wait(header, 0, EXIT_STATE.PENDING, Math.max(0, timeoutMs)) === 'timed-out') {
      void worker.terminate();
      return { status: 'failure', error: new Error(`no answer within ${timeoutMs} ms`) };
    }
    if (Atomics.load(header, 0) === EXIT_STATE.SUCCESS) return { status: 'success' };
    const message = new TextDecoder().decode(new Uint8Array(shared, MESSAGE_OFFSET, header[1]));
    return { status: 'failure', error: new Error(message || 'the export failed') };
  };
}

/** OpenTelemetry's first backoff, for an answer to retry later that names no time (Retry-After). */
const EXIT_RETRY_DEFAULT_MS = 1000;

/**
 * One export at exit, sent again while its endpoint answers "retry later" (429, 502-504) and the wait it asks for
 * (Retry-After, or 1 s) ends before the deadline; the calling thread sleeps meanwhile. A connection that failed or was
 * refused is not tried again: at exit, a collector that is not there is not waited for.
 */
export function sendUntil(deadline: number, send: (timeoutMs: number) => ExportResponse | undefined): ExportResponse | undefined {
  let result = send(deadline - Date.now());
  while (result?.status === 'retryable' && result.error === undefined) {
    const wait = result.retryInMillis ?? EXIT_RETRY_DEFAULT_MS;
    if (Date.now() + wait >= deadline) break;
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, wait);
    result = send(deadline - Date.now());
  }
  return result;
}

type Transformer = typeof import('@opentelemetry/otlp-transformer');
const transformer = () => require('@opentelemetry/otlp-transformer') as Transformer;

/** The metrics' exit export through a worker thread (see exitSender). */
export function metricsExitSender(protocol: OtlpProtocol, url?: string) {
  const encoder = () => new (require('./otlp/metrics-encoder') as typeof import('./otlp/metrics-encoder')).MetricsEncoder();
  return exitSender('METRICS', protocol, () => (protocol === 'http/json' ? transformer().JsonMetricsSerializer : encoder()), url);
}

/** The spans' exit export through a worker thread (see exitSender). */
export function spansExitSender(protocol: OtlpProtocol) {
  return exitSender('TRACES', protocol, () => (protocol === 'http/json' ? transformer().JsonTraceSerializer : transformer().ProtobufTraceSerializer));
}

/**
 * The control of a sender of the exit's export only, beside an exporter of OpenTelemetry's that sends everything else
 * (the shutdown's controls concern the exporter that sends).
 */
export function exitOnly<S>(exportSync: S): { exportSync: S; shuttingDown(): void; end(): void } {
  return { exportSync, shuttingDown: () => {}, end: () => {} };
}
