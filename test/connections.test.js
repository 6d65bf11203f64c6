'use strict';
// Bytes and RTT from the kernel's per-connection counters (src/connections.ts), read on this process's own real
// sockets: no BPF involved, so the close path is fed with the reading a close event would carry.
const assert = require('assert');
const fs = require('fs');
const net = require('net');
const path = require('path');

const dist = path.resolve(__dirname, '..', 'dist');
const { loadAddon } = require(path.join(dist, 'native.js'));
const { ConnectionCounters } = require(path.join(dist, 'connections.js'));
const { count } = require(path.join(dist, 'histogram.js'));
const { SIDE_CLIENT, SIDE_SERVER, CONN_EVENT_CLOSED } = require(path.join(dist, 'bpf-layout.js'));
const { countersOf } = require(path.join(dist, 'tcpinfo.js'));

describe('connection counters (TCP_INFO of own sockets)', function () {
  let addon, server, client, peer;

  before(() => {
    addon = loadAddon();
    if (addon instanceof Error) throw addon;
  });

  beforeEach(async () => {
    server = net.createServer();
    await new Promise(r => server.listen(0, '127.0.0.1', r));
    const accepted = new Promise(r => server.once('connection', r));
    client = net.connect(server.address().port, '127.0.0.1');
    await new Promise(r => client.once('connect', r));
    peer = await accepted;
  });

  afterEach(() => {
    client.destroy();
    peer.destroy();
    server.close();
  });

  async function exchange(up, down) {
    let toPeer = 0, toClient = 0;
    const done = Promise.all([
      new Promise(r => peer.on('data', d => (toPeer += d.length) === up && r())),
      new Promise(r => client.on('data', d => (toClient += d.length) === down && r())),
    ]);
    client.write(Buffer.alloc(up, 1));
    peer.write(Buffer.alloc(down, 2));
    await done;
    peer.removeAllListeners('data');
    client.removeAllListeners('data');
  }

  const find = (c, side) => c.values().find(t => t.key.side === side && t.key.port === server.address().port);

  it('our FIN waiting behind unsent data is not a byte written (it takes a sequence number: notsent_bytes counts it)', () => {
    const { TCP_INFO, TCP_STATES } = require(path.join(dist, 'tcpinfo.js'));
    const info = (state, sent, notsent) => {
      const a = new Float64Array(9);
      a[TCP_INFO.STATE] = state;
      a[TCP_INFO.BYTES_SENT] = sent;
      a[TCP_INFO.NOTSENT_BYTES] = notsent;
      return a;
    };
    // 1,000 bytes written: 600 sent, 400 and the FIN queued; then all sent (notsent 0, the FIN past snd_nxt)
    for (const state of [TCP_STATES.FIN_WAIT1, TCP_STATES.CLOSING, TCP_STATES.LAST_ACK]) {
      assert.strictEqual(countersOf(info(state, 600, 401)).txBytes, 1000, `state ${state}, FIN queued`);
      assert.strictEqual(countersOf(info(state, 1000, 0)).txBytes, 1000, `state ${state}, FIN sent`);
    }
    // before the close, the queue holds data only
    assert.strictEqual(countersOf(info(TCP_STATES.ESTABLISHED, 600, 400)).txBytes, 1000);
    assert.strictEqual(countersOf(info(TCP_STATES.CLOSE_WAIT, 600, 400)).txBytes, 1000);
  });

  for (const [readers, reader] of [
    ['a new reader per reading (every socket listed)', () => () => addon.tcpSocketReader()()],
    ['one reader (the moved sockets, the same record for a socket each time)', () => addon.tcpSocketReader()],
  ]) {
    it(`adds only what each connection carried since its previous reading, per side, with one RTT sample per reading with traffic: ${readers}`, async () => {
      const read = reader();
      const c = new ConnectionCounters(100);
      c.baseline(read());
      await exchange(1000, 2000);
      c.read(read());
      c.read(read()); // nothing new: no bytes, no RTT sample
      await exchange(30_000, 7);
      c.read(read());
      const opened = find(c, SIDE_CLIENT);
      const accepted = find(c, SIDE_SERVER);
      assert.deepStrictEqual([opened.txBytes, opened.rxBytes, opened.key.address], [31_000, 2007, '127.0.0.1']);
      assert.deepStrictEqual([accepted.txBytes, accepted.rxBytes, accepted.key.address], [2007, 31_000, undefined]);
      assert.strictEqual(count(opened.rtt), 2);
      assert.strictEqual(count(accepted.rtt), 2);
    });
  }

  it('a connection that existed at the baseline counts from there; its close adds only the remainder', async () => {
    await exchange(500, 600); // before the SDK: not counted
    const c = new ConnectionCounters(100);
    c.baseline(addon.tcpSocketReader()());
    await exchange(10, 20);
    c.read(addon.tcpSocketReader()());
    await exchange(1, 2);
    // what bpf/sockets.bpf.c reports at destroy: the final counters and the addresses
    const out = new Float64Array(9);
    addon.tcpInfoReader(out)(client._handle.fd);
    const final = countersOf(out);
    c.closed({
      key: { address: '127.0.0.1', port: server.address().port, family: 4, side: SIDE_CLIENT, err: 0 },
      kind: CONN_EVENT_CLOSED, txBytes: final.txBytes, rxBytes: final.rxBytes, family: 4,
      localAddress: '127.0.0.1', localPort: client.localPort, peerAddress: '127.0.0.1', peerPort: server.address().port,
    });
    const opened = find(c, SIDE_CLIENT);
    assert.deepStrictEqual([opened.txBytes, opened.rxBytes], [11, 22]);
    assert.strictEqual(c.size, 1, 'the closed connection is forgotten, the accepted side is still followed');
  });

  it('bounds the series: past maxSeries, readings go to the overflow series and are counted', async () => {
    const c = new ConnectionCounters(1);
    c.baseline(addon.tcpSocketReader()());
    await exchange(3, 4);
    c.read(addon.tcpSocketReader()());
    const values = c.values();
    assert.strictEqual(values.length, 2);
    const overflow = values.find(t => t.key.side === 0);
    assert.ok(overflow, require("util").inspect(values.map(t => t.key)));
    assert.strictEqual(c.overflowed, 1);
    assert.strictEqual(values.reduce((a, t) => a + t.txBytes, 0), 7);
  });
});

