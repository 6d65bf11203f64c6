'use strict';
// What KernelSpanProcessor adds to one HTTP server span: node bench/spans.js (after npm run build; as root).
// A real keep-alive TCP connection on loopback; each iteration does what Node and the HTTP instrumentation do for one
// request on it: the http.server.request.start message, a SERVER span started, the http.server.response.finish
// message (the processor reads TCP_INFO and sets the span's attributes here), the span ended. Two tracer providers,
// the same but for the processor, alternate in short rounds; the cost is the median of each pair's difference, in
// CPU time of this process (process.cpuUsage: time the machine's other work takes from it is not counted; wall-clock
// figures are printed beside). The processor enriches spans only while the SDK's connection measurement (tcp.bytes)
// is attached: the kernel telemetry runs here as in an application (createMetricProducer, the tcp measurements only),
// and the run fails if the check span at the end does not carry the bytes written. Beside, in the same pairs: the
// reading alone (readNsPerSpan), what the processor's reader (src/tcpinfo.ts: the addon's getsockopt(TCP_INFO) and
// the counters made of it) costs per call on the same socket.
//
// Environment: BENCH_SPANS spans per round (default 30000), BENCH_ROUNDS pairs of rounds (default 31).
const dc = require('diagnostics_channel');
const { IncomingMessage } = require('http');
const net = require('net');
const { SpanKind } = require('@opentelemetry/api');
const { BasicTracerProvider } = require('@opentelemetry/sdk-trace-base');
const { KernelSpanProcessor } = require('../dist/spans');
const { createMetricProducer } = require('../dist/sdk');
const { loadAddon } = require('../dist/native');
const { tcpCountersReader } = require('../dist/tcpinfo');

const N = Number(process.env.BENCH_SPANS ?? 30_000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 31);
const start = dc.channel('http.server.request.start');
const finish = dc.channel('http.server.response.finish');

/** ns per span of one round: { cpu, wall }. */
function round(tracer, socket) {
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < N; i++) {
    const message = { request: new IncomingMessage(socket), socket }; // as Node publishes it, less the response
    start.publish(message);
    const span = tracer.startSpan('GET', { kind: SpanKind.SERVER });
    finish.publish(message);
    span.end();
  }
  const wall = Number(process.hrtime.bigint() - t0) / N;
  const cpu = process.cpuUsage(cpu0);
  return { cpu: ((cpu.user + cpu.system) * 1000) / N, wall };
}

/** ns per reading of the socket's counters, as the processor reads them at a span's end (CPU time). */
function readRound(read, fd) {
  const cpu0 = process.cpuUsage();
  for (let i = 0; i < N; i++) if (!read(fd)) throw new Error('bench/spans.js: the reader gave no counters');
  const cpu = process.cpuUsage(cpu0);
  return ((cpu.user + cpu.system) * 1000) / N;
}

const median = xs => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

// Only the tcp measurements: nothing else of the SDK runs beside the loop (no runtime or uprobe measurements).
const telemetry = createMetricProducer({ disabledProbes: ['nodejs', 'dns', 'tls'], kernelStats: false, strict: true });
if (!telemetry.status().probes.some(p => p.name === 'tcp.bytes' && p.attached)) {
  console.error('bench/spans.js: the tcp.bytes measurement is not attached (run as root, after npm run build)');
  process.exit(1);
}

const server = net.createServer(() => {}).listen(0, '127.0.0.1', () => {
  const client = net.connect(server.address().port, '127.0.0.1', async () => {
    client.write('x'.repeat(1000));
    await new Promise(r => setTimeout(r, 100));
    const off = new BasicTracerProvider().getTracer('bench');
    // a processor only for the rounds with it: its channel subscriptions end with it
    const withProcessor = async fn => {
      const processor = new KernelSpanProcessor();
      try {
        return fn(new BasicTracerProvider({ spanProcessors: [processor] }).getTracer('bench'));
      } finally {
        await processor.shutdown();
      }
    };
    const rounds = [];
    round(off, client); // warm-up
    await withProcessor(on => round(on, client));
    const read = tcpCountersReader(loadAddon());
    for (let r = 0; r < ROUNDS; r++) {
      rounds.push({ off: round(off, client), on: await withProcessor(on => round(on, client)), read: readRound(read, client._handle.fd) });
    }
    // the spans are enriched: one more, after 1000 more bytes arrived on the server's... here the client's socket
    const s2 = await withProcessor(async on => {
      const message = { request: new IncomingMessage(client), socket: client };
      start.publish(message);
      const span = on.startSpan('GET', { kind: SpanKind.SERVER });
      client.write('y'.repeat(1000));
      finish.publish(message);
      span.end();
      return span;
    });
    const of = (mode, clock) => Math.round(median(rounds.map(r => r[mode][clock])));
    const added = clock => rounds.map(r => r.on[clock] - r.off[clock]);
    const result = {
      spansPerRound: N,
      rounds: ROUNDS,
      offNsPerSpan: of('off', 'cpu'),
      onNsPerSpan: of('on', 'cpu'),
      addedNsPerSpan: Math.round(median(added('cpu'))),
      // the middle half of the pairs' differences: how much the machine's state moved the figure during the run
      addedNsPerSpanQuartiles: [0.25, 0.75].map(q => Math.round([...added('cpu')].sort((a, b) => a - b)[Math.floor(q * ROUNDS)])),
      wall: { offNsPerSpan: of('off', 'wall'), onNsPerSpan: of('on', 'wall'), addedNsPerSpan: Math.round(median(added('wall'))) },
      readNsPerSpan: Math.round(median(rounds.map(r => r.read))),
      enriched: s2.attributes,
      node: process.version,
    };
    console.log(JSON.stringify(result, null, 2));
    client.destroy();
    server.close();
    await telemetry.shutdown();
    if (s2.attributes['tcp.io.transmit'] !== 1000) {
      console.error('bench/spans.js: the check span does not carry the 1000 bytes written: the processor did not enrich');
      process.exitCode = 1;
    }
  });
});
