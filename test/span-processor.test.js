'use strict';
// KernelSpanProcessor in this process, without the HTTP instrumentation: Node's own diagnostics-channel messages for a
// server request, published by the test as Node publishes them, on a real loopback connection, with the SDK's kernel
// telemetry running (the processor enriches spans only while it sees the process's connections).
const assert = require('assert');
const dc = require('diagnostics_channel');
const { IncomingMessage } = require('http');
const net = require('net');
const { SpanKind } = require('@opentelemetry/api');
const { BasicTracerProvider } = require('@opentelemetry/sdk-trace-base');
const { CI } = require('./support/harness');
const { KernelSpanProcessor } = require('../dist/spans');
const { createMetricProducer } = require('../dist/sdk');

const start = dc.channel('http.server.request.start');
const finish = dc.channel('http.server.response.finish');

describe('KernelSpanProcessor in process', function () {
  let telemetry, server, client;
  before(async function () {
    if (process.getuid() !== 0) {
      if (CI) throw new Error('these tests need root (BPF); CI runs as root');
      this.skip();
    }
    telemetry = createMetricProducer({ disabledProbes: ['nodejs', 'dns', 'tls'], kernelStats: false, strict: true });
    server = net.createServer(s => s.resume());
    await new Promise(resolve => server.listen(0, '127.0.0.1', resolve));
    client = net.connect(server.address().port, '127.0.0.1');
    await new Promise(resolve => client.once('connect', resolve));
  });
  after(async () => {
    client?.destroy();
    server?.close();
    telemetry?.shutdown();
  });

  it('a response no span waits for (an ignored or unsampled request) between two traced ones: its bytes are in neither span', async () => {
    const processor = new KernelSpanProcessor();
    const tracer = new BasicTracerProvider({ spanProcessors: [processor] }).getTracer('test');
    // a connection of its own: the other test counts every byte of the shared one
    const socket = net.connect(server.address().port, '127.0.0.1');
    await new Promise(resolve => socket.once('connect', resolve));
    const request = async (bytes, traced) => {
      const message = { request: new IncomingMessage(socket), socket };
      start.publish(message);
      const span = traced ? tracer.startSpan('GET', { kind: SpanKind.SERVER }) : undefined;
      socket.write(Buffer.alloc(bytes));
      await new Promise(resolve => setImmediate(resolve));
      finish.publish(message);
      span?.end();
      return span?.attributes['tcp.io.transmit'];
    };
    try {
      assert.strictEqual(await request(1000, true), 1000);
      assert.strictEqual(await request(70_000, false), undefined);
      assert.strictEqual(await request(3000, true), 3000);
    } finally {
      socket.destroy();
      await processor.shutdown();
    }
  });

  it('two processors of two tracer providers in one process: each puts the exact bytes on its own spans of one connection', async () => {
    const processors = [new KernelSpanProcessor(), new KernelSpanProcessor()];
    const tracers = processors.map(p => new BasicTracerProvider({ spanProcessors: [p] }).getTracer('test'));
    try {
      for (const bytes of [1000, 70_000, 1, 3000, 12]) {
        // as Node dispatches a request: the message, then (in the same synchronous dispatch) the SERVER spans
        const message = { request: new IncomingMessage(client), socket: client };
        start.publish(message);
        const spans = tracers.map(t => t.startSpan('GET', { kind: SpanKind.SERVER }));
        client.write(Buffer.alloc(bytes));
        await new Promise(resolve => setImmediate(resolve));
        finish.publish(message);
        for (const span of spans) span.end();
        for (const [i, span] of spans.entries()) assert.strictEqual(span.attributes['tcp.io.transmit'], bytes, `processor ${i}`);
      }
      // each connection reading from the third span on came from that processor's own slot
      for (const p of processors) assert.deepStrictEqual(p.reading, { via: 'bpf', fromSlots: 3, byGetsockopt: 2 });
    } finally {
      await Promise.all(processors.map(p => p.shutdown()));
    }
  });

  it("after createMetricProducer()'s shutdown the spans carry nothing of the kernel's, as after start()'s (the last test here)", async () => {
    const processor = new KernelSpanProcessor();
    const tracer = new BasicTracerProvider({ spanProcessors: [processor] }).getTracer('test');
    telemetry.shutdown();
    try {
      const message = { request: new IncomingMessage(client), socket: client };
      start.publish(message);
      const span = tracer.startSpan('GET', { kind: SpanKind.SERVER });
      client.write(Buffer.alloc(100));
      await new Promise(resolve => setImmediate(resolve));
      finish.publish(message);
      span.end();
      assert.deepStrictEqual(Object.keys(span.attributes).filter(k => k.startsWith('tcp.')), []);
    } finally {
      await processor.shutdown();
    }
  });
});
