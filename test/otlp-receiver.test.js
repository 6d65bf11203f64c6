'use strict';
// The OTLP receiver (src/otlp/receiver.ts) against the official OTel JS exporters: what they send over OTLP/gRPC,
// OTLP/HTTP protobuf and OTLP/HTTP JSON must come out of the receiver as the exact values that were recorded.

const assert = require('node:assert/strict');
const http = require('node:http');
const zlib = require('node:zlib');
const grpc = require('@grpc/grpc-js');
const { ValueType, trace, ROOT_CONTEXT, SpanKind, SpanStatusCode } = require('@opentelemetry/api');
const { resourceFromAttributes } = require('@opentelemetry/resources');
const { MeterProvider, PeriodicExportingMetricReader, AggregationType } = require('@opentelemetry/sdk-metrics');
const { BasicTracerProvider, SimpleSpanProcessor } = require('@opentelemetry/sdk-trace-base');
const { OTLPMetricExporter: GrpcMetricExporter } = require('@opentelemetry/exporter-metrics-otlp-grpc');
const { OTLPMetricExporter: ProtoMetricExporter } = require('@opentelemetry/exporter-metrics-otlp-proto');
const {
  OTLPMetricExporter: JsonMetricExporter,
  AggregationTemporalityPreference,
} = require('@opentelemetry/exporter-metrics-otlp-http');
const { OTLPTraceExporter: ProtoTraceExporter } = require('@opentelemetry/exporter-trace-otlp-proto');
const { OTLPTraceExporter: GrpcTraceExporter } = require('@opentelemetry/exporter-trace-otlp-grpc');
const { OTLPTraceExporter: JsonTraceExporter } = require('@opentelemetry/exporter-trace-otlp-http');

const { OtlpReceiver } = require('../dist/otlp/receiver.js');

