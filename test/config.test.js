'use strict';
// The environment as the specification reads it: each bad value gives one warning that names the value used instead.
const assert = require('assert');
const { resolveConfig, DEFAULTS } = require('../dist/config');

const resolve = env => resolveConfig({}, env);

describe('configuration from the environment', function () {
  it('a bad signal-specific protocol gives way to OTEL_EXPORTER_OTLP_PROTOCOL, not to the default', () => {
    const { config, warnings } = resolve({ OTEL_EXPORTER_OTLP_METRICS_PROTOCOL: 'http/proto', OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'grcp', OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' });
    assert.strictEqual(config.protocol, 'grpc');
    assert.strictEqual(config.tracesProtocol, 'grpc');
    assert.deepStrictEqual(warnings, [
      'OTEL_EXPORTER_OTLP_METRICS_PROTOCOL="http/proto" is not one of grpc, http/protobuf, http/json; using grpc',
      'OTEL_EXPORTER_OTLP_TRACES_PROTOCOL="grcp" is not one of grpc, http/protobuf, http/json; using grpc',
    ]);
  });

  it('both protocols bad: one warning each, and the default', () => {
    const { config, warnings } = resolve({ OTEL_EXPORTER_OTLP_METRICS_PROTOCOL: 'x', OTEL_EXPORTER_OTLP_PROTOCOL: 'y' });
    assert.strictEqual(config.protocol, DEFAULTS.protocol);
    assert.deepStrictEqual(warnings, [
      'OTEL_EXPORTER_OTLP_METRICS_PROTOCOL="x" is not one of grpc, http/protobuf, http/json; using http/protobuf',
      'OTEL_EXPORTER_OTLP_PROTOCOL="y" is not one of grpc, http/protobuf, http/json; using http/protobuf',
    ]);
  });

  it('OTEL_SDK_DISABLED: only "true" (any case) disables; other values than true and false are false, with a warning', () => {
    assert.strictEqual(resolve({ OTEL_SDK_DISABLED: 'TRUE' }).config.disabled, true);
    assert.deepStrictEqual(resolve({ OTEL_SDK_DISABLED: 'False' }), { ...resolve({}), warnings: [] });
    const { config, warnings } = resolve({ OTEL_SDK_DISABLED: '1' });
    assert.strictEqual(config.disabled, false);
    assert.deepStrictEqual(warnings, ['OTEL_SDK_DISABLED="1" is not true or false; using false']);
  });

  it('integers are decimal digits: hexadecimal, exponents and fractions are refused', () => {
    for (const v of ['0x10', '1e4', '10.0', '-5', '12ms']) {
      const { config, warnings } = resolve({ OTEL_NODE_EBPF_MAX_SERIES: v });
      assert.strictEqual(config.maxSeries, DEFAULTS.maxSeries, v);
      assert.deepStrictEqual(warnings, [`OTEL_NODE_EBPF_MAX_SERIES="${v}" is not an integer in [1, 1048576]; using ${DEFAULTS.maxSeries}`]);
    }
    assert.strictEqual(resolve({ OTEL_NODE_EBPF_MAX_SERIES: ' +512 ' }).config.maxSeries, 512);
  });

  it('an export timeout that does not parse: one warning, not a second one about the interval', () => {
    const { config, warnings } = resolve({ OTEL_METRIC_EXPORT_TIMEOUT: 'soon', OTEL_METRIC_EXPORT_INTERVAL: '5000' });
    assert.strictEqual(config.exportTimeoutMillis, 5000);
    assert.deepStrictEqual(warnings, [`OTEL_METRIC_EXPORT_TIMEOUT="soon" is not an integer >= 1; using ${DEFAULTS.exportTimeoutMillis}`]);
    // one that parses and is longer than the interval still says so
    assert.deepStrictEqual(resolve({ OTEL_METRIC_EXPORT_TIMEOUT: '9000', OTEL_METRIC_EXPORT_INTERVAL: '5000' }).warnings, [
      'OTEL_METRIC_EXPORT_TIMEOUT (9000) exceeds OTEL_METRIC_EXPORT_INTERVAL (5000); using 5000',
    ]);
  });

  it('a malformed OTEL_RESOURCE_ATTRIBUTES is said (OpenTelemetry drops all of it, at debug level only)', () => {
    const { resourceAttributesError } = require('../dist/config');
    for (const ok of ['a=b', ' a = b , c=d ', 'k=v%2Cw%3Dx', 'a=', ',a=b,']) assert.strictEqual(resourceAttributesError(ok), undefined, ok);
    const bad = { 'a=b,c': '"c", not key=value', 'a=b=c': '"a=b=c", not key=value', '=b': 'whose key is empty', 'a=%E0%A4%A': 'not percent-encoded', [`a=${'x'.repeat(256)}`]: 'longer than 255' };
    for (const [value, why] of Object.entries(bad)) {
      const { warnings } = resolve({ OTEL_RESOURCE_ATTRIBUTES: value });
      assert.strictEqual(warnings.length, 1, value);
      assert.ok(warnings[0].startsWith(`OTEL_RESOURCE_ATTRIBUTES="${value}" has `) && warnings[0].includes(why), warnings[0]);
      assert.ok(warnings[0].endsWith('; none of its attributes are used'), warnings[0]);
    }
    // OpenTelemetry's detector agrees: what is said to be dropped is dropped, what passes is kept
    const { envDetector } = require('@opentelemetry/resources');
    const saved = process.env.OTEL_RESOURCE_ATTRIBUTES;
    try {
      for (const value of [...Object.keys(bad), 'a=b', 'k=v%2Cw%3Dx']) {
        process.env.OTEL_RESOURCE_ATTRIBUTES = value;
        const detected = Object.keys(envDetector.detect().attributes ?? {}).some(k => k !== 'service.name');
        assert.strictEqual(detected, resourceAttributesError(value) === undefined, value);
      }
    } finally {
      if (saved === undefined) delete process.env.OTEL_RESOURCE_ATTRIBUTES;
      else process.env.OTEL_RESOURCE_ATTRIBUTES = saved;
    }
  });
});
