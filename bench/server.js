#!/usr/bin/env node
'use strict';
// The benchmark's server: a plain node:http keep-alive server with a ~1 KiB JSON response, on an ephemeral port of
// 127.0.0.1. It knows nothing of the SDK: bench/run.js starts it with or without `--require dist/register.js`.
//
// Talks to its parent over the IPC channel (it must be spawned with one):
//   → { type: 'listening', port }                       once it listens
//   ← { type: 'alloc-start', profile }                   starts a GC observer and, with `profile`, V8's sampling heap
//                          → { type: 'alloc-start' }     profiler (objects that GC frees included; it slows GC down);
//   ← { type: 'alloc-stop' }  → { type: 'alloc-stop', ... } the stop answers with the GC pauses since, the bytes
//                                                        allocated by origin (profiled) and the young generation's
//                                                        size (bench/alloc.js)
//   ← { type: 'sample' }  → { type: 'sample', ... }      its CPU time, memory and, with the SDK, what status() says;
//                                                        with the SDK it first exports (forceFlush), so that the
//                                                        parent's OTLP receiver holds the kernel run-time statistics
//                                                        as of this moment; CPU time is read before and after
//                                                        (bench/memory.js also reads V8's heap spaces and the
//                                                        modules loaded: `heap`, `modules`)
// It exits on SIGTERM (the SDK, when loaded, exports a last time) or when the parent goes away.
//
// BENCH_HEAP_MB (default 0): keep about that many MB of objects alive from the start, as an application's own state
// (caches, modules, configuration). This server's live heap is otherwise 2.6 MB, less than any real service's, and
// V8 sizes the young generation, and so every scavenge, by what survives: see docs/benchmark.md.

const fs = require('node:fs');
const http = require('node:http');
const v8 = require('node:v8');

// A realistic small API response: an order with a few items. JSON.stringify runs per request, as in an application.
const order = {
  id: 'ord_8f14e45fceea167a5a36dedd4bea2543',
  status: 'confirmed',
  currency: 'EUR',
  customer: { id: 'cus_1679091c5a880faf6fb5e6087eb1b2dc', name: 'Ada Lovelace', tier: 'gold' },
  items: Array.from({ length: 7 }, (_, i) => ({
    sku: `SKU-${1000 + i}`,
    name: `Item number ${i}`,
    quantity: 1 + (i % 3),
    unitPrice: 9.99 + i,
    tags: ['bench', 'keep-alive'],
  })),
  shipping: { method: 'standard', address: { street: '12 Analytical Engine Way', city: 'London', zip: 'EC1A 1BB' } },
  createdAt: '2026-11-25T12:00:00.000Z',
};
const BODY_BYTES = Buffer.byteLength(JSON.stringify(order));

// about 190 bytes of heap per entry (an object, a short string, a two-element array)
const heapMB = Number(process.env.BENCH_HEAP_MB || 0);
const state = Array.from({ length: Math.round((heapMB * 1048576) / 190) }, (_, i) => ({ id: i, name: `entry-${i}`, range: [i, i + 1] }));

