/**
 * A collection in steps: the event loop runs between them.
 *
 * Why: a collection reads BPF maps and sockets, decodes them and converts them, and the exporter then serialises the
 * request, all on the application's thread. In one piece that held the event loop for 5-7 ms at a time (2-4 ms to
 * collect, 2 ms to serialise) while the code was still cold: every request in flight waited for all of it, and a load
 * generator that keeps its request rate (wrk, which corrects for the requests a stalled server kept it from
 * sending) saw the SDK's p99 10-15 % above the plain server's (docs/benchmark.md). In steps, a request waits for one
 * step at most.
 *
 * A step is the stretch of a generator between two `yield`s. Run synchronously (`runSteps`), the generator is the
 * plain collection: the last export of a process that is exiting, and tests.
 */
import { context } from '@opentelemetry/api';
import type { ExportResult } from '@opentelemetry/core';
import type { Exporter } from './export-failures';
import { ownIo } from './own-io';

export type Steps<T> = Generator<void, T, void>;

const FAILED = 1; // ExportResultCode.FAILED (a type-only import: @opentelemetry/core is not loaded for it)

/** All steps at once, on the calling thread. */
export function runSteps<T>(steps: Steps<T>): T {
  return ownIo(() => {
    for (;;) {
      const r = steps.next();
      if (r.done) return r.value;
    }
  });
}

/** One step, as the SDK's own work (src/own-io.ts). */
const step = <T>(steps: Steps<T>): IteratorResult<void, T> => ownIo(() => steps.next());

/** Resolves in the event loop's next check phase (setImmediate), after its poll phase has handled the ready I/O. */
export const nextTurn = (): Promise<void> => new Promise(resolve => setImmediate(resolve));

/** One step per turn of the event loop. Rejects with what a step threw. */
export async function runInTurns<T>(steps: Steps<T>): Promise<T> {
  for (;;) {
    const r = step(steps);
    if (r.done) return r.value;
    await nextTurn();
  }
}

/**
 * Makes `exporter.export` start one turn of the event loop later, in the caller's context (OpenTelemetry's readers
 * suppress tracing there, so that the export's own requests are not traced): the reader's collection and the
 * exporter's serialisation then hold the event loop in two pieces instead of one. What export throws becomes a failed
 * result: it must not reach the application as an uncaught exception (before, the reader's promise caught it).
 */
export function exportInNextTurn<T, E extends Exporter<T>>(exporter: E): E {
  const send = exporter.export.bind(exporter);
  exporter.export = (items: T, resultCallback: (result: ExportResult) => void) => {
    const ctx = context.active();
    setImmediate(() => {
      try {
        ownIo(() => context.with(ctx, () => send(items, resultCallback)));
      } catch (err) {
        resultCallback({ code: FAILED, error: err as Error });
      }
    });
  };
  return exporter;
}
