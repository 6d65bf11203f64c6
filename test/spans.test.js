'use strict';
// Kernel-enriched spans, end to end: an application (test/support/spans-app.js, test/support/spans-grpc-app.js) with
// the SDK preloaded by register and OTEL_TRACES_EXPORTER=otlp runs a real HTTP(S) or gRPC server and real client
// calls to it; its spans go over OTLP to a real receiver. Every expected value is measured independently: what
// crossed the sockets (Node's own socket.bytesWritten/bytesRead), the kernel's own count of retransmits (ss), and the
// DNS and TLS metrics that the same records feed. The HTTP, DNS, TLS and gRPC tests run under this machine's node
// (20) and the official 22 and 24 binaries.
const assert = require('assert');
const { spawn, spawnSync } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');
const readline = require('readline');
const { CI, startReceiver, startFront, runWorkload, total } = require('./support/harness');
const { NODE_VERSIONS, nodeBinary, selfSignedCert } = require('./support/uprobes');

const APP = path.join(__dirname, 'support', 'spans-app.js');
const GRPC_APP = path.join(__dirname, 'support', 'spans-grpc-app.js');
const ESM_APP = path.join(__dirname, 'support', 'spans-esm-app.mjs');
const PEER = path.join(__dirname, 'support', 'netns-peer.js');
const NOBODY = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'];
const KERNEL_ATTRS = /^(tcp|dns|tls)\./;
const BPF_ATTRS = ['dns.lookup.duration', 'tls.handshake.duration'];

const pathOf = s => s.attributes['url.path'] ?? new URL(s.attributes['url.full']).pathname;
const seconds = s => Number(s.endTimeUnixNano - s.startTimeUnixNano) / 1e9;

/** The client and server span of request i. */
function pair(spans, i) {
  const of = kind => spans.filter(s => s.kind === kind && pathOf(s) === `/r${i}`);
  const [client, ...moreClients] = of('client');
  const [server, ...moreServers] = of('server');
  assert.ok(client && server && !moreClients.length && !moreServers.length, `one client and one server span for /r${i}: ${JSON.stringify(spans.map(s => [s.kind, s.name, s.attributes]))}`);
  return { client, server };
}

/** Both ends of request i carry exactly the bytes the client's socket moved (its server's socket is the other end). */
function assertBytes(spans, line) {
  const { client, server } = pair(spans, line.request);
  assert.strictEqual(client.attributes['tcp.io.transmit'], line.written, 'client transmit');
  assert.strictEqual(client.attributes['tcp.io.receive'], line.read, 'client receive');
  assert.strictEqual(server.attributes['tcp.io.transmit'], line.read, 'server transmit');
  assert.strictEqual(server.attributes['tcp.io.receive'], line.written, 'server receive');
  for (const s of [client, server]) {
    assert.ok(s.attributes['tcp.rtt'] > 0 && s.attributes['tcp.rtt'] < 1, `tcp.rtt ${s.attributes['tcp.rtt']}`);
    assert.strictEqual(s.attributes['http.method'] ?? s.attributes['http.request.method'], 'POST', 'the instrumentation attributes are kept');
  }
  return { client, server };
}

