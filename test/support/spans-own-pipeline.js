'use strict';
// The tracing pipeline of an application that has its own (README, "Kernel-enriched spans", in an existing pipeline):
// a NodeTracerProvider with the KernelSpanProcessor before its BatchSpanProcessor and OTLP exporter, its own
// HttpInstrumentation with a requestHook of its own, given the processor's hook too through
// httpInstrumentationConfig() (`hook: false`: not), and the kernel telemetry of createMetricProducer(). No register.
// Set up before the application loads `http` (test/support/spans-app.js, config.ownPipeline).
const { NodeTracerProvider } = require('@opentelemetry/sdk-trace-node');
const { BatchSpanProcessor } = require('@opentelemetry/sdk-trace-base');
const { OTLPTraceExporter } = require('@opentelemetry/exporter-trace-otlp-proto');
const { registerInstrumentations } = require('@opentelemetry/instrumentation');
const { HttpInstrumentation } = require('@opentelemetry/instrumentation-http');
const { resourceFromAttributes } = require('@opentelemetry/resources');
const { KernelSpanProcessor, createMetricProducer } = require('../../dist');
const { out } = require('./spans-end');

function setUp({ hook }) {
  const telemetry = createMetricProducer({ strict: true });
  const kernelSpans = new KernelSpanProcessor();
  const provider = new NodeTracerProvider({
    resource: resourceFromAttributes({ 'service.name': 'own-pipeline', 'process.pid': process.pid }),
    spanProcessors: [kernelSpans, new BatchSpanProcessor(new OTLPTraceExporter())], // OTEL_EXPORTER_OTLP_ENDPOINT
  });
  provider.register();
  const ownHook = []; // what the application's own hook saw: "client /r0", "server /r0", ...
  const config = { requestHook: (span, request) => ownHook.push(`${request.constructor.name === 'ClientRequest' ? 'client' : 'server'} ${request.path ?? request.url}`) };
  registerInstrumentations({ instrumentations: [new HttpInstrumentation(hook ? kernelSpans.httpInstrumentationConfig(config) : config)] });
  return {
    /** Every span exported, then {"done": { reading, ownHook }}. */
    async shutdownAndReport() {
      const reading = { ...kernelSpans.reading };
      await provider.shutdown();
      telemetry.shutdown();
      out({ done: { reading, ownHook }, node: process.version });
    },
  };
}

module.exports = { setUp };
