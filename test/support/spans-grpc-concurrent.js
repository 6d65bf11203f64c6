'use strict';
// Two concurrent unary gRPC calls on one connection, after a first call that opened it: the small one's handler
// answers after 150 ms, the large one's (200,000 bytes of request) after 400 ms, so the small call ends first, while
// the large one runs. Prints each client span as one JSON line: { name, tx, rx, rtt } (its kernel attributes).
const { NodeTracerProvider } = require('@opentelemetry/sdk-trace-node');
const { SimpleSpanProcessor, InMemorySpanExporter } = require('@opentelemetry/sdk-trace-base');
const { registerInstrumentations } = require('@opentelemetry/instrumentation');
const { GrpcInstrumentation } = require('@opentelemetry/instrumentation-grpc');
const { SpanKind } = require('@opentelemetry/api');
const { KernelSpanProcessor, createMetricProducer } = require('../..');

const telemetry = createMetricProducer({ strict: true, disabledProbes: ['nodejs', 'dns', 'tls'], kernelStats: false });
const kernelSpans = new KernelSpanProcessor();
const exporter = new InMemorySpanExporter();
const provider = new NodeTracerProvider({ spanProcessors: [kernelSpans, new SimpleSpanProcessor(exporter)] });
provider.register();
registerInstrumentations({ instrumentations: [new GrpcInstrumentation(), kernelSpans.grpcInstrumentation()] });
const grpc = require('@grpc/grpc-js');

const same = b => b;
const service = { echo: { path: '/test.Echo/Echo', requestStream: false, responseStream: false, requestSerialize: same, requestDeserialize: same, responseSerialize: same, responseDeserialize: same } };
const server = new grpc.Server();
server.addService(service, { echo: (call, done) => setTimeout(() => done(null, Buffer.alloc(10)), call.request.length > 1000 ? 400 : 150) });
server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), async (err, port) => {
  if (err) throw err;
  const Client = grpc.makeGenericClientConstructor(service, 'Echo');
  const client = new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  const call = size => new Promise((resolve, reject) => client.echo(Buffer.alloc(size), e => (e ? reject(e) : resolve())));
  await call(5);
  await Promise.all([call(5), call(200_000)]);
  for (const s of exporter.getFinishedSpans().filter(s => s.kind === SpanKind.CLIENT)) {
    const a = s.attributes;
    process.stdout.write(JSON.stringify({ name: s.name, tx: a['tcp.io.transmit'], rx: a['tcp.io.receive'], rtt: a['tcp.rtt'] }) + '\n');
  }
  client.close();
  server.forceShutdown();
  await provider.shutdown();
  telemetry.shutdown();
});