function run(cmd, args) {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.error || r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.error ? r.error.message : r.stderr + r.stdout}`);
  return r.stdout;
}

describe('kernel-enriched spans (HTTP client and server, OTLP traces)', function () {
  this.timeout(120_000);
  let receiver, address, dir, tls;
  before(async function () {
    if (process.getuid() !== 0) {
      if (CI) throw new Error('these tests need root (BPF, namespaces); CI runs as root');
      this.skip();
    }
    ({ receiver, address } = await startReceiver());
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'oneb-spans-'));
    tls = selfSignedCert(dir);
    fs.chmodSync(dir, 0o755); // readable by the unprivileged run
    for (const f of Object.values(tls)) fs.chmodSync(f, 0o644);
  });
  after(async () => {
    await receiver?.stop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  const runAppWith = (config, { env = {}, wrap = [] } = {}) =>
    runWorkload(config, { address, script: APP, wrap, env: { OTEL_TRACES_EXPORTER: 'otlp', ...env } });
  const spansOf = r => receiver.spans().filter(s => s.resource['process.pid'] === r.child.pid);
  /** The run's gRPC spans of one kind, in the order they started. */
  const grpcSpansOf = (r, kind) =>
    spansOf(r)
      .filter(s => s.kind === kind && s.attributes['rpc.system'] === 'grpc')
      .sort((a, b) => (a.startTimeUnixNano < b.startTimeUnixNano ? -1 : 1));
  const ok = r => {
    assert.strictEqual(r.code, 0, `${r.stderr}\n${JSON.stringify(r.lines)}`);
    return r.lines.filter(l => l.request !== undefined);
  };
  /** A run that ended without a shutdown: its exit code, no word from the SDK, and every request's two spans, exact. */
  const assertSentAtExit = (r, code) => {
    assert.strictEqual(r.code, code, r.stderr);
    assert.strictEqual(r.stderr.split('\n').filter(l => l.startsWith('otel-node-ebpf')).length, 0, r.stderr);
    const spans = spansOf(r);
    const lines = r.lines.filter(l => l.request !== undefined);
    for (const line of lines) assertBytes(spans, line);
    assert.strictEqual(spans.length, 2 * lines.length, JSON.stringify(spans.map(s => [s.kind, s.name])));
  };

  it('without privileges: the spans are exported unchanged, nothing breaks', async () => {
    const r = await runAppWith({ tls, host: 'localhost', requests: [{ body: 5000, reply: 6000 }] }, { wrap: NOBODY, env: { OTEL_NODE_EBPF_STRICT: 'false' } });
    const [line] = ok(r);
    assert.match(r.stderr, /CAP_BPF/);
    const { done } = r.lines.find(l => l.done);
    assert.strictEqual(done.active, false);
    // no BPF: the processor would read by getsockopt, and says why (it reads nothing: the kernel telemetry is off)
    assert.deepStrictEqual(done.tracing.tcpInfo, { via: 'getsockopt', reason: 'missing CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN)', fromSlots: 0, byGetsockopt: 0 });
    const { client, server } = pair(spansOf(r), line.request);
    for (const s of [client, server]) assert.deepStrictEqual(Object.keys(s.attributes).filter(k => KERNEL_ATTRS.test(k)), [], s.kind);
    assert.strictEqual(client.attributes['http.status_code'] ?? client.attributes['http.response.status_code'], 200);
    assert.strictEqual(server.attributes['http.status_code'] ?? server.attributes['http.response.status_code'], 200);
  });

  for (const v of NODE_VERSIONS) {
    describe(v.label, function () {
      let node;
      before(function () {
        try {
          node = nodeBinary(v.major);
        } catch (err) {
          if (CI) throw err;
          this.skip();
        }
      });
      // runWorkload starts this machine's node; a shell replaces it with the version's binary
      const underVersion = async run => {
        const r = await run;
        const done = r.lines.find(l => l.done);
        assert.strictEqual(done?.node, node.version, `the application ran under ${node.binary}: ${r.stderr}`);
        return r;
      };
      const exec = ['sh', '-c', 'exec "$NODE_BINARY" "$@"'];
      const runApp = (config, { env = {}, wrap = [] } = {}) => underVersion(runAppWith(config, { env: { NODE_BINARY: node.binary, ...env }, wrap: [...wrap, ...exec] }));
      const runGrpc = config => underVersion(runWorkload(config, { address, script: GRPC_APP, wrap: exec, env: { OTEL_TRACES_EXPORTER: 'otlp', NODE_BINARY: node.binary } }));

      it('a request with a known body: both spans carry exactly the bytes that crossed the socket', async () => {
        const r = await runApp({ requests: [{ body: 1_234_567, reply: 765_432 }] });
        const [line] = ok(r);
        // the spans left from the addon's thread (OTEL_NODE_EBPF_EXPORT_THREAD=native, the default)
        // one reading each by getsockopt: a connection gets a slot of bpf/spans.bpf.c at its second span
        assert.deepStrictEqual(r.lines.find(l => l.done).done.tracing, {
          protocol: 'http/protobuf',
          thread: 'native',
          tcpInfo: { via: 'bpf', fromSlots: 0, byGetsockopt: 2 },
        });
        assert.ok(line.written > 1_234_567 && line.read > 765_432, JSON.stringify(line)); // body + headers
        const { client, server } = assertBytes(spansOf(r), line);
        // the client opened the connection during its span: its TCP handshake, within the span
        const connect = client.attributes['tcp.connect.duration'];
        assert.ok(connect > 0 && connect < seconds(client), `tcp.connect.duration ${connect} s of a ${seconds(client)} s span`);
        assert.strictEqual(server.attributes['tcp.connect.duration'], undefined, 'a server span does not open its connection');
      });

      it('two sequential requests on one keep-alive connection get their own deltas', async () => {
        const r = await runApp({ requests: [{ body: 3000, reply: 5000 }, { body: 700, reply: 90_000 }] });
        const [first, second] = ok(r);
        assert.strictEqual(second.reused, true);
        assert.strictEqual(second.localPort, first.localPort);
        const spans = spansOf(r);
        assertBytes(spans, first);
        const { client } = assertBytes(spans, second);
        assert.strictEqual(client.attributes['tcp.connect.duration'], undefined, 'the connection was opened by the first request');
      });

      it('five requests on one keep-alive connection: from the second on, the spans read the kernel\'s slots (no system call), each exact', async () => {
        const sizes = [[3000, 5000], [700, 90_000], [1, 1], [250_000, 12], [64, 300_000]];
        const r = await runApp({ requests: sizes.map(([body, reply]) => ({ body, reply })) });
        const lines = ok(r);
        const spans = spansOf(r);
        for (const line of lines) assertBytes(spans, line);
        assert.ok(lines.slice(1).every(l => l.reused && l.localPort === lines[0].localPort), JSON.stringify(lines));
        // Each socket (the client's, the server's) gets its slot when its second span reads it by getsockopt. Server
        // spans read once (at the response's end): getsockopt for requests 0 and 1, slots for 2-4. Client spans read at
        // the start (request 0: none, its connection was opening) and the end: getsockopt for 0's end and 1's start,
        // slots for the other seven (the slot is written by the request's own send).
        assert.deepStrictEqual(r.lines.find(l => l.done).done.tracing.tcpInfo, { via: 'bpf', fromSlots: 10, byGetsockopt: 4 });
      });

      it('process.exit() right after the requests: the spans not exported yet leave from the exit event, with their attributes, the exit code kept', async () => {
        // the batch span processor sends every 5 s: without the exit event's export, every span of the run is lost
        const r = await runAppWith(
          { requests: [{ body: 3000, reply: 4000 }, { body: 5000, reply: 6000 }], exit: 3 },
          { env: { NODE_BINARY: node.binary }, wrap: exec },
        );
        assert.strictEqual(r.lines.find(l => l.exiting)?.node, node.version, `the application ran under ${node.binary}: ${r.stderr}`);
        assert.strictEqual(r.lines.filter(l => l.request !== undefined).length, 2);
        assertSentAtExit(r, 3);
      });

      it('a client span to a name from a test-controlled hosts file carries its DNS lookup time', async () => {
        fs.writeFileSync(path.join(dir, 'hosts'), '127.0.0.1 alpha.test\n');
        fs.writeFileSync(path.join(dir, 'nsswitch.conf'), 'hosts: files\n');
        const setup = ['hosts', 'nsswitch.conf'].map(f => `mount --bind ${dir}/${f} /etc/${f}`).join(' && ');
        const wrap = ['unshare', '--mount', '--propagation', 'private', '--', 'sh', '-c', `${setup} && exec "$0" "$@"`];
        const r = await runApp({ host: 'alpha.test', requests: [{ body: 10, reply: 10 }, { body: 10, reply: 10 }] }, { wrap });
        const lines = ok(r);
        const spans = spansOf(r);
        const first = pair(spans, 0).client;
        // one lookup: the span carries the very record the metric's single sample came from
        const points = receiver.points().filter(p => p.resource['process.pid'] === r.child.pid && p.name === 'dns.lookup.duration' && p.attributes['dns.question.name'] === 'alpha.test');
        assert.strictEqual(total(points, 'dns.lookup.duration', { 'dns.question.name': 'alpha.test' }), 1);
        assert.strictEqual(first.attributes['dns.lookup.duration'], points.at(-1).sum);
        assert.ok(first.attributes['dns.lookup.duration'] > 0 && first.attributes['dns.lookup.duration'] < seconds(first));
        assert.strictEqual(pair(spans, 1).client.attributes['dns.lookup.duration'], undefined, 'the reused connection did no lookup');
        assertBytes(spans, lines[1]);
      });

      it('a TLS request carries the handshake time of its own connection', async () => {
        const r = await runApp({ tls, requests: [{ body: 20_000, reply: 30_000 }, { body: 10, reply: 10 }] });
        const lines = ok(r);
        const spans = spansOf(r);
        const { client, server } = pair(spans, 0);
        const clientSamples = receiver.points().filter(p => p.resource['process.pid'] === r.child.pid && p.name === 'tls.handshake.duration' && p.attributes['tls.connection.side'] === 'client');
        assert.strictEqual(total(clientSamples, 'tls.handshake.duration', {}), 1);
        assert.strictEqual(client.attributes['tls.handshake.duration'], clientSamples.at(-1).sum);
        assert.ok(client.attributes['tls.handshake.duration'] < seconds(client));
        assert.strictEqual(server.attributes['tls.handshake.duration'], undefined);
        assert.strictEqual(pair(spans, 1).client.attributes['tls.handshake.duration'], undefined, 'the reused connection did no handshake');
        // TCP_INFO counts what crossed the TCP socket: the TLS records, more than the plaintext Node's TLS socket counts
        assert.ok(client.attributes['tcp.io.transmit'] > lines[0].written && client.attributes['tcp.io.receive'] > lines[0].read);
        assert.strictEqual(client.attributes['tcp.io.transmit'], server.attributes['tcp.io.receive']);
        const second = pair(spans, 1);
        assert.strictEqual(second.client.attributes['tcp.io.transmit'], second.server.attributes['tcp.io.receive']);
        assert.strictEqual(second.client.attributes['tcp.io.receive'], second.server.attributes['tcp.io.transmit']);
      });

      for (const variant of [{ label: '' }, { label: ' over TLS', secure: true }, { label: ' over IPv6', ipv6: true }]) {
        it(`gRPC${variant.label}: unary calls on one connection: each client and server span carries exactly its window's bytes`, async () => {
          const calls = [{ body: 3000, reply: 5000 }, { body: 70_000, reply: 100 }, { body: 10, reply: 9000 }];
          const r = await runGrpc({ calls, ...(variant.secure && { tls }), ipv6: variant.ipv6 });
          const lines = ok(r);
          assert.strictEqual(lines.length, calls.length);
          const clients = grpcSpansOf(r, 'client');
          const servers = grpcSpansOf(r, 'server');
          assert.strictEqual(clients.length, calls.length, JSON.stringify(spansOf(r).map(s => [s.kind, s.name])));
          assert.strictEqual(servers.length, calls.length);
          for (const [i, line] of lines.entries()) {
            const [client, server] = [clients[i].attributes, servers[i].attributes];
            assert.ok(line.client.written > calls[i].body && line.client.read > calls[i].reply, JSON.stringify(line)); // HTTP/2 framing
            // client: from the end of its previous call (zero: its first call opened the connection) to its callback
            assert.strictEqual(client['tcp.io.transmit'], line.client.written, `call ${i}: client transmit`);
            assert.strictEqual(client['tcp.io.receive'], line.client.read, `call ${i}: client receive`);
            // server: from where the previous call's stream closed to the handler's answer; the response leaves after
            // the instrumentation ended the span, so it is not in the window
            assert.strictEqual(server['tcp.io.receive'], line.server.read, `call ${i}: server receive`);
            assert.strictEqual(server['tcp.io.transmit'], line.server.written, `call ${i}: server transmit`);
            for (const a of [client, server]) {
              // on a loaded machine loopback retransmits too, rarely: present and whole; exact counts are the netns test's
              assert.ok(Number.isInteger(a['tcp.retransmits']) && a['tcp.retransmits'] >= 0, `tcp.retransmits ${a['tcp.retransmits']}`);
              assert.ok(a['tcp.rtt'] > 0 && a['tcp.rtt'] < 1, `tcp.rtt ${a['tcp.rtt']}`);
            }
            assert.strictEqual(server['tcp.connect.duration'], undefined);
            assert.strictEqual(server['rpc.method'], 'Echo', 'the instrumentation attributes are kept');
          }
          const connect = clients[0].attributes['tcp.connect.duration'];
          assert.ok(connect > 0 && connect < seconds(clients[0]), `the first call opened the connection: tcp.connect.duration ${connect}`);
          for (const c of clients.slice(1)) assert.strictEqual(c.attributes['tcp.connect.duration'], undefined);
          // TLS: grpc-js sets it up with tls.connect({ socket }) over the TCP socket; the call that opened the
          // connection carries its client handshake, as the SDK's own metric recorded it
          const handshakes = receiver.points().filter(p => p.resource['process.pid'] === r.child.pid && p.name === 'tls.handshake.duration' && p.attributes['tls.connection.side'] === 'client');
          if (variant.secure) {
            assert.strictEqual(total(handshakes, 'tls.handshake.duration', {}), 1);
            assert.strictEqual(clients[0].attributes['tls.handshake.duration'], handshakes.at(-1).sum);
            assert.ok(clients[0].attributes['tls.handshake.duration'] < seconds(clients[0]));
          } else {
            assert.strictEqual(clients[0].attributes['tls.handshake.duration'], undefined);
          }
          for (const s of [...clients.slice(1), ...servers]) assert.strictEqual(s.attributes['tls.handshake.duration'], undefined, s.kind);
          // DNS: the TLS variant's target is "localhost", which grpc-js resolves (dns.promises.lookup) when the first
          // call wakes the channel; the others connect to an address. The first call carries the lookup, as the
          // SDK's own metric recorded it.
          const lookups = receiver.points().filter(p => p.resource['process.pid'] === r.child.pid && p.name === 'dns.lookup.duration' && p.attributes['dns.question.name'] === 'localhost');
          if (variant.secure) {
            assert.strictEqual(total(lookups, 'dns.lookup.duration', { 'dns.question.name': 'localhost' }), 1);
            assert.strictEqual(clients[0].attributes['dns.lookup.duration'], lookups.at(-1).sum);
            assert.ok(clients[0].attributes['dns.lookup.duration'] < seconds(clients[0]));
          } else {
            assert.strictEqual(lookups.length, 0);
            assert.strictEqual(clients[0].attributes['dns.lookup.duration'], undefined);
          }
          for (const s of [...clients.slice(1), ...servers]) assert.strictEqual(s.attributes['dns.lookup.duration'], undefined, s.kind);
        });
      }

      /**
       * Every client span and every server transmit exact; the server's receive too, but around the call at
       * `streamAt`, whose response is a stream: the client answers its data with flow-control frames (WINDOW_UPDATE,
       * 13 bytes each), which the kernel counts when they arrive and Node when it reads them.
       */
      const assertWindows = (lines, clients, servers, streamAt) => {
        for (const [i, line] of lines.entries()) {
          const [client, server] = [clients[i].attributes, servers[i].attributes];
          assert.strictEqual(client['tcp.io.transmit'], line.client.written, `call ${i}: client transmit`);
          assert.strictEqual(client['tcp.io.receive'], line.client.read, `call ${i}: client receive`);
          assert.strictEqual(server['tcp.io.transmit'], line.server.written, `call ${i}: server transmit`);
          const ahead = server['tcp.io.receive'] - line.server.read; // kernel − Node
          const frames = d => d >= 0 && d % 13 === 0 && d <= 5 * 13;
          const why = `call ${i}: server receive ${server['tcp.io.receive']}, Node read ${line.server.read}`;
          if (i === streamAt) assert.ok(frames(ahead), why); // arrived before the stream's span ended, not yet read
          else if (i === streamAt + 1) assert.ok(frames(-ahead), why); // arrived before the next window started, read after it
          else assert.strictEqual(ahead, 0, why);
        }
      };

      it('gRPC server streaming: the stream\'s spans carry exactly its window\'s bytes, the unary calls around it their own', async () => {
        const calls = [{ body: 10, reply: 10 }, { body: 100, reply: 20_000, stream: 5 }, { body: 10, reply: 10 }];
        const r = await runGrpc({ calls });
        const lines = ok(r);
        assert.strictEqual(lines.length, calls.length);
        const [clients, servers] = [grpcSpansOf(r, 'client'), grpcSpansOf(r, 'server')];
        assert.deepStrictEqual([clients.length, servers.length], [3, 3], JSON.stringify(spansOf(r).map(s => [s.kind, s.name])));
        assert.deepStrictEqual(clients.map(s => s.attributes['rpc.method']), ['Echo', 'Stream', 'Echo']);
        assert.ok(lines[1].client.read > 5 * 20_000, JSON.stringify(lines[1])); // the five messages and their framing
        assertWindows(lines, clients, servers, 1);
      });

      it('gRPC client and bidirectional streaming: each call\'s spans carry exactly their window\'s bytes', async () => {
        const calls = [{ body: 10, reply: 10 }, { body: 30_000, reply: 500, upload: 4 }, { body: 10_000, reply: 8000, chat: 5 }, { body: 10, reply: 10 }];
        const r = await runGrpc({ calls });
        const lines = ok(r);
        assert.strictEqual(lines.length, calls.length);
        const [clients, servers] = [grpcSpansOf(r, 'client'), grpcSpansOf(r, 'server')];
        assert.deepStrictEqual([clients.length, servers.length], [4, 4], JSON.stringify(spansOf(r).map(s => [s.kind, s.name])));
        assert.deepStrictEqual(clients.map(s => s.attributes['rpc.method']), ['Echo', 'Upload', 'Chat', 'Echo']);
        assert.deepStrictEqual(servers.map(s => s.attributes['rpc.method']), ['Echo', 'Upload', 'Chat', 'Echo']);
        assert.ok(lines[1].client.written > 4 * 30_000 && lines[2].client.read > 5 * 8000, JSON.stringify(lines)); // the messages and their framing
        assertWindows(lines, clients, servers, 2); // the bidirectional call's replies are a stream
      });
    });
  }

  for (const thread of ['native', 'main']) {
    it(`an uncaught exception right after the requests (${thread} export thread): the spans not exported yet leave from the exit event, the exit code is 1`, async () => {
      const r = await runAppWith({ requests: [{ body: 2000, reply: 3000 }], crash: true }, { env: { OTEL_NODE_EBPF_EXPORT_THREAD: thread } });
      assert.match(r.stderr, /spans-app: crashed on purpose/);
      assert.strictEqual(r.lines.filter(l => l.request !== undefined).length, 1);
      assertSentAtExit(r, 1);
    });
  }

  it("an uncaught exception while the collector answers the exit's span export with 503 and Retry-After: 1: the same spans are sent again within the exit's 2 s", async () => {
    const front = await startFront(address, n => (n === 1 ? { status: 503, headers: { 'retry-after': '1' } } : undefined));
    try {
      const r = await runAppWith({ requests: [{ body: 2000, reply: 3000 }], crash: true }, { env: { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: `${front.endpoint}/v1/traces` } });
      assert.match(r.stderr, /spans-app: crashed on purpose/);
      assert.strictEqual(front.bodies.length, 2, 'one refused request, one retry');
      assert.ok(front.bodies[0].equals(front.bodies[1]), 'the retry sends the same bytes');
      assertSentAtExit(r, 1);
    } finally {
      front.close();
    }
  });

  it('process.exit() with OTLP over gRPC (the addon cannot send it): the spans not exported yet leave from the exit event through a worker thread', async () => {
    const r = await runWorkload({ requests: [{ body: 2000, reply: 3000 }, { body: 10, reply: 70_000 }], exit: 3 }, { address, protocol: 'grpc', script: APP, env: { OTEL_TRACES_EXPORTER: 'otlp' } });
    assert.strictEqual(r.lines.filter(l => l.request !== undefined).length, 2);
    assert.deepStrictEqual([...new Set(spansOf(r).map(s => s.protocol))], ['grpc']);
    assertSentAtExit(r, 3);
  });

  it('the collector down: the shutdown does not wait for span export retries, one warning per signal', async () => {
    let lastRequestAt, doneAt;
    const r = await runWorkload({ requests: [{ body: 1000, reply: 1000 }] }, {
      address,
      script: APP,
      env: { OTEL_TRACES_EXPORTER: 'otlp', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:9' },
      onLine: o => {
        if (o.done) doneAt = Date.now();
        else lastRequestAt = Date.now();
      },
    });
    assert.strictEqual(r.code, 0, r.stderr);
    // the shutdown took 8 s when the span exporter retried the refused connection up to its own timeout
    assert.ok(doneAt - lastRequestAt < 3000, `the shutdown took ${doneAt - lastRequestAt} ms`);
    const warnings = r.stderr.split('\n').filter(l => l.startsWith('otel-node-ebpf'));
    assert.strictEqual(warnings.length, 2, r.stderr);
    assert.ok(warnings.some(l => /^otel-node-ebpf metrics export to .* failed: .*ECONNREFUSED/.test(l)), r.stderr);
    assert.ok(warnings.some(l => /^otel-node-ebpf span export failed: .*ECONNREFUSED/.test(l)), r.stderr);
  });

  it('a gRPC client span during which another call on its connection ended gets tcp.rtt only, not a window that misses its own request', async () => {
    const r = await runWorkload({}, { address, script: path.join(__dirname, 'support', 'spans-grpc-concurrent.js'), preload: false });
    assert.strictEqual(r.code, 0, r.stderr);
    const [first, small, large] = r.lines;
    assert.strictEqual(r.lines.length, 3, JSON.stringify(r.lines));
    // the first call opened the connection: its window from zero; the small one's from the first call's end (it holds
    // the large call's request too: one connection, as documented)
    assert.ok(first.tx > 5 && small.tx >= 200_000, JSON.stringify(r.lines));
    assert.strictEqual(large.tx, undefined, JSON.stringify(large));
    assert.strictEqual(large.rx, undefined, JSON.stringify(large));
    assert.ok(large.rtt > 0, JSON.stringify(large));
  });

  it('an ES module application started with --import: its HTTP spans carry the bytes too', async () => {
    const r = await runWorkload({ requests: [{ body: 40_000, reply: 2000 }] }, { address, script: ESM_APP, preloadFlag: '--import', env: { OTEL_TRACES_EXPORTER: 'otlp' } });
    const [line] = ok(r);
    assertBytes(spansOf(r), line);
  });

  it('the processor passes tls.connect and dns.promises.lookup through while it runs and restores them at shutdown', async () => {
    const nodeTls = require('tls');
    const dnsPromises = require('dns').promises;
    const { KernelSpanProcessor } = require('../dist/spans');
    const original = nodeTls.connect;
    const originalLookup = dnsPromises.lookup;
    const server = nodeTls.createServer({ key: fs.readFileSync(tls.key), cert: fs.readFileSync(tls.cert) }, s => s.end('hello'));
    await new Promise(resolve => server.listen(0, '127.0.0.1', resolve));
    const processor = new KernelSpanProcessor();
    try {
      assert.notStrictEqual(nodeTls.connect, original, 'wrapped while the processor runs');
      assert.ok(Object.keys(nodeTls).includes('connect'), 'still an enumerable export');
      // a TLS socket over a socket of net.connect(), as grpc-js makes it, still works through the wrapper
      const tcp = require('net').connect(server.address().port, '127.0.0.1');
      await new Promise((resolve, reject) => tcp.once('connect', resolve).once('error', reject));
      const socket = nodeTls.connect({ socket: tcp, ca: fs.readFileSync(tls.cert), servername: 'localhost' });
      assert.ok(socket instanceof nodeTls.TLSSocket);
      let data = '';
      socket.on('data', d => (data += d));
      await new Promise((resolve, reject) => socket.once('end', resolve).once('error', reject));
      assert.strictEqual(data, 'hello');
      assert.notStrictEqual(dnsPromises.lookup, originalLookup, 'lookup wrapped while the processor runs');
      assert.deepStrictEqual(await dnsPromises.lookup('127.0.0.1', { all: true }), [{ address: '127.0.0.1', family: 4 }]);
      await assert.rejects(dnsPromises.lookup('no-such-name.invalid'));
    } finally {
      await processor.shutdown();
      server.close();
    }
    assert.strictEqual(nodeTls.connect, original, 'restored at shutdown');
    assert.strictEqual(dnsPromises.lookup, originalLookup, 'lookup restored at shutdown');
  });

  it('a failed dns.promises.lookup that the application leaves unhandled, inside a span the processor follows, ends the process as without the SDK', () => {
    const script = path.join(__dirname, 'support', 'spans-lookup-rejection.js');
    const run = mode => spawnSync(process.execPath, [script, mode], { encoding: 'utf8', timeout: 30000 });
    const plain = run('plain');
    const sdk = run('sdk');
    assert.strictEqual(plain.status, 1, plain.stdout + plain.stderr);
    // the lookup's uprobe is attached, so the processor watches this lookup: the case that took the rejection as handled
    assert.match(sdk.stdout, /"dns":true/, sdk.stderr);
    assert.strictEqual(sdk.status, 1, sdk.stdout + sdk.stderr);
    assert.doesNotMatch(sdk.stdout, /survived/);
    assert.match(sdk.stderr, /ENOTFOUND no-such-host\.invalid/);
  });

  it('with OTEL_SDK_DISABLED nothing is traced and the application runs', async () => {
    const r = await runAppWith({ requests: [{ body: 10, reply: 10 }] }, { env: { OTEL_SDK_DISABLED: 'true' } });
    ok(r);
    assert.deepStrictEqual(spansOf(r).filter(s => Object.keys(s.attributes).some(k => KERNEL_ATTRS.test(k))), []);
  });

  it('pipelined requests on one connection: each server span carries exactly its own response', async () => {
    const r = await runAppWith({ requests: [], pipelined: [{ reply: 3000 }, { reply: 50_000 }, { reply: 10 }] });
    ok(r);
    const line = r.lines.find(l => l.pipelined);
    const spans = line.pipelined.map((_, i) => {
      const [s, ...more] = spansOf(r).filter(x => x.kind === 'server' && pathOf(x) === `/p${i}`);
      assert.ok(s && !more.length, `one server span for /p${i}`);
      return s;
    });
    // a window ends where its response finished, and the next response is written only after that
    assert.deepStrictEqual(spans.map(s => s.attributes['tcp.io.transmit']), line.pipelined);
    // the requests arrived in one write, before the first response finished: the windows share them out, exactly
    assert.strictEqual(spans.reduce((sum, s) => sum + s.attributes['tcp.io.receive'], 0), line.written);
  });

  it('OTEL_NODE_EBPF_SPANS=false: the spans are traced and exported without the kernel attributes', async () => {
    const r = await runAppWith({ requests: [{ body: 5000, reply: 6000 }] }, { env: { OTEL_NODE_EBPF_SPANS: 'false' } });
    const [line] = ok(r);
    assert.strictEqual(r.lines.find(l => l.done).done.active, true, 'the kernel telemetry runs');
    const { client, server } = pair(spansOf(r), line.request);
    for (const s of [client, server]) assert.deepStrictEqual(Object.keys(s.attributes).filter(k => KERNEL_ATTRS.test(k)), [], s.kind);
    assert.strictEqual(client.attributes['http.status_code'] ?? client.attributes['http.response.status_code'], 200);
    assert.strictEqual(server.attributes['http.status_code'] ?? server.attributes['http.response.status_code'], 200);
  });

  it('OTEL_NODE_EBPF_SPANS_TCP_INFO=getsockopt: every reading is a getsockopt, each span exact', async () => {
    const sizes = [[3000, 5000], [700, 90_000], [1, 1], [250_000, 12]];
    const r = await runAppWith({ requests: sizes.map(([body, reply]) => ({ body, reply })) }, { env: { OTEL_NODE_EBPF_SPANS_TCP_INFO: 'getsockopt' } });
    const lines = ok(r);
    const spans = spansOf(r);
    for (const line of lines) assertBytes(spans, line);
    assert.ok(lines.slice(1).every(l => l.reused), JSON.stringify(lines));
    // server spans one reading each, client spans two from the second request on (the first opened its connection)
    assert.deepStrictEqual(r.lines.find(l => l.done).done.tracing.tcpInfo, {
      via: 'getsockopt',
      reason: "tcpInfo: 'getsockopt' was asked for (OTEL_NODE_EBPF_SPANS_TCP_INFO)",
      fromSlots: 0,
      byGetsockopt: 11,
    });
  });

  describe("an application's own tracing pipeline (NodeTracerProvider, HttpInstrumentation, createMetricProducer; no register)", function () {
    const OWN_HOOK = ['client /r0', 'client /r1', 'client /r2', 'server /r0', 'server /r1', 'server /r2'];
    // the application's OTLP exporter sends over the instrumented `http` too: its requests to /v1/traces are left out
    const appRequests = hooked => hooked.filter(x => !x.endsWith('/v1/traces')).sort();
    const runOwn = hook =>
      runWorkload({ ownPipeline: { hook }, requests: [{ body: 3000, reply: 5000 }, { body: 700, reply: 90_000 }, { body: 1, reply: 250_000 }] }, { address, script: APP, preload: false });

    it("with httpInstrumentationConfig(): client and server spans exact, the application's own requestHook still runs", async () => {
      const r = await runOwn(true);
      const lines = ok(r);
      const spans = spansOf(r);
      for (const line of lines) assertBytes(spans, line);
      assert.ok(lines.slice(1).every(l => l.reused), JSON.stringify(lines));
      const { done } = r.lines.find(l => l.done);
      assert.deepStrictEqual(appRequests(done.ownHook), OWN_HOOK, 'its hook saw the three requests, client and server');
      // as under register: server spans getsockopt for requests 0 and 1, client spans for 0's end and 1's start
      assert.deepStrictEqual(done.reading, { via: 'bpf', fromSlots: 4, byGetsockopt: 4 });
    });

    it('without the processor\'s requestHook: server spans exact (diagnostics channels), client spans unchanged', async () => {
      const r = await runOwn(false);
      const lines = ok(r);
      const spans = spansOf(r);
      for (const line of lines) {
        const { client, server } = pair(spans, line.request);
        assert.strictEqual(server.attributes['tcp.io.transmit'], line.read);
        assert.strictEqual(server.attributes['tcp.io.receive'], line.written);
        assert.deepStrictEqual(Object.keys(client.attributes).filter(k => KERNEL_ATTRS.test(k)), [], 'no hook: the client span is not tied to its socket');
        assert.strictEqual(client.attributes['http.request.method'] ?? client.attributes['http.method'], 'POST');
      }
      const { done } = r.lines.find(l => l.done);
      assert.deepStrictEqual(appRequests(done.ownHook), OWN_HOOK);
      assert.deepStrictEqual(done.reading, { via: 'bpf', fromSlots: 1, byGetsockopt: 2 });
    });
  });

  describe('inside a network namespace with a random-drop rule', function () {
    const NS = `oneb-spans-${process.pid}`;
    const PORT = 8080;
    const RULE = ['INPUT', '-p', 'tcp', '--dport', String(PORT), '-m', 'statistic', '--mode', 'random', '--probability', '0.05', '-j', 'DROP'];
    const inNs = (...args) => run('ip', ['netns', 'exec', NS, ...args]);
    let created = false;
    before(() => {
      run('ip', ['netns', 'add', NS]);
      created = true;
      inNs('ip', 'link', 'set', 'lo', 'up');
    });
    after(() => created && run('ip', ['netns', 'del', NS]));

    /** The kernel's total_retrans of one socket of the namespace (ss prints retrans:cur/total once it is non-zero). */
    const retransOf = (sport, dport) => {
      const text = inNs('ss', '-tinH', 'state', 'all', `( sport = :${sport} and dport = :${dport} )`);
      assert.ok(text.trim(), `no socket ${sport} -> ${dport}`);
      const m = text.match(/\bretrans:\d+\/(\d+)/);
      return m ? Number(m[1]) : 0;
    };

    async function lossyRequest() {
      const peer = spawn('ip', ['netns', 'exec', NS, process.execPath, PEER, '{}'], { stdio: ['pipe', 'pipe', 'inherit'] });
      const spans = [];
      const ready = new Promise(resolve =>
        readline.createInterface({ input: peer.stdout }).on('line', l => {
          const o = JSON.parse(l);
          if (o.ready) resolve(o.ready);
          if (o.span) spans.push(o.span);
        }),
      );
      const peerAddress = await ready;
      inNs('iptables', '-A', ...RULE);
      let ruleOn = true;
      let kernel, holdError;
      const appLines = [];
      try {
        const r = await runWorkload(
          { port: PORT, hold: true, requests: [{ body: 8 * 1024 * 1024, reply: 100 }] },
          {
            address: peerAddress,
            script: APP,
            wrap: ['ip', 'netns', 'exec', NS],
            env: { OTEL_TRACES_EXPORTER: 'otlp' },
            onLine: (o, child) => {
              appLines.push(o);
              if (!o.holding) return;
              try {
                const line = appLines.find(l => l.request === 0);
                kernel = { client: retransOf(line.localPort, PORT), server: retransOf(PORT, line.localPort) };
                inNs('iptables', '-D', ...RULE); // the export itself must not be slowed down
                ruleOn = false;
              } catch (err) {
                holdError = err;
              } finally {
                child.stdin.write('go\n');
              }
            },
          },
        );
        if (holdError) throw holdError;
        const [line] = ok(r);
        const deadline = Date.now() + 10_000;
        const own = () => spans.filter(s => s.resource['process.pid'] === r.child.pid);
        while (own().length < 2 && Date.now() < deadline) await new Promise(res => setTimeout(res, 50));
        return { line, kernel, spans: own() };
      } finally {
        if (ruleOn) inNs('iptables', '-D', ...RULE);
        peer.stdin.end('stop\n');
      }
    }

    it('the span of a request that suffered retransmits carries them, exactly as the kernel counted', async () => {
      let result;
      for (let attempt = 0; attempt < 2; attempt++) {
        result = await lossyRequest();
        if (result.kernel.client > 0) break; // 5 % of about 130 segments: none lost has a chance of about 0.001
      }
      const { line, kernel, spans } = result;
      assert.ok(kernel.client > 0, `no retransmits induced: ${JSON.stringify(kernel)}`);
      const { client, server } = pair(spans, 0);
      assert.strictEqual(client.attributes['tcp.retransmits'], kernel.client, JSON.stringify(kernel));
      // the server's window ends when its response finished; a probe of that response may still come later
      assert.ok(server.attributes['tcp.retransmits'] <= kernel.server, JSON.stringify(kernel));
      // retransmitted bytes are not counted twice
      assert.strictEqual(client.attributes['tcp.io.transmit'], line.written);
      assert.strictEqual(server.attributes['tcp.io.receive'], line.written);
    });
  });
});