function post(url, body, headers) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: 'POST', headers }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('OtlpReceiver', function () {
  /** @type {InstanceType<typeof OtlpReceiver>} */
  let receiver;
  let addr;

  beforeEach(async function () {
    receiver = new OtlpReceiver();
    addr = await receiver.start();
  });

  afterEach(async function () {
    await receiver.stop();
  });

  it('listens on ephemeral ports and reports the endpoints', function () {
    assert.ok(addr.grpcPort > 0 && addr.httpPort > 0 && addr.grpcPort !== addr.httpPort);
    assert.equal(addr.grpcEndpoint, `http://127.0.0.1:${addr.grpcPort}`);
    assert.equal(addr.httpEndpoint, `http://127.0.0.1:${addr.httpPort}`);
  });

  describe('metrics from the OTel JS exporters', function () {
    // One MeterProvider, one reader per exporter: every reader sees the same measurements.
    const resource = resourceFromAttributes({ 'service.name': 'receiver-test', 'service.instance.id': 'i-1' });
    let provider;
    let readers;

    beforeEach(async function () {
      const exporters = {
        grpc: new GrpcMetricExporter({
          url: addr.grpcEndpoint,
          compression: 'gzip',
        }),
        'http/protobuf': new ProtoMetricExporter({
          url: `${addr.httpEndpoint}/v1/metrics`,
          headers: { 'x-tenant': 'acme' },
          temporalityPreference: AggregationTemporalityPreference.DELTA,
        }),
        'http/json': new JsonMetricExporter({
          url: `${addr.httpEndpoint}/v1/metrics`,
          compression: 'gzip',
        }),
      };
      readers = Object.fromEntries(
        Object.entries(exporters).map(([protocol, exporter]) => [
          protocol,
          new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 3_600_000 }),
        ]),
      );
      provider = new MeterProvider({
        resource,
        readers: Object.values(readers),
        views: [
          {
            instrumentName: 'test.exponential',
            aggregation: { type: AggregationType.EXPONENTIAL_HISTOGRAM, options: { maxSize: 4 } },
          },
          {
            instrumentName: 'test.explicit',
            aggregation: { type: AggregationType.EXPLICIT_BUCKET_HISTOGRAM, options: { boundaries: [0.25, 1, 8] } },
          },
        ],
      });
      const meter = provider.getMeter('receiver-test-scope', '1.2.3');

      const counter = meter.createCounter('test.requests', {
        unit: '{request}',
        description: 'requests handled',
        valueType: ValueType.INT,
      });
      counter.add(3, { route: '/charge', ok: true });
      counter.add(4, { route: '/charge', ok: true });
      counter.add(1, { route: '/refund', ok: false });

      const explicit = meter.createHistogram('test.explicit', { unit: 's' });
      for (const v of [0.0625, 0.5, 0.5, 4, 64]) explicit.record(v, { 'network.io.direction': 'transmit' });

      const exponential = meter.createHistogram('test.exponential', { unit: 'By' });
      for (const v of [0, 1, 2, 4, 8]) exponential.record(v);

      const gauge = meter.createGauge('test.queue.depth');
      gauge.record(12.5, { queue: 'q1' });
    });

    afterEach(async function () {
      await provider.shutdown();
    });

    const HISTOGRAM_FIELDS = ['type', 'temporality', 'count', 'sum', 'min', 'max', 'attributes'];
    const pick = (point, keys) => Object.fromEntries(keys.map((k) => [k, point[k]]));

    function byName(points, name, attrs = {}) {
      const matches = points.filter(
        (p) => p.name === name && Object.entries(attrs).every(([k, v]) => p.attributes[k] === v),
      );
      assert.equal(matches.length, 1, `one point of ${name} ${JSON.stringify(attrs)}; got ${matches.length}`);
      return matches[0];
    }

    for (const protocol of ['grpc', 'http/protobuf', 'http/json']) {
      it(`decodes exact values sent over ${protocol}`, async function () {
        await readers[protocol].forceFlush();
        assert.deepEqual(receiver.requests, {
          grpc: protocol === 'grpc' ? 1 : 0,
          'http/protobuf': protocol === 'http/protobuf' ? 1 : 0,
          'http/json': protocol === 'http/json' ? 1 : 0,
        });
        const points = receiver.points();
        assert.ok(points.every((p) => p.protocol === protocol));
        const temporality = protocol === 'http/protobuf' ? 'delta' : 'cumulative';

        const charge = byName(points, 'test.requests', { route: '/charge' });
        assert.equal(charge.type, 'sum');
        assert.equal(charge.value, 7);
        assert.equal(charge.monotonic, true);
        assert.equal(charge.temporality, temporality);
        assert.equal(charge.unit, '{request}');
        assert.equal(charge.description, 'requests handled');
        assert.deepEqual(charge.attributes, { route: '/charge', ok: true });
        assert.equal(charge.scope, 'receiver-test-scope');
        assert.equal(charge.scopeVersion, '1.2.3');
        assert.equal(charge.resource['service.name'], 'receiver-test');
        assert.equal(charge.resource['service.instance.id'], 'i-1');
        assert.equal(typeof charge.timeUnixNano, 'bigint');
        assert.ok(charge.startTimeUnixNano > 1_600_000_000_000_000_000n);
        assert.ok(charge.timeUnixNano >= charge.startTimeUnixNano);
        assert.equal(byName(points, 'test.requests', { route: '/refund' }).value, 1);

        const explicit = byName(points, 'test.explicit');
        assert.deepEqual(pick(explicit, HISTOGRAM_FIELDS), {
          type: 'histogram',
          temporality,
          count: 5,
          sum: 69.0625,
          min: 0.0625,
          max: 64,
          attributes: { 'network.io.direction': 'transmit' },
        });
        assert.deepEqual(explicit.explicitBounds, [0.25, 1, 8]);
        assert.deepEqual(explicit.bucketCounts, [1, 2, 1, 1]);

        // 1, 2, 4, 8 in at most 4 buckets: scale 0 (base 2), bucket i is (2^i, 2^(i+1)], so 1 is in bucket -1.
        const exponential = byName(points, 'test.exponential');
        assert.deepEqual(pick(exponential, HISTOGRAM_FIELDS), {
          type: 'exponentialHistogram',
          temporality,
          count: 5,
          sum: 15,
          min: 0,
          max: 8,
          attributes: {},
        });
        assert.equal(exponential.scale, 0);
        assert.equal(exponential.zeroCount, 1);
        assert.deepEqual(exponential.positive, { offset: -1, bucketCounts: [1, 1, 1, 1] });
        assert.deepEqual(exponential.negative, { offset: 0, bucketCounts: [] });

        const gauge = byName(points, 'test.queue.depth');
        assert.equal(gauge.type, 'gauge');
        assert.equal(gauge.value, 12.5);
        assert.equal(gauge.temporality, undefined);
        assert.deepEqual(gauge.attributes, { queue: 'q1' });
      });
    }

    it('records request headers: custom headers, content type and encoding', async function () {
      await readers['http/protobuf'].forceFlush();
      await readers['http/json'].forceFlush();
      await readers.grpc.forceFlush();
      const [proto, json, grpcReq] = receiver.receivedRequests();
      assert.equal(proto.protocol, 'http/protobuf');
      assert.equal(proto.signal, 'metrics');
      assert.equal(proto.headers['x-tenant'], 'acme');
      assert.equal(proto.headers['content-type'], 'application/x-protobuf');
      assert.equal(proto.headers['content-encoding'], undefined);
      assert.equal(json.protocol, 'http/json');
      assert.equal(json.headers['content-encoding'], 'gzip');
      assert.equal(json.headers['x-tenant'], undefined);
      assert.equal(grpcReq.protocol, 'grpc');
      // grpc-js keeps grpc-encoding (gzip here), grpc-timeout, te and content-type from the application's metadata.
      assert.match(grpcReq.headers['user-agent'], /OTel-OTLP-Exporter-JavaScript/);
      // The points carry their request's headers.
      assert.equal(receiver.points().find((p) => p.protocol === 'http/protobuf').headers['x-tenant'], 'acme');
    });

    it('emits a metrics event per request and waitFor resolves on the predicate', async function () {
      const events = [];
      receiver.on('metrics', (points, request) => events.push({ n: points.length, protocol: request.protocol }));
      const waited = receiver.waitFor(
        () => receiver.points().find((p) => p.name === 'test.queue.depth' && p.protocol === 'http/json'),
        10_000,
      );
      await readers.grpc.forceFlush();
      await readers['http/json'].forceFlush();
      const point = await waited;
      assert.equal(point.value, 12.5);
      assert.deepEqual(
        events.map((e) => e.protocol),
        ['grpc', 'http/json'],
      );
      assert.ok(events.every((e) => e.n === 5));
    });
  });

  it('waitFor rejects on timeout, listing the metric names received', async function () {
    const body = JSON.stringify({
      resourceMetrics: [
        { scopeMetrics: [{ metrics: [{ name: 'a.metric', gauge: { dataPoints: [{ asInt: '1' }] } }] }] },
      ],
    });
    await post(`${addr.httpEndpoint}/v1/metrics`, body, { 'content-type': 'application/json' });
    await assert.rejects(
      receiver.waitFor(() => false, 200),
      (err) => {
        assert.match(err.message, /timed out after 200 ms/);
        assert.match(err.message, /metrics received so far: a\.metric/);
        assert.match(err.message, /http\/json 1/);
        return true;
      },
    );
    // An already-true predicate resolves at once.
    assert.equal(await receiver.waitFor(() => receiver.points().length, 10), 1);
    receiver.clear();
    assert.deepEqual(receiver.points(), []);
    assert.deepEqual(receiver.requests, { grpc: 0, 'http/protobuf': 0, 'http/json': 0 });
  });

  it('accepts all OTLP/JSON spellings: int64 string or number, enum names, snake_case, base64 ids', async function () {
    const body = {
      resource_metrics: [
        {
          resource: { attributes: [{ key: 'service.name', value: { stringValue: 'json' } }] },
          scopeMetrics: [
            {
              scope: { name: 's' },
              metrics: [
                {
                  name: 'm.sum',
                  sum: {
                    aggregationTemporality: 'AGGREGATION_TEMPORALITY_DELTA',
                    isMonotonic: true,
                    dataPoints: [
                      {
                        start_time_unix_nano: 1700000000000000000,
                        timeUnixNano: '1700000000123456789',
                        asInt: 42,
                        attributes: [
                          { key: 'i', value: { intValue: '9007199254740991' } },
                          { key: 'd', value: { doubleValue: 0.5 } },
                          { key: 'b', value: { boolValue: false } },
                          { key: 'arr', value: { arrayValue: { values: [{ stringValue: 'x' }, { intValue: 2 }] } } },
                          {
                            key: 'kv',
                            value: { kvlistValue: { values: [{ key: 'k', value: { stringValue: 'v' } }] } },
                          },
                        ],
                      },
                    ],
                  },
                },
                {
                  name: 'm.hist',
                  histogram: {
                    aggregationTemporality: 2,
                    dataPoints: [{ count: '3', sum: 6, bucketCounts: ['1', 2], explicitBounds: [1] }],
                  },
                },
                {
                  name: 'm.exp',
                  exponentialHistogram: {
                    aggregationTemporality: 1,
                    dataPoints: [{ count: 2, scale: -1, positive: { offset: 3, bucketCounts: ['2'] } }],
                  },
                },
              ],
            },
          ],
        },
      ],
    };
    const res = await post(`${addr.httpEndpoint}/v1/metrics`, zlib.gzipSync(JSON.stringify(body)), {
      'content-type': 'application/json; charset=utf-8',
      'content-encoding': 'gzip',
    });
    assert.equal(res.status, 200);
    assert.equal(res.headers['content-type'], 'application/json');
    assert.deepEqual(JSON.parse(res.body.toString()), {});

    const [sum, hist, exp] = receiver.points();
    assert.equal(sum.temporality, 'delta');
    assert.equal(sum.value, 42);
    assert.equal(sum.resource['service.name'], 'json');
    assert.equal(sum.startTimeUnixNano, 1700000000000000000n);
    assert.equal(sum.timeUnixNano, 1700000000123456789n);
    assert.deepEqual(sum.attributes, { i: 9007199254740991, d: 0.5, b: false, arr: ['x', 2], kv: { k: 'v' } });
    assert.equal(hist.temporality, 'cumulative');
    assert.deepEqual([hist.count, hist.sum, hist.bucketCounts, hist.explicitBounds], [3, 6, [1, 2], [1]]);
    assert.equal(hist.min, undefined);
    assert.deepEqual([exp.count, exp.scale, exp.zeroCount, exp.positive], [2, -1, 0, { offset: 3, bucketCounts: [2] }]);

    const traceId = Buffer.from('0af7651916cd43dd8448eb211c80319c', 'hex');
    const spanBody = {
      resourceSpans: [
        {
          scopeSpans: [
            {
              spans: [
                { name: 'hex', traceId: '0AF7651916CD43DD8448EB211C80319C', spanId: 'b7ad6b7169203331', kind: 2 },
                { name: 'b64', traceId: traceId.toString('base64'), spanId: 't61rcWkgMzE=', kind: 'SPAN_KIND_CLIENT' },
              ],
            },
          ],
        },
      ],
    };
    assert.equal(
      (await post(`${addr.httpEndpoint}/v1/traces`, JSON.stringify(spanBody), { 'content-type': 'application/json' }))
        .status,
      200,
    );
    const [hex, b64] = receiver.spans();
    for (const s of [hex, b64]) {
      assert.equal(s.traceId, '0af7651916cd43dd8448eb211c80319c');
      assert.equal(s.spanId, 'b7ad6b7169203331');
      assert.equal(s.parentSpanId, '');
    }
    assert.deepEqual([hex.kind, b64.kind], ['server', 'client']);
  });

  it('refuses what is not OTLP with the right HTTP status', async function () {
    const url = addr.httpEndpoint;
    assert.equal((await post(`${url}/v1/logs`, '{}', { 'content-type': 'application/json' })).status, 404);
    assert.equal((await post(`${url}/v1/metrics`, '{}', { 'content-type': 'text/plain' })).status, 415);
    assert.equal(
      (await post(`${url}/v1/metrics`, '{}', { 'content-type': 'application/json', 'content-encoding': 'br' })).status,
      415,
    );
    assert.equal((await post(`${url}/v1/metrics`, '{not json', { 'content-type': 'application/json' })).status, 400);
    assert.equal(
      (await post(`${url}/v1/metrics`, Buffer.from([0xff, 0xff, 0xff]), { 'content-type': 'application/x-protobuf' }))
        .status,
      400,
    );
    const empty = await post(`${url}/v1/metrics`, Buffer.alloc(0), { 'content-type': 'application/x-protobuf' });
    assert.equal(empty.status, 200);
    assert.equal(empty.headers['content-type'], 'application/x-protobuf');
    assert.equal(empty.body.length, 0);
    assert.deepEqual(receiver.requests, { grpc: 0, 'http/protobuf': 1, 'http/json': 0 });
  });

  describe('traces from the OTel JS exporters', function () {
    const exporters = {
      'http/protobuf': (a) => new ProtoTraceExporter({ url: `${a.httpEndpoint}/v1/traces`, compression: 'gzip' }),
      grpc: (a) => new GrpcTraceExporter({ url: a.grpcEndpoint, metadata: metadataWith('x-tenant', 'acme') }),
      'http/json': (a) => new JsonTraceExporter({ url: `${a.httpEndpoint}/v1/traces` }),
    };

    function metadataWith(key, value) {
      const md = new grpc.Metadata();
      md.set(key, value);
      return md;
    }

    for (const [protocol, makeExporter] of Object.entries(exporters)) {
      it(`decodes spans sent over ${protocol}`, async function () {
        const provider = new BasicTracerProvider({
          resource: resourceFromAttributes({ 'service.name': 'payment' }),
          spanProcessors: [new SimpleSpanProcessor(makeExporter(addr))],
        });
        const tracer = provider.getTracer('payment-tracer', '0.0.1');
        const parent = tracer.startSpan('oteldemo.PaymentService/Charge', {
          kind: SpanKind.SERVER,
          attributes: { 'rpc.system': 'grpc', 'app.payment.amount': 12.34, 'app.retries': 2 },
        });
        const child = tracer.startSpan(
          'charge card',
          { kind: SpanKind.CLIENT, attributes: { 'app.card.type': 'visa' } },
          trace.setSpan(ROOT_CONTEXT, parent),
        );
        child.addEvent('card validated', { 'app.card.valid': true });
        child.setStatus({ code: SpanStatusCode.ERROR, message: 'card expired' });
        child.end();
        parent.end();
        await provider.forceFlush();

        const spans = await receiver.waitFor(() => receiver.spans().length >= 2 && receiver.spans(), 10_000);
        await provider.shutdown();
        const server = spans.find((s) => s.name === 'oteldemo.PaymentService/Charge');
        const client = spans.find((s) => s.name === 'charge card');
        assert.ok(server && client);
        for (const s of [server, client]) {
          assert.equal(s.protocol, protocol);
          assert.equal(s.resource['service.name'], 'payment');
          assert.equal(s.scope, 'payment-tracer');
          assert.equal(s.scopeVersion, '0.0.1');
          assert.ok(s.endTimeUnixNano >= s.startTimeUnixNano && s.startTimeUnixNano > 0n);
        }
        assert.equal(server.kind, 'server');
        assert.equal(server.traceId, parent.spanContext().traceId);
        assert.equal(server.spanId, parent.spanContext().spanId);
        assert.equal(server.parentSpanId, '');
        assert.deepEqual(server.attributes, { 'rpc.system': 'grpc', 'app.payment.amount': 12.34, 'app.retries': 2 });
        assert.deepEqual(server.status, { code: 'unset', message: '' });

        assert.equal(client.kind, 'client');
        assert.equal(client.traceId, parent.spanContext().traceId);
        assert.equal(client.spanId, child.spanContext().spanId);
        assert.equal(client.parentSpanId, parent.spanContext().spanId);
        assert.match(client.traceId, /^[0-9a-f]{32}$/);
        assert.match(client.spanId, /^[0-9a-f]{16}$/);
        assert.deepEqual(client.attributes, { 'app.card.type': 'visa' });
        assert.deepEqual(client.status, { code: 'error', message: 'card expired' });
        assert.equal(client.events.length, 1);
        assert.equal(client.events[0].name, 'card validated');
        assert.deepEqual(client.events[0].attributes, { 'app.card.valid': true });

        const [request] = receiver.receivedRequests();
        assert.equal(request.signal, 'traces');
        if (protocol === 'grpc') assert.equal(request.headers['x-tenant'], 'acme');
        if (protocol === 'http/protobuf') assert.equal(request.headers['content-encoding'], 'gzip');
      });
    }
  });
});

