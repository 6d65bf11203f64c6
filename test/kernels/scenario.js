#!/usr/bin/env node
'use strict';
// What runs inside the VM (test/kernels.test.js), once per attach mode: the same known TCP work, measured by the
// SDK with OTEL_NODE_EBPF_ATTACH_MODE forced to each hook path. Only what differs between the paths is exercised:
// the tcp.* measurements (the other groups have one path only and are turned off).
//
//   node test/kernels/scenario.js [--doctor] <mode ...>      modes: auto, kprobe, fentry, tracepoint
//
// Prints one JSON line per mode: { mode, probes: {name: {hook, attached, attempts}}, counts, samples, ms }.
// `counts` are exact and must be identical on every path: bytes per series and direction, connections opened (with
// their connect and lifetime histogram counts), failed by error.type, resets by direction. `samples` vary with
// timing (RTT samples, program runs, retransmits): they are only checked to be there. With --doctor, one more line:
// { doctor: <node dist/cli.js doctor --json> }.
const { spawnSync } = require('child_process');
const path = require('path');
const { ROOT, startReceiver, runWorkload, runCluster, startPeer, sendTo, closedPort, pointsOf, total } = require('../support/harness');
const { WORKLOAD: UPROBE_WORKLOAD } = require('../support/uprobes');

const SENT = 1_234_567;
const RECEIVED = 7_654_321;
const ACCEPTED = 3_333_333;
const MODES = ['auto', 'kprobe', 'fentry', 'tracepoint'];

async function scenario(mode, address, receiver) {
  const t0 = Date.now();
  const [peer4, peer6] = await Promise.all([startPeer('127.0.0.1', RECEIVED), startPeer('::1', RECEIVED)]);
  const refusedPort = await closedPort('127.0.0.1');
  let accepted;
  const r = await runWorkload(
    [
      { failedListen: '127.0.0.1' },
      { listen: '127.0.0.1' },
      { connect: ['127.0.0.1', peer4.port], send: SENT, recv: RECEIVED },
      { connect: ['::1', peer6.port], send: SENT, recv: RECEIVED },
      { accept: ACCEPTED },
      { refused: ['127.0.0.1', refusedPort] },
      { sleep: 100 },
    ],
    {
      address,
      // the test decides what counts as a failure: every attempt is reported, none is fatal; BPF run-time statistics
      // on all the time, so that each program's runs are counted (sampled windows may miss a reset or two)
      env: {
        OTEL_NODE_EBPF_ATTACH_MODE: mode,
        OTEL_NODE_EBPF_STRICT: 'false',
        OTEL_NODE_EBPF_DISABLED_PROBES: 'nodejs,dns,tls',
        OTEL_NODE_EBPF_KERNEL_STATS: 'always',
      },
      onLine: o => o.listening && (accepted = sendTo('127.0.0.1', o.listening, ACCEPTED)),
    },
  );
  await accepted;
  await Promise.all([peer4.close(), peer6.close()]);
  const done = r.lines.find(l => l.done);
  if (r.code !== 0 || !done) return { mode, error: `workload failed (${r.code ?? r.signal}): ${r.stderr}\n${JSON.stringify(r.lines)}` };

  const pid = r.child.pid;
  const points = receiver.points().filter(p => p.resource['process.pid'] === pid);
  const listening = r.lines.find(l => l.listening).listening;
  const series = {
    client_ipv4: { 'tcp.connection.side': 'client', 'network.type': 'ipv4', 'server.address': '127.0.0.1', 'server.port': peer4.port },
    client_ipv6: { 'tcp.connection.side': 'client', 'network.type': 'ipv6', 'server.address': '::1', 'server.port': peer6.port },
    server_ipv4: { 'tcp.connection.side': 'server', 'network.type': 'ipv4', 'server.address': undefined, 'server.port': listening },
  };
  const refused = { 'tcp.connection.side': 'client', 'server.address': '127.0.0.1', 'server.port': refusedPort };
  const counts = {};
  const samples = {};
  for (const [name, want] of Object.entries(series)) {
    counts[name] = {
      transmit: total(points, 'process.network.io', { ...want, 'network.io.direction': 'transmit' }) ?? null,
      receive: total(points, 'process.network.io', { ...want, 'network.io.direction': 'receive' }) ?? null,
      opened: total(points, 'tcp.connection.opened', want) ?? null,
      connectDurations: total(points, 'tcp.connect.duration', want) ?? null,
      connectionDurations: total(points, 'tcp.connection.duration', want) ?? null,
      resets: total(points, 'tcp.resets', want) ?? null,
      failed: total(points, 'tcp.connection.failed', want) ?? null,
    };
    samples[`rtt_${name}`] = total(points, 'tcp.rtt', want) ?? null;
  }
  counts.refused = {
    opened: total(points, 'tcp.connection.opened', refused) ?? null,
    failed: Object.fromEntries(pointsOf(points, 'tcp.connection.failed', refused).map(p => [p.attributes['error.type'], total(points, 'tcp.connection.failed', { ...refused, 'error.type': p.attributes['error.type'] })])),
    resets: Object.fromEntries(pointsOf(points, 'tcp.resets', refused).map(p => [p.attributes['tcp.reset.direction'], total(points, 'tcp.resets', { ...refused, 'tcp.reset.direction': p.attributes['tcp.reset.direction'] })])),
  };
  // a listen() that failed leaves no listener behind: a connection to another process's listener on that port later
  // is a client connection, never also a server one
  const failedPort = r.lines.find(l => l.failedListen).failedListen.port;
  const onFailedPort = side => ({ 'tcp.connection.side': side, 'server.port': failedPort });
  counts.failed_listen = {
    clientOpened: total(points, 'tcp.connection.opened', onFailedPort('client')) ?? null,
    clientTransmit: total(points, 'process.network.io', { ...onFailedPort('client'), 'network.io.direction': 'transmit' }) ?? null,
    clientReceive: total(points, 'process.network.io', { ...onFailedPort('client'), 'network.io.direction': 'receive' }) ?? null,
    serverOpened: total(points, 'tcp.connection.opened', onFailedPort('server')) ?? null,
    serverBytes: total(points, 'process.network.io', onFailedPort('server')) ?? null,
  };
  // a node:cluster server (round-robin: the primary accepts and hands over), the same hooks forced in every process
  const cluster = await runCluster(receiver, address, { connections: 4, env: { OTEL_NODE_EBPF_ATTACH_MODE: mode, OTEL_NODE_EBPF_STRICT: 'false', OTEL_NODE_EBPF_DISABLED_PROBES: 'nodejs,dns,tls' } });
  if (cluster.code !== 0) return { mode, error: `cluster workload failed (${cluster.code}): ${cluster.stderr}` };
  counts.cluster = { clientPorts: cluster.clientPorts, receive: cluster.receive, transmit: cluster.transmit, opened: cluster.opened, durations: cluster.durations, primaryBytes: cluster.primaryBytes };
  // the same, its connections reset by the worker, then by the client
  for (const end of ['reset', 'peer-reset']) {
    const c = await runCluster(receiver, address, { end, connections: 4, env: { OTEL_NODE_EBPF_ATTACH_MODE: mode, OTEL_NODE_EBPF_STRICT: 'false', OTEL_NODE_EBPF_DISABLED_PROBES: 'nodejs,dns,tls' } });
    if (c.code !== 0) return { mode, error: `cluster workload (${end}) failed (${c.code}): ${c.stderr}` };
    counts[`cluster_${end}`] = { clientPorts: c.clientPorts, receive: c.receive, transmit: c.transmit, opened: c.opened, durations: c.durations, primaryBytes: c.primaryBytes };
  }
  // loopback retransmits now and then (tail loss probes of a busy machine): a sample, not an exact count
  samples.retransmits = pointsOf(points, 'tcp.retransmits').reduce((a, p) => a + p.value, 0);

  const probes = {};
  for (const p of done.status.probes.filter(p => p.name.startsWith('tcp.'))) {
    probes[p.name] = { attached: p.attached, hook: p.hook ?? null, reason: p.reason, attempts: p.attempts };
    samples[`runs_${p.name}`] = total(points, 'otel_node_ebpf.probe.runs', { 'otel_node_ebpf.probe': p.name }) ?? null;
  }
  return { mode, probes, counts, samples, lookup: mode === 'auto' ? await lookup(address, receiver) : undefined, ms: Date.now() - t0 };
}

