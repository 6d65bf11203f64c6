/**
 * What an export that fails says. OpenTelemetry's readers hand every failed export to the global error handler,
 * which prints a JSON stack per interval (a collector that is down for an hour: 360 of them at 10 s). The SDK's
 * exporters say it once instead, with what to check, and once more when the endpoint works again.
 *
 * The reader is told such an export succeeded, so that it reports nothing itself. Nothing is lost that would not
 * be lost anyway: readers and span processors do not export a failed batch again, cumulative points (the default)
 * carry the totals in the next export, and the exporter's own retries (429, 502, 503, 504, connection errors) have
 * run before a failure gets here.
 */
import type { ExportResult } from '@opentelemetry/core';
import { warn } from './diag';

const SUCCESS = 0; // ExportResultCode.SUCCESS

/** The part of a PushMetricExporter or SpanExporter that the SDK's wrappers replace. */
export interface Exporter<T> {
  export(items: T, resultCallback: (result: ExportResult) => void): void;
}

/** The error's message, with its HTTP status where OpenTelemetry's exporter gives it apart (OTLPExporterError). */
function describe(error: (Error & { code?: unknown }) | undefined): string {
  if (!error) return 'unknown error';
  return typeof error.code === 'number' && !error.message.includes(String(error.code)) ? `${error.message} (HTTP ${error.code})` : error.message;
}

/** Wraps `exporter.export` in place (its other methods stay as they are) and returns the exporter. */
export function reportFailuresOnce<T, E extends Exporter<T>>(exporter: E, what: string, endpoint: string | undefined): E {
  const send = exporter.export.bind(exporter);
  const where = endpoint ? ` to ${endpoint}` : '';
  let failures = 0;
  exporter.export = (items: T, resultCallback: (result: ExportResult) => void) =>
    send(items, result => {
      if (result.code === SUCCESS) {
        if (failures > 0) warn(`${what}${where} works again (${failures} ${failures === 1 ? 'export' : 'exports'} failed)`);
        failures = 0;
        return resultCallback(result);
      }
      if (failures++ === 0) {
        warn(
          `${what}${where} failed: ${describe(result.error)}. Check that the collector runs there ` +
            '(OTEL_EXPORTER_OTLP_ENDPOINT and the OTEL_EXPORTER_OTLP_* variables); further failures are not logged until an export succeeds',
        );
      }
      resultCallback({ code: SUCCESS });
    });
  return exporter;
}
