'use strict';
// What KernelSpanProcessor adds to one HTTP server span: node bench/spans.js (after npm run build).
// A real keep-alive TCP connection on loopback; each iteration does what Node and the HTTP instrumentation do for one
// request on it: the http.server.request.start message, a SERVER span started, the http.server.response.finish
// message (the processor reads TCP_INFO here), the span ended (the processor sets its attributes). Two tracer
// providers, the same but for the processor, alternate in rounds; the difference of their medians is the cost.
const dc = require('diagnostics_channel');
const net = require('net');
const { SpanKind } = require('@opentelemetry/api');
const { BasicTracerProvider } = require('@opentelemetry/sdk-trace-base');
const { KernelSpanProcessor } = require('../dist/spans');

const N = Number(process.env.BENCH_SPANS ?? 200_000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 7);
const start = dc.channel('http.server.request.start');
const finish = dc.channel('http.server.response.finish');

function round(tracer, socket) {
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < N; i++) {
    start.publish({ socket });
    const span = tracer.startSpan('GET', { kind: SpanKind.SERVER });
    finish.publish({ socket });
    span.end();
  }
  return Number(process.hrtime.bigint() - t0) / N;
}

const median = xs => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

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
    const ns = { off: [], on: [] };
    round(off, client); // warm-up
    await withProcessor(on => round(on, client));
    for (let r = 0; r < ROUNDS; r++) {
      ns.off.push(round(off, client));
      ns.on.push(await withProcessor(on => round(on, client)));
    }
    // the spans are enriched: one more, after 1000 more bytes arrived on the server's... here the client's socket
    const s2 = await withProcessor(async on => {
      start.publish({ socket: client });
      const span = on.startSpan('GET', { kind: SpanKind.SERVER });
      client.write('y'.repeat(1000));
      finish.publish({ socket: client });
      span.end();
      return span;
    });
    const result = {
      spansPerRound: N,
      rounds: ROUNDS,
      offNsPerSpan: Math.round(median(ns.off)),
      onNsPerSpan: Math.round(median(ns.on)),
      addedNsPerSpan: Math.round(median(ns.on) - median(ns.off)),
      enriched: s2.attributes,
      node: process.version,
    };
    console.log(JSON.stringify(result, null, 2));
    client.destroy();
    server.close();
  });
});