/**
 * One DNS lookup measured by the SDK (dns.lookup only): its uprobes take uprobe_multi links where the kernel has them
 * (6.6), uprobe perf events before.
 */
async function lookup(address, receiver) {
  const r = await runWorkload([{ lookup: ['localhost'] }], {
    address,
    script: UPROBE_WORKLOAD,
    env: { OTEL_NODE_EBPF_STRICT: 'false', OTEL_NODE_EBPF_DISABLED_PROBES: 'tcp,nodejs,tls' },
  });
  const done = r.lines.find(l => l.done);
  if (r.code !== 0 || !done) return { error: `lookup workload failed (${r.code ?? r.signal}): ${r.stderr}\n${JSON.stringify(r.lines)}` };
  const dns = done.status.probes.find(p => p.name === 'dns.lookup');
  const points = receiver.points().filter(p => p.resource['process.pid'] === r.child.pid);
  return { attached: dns.attached, uprobeLinks: dns.uprobeLinks ?? null, reason: dns.reason, count: total(points, 'dns.lookup.duration', { 'dns.question.name': 'localhost' }) ?? null };
}

async function main() {
  const args = process.argv.slice(2);
  const doctor = args.includes('--doctor');
  const modes = args.filter(a => a !== '--doctor');
  if (modes.length === 0 || modes.some(m => !MODES.includes(m))) {
    console.error(`usage: node test/kernels/scenario.js [--doctor] <${MODES.join('|')} ...>`);
    process.exit(2);
  }
  const { receiver, address } = await startReceiver();
  try {
    for (const mode of modes) console.log(JSON.stringify(await scenario(mode, address, receiver)));
  } finally {
    await receiver.stop();
  }
  if (doctor) {
    const t0 = Date.now();
    // exits 1 when nothing attaches: the report says why
    const r = spawnSync(process.execPath, [path.join(ROOT, 'dist', 'cli.js'), 'doctor', '--json'], { encoding: 'utf8' });
    let report;
    try {
      report = JSON.parse(r.stdout);
    } catch {
      report = { error: `doctor exited ${r.status}: ${r.stderr}${r.stdout}` };
    }
    console.log(JSON.stringify({ doctor: report, ms: Date.now() - t0 }));
  }
}

module.exports = { SENT, RECEIVED, ACCEPTED };

if (require.main === module) {
  main().catch(err => {
    console.error(err.stack);
    process.exit(1);
  });
}
