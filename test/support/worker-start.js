'use strict';
// start(), createMetricProducer() and a KernelSpanProcessor in a worker thread, with an export in flight when the
// worker ends (a collector that accepts and never answers): prints {"worker": {start, producer, spans}} (their
// status(), the processor's reading), then {"alive": true} 3 s after the worker ended, and exits 0.
const net = require('net');
const path = require('path');
const { Worker } = require('worker_threads');

const ROOT = path.join(__dirname, '..', '..');
const out = obj => process.stdout.write(JSON.stringify(obj) + '\n');
const sockets = [];
const silent = net.createServer(s => sockets.push(s)).listen(0, '127.0.0.1', () => {
  const env = { ...process.env, OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${silent.address().port}`, OTEL_METRIC_EXPORT_INTERVAL: '200' };
  const code = `
    const { parentPort } = require('worker_threads');
    const sdk = require(${JSON.stringify(ROOT)});
    const handle = sdk.start();
    const producer = sdk.createMetricProducer();
    const spans = new sdk.KernelSpanProcessor();
    setTimeout(async () => {
      await spans.shutdown();
      parentPort.postMessage({ start: handle.status(), producer: producer.status(), spans: spans.reading });
      process.exit(0);
    }, 1000);`;
  const worker = new Worker(code, { eval: true, env });
  worker.on('message', m => out({ worker: m }));
  worker.on('exit', () =>
    setTimeout(() => {
      out({ alive: true });
      for (const s of sockets) s.destroy();
      silent.close();
    }, 3000),
  );
});