describe('connection counters with the kernel close events (the SDK in this process)', function () {
  const { createMetricProducer } = require(path.join(dist, 'index.js'));
  const { MeterProvider, PeriodicExportingMetricReader, InMemoryMetricExporter, AggregationTemporality } = require('@opentelemetry/sdk-metrics');
  let handle, reader, exporter;

  before(() => {
    handle = createMetricProducer({ disabledProbes: ['nodejs', 'dns', 'tls'], strict: true });
    exporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
    reader = new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 1e9, metricProducers: [handle.producer] });
    new MeterProvider({ readers: [reader] });
  });

  after(async () => {
    await reader.shutdown();
    handle.shutdown();
  });

  async function bytes(port) {
    await reader.forceFlush();
    const out = {};
    for (const sm of exporter.getMetrics().slice(-1)[0].scopeMetrics)
      for (const m of sm.metrics.filter(m => m.descriptor.name === 'process.network.io'))
        for (const p of m.dataPoints.filter(p => p.attributes['server.port'] === port))
          out[`${p.attributes['tcp.connection.side']} ${p.attributes['network.io.direction']}`] = p.value;
    return out;
  }

  for (const host of ['127.0.0.1', '::1']) {
    it(`${host}: a connection read while it lives and then closed counts every byte once`, async () => {
      const server = net.createServer(s => s.on('data', d => s.write(d)));
      await new Promise(r => server.listen(0, host, r));
      const port = server.address().port;
      const client = net.connect(port, host);
      await new Promise(r => client.on('connect', r));
      let got = 0;
      client.on('data', d => (got += d.length));
      const echo = async n => {
        const want = got + n;
        client.write(Buffer.alloc(n, 3));
        while (got < want) await new Promise(r => setTimeout(r, 5));
      };
      await echo(1000);
      const live = await bytes(port);
      await echo(500);
      client.end();
      await new Promise(r => client.on('close', r));
      server.close();
      await new Promise(r => setTimeout(r, 100)); // the server side's socket is destroyed after the client's FIN
      const all = { 'client transmit': 1500, 'client receive': 1500, 'server transmit': 1500, 'server receive': 1500 };
      assert.deepStrictEqual(live, { 'client transmit': 1000, 'client receive': 1000, 'server transmit': 1000, 'server receive': 1000 });
      assert.deepStrictEqual(await bytes(port), all);
      assert.strictEqual(handle.status().probes.find(p => p.name === 'tcp.bytes').hook, 'tcp_info');
    });
  }

  it('many connections: the live read, in steps of 128 fds, counts every byte of every connection once', async () => {
    const server = net.createServer(s => s.on('data', d => s.write(d)));
    await new Promise(r => server.listen(0, '127.0.0.1', r));
    const port = server.address().port;
    const clients = [];
    try {
      for (let i = 0; i < 200; i++) {
        const c = net.connect(port, '127.0.0.1');
        await new Promise(r => c.on('connect', r));
        c.got = 0;
        c.on('data', d => (c.got += d.length));
        clients.push(c);
      }
      assert.ok(fs.readdirSync('/proc/self/fd').length > 3 * 128, 'more fds than three steps read');
      const echo = async n => {
        clients.forEach((c, i) => c.write(Buffer.alloc(n + i, 1)));
        while (clients.some((c, i) => c.got < n + i)) await new Promise(r => setTimeout(r, 5));
        for (const c of clients) c.got = 0;
      };
      const sum = n => clients.reduce((a, _, i) => a + n + i, 0);
      await echo(100);
      const first = await bytes(port);
      await echo(1000);
      const second = await bytes(port);
      assert.deepStrictEqual(first, { 'client transmit': sum(100), 'client receive': sum(100), 'server transmit': sum(100), 'server receive': sum(100) });
      const both = sum(100) + sum(1000);
      assert.deepStrictEqual(second, { 'client transmit': both, 'client receive': both, 'server transmit': both, 'server receive': both });
    } finally {
      for (const c of clients) c.destroy();
      server.close();
    }
  });
});

