'use strict';
// The OTLP metrics encoder (src/otlp/metrics-encoder.ts) against OpenTelemetry's own ProtobufMetricsSerializer: the
// same bytes for the same data, whatever the encoder kept from earlier exports. Kernel data from real probes in
// this process (as root); the exporters' tests decode what it writes through a real OTLP server.
const assert = require('assert');
const net = require('net');
const { ValueType } = require('@opentelemetry/api');
const { ProtobufMetricsSerializer } = require('@opentelemetry/otlp-transformer');
const { resourceFromAttributes } = require('@opentelemetry/resources');
const { AggregationTemporality, DataPointType } = require('@opentelemetry/sdk-metrics');
const { createMetricProducer } = require('../dist');
const { MetricsEncoder } = require('../dist/otlp/metrics-encoder');

const theirs = request => Buffer.from(ProtobufMetricsSerializer.serializeRequest(request));
const ours = (encoder, request) => Buffer.from(encoder.serializeRequest(request));

function assertSameBytes(encoder, request, what) {
  const expected = theirs(request);
  const actual = ours(encoder, request);
  assert.ok(actual.equals(expected), `${what}: ${actual.length} bytes, OpenTelemetry's serializer wrote ${expected.length}, first difference at ${actual.findIndex((b, i) => b !== expected[i])}`);
}

const START = [1_764_000_000, 123_456_789];
const END = [1_764_000_010, 999_999_999];

const ATTRIBUTES = {
  text: 'plain',
  unicode: 'grüße 🙂',
  'lone surrogate': 'a\ud800b',
  '': 'empty key',
  yes: true,
  no: false,
  int: 42,
  negative: -5,
  zero: -0,
  'past 2^53': 2 ** 60,
  'int64 max and beyond': 2 ** 63,
  double: 1.5,
  nan: NaN,
  infinity: -Infinity,
  array: [1, 'two', true, null, 2.5, [3]],
  object: { inner: { deep: 'x' }, n: 1 },
  bytes: new Uint8Array([0, 1, 255]),
  undefined: undefined,
  null: null,
};

const point = (value, attributes = {}, startTime = START, endTime = END) => ({ startTime, endTime, attributes, value });

function everyKind() {
  const histogram = {
    buckets: { boundaries: [0.001, 0.01, 0.1, 1], counts: [1, 0x1f2e3d4c5b6a79, 2 ** 60, 0, 3] }, // every byte of a count used
    sum: 12.75,
    count: 2 ** 33 + 11,
    min: 0.0005,
    max: 200,
  };
  const exponential = (scale, offset) => ({
    count: 10,
    sum: 3.5,
    scale,
    zeroCount: 2,
    positive: { offset, bucketCounts: [1, 0, 2 ** 40, 5] },
    negative: { offset: 0, bucketCounts: [] },
    min: -1,
    max: 4,
  });
  const descriptor = (name, valueType = ValueType.DOUBLE, description = `the ${name}`, unit = 's') => ({ name, description, unit, valueType });
  return {
    resource: resourceFromAttributes({ 'service.name': 'encoder-test', 'process.command_args': ['node', 'a.js'], 'process.pid': 7 }, { schemaUrl: 'https://opentelemetry.io/schemas/1.30.0' }),
    scopeMetrics: [
      {
        scope: { name: 'first', version: '1.2.3', schemaUrl: 'https://example.com/scope' },
        metrics: [
          {
            descriptor: descriptor('gauge.double', ValueType.DOUBLE, '', ''),
            aggregationTemporality: AggregationTemporality.CUMULATIVE,
            dataPointType: DataPointType.GAUGE,
            dataPoints: [point(0.25, ATTRIBUTES), point(NaN), point(-0), point(Infinity, { a: 'b' }, [0, 0], [1, 999_999_999])],
          },
          {
            descriptor: descriptor('gauge.int', ValueType.INT),
            aggregationTemporality: AggregationTemporality.CUMULATIVE,
            dataPointType: DataPointType.GAUGE,
            dataPoints: [point(-7), point(2 ** 40), point(-(2 ** 40)), point(0, {}, [2 ** 32, 5], [18_446_744_073, 709_551_615])],
          },
          {
            descriptor: descriptor('sum.delta'),
            aggregationTemporality: AggregationTemporality.DELTA,
            dataPointType: DataPointType.SUM,
            isMonotonic: true,
            dataPoints: [point(1234567, { 'server.port': 443 }), point(7654321, { 'server.port': 8080 })],
          },
          {
            descriptor: descriptor('sum.updown', ValueType.INT),
            aggregationTemporality: AggregationTemporality.CUMULATIVE,
            dataPointType: DataPointType.SUM,
            isMonotonic: false,
            dataPoints: [point(-3, { x: 'y' })],
          },
        ],
      },
      {
        scope: { name: 'second' },
        metrics: [
          {
            descriptor: descriptor('histogram'),
            aggregationTemporality: AggregationTemporality.DELTA,
            dataPointType: DataPointType.HISTOGRAM,
            dataPoints: [
              point(histogram, { route: '/a' }),
              point({ buckets: { boundaries: [], counts: [] }, count: 0 }),
              point({ ...histogram, sum: undefined, min: undefined, max: undefined }, { route: '/b' }),
            ],
          },
          {
            descriptor: descriptor('exponential'),
            aggregationTemporality: AggregationTemporality.CUMULATIVE,
            dataPointType: DataPointType.EXPONENTIAL_HISTOGRAM,
            dataPoints: [point(exponential(0, -21), { k: 1 }), point(exponential(-3, 5)), point(exponential(20, 0), ATTRIBUTES)],
          },
          { descriptor: descriptor('empty'), aggregationTemporality: AggregationTemporality.DELTA, dataPointType: DataPointType.SUM, isMonotonic: true, dataPoints: [] },
        ],
      },
      { scope: { name: 'no metrics', version: '' }, metrics: [] },
    ],
  };
}

