'use strict';
// The socket probes end to end: a workload process with the SDK preloaded does known TCP work; its exporter sends
// to a real OTLP receiver in this process; the decoded values must be exactly what crossed the sockets.
const assert = require('assert');
const path = require('path');
const { startReceiver, startFront, runWorkload, runCluster, clusterClient, startPeer, sendTo, closedPort, pointsOf, total, describe: show } = require('./support/harness');
const { selfSignedCert } = require('./support/uprobes');

const SENT = 1_234_567;
const RECEIVED = 7_654_321;
const ACCEPTED = 3_333_333;

/** Opt-in measurements (tls.bytes) are off unless OTEL_NODE_EBPF_ENABLED_PROBES names them. */
const notOptIn = p => !p.reason?.startsWith('disabled: opt-in');

/** Collected in this process (createMetricProducer): the data points of metric `name` whose attributes include `want`. */
const dataPointsOf = (metrics, name, want = {}) =>
  (metrics.find(m => m.descriptor.name === name)?.dataPoints ?? []).filter(p => Object.entries(want).every(([k, v]) => p.attributes[k] === v));

describe('socket probes', function () {
  let receiver, address;
  before(async () => ({ receiver, address } = await startReceiver()));
  after(() => receiver.stop());

  /** The points one workload process exported (the receiver hears several). */
  const pointsOfPid = pid => receiver.points().filter(p => p.resource['process.pid'] === pid);

  async function exactBytes(host, { protocol, env } = {}) {
    const peer = await startPeer(host, RECEIVED);
    let accepted;
    const run = runWorkload(
      [{ listen: host }, { connect: [host, peer.port], send: SENT, recv: RECEIVED }, { accept: ACCEPTED }, { sleep: 100 }],
      { address, protocol, env, onLine: o => o.listening && (accepted = sendTo(host, o.listening, ACCEPTED)) },
    );
    // Another process talks to the same peer at the same time; none of it may be counted.
    const other = runWorkload([{ connect: [host, peer.port], send: 999_999, recv: RECEIVED }], { address, preload: false });
    const [r, o] = await Promise.all([run, other]);
    await accepted;
    await peer.close();
    assert.strictEqual(r.code, 0, `workload failed: ${r.stderr}\n${JSON.stringify(r.lines)}`);
    assert.strictEqual(o.code, 0, o.stderr);
    assert.deepStrictEqual(peer.received.sort(), [999_999, SENT].sort());
    const listening = r.lines.find(l => l.listening).listening;
    const points = pointsOfPid(r.child.pid);
    assert.ok(points.length > 0, 'the workload exported nothing');
    return { points, peerPort: peer.port, listening, result: r };
  }

  for (const [type, host] of [
    ['ipv4', '127.0.0.1'],
    ['ipv6', '::1'],
  ]) {
    it(`counts exactly the bytes of the process's own ${type} connections, opened and accepted`, async () => {
      const { points, peerPort, listening } = await exactBytes(host);
      const client = { 'tcp.connection.side': 'client', 'server.address': host, 'server.port': peerPort, 'network.type': type, 'network.transport': 'tcp' };
      const server = { 'tcp.connection.side': 'server', 'server.address': undefined, 'server.port': listening, 'network.type': type };
      const io = 'process.network.io';
      assert.strictEqual(total(points, io, { ...client, 'network.io.direction': 'transmit' }), SENT, show(points, io));
      assert.strictEqual(total(points, io, { ...client, 'network.io.direction': 'receive' }), RECEIVED, show(points, io));
      assert.strictEqual(total(points, io, { ...server, 'network.io.direction': 'receive' }), ACCEPTED, show(points, io));
      assert.strictEqual(total(points, io, { ...server, 'network.io.direction': 'transmit' }), undefined);
      for (const side of [client, server]) {
        assert.strictEqual(total(points, 'tcp.connection.opened', side), 1);
        assert.strictEqual(total(points, 'tcp.connect.duration', side), 1);
        assert.strictEqual(total(points, 'tcp.connection.duration', side), 1);
      }
      const io0 = pointsOf(points, io)[0];
      assert.strictEqual(io0.type, 'sum');
      assert.strictEqual(io0.monotonic, true);
      assert.strictEqual(io0.unit, 'By');
      assert.strictEqual(io0.resource['service.name'], 'workload');
      assert.strictEqual(io0.scope, 'otel-node-ebpf');
    });
  }

  it('counts a refused connect with its error.type', async () => {
    const port = await closedPort('127.0.0.1');
    const r = await runWorkload([{ refused: ['127.0.0.1', port] }, { refused: ['127.0.0.1', port] }], { address });
    assert.strictEqual(r.code, 0, r.stderr);
    const points = pointsOfPid(r.child.pid);
    const peer = { 'server.address': '127.0.0.1', 'server.port': port, 'tcp.connection.side': 'client' };
    assert.strictEqual(total(points, 'tcp.connection.failed', { ...peer, 'error.type': 'ECONNREFUSED' }), 2, show(points, 'tcp.connection.failed'));
    assert.strictEqual(total(points, 'tcp.connection.opened', peer), undefined);
    // the refusal is an RST received in SYN_SENT
    assert.strictEqual(total(points, 'tcp.resets', { ...peer, 'tcp.reset.direction': 'received' }), 2, show(points, 'tcp.resets'));
  });

  /** The exact client bytes of exactBytes() arrived over `protocol`, and the exporter says it sent from `thread`. */
  function assertExactExport({ points, peerPort, result }, protocol, thread) {
    assert.ok(points.every(p => p.protocol === protocol));
    const client = { 'server.port': peerPort, 'tcp.connection.side': 'client' };
    assert.strictEqual(total(points, 'process.network.io', { ...client, 'network.io.direction': 'transmit' }), SENT);
    assert.strictEqual(total(points, 'process.network.io', { ...client, 'network.io.direction': 'receive' }), RECEIVED);
    const status = result.lines.find(l => l.done).status;
    assert.deepStrictEqual([status.exporter.protocol, status.exporter.thread], [protocol, thread]);
  }

  for (const [thread, how] of [
    ['main', "from the application's thread (OTEL_NODE_EBPF_EXPORT_THREAD=main)"],
    ['worker', 'from a worker thread (OTEL_NODE_EBPF_EXPORT_THREAD=worker), the last export at exit included'],
  ]) {
    for (const protocol of ['grpc', 'http/protobuf', 'http/json']) {
      it(`exports exact values over OTLP ${protocol} ${how}`, async () => {
        assertExactExport(await exactBytes('127.0.0.1', { protocol, env: { OTEL_NODE_EBPF_EXPORT_THREAD: thread } }), protocol, thread);
      });
    }
  }

  for (const protocol of ['http/protobuf', 'http/json', 'grpc']) {
    // gRPC (and https) stay with OpenTelemetry's exporter on the application's thread
    const thread = protocol === 'grpc' ? 'main' : 'native';
    it(`exports exact values over OTLP ${protocol} by default (OTEL_NODE_EBPF_EXPORT_THREAD=native: sent from the ${thread} thread), gzip, headers and the last export at exit included`, async () => {
      const env = { OTEL_EXPORTER_OTLP_COMPRESSION: 'gzip', OTEL_EXPORTER_OTLP_HEADERS: 'x-tenant=t1,authorization=Api-Token%20abc' };
      const exported = await exactBytes('127.0.0.1', { protocol, env });
      assert.ok(exported.points.length > 0);
      assertExactExport(exported, protocol, thread);
      for (const { headers } of exported.points) {
        assert.strictEqual(headers['x-tenant'], 't1');
        assert.strictEqual(headers.authorization, 'Api-Token abc');
        if (protocol !== 'grpc') assert.strictEqual(headers['content-encoding'], 'gzip');
      }
    });
  }

  // OTLP's ExportMetricsServiceResponse with a partial_success (field 1): rejected_data_points (1), error_message (2)
  const partialSuccess = (rejected, message) => {
    const inner = Buffer.concat([Buffer.from([0x08, rejected, 0x12, message.length]), Buffer.from(message)]);
    return Buffer.concat([Buffer.from([0x0a, inner.length]), inner]);
  };

  for (const thread of ['native', 'main']) {
    it(`a partial success (the endpoint took the request, rejected some points) is reported as OpenTelemetry's HTTP exporter reports it (${thread} thread)`, async () => {
      const message = 'cumulative temporality is not supported';
      const answer = { status: 200, headers: { 'content-type': 'application/x-protobuf' }, body: partialSuccess(7, message) };
      const front = await startFront(address, () => answer);
      try {
        const env = { OTEL_EXPORTER_OTLP_ENDPOINT: front.endpoint, OTEL_METRIC_EXPORT_INTERVAL: '200', OTEL_NODE_EBPF_EXPORT_THREAD: thread };
        const r = await runWorkload([{ sleep: 700 }], { address, env });
        assert.strictEqual(r.code, 0, r.stderr);
        assert.ok(front.bodies.length >= 2, 'periodic exports reached the endpoint');
        const reported = r.stderr.split('\n').filter(l => l.includes('Partial Success'));
        assert.ok(reported.length >= 1, r.stderr);
        for (const line of reported) assert.ok(line.includes(`"rejectedDataPoints":7`) && line.includes(message), line);
        assert.ok(!/failed/.test(r.stderr), `the exports succeeded: ${r.stderr}`);
      } finally {
        front.close();
      }
    });
  }

  it('straight to a Dynatrace-style OTLP API, as README.md configures it: https, a base path, an Api-Token header, delta', async () => {
    const fs = require('fs');
    const dir = fs.mkdtempSync(path.join(require('os').tmpdir(), 'oneb-dynatrace-'));
    const { key, cert } = selfSignedCert(dir);
    const front = await startFront(address, () => undefined, '127.0.0.1', { tls: { key: fs.readFileSync(key), cert: fs.readFileSync(cert) }, basePath: '/api/v2/otlp' });
    try {
      const env = {
        OTEL_EXPORTER_OTLP_ENDPOINT: `${front.endpoint}/api/v2/otlp`,
        OTEL_EXPORTER_OTLP_HEADERS: 'Authorization=Api-Token%20dt0c01.SAMPLE.TOKEN',
        OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE: 'delta',
        OTEL_EXPORTER_OTLP_CERTIFICATE: cert,
      };
      const { points, peerPort } = await exactBytes('127.0.0.1', { env });
      assert.ok(front.requests.length > 0, 'nothing reached the endpoint');
      for (const { url, headers } of front.requests) {
        assert.strictEqual(url, '/api/v2/otlp/v1/metrics');
        assert.strictEqual(headers.authorization, 'Api-Token dt0c01.SAMPLE.TOKEN');
        assert.strictEqual(headers['content-type'], 'application/x-protobuf');
      }
      // the backend takes counters and histograms as deltas only
      const counted = points.filter(p => (p.type === 'sum' && p.monotonic) || p.type === 'histogram');
      assert.ok(counted.length > 0);
      assert.deepStrictEqual(counted.filter(p => p.temporality !== 'delta').map(p => p.name), []);
      const client = { 'server.port': peerPort, 'tcp.connection.side': 'client' };
      assert.strictEqual(total(points, 'process.network.io', { ...client, 'network.io.direction': 'transmit' }), SENT);
      assert.strictEqual(total(points, 'process.network.io', { ...client, 'network.io.direction': 'receive' }), RECEIVED);
    } finally {
      front.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('the addon\'s exporter retries what the endpoint answers with 503 and Retry-After, as OpenTelemetry\'s HTTP exporter does', async () => {
    // In front of the receiver: the first request gets 503 (Retry-After: 1), the others go through.
    const front = await startFront(address, n => (n === 1 ? { status: 503, headers: { 'retry-after': '1' } } : undefined));
    try {
      const { points, peerPort, result } = await exactBytes('127.0.0.1', { env: { OTEL_EXPORTER_OTLP_ENDPOINT: front.endpoint } });
      assert.strictEqual(result.lines.find(l => l.done).status.exporter.thread, 'native');
      assert.strictEqual(front.bodies.length, 2, 'one refused request, one retry');
      assert.ok(front.bodies[0].equals(front.bodies[1]), 'the retry sends the same bytes');
      const client = { 'server.port': peerPort, 'tcp.connection.side': 'client' };
      assert.strictEqual(total(points, 'process.network.io', { ...client, 'network.io.direction': 'transmit' }), SENT);
    } finally {
      front.close();
    }
  });

  it('the addon\'s exporter sends to an IPv6 endpoint (http://[::1]:port)', async () => {
    const front = await startFront(address, () => undefined, '::1');
    try {
      const { points, peerPort, result } = await exactBytes('127.0.0.1', { env: { OTEL_EXPORTER_OTLP_ENDPOINT: front.endpoint } });
      assert.deepStrictEqual(result.lines.find(l => l.done).status.exporter, { protocol: 'http/protobuf', endpoint: `${front.endpoint}/v1/metrics`, thread: 'native' });
      assert.ok(front.bodies.length > 0);
      const client = { 'server.port': peerPort, 'tcp.connection.side': 'client' };
      assert.strictEqual(total(points, 'process.network.io', { ...client, 'network.io.direction': 'receive' }), RECEIVED);
    } finally {
      front.close();
    }
  });

  it('the addon\'s exporter sends to an endpoint by host name (http://localhost:port, resolved on a thread of its own)', async () => {
    const front = await startFront(address, () => undefined);
    try {
      const endpoint = front.endpoint.replace('127.0.0.1', 'localhost');
      assert.notStrictEqual(endpoint, front.endpoint);
      const { points, peerPort, result } = await exactBytes('127.0.0.1', { env: { OTEL_EXPORTER_OTLP_ENDPOINT: endpoint } });
      assert.strictEqual(result.lines.find(l => l.done).status.exporter.thread, 'native');
      assert.ok(front.bodies.length > 0);
      const client = { 'server.port': peerPort, 'tcp.connection.side': 'client' };
      assert.strictEqual(total(points, 'process.network.io', { ...client, 'network.io.direction': 'transmit' }), SENT);
    } finally {
      front.close();
    }
  });

  it('an https:// endpoint: OTEL_NODE_EBPF_EXPORT_THREAD=native sends from the application\'s thread (TLS is OpenTelemetry\'s)', async () => {
    const r = await runWorkload([], { address, env: { OTEL_EXPORTER_OTLP_METRICS_ENDPOINT: 'https://127.0.0.1:9/v1/metrics', OTEL_EXPORTER_OTLP_TIMEOUT: '500', OTEL_METRIC_EXPORT_TIMEOUT: '500' } });
    assert.strictEqual(r.code, 0, r.stderr);
    const { exporter } = r.lines.find(l => l.done).status;
    assert.deepStrictEqual(exporter, { protocol: 'http/protobuf', endpoint: 'https://127.0.0.1:9/v1/metrics', thread: 'main' });
  });

  it('delta points add up to the cumulative values, histograms included', async () => {
    const host = '127.0.0.1';
    const peer = await startPeer(host, 1000);
    const steps = [];
    for (let i = 1; i <= 5; i++) steps.push({ connect: [host, peer.port], send: i * 100_003, recv: 1000 }, { sleep: 150 });
    const env = { OTEL_METRIC_EXPORT_INTERVAL: '100', OTEL_METRIC_EXPORT_TIMEOUT: '100' };
    const [delta, cumulative] = await Promise.all([
      runWorkload(steps, { address, env: { ...env, OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE: 'delta' } }),
      runWorkload(steps, { address, env }),
    ]);
    await peer.close();
    assert.strictEqual(delta.code, 0, delta.stderr);
    assert.strictEqual(cumulative.code, 0, cumulative.stderr);
    const d = pointsOfPid(delta.child.pid);
    const c = pointsOfPid(cumulative.child.pid);
    const series = { 'server.port': peer.port, 'tcp.connection.side': 'client' };
    const tx = { ...series, 'network.io.direction': 'transmit' };
    assert.ok(pointsOf(d, 'process.network.io', tx).length >= 2, 'expected several delta exports');
    assert.ok(pointsOf(d, 'process.network.io', tx).every(p => p.temporality === 'delta'));
    assert.ok(pointsOf(c, 'process.network.io', tx).every(p => p.temporality === 'cumulative'));
    const expected = 15 * 100_003;
    assert.strictEqual(total(d, 'process.network.io', tx), expected);
    assert.strictEqual(total(c, 'process.network.io', tx), expected);
    assert.strictEqual(total(d, 'tcp.connection.opened', series), 5);
    assert.strictEqual(total(c, 'tcp.connection.opened', series), 5);
    // histogram deltas: counts and buckets add up to five connects
    const hd = pointsOf(d, 'tcp.connect.duration', series);
    assert.strictEqual(hd.reduce((a, p) => a + p.count, 0), 5);
    const buckets = hd.reduce((a, p) => a.map((x, i) => x + p.bucketCounts[i]), new Array(hd[0].bucketCounts.length).fill(0));
    assert.strictEqual(buckets.reduce((a, b) => a + b, 0), 5);
    // consecutive delta points of one series do not overlap
    const starts = pointsOf(d, 'process.network.io', tx).sort((a, b) => (a.startTimeUnixNano < b.startTimeUnixNano ? -1 : 1));
    for (let i = 1; i < starts.length; i++) assert.ok(starts[i].startTimeUnixNano >= starts[i - 1].timeUnixNano);
  });

  it('a live connection adds one tcp.rtt sample per collection in which it carried data, in delta as in cumulative', async () => {
    const net = require('net');
    const { createMetricProducer } = require('../dist');
    const CHUNK = 10_000;
    let received = 0;
    let arrived = () => undefined;
    const server = net.createServer(s => s.on('data', d => ((received += d.length), arrived())));
    await new Promise(resolve => server.listen(0, '127.0.0.1', resolve));
    const client = net.connect(server.address().port, '127.0.0.1');
    await new Promise(resolve => client.on('connect', resolve));
    const handles = { delta: createMetricProducer({ strict: true, temporality: 'delta' }), cumulative: createMetricProducer({ strict: true, temporality: 'cumulative' }) };
    const seen = { delta: { rtt: [], tx: [] }, cumulative: { rtt: [], tx: [] } };
    const series = { 'server.port': server.address().port, 'tcp.connection.side': 'client' };
    const ofSeries = (metrics, name) => dataPointsOf(metrics, name, series);
    try {
      for (let i = 1; i <= 3; i++) {
        const all = new Promise(resolve => (arrived = () => received === i * CHUNK && resolve()));
        client.write(Buffer.alloc(CHUNK, 1));
        await all;
        for (const [name, handle] of Object.entries(handles)) {
          const { resourceMetrics, errors } = await handle.producer.collect();
          assert.deepStrictEqual(errors, []);
          const metrics = resourceMetrics.scopeMetrics[0].metrics;
          // a delta of nothing is left out of the export: 0 here
          seen[name].rtt.push(ofSeries(metrics, 'tcp.rtt').reduce((n, p) => n + p.value.count, 0));
          seen[name].tx.push(ofSeries(metrics, 'process.network.io').filter(p => p.attributes['network.io.direction'] === 'transmit').reduce((n, p) => n + p.value, 0));
        }
      }
    } finally {
      client.destroy();
      server.close();
      for (const handle of Object.values(handles)) handle.shutdown();
    }
    assert.deepStrictEqual(seen.delta, { rtt: [1, 1, 1], tx: [CHUNK, CHUNK, CHUNK] });
    assert.deepStrictEqual(seen.cumulative, { rtt: [1, 2, 3], tx: [CHUNK, 2 * CHUNK, 3 * CHUNK] });
  });

  it('listeners come and go (300 on ephemeral ports, then two on one port through two addresses, one closed): what the last one accepts is the server side\'s, exactly', async () => {
    const net = require('net');
    const { createMetricProducer } = require('../dist');
    const listen = (port, host) => new Promise((resolve, reject) => { const s = net.createServer(c => c.resume().on('end', () => c.end())); s.once('error', reject).listen(port, host, () => resolve(s)); });
    const close = server => new Promise(resolve => server.close(resolve));
    const handle = createMetricProducer({ strict: true });
    try {
      // the kernel side's maps of listeners hold 256: a closed listener must leave them, its port given back or not
      for (let i = 0; i < 300; i++) await close(await listen(0, '127.0.0.1'));
      const probe = await listen(0, '127.0.0.1');
      const port = probe.address().port;
      await close(probe);
      const a = await listen(port, '127.0.0.1');
      const b = await listen(port, '::1');
      await close(a);
      const client = net.connect(port, '::1');
      await new Promise(resolve => client.on('connect', resolve));
      client.resume().end(Buffer.alloc(4321, 1));
      await new Promise(resolve => client.on('close', resolve));
      await close(b);
      await new Promise(resolve => setTimeout(resolve, 200)); // the close event, through the ring buffer
      const { resourceMetrics } = await handle.producer.collect();
      const metrics = resourceMetrics.scopeMetrics[0].metrics;
      const sum = (name, want) => dataPointsOf(metrics, name, want).reduce((n, p) => n + p.value, 0);
      const server = { 'tcp.connection.side': 'server', 'server.port': port };
      assert.strictEqual(sum('process.network.io', { ...server, 'network.io.direction': 'receive' }), 4321);
      assert.strictEqual(sum('tcp.connection.opened', server), 1);
      // and not as a connection the process opened to the client's port
      assert.strictEqual(sum('process.network.io', { 'tcp.connection.side': 'client', 'server.port': client.localPort }), 0);
      assert.strictEqual(sum('otel_node_ebpf.dropped', {}), 0);
    } finally {
      handle.shutdown();
    }
  });

  it('exports histograms as explicit power-of-two buckets, or base-2 exponential at scale 0 on request', async () => {
    const { points } = await exactBytes('127.0.0.1', {
      env: { OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION: 'base2_exponential_bucket_histogram' },
    });
    const [exp] = pointsOf(points, 'tcp.connect.duration', { 'tcp.connection.side': 'client' });
    assert.strictEqual(exp.type, 'exponentialHistogram');
    assert.strictEqual(exp.scale, 0);
    assert.strictEqual(exp.count, 1);
    // the one sample's bucket (2^offset, 2^(offset+1)] holds its sum, which is the sample itself
    assert.deepStrictEqual(exp.positive.bucketCounts, [1]);
    assert.ok(exp.sum > 2 ** exp.positive.offset && exp.sum <= 2 ** (exp.positive.offset + 1), `sum ${exp.sum} offset ${exp.positive.offset}`);

    const { points: explicitPoints } = await exactBytes('127.0.0.1');
    const [h] = pointsOf(explicitPoints, 'tcp.connect.duration', { 'tcp.connection.side': 'client' });
    assert.strictEqual(h.type, 'histogram');
    assert.strictEqual(h.unit, 's');
    assert.strictEqual(h.explicitBounds.length, 47);
    assert.strictEqual(h.explicitBounds[0], 2 ** -20);
    h.explicitBounds.forEach((b, i) => i > 0 && assert.strictEqual(b, 2 * h.explicitBounds[i - 1]));
    const i = h.bucketCounts.findIndex(c => c === 1);
    assert.ok(h.sum > (h.explicitBounds[i - 1] ?? 0) && h.sum <= h.explicitBounds[i], `sum ${h.sum} bucket ${i} counts ${h.bucketCounts}`);
  });

  it('reports each probe, its hook and its kernel time as self-telemetry', async () => {
    // a workload this short may fall between two sampled windows: statistics on all the time, measured exactly
    const { points, result } = await exactBytes('127.0.0.1', { env: { OTEL_NODE_EBPF_KERNEL_STATS: 'always' } });
    const status = result.lines.find(l => l.done).status;
    assert.strictEqual(status.active, true);
    assert.strictEqual(status.kernelTime, 'on (BPF_ENABLE_STATS)');
    assert.strictEqual(status.kernelTimeSampling, undefined);
    for (const p of status.probes.filter(notOptIn)) {
      assert.strictEqual(p.attached, true, `${p.name}: ${p.reason}`);
      assert.strictEqual(total(points, 'otel_node_ebpf.probe.attached', { 'otel_node_ebpf.probe': p.name, 'otel_node_ebpf.hook': p.hook }), 1);
    }
    const runs = total(points, 'otel_node_ebpf.probe.runs', { 'otel_node_ebpf.probe': 'tcp.state' });
    const time = total(points, 'otel_node_ebpf.probe.kernel.time', { 'otel_node_ebpf.probe': 'tcp.state' });
    assert.ok(runs > 0 && time > 0, `runs ${runs}, time ${time}, kernelTime ${status.kernelTime}`);
    // measured, not estimated: no sampling attribute
    for (const m of ['otel_node_ebpf.probe.runs', 'otel_node_ebpf.probe.kernel.time']) {
      assert.ok(pointsOf(points, m).every(p => !('otel_node_ebpf.kernel_stats.sampled' in p.attributes)), m);
    }
    // bytes and RTT come from the kernel's counters, read from user space: no program, no kernel time
    assert.deepStrictEqual(
      status.probes.filter(p => p.hook === 'tcp_info').map(p => p.name),
      ['tcp.bytes', 'tcp.rtt'],
    );
    assert.strictEqual(total(points, 'otel_node_ebpf.probe.runs', { 'otel_node_ebpf.probe': 'tcp.bytes' }), undefined);
  });

  it('counts in the kernel by the pid of the process inside its own pid namespace', async () => {
    const { points, peerPort } = await exactBytes('127.0.0.1', {});
    assert.strictEqual(total(points, 'process.network.io', { 'server.port': peerPort, 'network.io.direction': 'transmit' }), SENT);
    const peer = await startPeer('127.0.0.1', RECEIVED);
    const r = await runWorkload([{ connect: ['127.0.0.1', peer.port], send: SENT, recv: RECEIVED }], {
      address,
      wrap: ['unshare', '--pid', '--fork', '--mount-proc'],
    });
    await peer.close();
    assert.strictEqual(r.code, 0, r.stderr);
    const status = r.lines.find(l => l.done).status;
    assert.ok(status.probes.filter(notOptIn).every(p => p.attached));
    // inside the namespace the process is pid 1 (unshare --fork makes it the namespace's init)
    const ns = receiver.points().filter(p => p.resource['process.pid'] === 1 && p.attributes['server.port'] === peer.port);
    assert.strictEqual(total(ns, 'process.network.io', { 'network.io.direction': 'transmit' }), SENT, show(ns, 'process.network.io'));
    assert.strictEqual(total(ns, 'process.network.io', { 'network.io.direction': 'receive' }), RECEIVED);
  });

  for (const policy of ['rr', 'none']) {
    it(`a node:cluster server (scheduling ${policy}): each accepted connection counts once, on the server side, its bytes in the worker that holds it`, async () => {
      const c = await runCluster(receiver, address, { policy, connections: 10 });
      assert.strictEqual(c.code, 0, c.stderr);
      // a worker never takes a connection it was handed for one it opened: no client series but the exporter's own
      assert.deepStrictEqual(c.clientPorts, [], c.show);
      assert.strictEqual(c.receive, 10 * 1000, c.show);
      assert.strictEqual(c.transmit, 10 * 500, c.show);
      assert.strictEqual(c.opened, 10, c.show);
      // and each one lifetime (recorded where the handshake was seen: the worker does not know when it began)
      assert.strictEqual(c.durations, 10, c.show);
      // the bytes are the workers': the primary holds no connection of the port once it handed it over
      assert.strictEqual(c.primaryBytes, 0, c.show);
    });
  }

  for (const policy of ['rr', 'none']) {
    it(`a node:cluster server (scheduling ${policy}) on 127.0.0.1, another process on its port at 127.0.0.2: each connection counts once, its lifetime too`, async () => {
      const c = await runCluster(receiver, address, { policy, connections: 6, host: '127.0.0.1', otherListener: '127.0.0.2' });
      assert.strictEqual(c.code, 0, c.stderr);
      assert.deepStrictEqual(c.clientPorts, [], c.show);
      assert.deepStrictEqual([c.receive, c.transmit, c.opened, c.durations, c.primaryBytes], [6 * 1000, 6 * 500, 6, 6, 0], c.show);
    });
  }

  for (const [end, how] of [
    ['reset', 'the worker resets it (TCP_CLOSE in its close())'],
    ['peer-reset', 'the client resets it (TCP_CLOSE in softirq, the socket freed in the worker)'],
  ]) {
    it(`a node:cluster server (scheduling rr), connections ended by a reset, ${how}: their bytes count once, in the worker`, async () => {
      const c = await runCluster(receiver, address, { policy: 'rr', end, connections: 6 });
      assert.strictEqual(c.code, 0, c.stderr);
      assert.deepStrictEqual(c.clientPorts, [], c.show);
      assert.strictEqual(c.receive, 6 * 1000, c.show);
      assert.strictEqual(c.transmit, end === 'reset' ? 0 : 6 * 500, c.show);
      assert.strictEqual(c.opened, 6, c.show);
      assert.strictEqual(c.durations, 6, c.show);
      assert.strictEqual(c.primaryBytes, 0, c.show);
    });
  }

  for (const end of ['fin', 'peer-reset']) {
    it(`SO_REUSEPORT listeners in two processes (reusePort, node 24), connections ended by ${end === 'fin' ? 'the server' : 'a reset of the client'}: each counts once, in the process that accepted it`, async function () {
      const { nodeBinary } = require('./support/uprobes');
      const { binary } = nodeBinary(24);
      const port = await closedPort('127.0.0.1');
      const servers = [];
      let bothListen;
      const listening = new Promise(resolve => (bothListen = resolve));
      const runs = [0, 1].map(() => runWorkload([port], {
        address,
        node: binary,
        script: path.join(__dirname, 'support', 'reuseport-app.js'),
        env: { REUSEPORT_END: end },
        onLine: (o, child) => o.listening && servers.push(child) === 2 && bothListen(),
      }));
      await Promise.race([listening, Promise.all(runs)]);
      assert.strictEqual(servers.length, 2, 'both servers should listen');
      for (let i = 0; i < 20; i++) await clusterClient(port, end);
      for (const child of servers) child.stdin.write('stop\n');
      const results = await Promise.all(runs);
      const server = { 'tcp.connection.side': 'server', 'server.port': port };
      const per = results.map(r => {
        assert.strictEqual(r.code, 0, r.stderr);
        const points = pointsOfPid(r.child.pid);
        const of = (name, want = {}) => total(points, name, { ...server, ...want }) ?? 0;
        return {
          receive: of('process.network.io', { 'network.io.direction': 'receive' }),
          transmit: of('process.network.io', { 'network.io.direction': 'transmit' }),
          opened: of('tcp.connection.opened'),
          handshakes: of('tcp.connect.duration'),
          durations: of('tcp.connection.duration'),
          resetsReceived: of('tcp.resets', { 'tcp.reset.direction': 'received' }),
        };
      });
      const shown = JSON.stringify(per);
      assert.strictEqual(per[0].receive + per[1].receive, 20 * 1000, shown);
      assert.strictEqual(per[0].transmit + per[1].transmit, 20 * 500, shown);
      // each process counts the openings, handshakes, lifetimes (and the peer's resets) of the connections it
      // accepted, and of no other
      for (const p of per) {
        const accepted = p.receive / 1000;
        assert.deepStrictEqual([p.opened, p.handshakes, p.durations, p.resetsReceived], [accepted, accepted, accepted, end === 'fin' ? 0 : accepted], shown);
      }
    });
  }

  it('a full series map is counted, never silent: the rest goes to one overflow series, and nothing is lost', async () => {
    const peers = await Promise.all([1, 2, 3].map(() => startPeer('127.0.0.1', 10)));
    const steps = peers.map((p, i) => ({ connect: ['127.0.0.1', p.port], send: (i + 1) * 1000, recv: 10 }));
    // one series: the first connection (the exporter's own connection comes later, at exit)
    const r = await runWorkload(steps, { address, env: { OTEL_NODE_EBPF_MAX_SERIES: '1' } });
    await Promise.all(peers.map(p => p.close()));
    assert.strictEqual(r.code, 0, r.stderr);
    const points = pointsOfPid(r.child.pid);
    const tx = { 'network.io.direction': 'transmit' };
    assert.strictEqual(total(points, 'process.network.io', { ...tx, 'server.port': peers[0].port }), 1000, show(points, 'process.network.io'));
    assert.strictEqual(total(points, 'process.network.io', { ...tx, 'server.port': peers[1].port }), undefined);
    // 2000 + 3000 + whatever the exporter sent before the final collection
    assert.ok(total(points, 'process.network.io', { ...tx, 'otel.metric.overflow': true }) >= 5000, show(points, 'process.network.io'));
    assert.ok(total(points, 'otel_node_ebpf.dropped', { 'otel_node_ebpf.drop.reason': 'series_map_full' }) > 0);
  });

  it('an IPv4 client of a dual-stack listener (listen(port) on ::): every server-side point says ipv4, the live bytes as the closed connection\'s', async () => {
    const net = require('net');
    const { createMetricProducer } = require('../dist');
    const handle = createMetricProducer({ strict: true });
    const server = net.createServer(s => s.resume().on('end', () => s.end()));
    await new Promise(resolve => server.listen(0, resolve));
    const port = server.address().port;
    const collect = async () => (await handle.producer.collect()).resourceMetrics.scopeMetrics[0].metrics;
    const serverSide = metrics =>
      metrics.flatMap(m => m.dataPoints.filter(p => p.attributes['tcp.connection.side'] === 'server' && p.attributes['server.port'] === port).map(p => [m.descriptor.name, p.attributes['network.type']]));
    try {
      const client = net.connect(port, '127.0.0.1');
      await new Promise(resolve => client.on('connect', resolve));
      client.write(Buffer.alloc(1000));
      await new Promise(resolve => setTimeout(resolve, 100));
      const live = serverSide(await collect()); // a reading while it lives
      client.end(Buffer.alloc(500));
      client.resume();
      await new Promise(resolve => client.on('close', resolve));
      await new Promise(resolve => setTimeout(resolve, 200));
      const metrics = await collect();
      const closed = serverSide(metrics);
      assert.ok(live.length > 0 && closed.length >= 4, JSON.stringify({ live, closed }));
      assert.deepStrictEqual([...new Set([...live, ...closed].map(([, type]) => type))], ['ipv4'], JSON.stringify(closed));
      const received = dataPointsOf(metrics, 'process.network.io', { 'server.port': port, 'network.io.direction': 'receive' });
      assert.deepStrictEqual(received.map(p => p.value), [1500]);
    } finally {
      server.close();
      handle.shutdown();
    }
  });

  it('a connection ended with resetAndDestroy() (SO_LINGER 0: the kernel zeroes its counters before the destroy) counts what was written, and nothing more', async () => {
    const net = require('net');
    const { createMetricProducer } = require('../dist');
    const handle = createMetricProducer({ strict: true });
    const server = net.createServer(s => s.resume().on('error', () => {}));
    await new Promise(resolve => server.listen(0, '127.0.0.1', resolve));
    const port = server.address().port;
    const written = async () => {
      const { resourceMetrics } = await handle.producer.collect();
      const client = { 'server.port': port, 'tcp.connection.side': 'client', 'network.io.direction': 'transmit' };
      return dataPointsOf(resourceMetrics.scopeMetrics[0].metrics, 'process.network.io', client).reduce((n, p) => n + p.value, 0);
    };
    const settle = () => new Promise(resolve => setTimeout(resolve, 200));
    try {
      const client = net.connect(port, '127.0.0.1');
      await new Promise(resolve => client.on('connect', resolve));
      client.write(Buffer.alloc(1000));
      await settle();
      assert.strictEqual(await written(), 1000);
      client.write(Buffer.alloc(500));
      await settle();
      client.resetAndDestroy();
      await settle();
      assert.strictEqual(await written(), 1500);
      assert.strictEqual(await written(), 1500); // and the connection is forgotten: nothing added later
    } finally {
      server.close();
      handle.shutdown();
    }
  });

  it('a connection another process aborts (ss -K: tcp_abort() closes it with that process holding its lock) stays the process\'s: bytes, close and lifetime count', async () => {
    const net = require('net');
    const { execFileSync } = require('child_process');
    const { createMetricProducer } = require('../dist');
    const handle = createMetricProducer({ strict: true });
    const server = net.createServer(s => {
      let n = 0;
      s.on('error', () => {}).on('data', d => (n += d.length) === 1000 && s.write(Buffer.alloc(500)));
    });
    await new Promise(resolve => server.listen(0, '127.0.0.1', resolve));
    const port = server.address().port;
    const client = { 'server.port': port, 'tcp.connection.side': 'client' };
    try {
      const socket = net.connect(port, '127.0.0.1');
      await new Promise(resolve => socket.on('connect', resolve));
      socket.write(Buffer.alloc(1000));
      await new Promise(resolve => socket.once('data', resolve));
      const ended = new Promise(resolve => socket.on('error', resolve));
      execFileSync('ss', ['-K', '-t', 'dst', '127.0.0.1', 'dport', '=', `:${port}`, 'sport', '=', `:${socket.localPort}`]);
      // ss -K exits 0 where it cannot kill (a kernel without CONFIG_INET_DIAG_DESTROY)
      let timer;
      const timeout = new Promise(resolve => (timer = setTimeout(resolve, 2000, { code: 'ss -K did not abort the socket (CONFIG_INET_DIAG_DESTROY?)' })));
      const outcome = await Promise.race([ended, timeout]);
      clearTimeout(timer);
      assert.strictEqual(outcome.code, 'ECONNABORTED');
      await new Promise(resolve => setTimeout(resolve, 200));
      const { resourceMetrics } = await handle.producer.collect();
      const metrics = resourceMetrics.scopeMetrics[0].metrics;
      const sum = (name, want) => dataPointsOf(metrics, name, { ...client, ...want }).reduce((n, p) => n + (p.value.count ?? p.value), 0);
      assert.strictEqual(sum('process.network.io', { 'network.io.direction': 'transmit' }), 1000);
      assert.strictEqual(sum('process.network.io', { 'network.io.direction': 'receive' }), 500);
      assert.strictEqual(sum('tcp.connection.opened'), 1);
      assert.strictEqual(sum('tcp.connection.duration'), 1);
    } finally {
      server.close();
      handle.shutdown();
    }
  });

  for (const when of ['after', 'before']) {
  it(`another process listening on the same port at another address (ours listening ${when} the start): its connections are not the process's accepted ones`, async () => {
    const net = require('net');
    const { spawn } = require('child_process');
    const { createMetricProducer } = require('../dist');
    let handle = when === 'after' ? createMetricProducer({ strict: true }) : undefined;
    const ours = net.createServer(s => s.resume().on('end', () => s.end()));
    await new Promise(resolve => ours.listen(0, '127.0.0.1', resolve));
    const port = ours.address().port;
    handle ??= createMetricProducer({ strict: true });
    const other = spawn(process.execPath, ['-e', `
      require('net').createServer(s => s.resume().on('end', () => s.end())).listen(${port}, '127.0.0.2', () => console.log('ready'));
      process.stdin.resume().on('end', () => process.exit(0));`], { stdio: ['pipe', 'pipe', 'inherit'] });
    try {
      await new Promise((resolve, reject) => (other.stdout.once('data', resolve), other.once('exit', code => reject(new Error(`the other listener exited ${code}`)))));
      for (const host of ['127.0.0.1', '127.0.0.2', '127.0.0.2']) {
        const s = net.connect(port, host);
        await new Promise(resolve => s.on('connect', () => s.end(Buffer.alloc(host === '127.0.0.1' ? 1000 : 300))).on('close', resolve));
      }
      await new Promise(resolve => setTimeout(resolve, 200));
      const { resourceMetrics } = await handle.producer.collect();
      const metrics = resourceMetrics.scopeMetrics[0].metrics;
      const server = { 'server.port': port, 'tcp.connection.side': 'server' };
      const sum = (name, want = {}) => dataPointsOf(metrics, name, { ...server, ...want }).reduce((n, p) => n + (p.value.count ?? p.value), 0);
      assert.deepStrictEqual(
        [sum('tcp.connection.opened'), sum('tcp.connect.duration'), sum('tcp.connection.duration'), sum('process.network.io', { 'network.io.direction': 'receive' })],
        [1, 1, 1, 1000],
      );
    } finally {
      other.stdin.end();
      ours.close();
      handle.shutdown();
    }
  });
  }

  it('failed connects that find the series map full are exported in the overflow series, with error.type _OTHER', async () => {
    const net = require('net');
    const peer = await startPeer('127.0.0.1', 10);
    const closed = [];
    for (let i = 0; i < 3; i++) {
      const s = net.createServer();
      await new Promise(resolve => s.listen(0, '127.0.0.1', resolve));
      closed.push(s.address().port);
      await new Promise(resolve => s.close(resolve));
    }
    // one series: the first connection; the refused connects' own series do not fit
    const steps = [{ connect: ['127.0.0.1', peer.port], send: 1000, recv: 10 }, ...closed.map(port => ({ refused: ['127.0.0.1', port] }))];
    const r = await runWorkload(steps, { address, env: { OTEL_NODE_EBPF_MAX_SERIES: '1' } });
    await peer.close();
    assert.strictEqual(r.code, 0, r.stderr);
    const points = pointsOfPid(r.child.pid);
    assert.strictEqual(total(points, 'tcp.connection.failed', { 'otel.metric.overflow': true, 'error.type': '_OTHER' }), 3, show(points, 'tcp.connection.failed'));
  });

  /** test/support/connect-edges.js in a network namespace of its own, after `setup` (shell) ran there. */
  async function connectEdges(scenario, setup) {
    const wrap = ['unshare', '--net', 'sh', '-c', `ip link set lo up && ${setup} && exec "$0" "$@"`];
    const r = await runWorkload({ scenario }, { address, script: path.join(__dirname, 'support', 'connect-edges.js'), preload: false, wrap });
    assert.strictEqual(r.code, 0, `${r.stderr}\n${JSON.stringify(r.lines)}`);
    return r.lines[0];
  }

  it('a connect that finds no local port free fails with EADDRNOTAVAIL, as the application sees it (not ECONNABORTED)', async () => {
    const seen = await connectEdges('no-ports', 'echo "40000 40001" > /proc/sys/net/ipv4/ip_local_port_range');
    assert.ok(seen.errors.length > 0 && seen.errors.every(e => e === 'EADDRNOTAVAIL'), JSON.stringify(seen));
    assert.deepStrictEqual(seen.failed.map(p => [p.attributes['error.type'], p.value]), [['EADDRNOTAVAIL', seen.errors.length]]);
  });

  it('a connect the application gives up in SYN_SENT (destroy() before the handshake) fails with ECONNABORTED', async () => {
    const net = require('net');
    const { spawn } = require('child_process');
    const { createMetricProducer } = require('../dist');
    // A listener that never accepts, with a backlog of one: once one connection waits in its queue, SYNs are dropped.
    const listener = spawn('python3', ['-c', 'import socket,sys,time\ns=socket.socket()\ns.bind(("127.0.0.1",0))\ns.listen(0)\nprint(s.getsockname()[1],flush=True)\ntime.sleep(60)']);
    const port = Number(await new Promise(resolve => listener.stdout.once('data', resolve)));
    const handle = createMetricProducer({ strict: true });
    try {
      const queued = net.connect(port, '127.0.0.1');
      await new Promise(resolve => queued.on('connect', resolve));
      const waiting = net.connect(port, '127.0.0.1').on('error', () => {});
      await new Promise(resolve => setTimeout(resolve, 300));
      assert.strictEqual(waiting.connecting, true, 'the second connect should still wait for its SYN-ACK');
      waiting.destroy();
      queued.destroy();
      await new Promise(resolve => setTimeout(resolve, 200));
      const { resourceMetrics } = await handle.producer.collect();
      const failed = dataPointsOf(resourceMetrics.scopeMetrics[0].metrics, 'tcp.connection.failed', { 'server.port': port, 'tcp.connection.side': 'client' });
      assert.deepStrictEqual(failed.map(p => [p.attributes['error.type'], p.value]), [['ECONNABORTED', 1]]);
    } finally {
      listener.kill();
      handle.shutdown();
    }
  });

  it('an accepted connection whose handshake gave the kernel no RTT sample (SYN-ACK lost, no timestamps) records no server-side connect duration of 0', async () => {
    const seen = await connectEdges(
      'synack',
      'echo 0 > /proc/sys/net/ipv4/tcp_timestamps && iptables -A OUTPUT -p tcp --tcp-flags SYN,ACK SYN,ACK -m statistic --mode nth --every 2 --packet 0 -j DROP',
    );
    const side = (points, s) => points.filter(p => p.attributes['tcp.connection.side'] === s);
    assert.strictEqual(seen.connected, 1, JSON.stringify(seen));
    // the client waited for the lost SYN-ACK (its SYN sent again after 1 s)
    const [client] = side(seen.connect, 'client');
    assert.ok(client.value.count === 1 && client.value.sum >= 0.9, JSON.stringify(seen.connect));
    assert.deepStrictEqual(side(seen.opened, 'server').map(p => p.value), [1]);
    assert.deepStrictEqual(side(seen.connect, 'server'), [], JSON.stringify(seen.connect));
  });

  it('a full connection map is counted: untracked connections that end between two collections lose their bytes, counted as dropped', async () => {
    const peer = await startPeer('127.0.0.1', 1000);
    const r = await runWorkload([{ many: ['127.0.0.1', peer.port, 40], send: 10_007, recv: 1000 }], {
      address,
      env: { OTEL_NODE_EBPF_MAX_CONNECTIONS: '16' },
    });
    await peer.close();
    assert.strictEqual(r.code, 0, r.stderr);
    const points = pointsOfPid(r.child.pid);
    const series = { 'server.port': peer.port, 'tcp.connection.side': 'client' };
    // every tracked connection reports its bytes when it ends; the others only while they live (none lives
    // at a collection here), so whole connections are counted, at least the 16 tracked ones
    const tx = total(points, 'process.network.io', { ...series, 'network.io.direction': 'transmit' });
    const rx = total(points, 'process.network.io', { ...series, 'network.io.direction': 'receive' });
    assert.ok(tx >= 16 * 10_007 && tx <= 40 * 10_007 && tx % 10_007 === 0, `transmit ${tx}`);
    assert.strictEqual(rx / 1000, tx / 10_007);
    assert.ok(total(points, 'otel_node_ebpf.dropped', { 'otel_node_ebpf.drop.reason': 'connection_map_full' }) >= 40 - tx / 10_007);
    // only tracked connections have a lifetime
    assert.ok(total(points, 'tcp.connection.opened', series) <= 16);
  });

  it('a disabled measurement stays off and the others attach', async () => {
    const { result, points, peerPort } = await exactBytes('127.0.0.1', { env: { OTEL_NODE_EBPF_DISABLED_PROBES: 'tcp.rtt' } });
    const { probes } = result.lines.find(l => l.done).status;
    assert.deepStrictEqual(probes.filter(p => !p.attached && notOptIn(p)).map(p => [p.name, p.reason]), [['tcp.rtt', 'disabled by OTEL_NODE_EBPF_DISABLED_PROBES']]);
    assert.strictEqual(total(points, 'process.network.io', { 'server.port': peerPort, 'network.io.direction': 'transmit' }), SENT);
  });

  it('starts with node --import (ESM preload) as with --require', async () => {
    const peer = await startPeer('127.0.0.1', RECEIVED);
    const r = await runWorkload([{ connect: ['127.0.0.1', peer.port], send: SENT, recv: RECEIVED }], { address, preloadFlag: '--import' });
    await peer.close();
    assert.strictEqual(r.code, 0, r.stderr);
    const points = pointsOfPid(r.child.pid);
    assert.strictEqual(total(points, 'process.network.io', { 'server.port': peer.port, 'network.io.direction': 'receive' }), RECEIVED);
  });

  it("adds the kernel metrics to an application's own MeterProvider (createMetricProducer)", async () => {
    const path = require('path');
    const { execFile } = require('child_process');
    const peer = await startPeer('127.0.0.1', 100);
    const stdout = await new Promise((resolve, reject) =>
      execFile(process.execPath, [path.join(__dirname, 'support', 'own-pipeline.js'), address.httpEndpoint, String(peer.port), String(SENT)], (err, out, errOut) =>
        err ? reject(new Error(errOut || err.message)) : resolve(out),
      ),
    );
    await peer.close();
    assert.ok(JSON.parse(stdout).done);
    const points = receiver.points().filter(p => p.resource['service.name'] === 'own-pipeline');
    // one exporter, one request: the application's own counter and the kernel's metrics side by side
    assert.strictEqual(total(points, 'app.requests'), 3);
    const tx = pointsOf(points, 'process.network.io', { 'server.port': peer.port, 'network.io.direction': 'transmit' });
    assert.strictEqual(tx.length, 1);
    assert.strictEqual(tx[0].value, SENT);
    assert.strictEqual(tx[0].temporality, 'delta');
  });
});