describe("the network namespace's listening ports (sock_diag, or /proc/self/net/tcp and tcp6)", function () {
  const { listeningPortsOfNetns, listeningPortsFromProc } = require(path.join(dist, 'sockets.js'));
  const { loadAddon } = require(path.join(dist, 'native.js'));

  it('counts every listening socket per port, IPv4 and IPv6, and nothing that only connects; sock_diag and /proc agree', async () => {
    const addon = loadAddon();
    const v4 = net.createServer();
    await new Promise(r => v4.listen(0, '127.0.0.1', r));
    const port = v4.address().port;
    const v6 = net.createServer();
    await new Promise(r => v6.listen({ port, host: '::1', ipv6Only: true }, r));
    const client = net.connect(port, '127.0.0.1');
    await new Promise(r => client.once('connect', r));
    try {
      assert.ok(Array.isArray(addon.listeningTcpPorts()), `sock_diag: ${addon.listeningTcpPorts()}`);
      const ports = listeningPortsOfNetns(addon);
      assert.strictEqual(ports.get(port), 2);
      assert.strictEqual(ports.get(client.localPort), undefined);
      // the test's own ports (other processes of the namespace may listen and stop between the two reads)
      const fromProc = listeningPortsFromProc();
      assert.deepStrictEqual([fromProc.get(port), fromProc.get(client.localPort)], [2, undefined]);
      // a kernel without inet_diag: /proc
      assert.deepStrictEqual(listeningPortsOfNetns({ listeningTcpPorts: () => -2 /* ENOENT */ }).get(port), 2);
    } finally {
      client.destroy();
      v4.close();
      v6.close();
    }
    assert.strictEqual(listeningPortsFromProc(['/nonexistent']).size, 0);
  });
});