describe('OTLP metrics encoder', function () {
  it("writes what OpenTelemetry's serializer writes, byte for byte: every point type, value type, attribute type and time range", () => {
    const request = everyKind();
    const encoder = new MetricsEncoder();
    assertSameBytes(encoder, request, 'first export');
    // the second export copies what the first encoded (attributes, headers, resource, bounds)
    assertSameBytes(encoder, request, 'second export');
    assertSameBytes(encoder, everyKind(), 'the same data in new objects');
  });

  it('encodes anew what changed between exports: attribute values, a description, bounds, a resource whose detectors finished', async () => {
    const encoder = new MetricsEncoder();
    const request = everyKind();
    assertSameBytes(encoder, request, 'before');
    const sum = request.scopeMetrics[0].metrics[2];
    sum.dataPoints[0].attributes = { 'server.port': 444 };
    sum.descriptor = { ...sum.descriptor, description: 'changed' };
    const histogram = request.scopeMetrics[1].metrics[0].dataPoints[0].value;
    histogram.buckets = { boundaries: [1, 2], counts: [1, 2, 3] };
    assertSameBytes(encoder, request, 'after the changes');

    let resolve;
    const pending = resourceFromAttributes({ 'service.name': 'late', 'host.id': new Promise(r => (resolve = r)) });
    assert.strictEqual(pending.asyncAttributesPending, true);
    request.resource = pending;
    assertSameBytes(encoder, request, 'detectors pending');
    resolve('h-1');
    await pending.waitForAsyncAttributes();
    assert.strictEqual(pending.attributes['host.id'], 'h-1');
    assertSameBytes(encoder, request, 'detectors finished');
  });

  it('forgets what an export did not use: a set of attributes last used two exports ago is encoded anew, the same', () => {
    const encoder = new MetricsEncoder();
    const withPort = port => {
      const request = everyKind();
      request.scopeMetrics[0].metrics[2].dataPoints[0].attributes = { 'server.port': port };
      return request;
    };
    for (const port of [1, 2, 3, 1, 1, 2]) assertSameBytes(encoder, withPort(port), `port ${port}`);
    const kept = encoder.attributeSets;
    // two exports' worth: this one's sets and the last one's, not every set ever seen
    assert.ok(!kept.current.has(`7\0${JSON.stringify({ 'server.port': 3 })}`) && !kept.previous.has(`7\0${JSON.stringify({ 'server.port': 3 })}`));
  });

  it("the kernel's own metrics, from real probes, in both temporalities and both histogram aggregations", async () => {
    let received = 0;
    let done;
    const all = new Promise(resolve => (done = resolve));
    const server = net.createServer(s => s.on('data', d => (received += d.length) >= 100_000 && done()));
    await new Promise(resolve => server.listen(0, '127.0.0.1', resolve));
    const client = net.connect(server.address().port, '127.0.0.1');
    const handles = [
      createMetricProducer({ strict: true, temporality: 'cumulative' }),
      createMetricProducer({ strict: true, temporality: 'delta', histogramAggregation: 'base2_exponential_bucket_histogram' }),
    ];
    try {
      client.write(Buffer.alloc(100_000, 1));
      await all;
      client.end();
      await new Promise(resolve => client.on('close', resolve));
      for (const handle of handles) {
        const encoder = new MetricsEncoder();
        for (let i = 0; i < 2; i++) {
          const { resourceMetrics, errors } = await handle.producer.collect();
          assert.deepStrictEqual(errors, []);
          if (i === 0) {
            const types = new Set(resourceMetrics.scopeMetrics[0].metrics.map(m => m.dataPointType));
            const histogram = handle === handles[0] ? DataPointType.HISTOGRAM : DataPointType.EXPONENTIAL_HISTOGRAM;
            assert.ok(types.has(DataPointType.SUM) && types.has(histogram) && types.has(DataPointType.GAUGE), [...types].join(', '));
          }
          assertSameBytes(encoder, { ...resourceMetrics, resource: resourceFromAttributes({ 'service.name': 'kernel' }) }, `collection ${i + 1}`);
        }
      }
    } finally {
      client.destroy();
      server.close();
      for (const handle of handles) handle.shutdown();
    }
  });
});
