'use strict';
// A lookup that fails inside a client span the KernelSpanProcessor follows, by dns.promises.lookup (the processor
// watches it, for grpc-js's resolver), and that the application leaves unhandled: the process must end with the
// unhandled rejection as it would without the SDK. argv[2] 'sdk' runs it with the processor, anything else without.
const dns = require('dns');
const net = require('net');
const { context, trace, SpanKind } = require('@opentelemetry/api');
const { AsyncLocalStorageContextManager } = require('@opentelemetry/context-async-hooks');
const { BasicTracerProvider } = require('@opentelemetry/sdk-trace-base');

context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
const withSdk = process.argv[2] === 'sdk';

(async () => {
  const { createMetricProducer } = require('../../dist/sdk');
  const { KernelSpanProcessor } = require('../../dist/spans');
  const telemetry = withSdk ? createMetricProducer({ disabledProbes: ['nodejs', 'tcp'], kernelStats: false }) : undefined;
  const processor = withSdk ? new KernelSpanProcessor() : undefined;
  const tracer = new BasicTracerProvider({ spanProcessors: processor ? [processor] : [] }).getTracer('test');
  const server = net.createServer(s => s.resume()).listen(0, '127.0.0.1');
  await new Promise(resolve => server.once('listening', resolve));
  const socket = net.connect(server.address().port, '127.0.0.1');
  await new Promise(resolve => socket.once('connect', resolve));
  const span = tracer.startSpan('call', { kind: SpanKind.CLIENT });
  processor?.attachSocket(span, socket);
  console.log(JSON.stringify({ dns: telemetry?.status().probes.find(p => p.name === 'dns.lookup')?.attached ?? null }));
  context.with(trace.setSpan(context.active(), span), () => {
    dns.promises.lookup('no-such-host.invalid'); // left unhandled, on purpose
  });
  setTimeout(() => {
    console.log(JSON.stringify({ survived: true }));
    process.exit(0);
  }, 3000);
})();
