'use strict';
// TLS handshakes from uprobes on the OpenSSL inside the node binary, end to end under Node 20, 22 and 24: a
// workload process with the SDK preloaded runs a local TLS server (a self-signed certificate made here) and K
// connections to it; its exporter sends to a real OTLP receiver.
const assert = require('assert');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { startReceiver, runWorkload, total, pointsOf, describe: describePoints } = require('./support/harness');
const { NODE_VERSIONS, nodeBinary, under, selfSignedCert } = require('./support/uprobes');

const K = 5;
const PROBE = name => ({ 'otel_node_ebpf.probe': name, 'otel_node_ebpf.hook': 'uprobe' });

describe('TLS handshakes (uprobes on OpenSSL)', function () {
  let receiver, address, dir, key, cert;
  before(async () => {
    ({ receiver, address } = await startReceiver());
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'oneb-tls-'));
    ({ key, cert } = selfSignedCert(dir));
  });
  after(async () => {
    await receiver.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  for (const v of NODE_VERSIONS) {
    describe(v.label, function () {
      let node;
      before(function () {
        this.timeout(600000);
        node = nodeBinary(v.major);
      });

      const run = (steps, env = {}) => runWorkload(steps, { address, ...under(node.binary, { env }) });
      const ownPoints = r => receiver.points().filter(p => p.resource['process.pid'] === r.child.pid);

      it(`K=${K} handshakes give exactly K client and K server samples; tls.bytes stays off unless asked for`, async () => {
        const r = await run([{ tls: K, key, cert }]);
        assert.strictEqual(r.code, 0, r.stderr);
        assert.strictEqual(r.lines.find(l => l.handshakes).handshakes, K);
        const { status } = r.lines.find(l => l.done);
        assert.deepStrictEqual(
          status.probes.filter(p => p.name.startsWith('tls.')).map(p => [p.name, p.attached, p.reason]),
          [
            ['tls.handshake', true, undefined],
            ['tls.bytes', false, 'disabled: opt-in, turn on with OTEL_NODE_EBPF_ENABLED_PROBES=tls.bytes'],
          ],
        );
        const points = ownPoints(r);
        const dump = describePoints(points, 'tls.handshake.duration');
        assert.strictEqual(total(points, 'tls.handshake.duration', { 'tls.connection.side': 'client', 'error.type': undefined }), K, dump);
        assert.strictEqual(total(points, 'tls.handshake.duration', { 'tls.connection.side': 'server', 'error.type': undefined }), K, dump);
        assert.strictEqual(pointsOf(points, 'tls.handshake.duration').filter(p => p.attributes['error.type']).length, 0, dump);
        // a local handshake takes more than a microsecond and less than a second
        const client = pointsOf(points, 'tls.handshake.duration', { 'tls.connection.side': 'client' }).at(-1);
        assert.ok(client.sum > K * 1e-6 && client.sum < K, `sum ${client.sum} s`);
        assert.strictEqual(pointsOf(points, 'tls.io').length, 0);
        assert.ok(total(points, 'otel_node_ebpf.probe.runs', PROBE('tls.handshake')) >= 4 * K);
        assert.ok(total(points, 'otel_node_ebpf.probe.cpu.time', PROBE('tls.handshake')) > 0);
      });

      it('a failed handshake (TLS 1.2 client, TLS 1.3-only server) gives one sample per side with error.type', async () => {
        const r = await run([{ tlsFail: 'version', key, cert }]);
        assert.strictEqual(r.code, 0, r.stderr);
        assert.match(r.lines.find(l => l.tlsFailed).tlsFailed, /PROTOCOL_VERSION|UNSUPPORTED_PROTOCOL/);
        const points = ownPoints(r);
        const dump = describePoints(points, 'tls.handshake.duration');
        assert.strictEqual(total(points, 'tls.handshake.duration', { 'tls.connection.side': 'client', 'error.type': 'protocol_version' }), 1, dump);
        assert.strictEqual(total(points, 'tls.handshake.duration', { 'tls.connection.side': 'server', 'error.type': 'protocol_version' }), 1, dump);
        assert.strictEqual(pointsOf(points, 'tls.handshake.duration').length, 2, dump);
      });

      it('OTEL_NODE_EBPF_ENABLED_PROBES=tls.bytes counts exact plaintext bytes through SSL_read and SSL_write', async () => {
        const writes = 50;
        const r = await run([{ tls: K, key, cert, writes }], { OTEL_NODE_EBPF_ENABLED_PROBES: 'tls.bytes' });
        assert.strictEqual(r.code, 0, r.stderr);
        const { status } = r.lines.find(l => l.done);
        assert.ok(status.probes.find(p => p.name === 'tls.bytes').attached);
        const points = ownPoints(r);
        // K x ("ping" from the client + "pong" from the server), then 50 x 100 bytes: each byte written once, read once
        const bytes = K * 8 + writes * 100;
        assert.strictEqual(total(points, 'tls.io', { 'network.io.direction': 'transmit' }), bytes, describePoints(points, 'tls.io'));
        assert.strictEqual(total(points, 'tls.io', { 'network.io.direction': 'receive' }), bytes, describePoints(points, 'tls.io'));
        assert.ok(total(points, 'otel_node_ebpf.probe.runs', PROBE('tls.bytes')) >= writes);
      });
    });
  }
});