function respond(res) {
  const body = JSON.stringify(order);
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

// BENCH_WORKLOAD: what a request does before it answers. http (default): nothing; dns: one dns.lookup() of
// BENCH_DNS_NAME (default localhost, a hosts-file name: getaddrinfo on the thread pool, no DNS server asked);
// threadpool: one fs.stat() of this file (a thread-pool task).
const WORKLOAD = process.env.BENCH_WORKLOAD || 'http';
const DNS_NAME = process.env.BENCH_DNS_NAME || 'localhost';
const WORKLOADS = {
  http: (req, res) => respond(res),
  dns: (req, res) => require('node:dns').lookup(DNS_NAME, err => (err ? res.destroy(err) : respond(res))),
  threadpool: (req, res) => fs.stat(__filename, err => (err ? res.destroy(err) : respond(res))),
};
if (!WORKLOADS[WORKLOAD]) throw new Error(`BENCH_WORKLOAD: unknown workload ${WORKLOAD} (${Object.keys(WORKLOADS).join(', ')})`);
const server = http.createServer(WORKLOADS[WORKLOAD]);
// Connections stay open for the whole round (wrk keeps its connections alive).
server.keepAliveTimeout = 120_000;
server.headersTimeout = 130_000;

function sdkHandle() {
  return globalThis[Symbol.for('otel-node-ebpf')];
}

/** CPU time of the process (µs, all threads), its context switches and the monotonic clock (ns) at that moment. */
function cpuNow() {
  const status = fs.readFileSync('/proc/self/status', 'utf8');
  const field = (name) => Number((status.match(new RegExp(`^${name}:\\s*(\\d+)`, 'm')) || [])[1] || 0);
  return {
    ...process.cpuUsage(),
    voluntaryCtxSwitches: field('voluntary_ctxt_switches'),
    involuntaryCtxSwitches: field('nonvoluntary_ctxt_switches'),
    hrtimeNs: String(process.hrtime.bigint()),
  };
}

async function sample() {
  const handle = sdkHandle();
  const out = { type: 'sample', pid: process.pid, sdk: Boolean(handle), cpuBeforeFlush: cpuNow() };
  if (handle) {
    const s = handle.status();
    out.status = {
      active: s.active,
      kernelTime: s.kernelTime,
      kernelTimeSampling: s.kernelTimeSampling ?? null,
      probes: s.probes.map((p) => ({ name: p.name, hook: p.hook ?? null, attached: p.attached })),
    };
    // Every point of this export is stamped at or after this time: the parent waits for it in its receiver.
    out.flushStartedUnixNs = String(BigInt(Date.now()) * 1_000_000n);
    await handle.forceFlush();
  }
  // The parent measures from after one flush to before the next: the extra exports it asks for are not counted (the
  // periodic ones, every OTEL_METRIC_EXPORT_INTERVAL, are).
  out.cpuAfterFlush = cpuNow();
  out.memory = process.memoryUsage();
  out.applicationStateEntries = state.length; // (and so `state` stays reachable)
  // Physical (resident) size of each V8 heap space: the part of the anonymous memory that is the JavaScript heap.
  out.heap = { spaces: v8.getHeapSpaceStatistics().map((s) => ({ name: s.space_name, used: s.space_used_size, physical: s.physical_space_size })), ...v8.getHeapStatistics() };
  out.modules = Object.keys(require.cache);
  return out;
}

// What allocates while the server is under load: V8's sampling heap profiler (in-process, through the inspector),
// every GC pause (perf_hooks) and the young generation's size. Loaded only when the parent asks (bench/alloc.js).
let allocation;
const SDK_CODE = [`${require('node:path').resolve(__dirname, '..', 'dist')}/`, '/node_modules/'];

/** Bytes sampled under each origin: `sdk` for anything with the SDK's code or its dependencies on the stack. */
function allocatedByOrigin(profile) {
  const out = { sdk: 0, application: 0, node: 0 };
  const walk = (node, sdk) => {
    const url = node.callFrame.url;
    const underSdk = sdk || SDK_CODE.some((prefix) => url.includes(prefix));
    if (underSdk) out.sdk += node.selfSize;
    else if (url === __filename || url === `file://${__filename}`) out.application += node.selfSize;
    else out.node += node.selfSize; // node's own modules, and builtins called from them or from the event loop
    for (const child of node.children) walk(child, underSdk);
  };
  walk(profile.head, false);
  return out;
}

async function allocationStart({ profile }) {
  const inspector = require('node:inspector');
  const { PerformanceObserver, constants } = require('node:perf_hooks');
  const session = new inspector.Session();
  session.connect();
  const post = (method, params) => new Promise((resolve, reject) => session.post(method, params, (err, r) => (err ? reject(err) : resolve(r))));
  const pauses = { minor: [], major: [] };
  const observer = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      if (e.detail.kind === constants.NODE_PERFORMANCE_GC_MINOR) pauses.minor.push(e.duration);
      else if (e.detail.kind === constants.NODE_PERFORMANCE_GC_MAJOR) pauses.major.push(e.duration);
    }
  });
  observer.observe({ entryTypes: ['gc'] });
  if (profile) await post('HeapProfiler.startSampling', { samplingInterval: 4096, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
  allocation = { session, post, observer, pauses, profile };
  return { type: 'alloc-start' };
}

async function allocationStop() {
  const { session, post, observer, pauses, profile } = allocation;
  const allocated = profile ? allocatedByOrigin((await post('HeapProfiler.stopSampling')).profile) : undefined;
  await new Promise((resolve) => setImmediate(resolve)); // the last GC entries
  observer.disconnect();
  session.disconnect();
  allocation = undefined;
  const newSpace = v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space');
  return { type: 'alloc-stop', allocated, pauses, newSpaceBytes: newSpace.space_size };
}

const HANDLERS = { sample, 'alloc-start': allocationStart, 'alloc-stop': allocationStop };

process.on('message', (msg) => {
  const handler = msg && Object.hasOwn(HANDLERS, msg.type) && HANDLERS[msg.type];
  if (handler) {
    handler(msg).then(
      (reply) => process.send(reply),
      (err) => process.send({ type: 'error', message: String(err && err.stack ? err.stack : err) }),
    );
  }
});
process.on('disconnect', () => process.exit(0));
process.on('SIGTERM', () => {
  // With the SDK loaded, its own SIGTERM listener exports first; our listener means the process is not re-killed.
  server.close();
  server.closeAllConnections();
  const handle = sdkHandle();
  const done = handle ? handle.shutdown() : Promise.resolve();
  done.finally(() => process.exit(0));
});

server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  if (process.send) process.send({ type: 'listening', port, bodyBytes: BODY_BYTES });
  else console.log(`listening on 127.0.0.1:${port} (${BODY_BYTES} byte body)`);
});
