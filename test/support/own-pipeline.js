'use strict';
// An application with its own MeterProvider and exporter that adds the kernel metrics to its pipeline
// (README: "In an existing OpenTelemetry pipeline"). argv: endpoint, peer port, bytes to send.
const net = require('net');
const { MeterProvider, PeriodicExportingMetricReader } = require('@opentelemetry/sdk-metrics');
const { OTLPMetricExporter } = require('@opentelemetry/exporter-metrics-otlp-proto');
const { resourceFromAttributes } = require('@opentelemetry/resources');
const { createMetricProducer } = require('../../dist');

const [endpoint, port, bytes] = process.argv.slice(2);
const kernel = createMetricProducer({ strict: true, temporality: 'delta' });
const reader = new PeriodicExportingMetricReader({
  exporter: new OTLPMetricExporter({ url: `${endpoint}/v1/metrics`, temporalityPreference: 1 /* DELTA */ }),
  exportIntervalMillis: 60000,
  metricProducers: [kernel.producer],
});
const provider = new MeterProvider({ resource: resourceFromAttributes({ 'service.name': 'own-pipeline' }), readers: [reader] });
provider.getMeter('app').createCounter('app.requests').add(3);

const s = net.connect(+port, '127.0.0.1', () => s.end(Buffer.alloc(+bytes)));
s.on('data', () => {});
s.on('close', async () => {
  await provider.shutdown();
  kernel.shutdown();
  process.stdout.write(JSON.stringify({ done: true, status: kernel.status() }) + '\n');
});