describe('summarize', function () {
  const { summarize } = require('../dist/otlp/summary.js');
  const base = {
    protocol: 'http/protobuf',
    headers: {},
    resource: { 'service.name': 'payment' },
    scope: 'otel-node-ebpf',
    scopeVersion: '',
    description: '',
    startTimeUnixNano: 1n,
  };
  const sum = (name, attributes, value, timeUnixNano, temporality = 'cumulative', unit = '') => ({
    ...base,
    name,
    unit,
    type: 'sum',
    temporality,
    monotonic: true,
    attributes,
    value,
    timeUnixNano,
  });
  const row = (text, start) => text.split('\n').find((l) => l.trimStart().startsWith(start));

  it('takes the latest cumulative point per series, adds deltas, and estimates quantiles from buckets', function () {
    const server = { 'tcp.connection.side': 'server', 'server.port': 50051, 'network.io.direction': 'receive' };
    const client = {
      'tcp.connection.side': 'client',
      'server.address': '127.0.0.1',
      'server.port': 4318,
      'network.io.direction': 'transmit',
    };
    const points = [
      sum('process.network.io', { ...server, 'network.type': 'ipv4' }, 1000, 1n, 'cumulative', 'By'),
      sum('process.network.io', { ...server, 'network.type': 'ipv4' }, 3000, 2n, 'cumulative', 'By'),
      sum('process.network.io', { ...server, 'network.type': 'ipv6' }, 24, 2n, 'cumulative', 'By'),
      sum('process.network.io', client, 700, 1n, 'delta', 'By'),
      sum('process.network.io', client, 300, 2n, 'delta', 'By'),
      sum(
        'tcp.connection.failed',
        { 'server.address': '10.0.0.1', 'server.port': 9, 'error.type': 'ECONNREFUSED' },
        2,
        2n,
      ),
      {
        ...base,
        name: 'tcp.rtt',
        unit: 's',
        type: 'histogram',
        temporality: 'cumulative',
        attributes: {},
        timeUnixNano: 2n,
        count: 100,
        sum: 0.0123,
        max: 0.0009,
        explicitBounds: [0.00005, 0.0001, 0.0005, 0.001],
        bucketCounts: [10, 45, 44, 1, 0],
      },
      {
        ...base,
        name: 'otel_node_ebpf.probe.attached',
        type: 'gauge',
        attributes: { 'otel_node_ebpf.probe': 'tcp.bytes', 'otel_node_ebpf.hook': 'fentry' },
        value: 1,
        timeUnixNano: 2n,
      },
      sum('otel_node_ebpf.probe.kernel.time', { 'otel_node_ebpf.probe': 'tcp.bytes' }, 0.0012, 2n, 'cumulative', 's'),
    ];
    const text = summarize(points);
    assert.match(row(text, 'server  :50051'), /receive\s+3,024 B \(3\.0 KiB\)$/);
    assert.match(row(text, 'client  127.0.0.1:4318'), /transmit\s+1,000 B$/);
    assert.match(row(text, 'failed'), /client\s+10\.0\.0\.1:9\s+ECONNREFUSED\s+2$/);
    assert.match(row(text, 'tcp.rtt'), /100\s+123\.0 µs\s+≤ 100\.0 µs\s+≤ 500\.0 µs\s+900\.0 µs$/);
    assert.match(row(text, 'tcp.bytes'), /fentry\s+yes\s+-\s+1\.20 ms$/);
  });

  it('says so when no kernel metrics arrived', function () {
    assert.match(summarize([]), /process\.network\.io[^\n]*\n {2}\(none received\)/);
  });
});
