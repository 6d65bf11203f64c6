'use strict';
// Connects at the edges of what the kernel does, in the network namespace the test made for this process (the test
// changes its sysctls): the kernel side's view through createMetricProducer, in this process. argv[2]: JSON
// { "scenario": "no-ports" | "synack" }. Prints one JSON line: what the application saw and what was collected.
const net = require('net');
const { createMetricProducer } = require('../..');

const { scenario } = JSON.parse(process.argv[2]);
const out = obj => process.stdout.write(JSON.stringify(obj) + '\n');

/** The collected points of `name`, as { attributes, value } (histograms: value = { count, sum }). */
async function pointsOf(handle, name) {
  const { resourceMetrics } = await handle.producer.collect();
  const metric = resourceMetrics.scopeMetrics[0]?.metrics.find(m => m.descriptor.name === name);
  return (metric?.dataPoints ?? []).map(p => ({ attributes: p.attributes, value: typeof p.value === 'number' ? p.value : { count: p.value.count, sum: p.value.sum } }));
}

(async () => {
  const handle = createMetricProducer({ strict: true });
  const server = net.createServer(s => s.resume());
  await new Promise(resolve => server.listen(0, '127.0.0.1', resolve));
  const sockets = [];
  const errors = [];
  const connects = scenario === 'no-ports' ? 4 : 1;
  for (let i = 0; i < connects; i++) {
    await new Promise(resolve => {
      const c = net.connect({ port: server.address().port, host: '127.0.0.1', autoSelectFamily: false });
      c.on('connect', () => (sockets.push(c), resolve()));
      c.on('error', err => (errors.push(err.code), resolve()));
    });
  }
  await new Promise(resolve => setTimeout(resolve, 200)); // the failures' events, through the ring buffer
  const failed = await pointsOf(handle, 'tcp.connection.failed');
  const connect = await pointsOf(handle, 'tcp.connect.duration');
  const opened = await pointsOf(handle, 'tcp.connection.opened');
  out({ errors, connected: sockets.length, failed, connect, opened });
  for (const s of sockets) s.destroy();
  server.close();
  handle.shutdown();
})().catch(err => {
  out({ error: err.stack });
  process.exitCode = 1;
});
