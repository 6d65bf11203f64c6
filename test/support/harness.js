'use strict';
// What the SDK tests share: a real OTLP receiver, workload processes with the SDK preloaded, a TCP peer, and
// look-ups into what the receiver decoded.
const { spawn } = require('child_process');
const net = require('net');
const path = require('path');
const readline = require('readline');
const { OtlpReceiver } = require('../../dist/otlp/receiver');

const ROOT = path.resolve(__dirname, '../..');
const REGISTER = path.join(ROOT, 'dist', 'register.js');
const WORKLOAD = path.join(__dirname, 'workload.js');

/** Under CI nothing this machine supports may be skipped. */
const CI = process.env.CI === 'true';

async function startReceiver() {
  const receiver = new OtlpReceiver();
  const address = await receiver.start();
  return { receiver, address };
}

/**
 * Runs test/support/workload.js (or `script`) with the SDK preloaded and the environment pointed at the receiver.
 * onLine(obj, child) sees every JSON line the workload prints. `nodeArgs` go to node before the preload (flags that
 * NODE_OPTIONS refuses, such as --cpu-prof); `node` is the binary. Resolves with { code, signal, lines, stderr }.
 */
function runWorkload(steps, { address, protocol = 'http/protobuf', env = {}, onLine, script = WORKLOAD, preload = true, preloadFlag = '--require', wrap = [], nodeArgs = [], node = process.execPath } = {}) {
  const endpoint = protocol === 'grpc' ? address.grpcEndpoint : address.httpEndpoint;
  const args = [...nodeArgs, ...(preload ? [preloadFlag, REGISTER] : []), script, JSON.stringify(steps)];
  const [cmd, ...cmdArgs] = [...wrap, node, ...args];
  const child = spawn(cmd, cmdArgs, {
    env: {
      ...process.env,
      OTEL_SERVICE_NAME: 'workload',
      OTEL_EXPORTER_OTLP_ENDPOINT: endpoint,
      OTEL_EXPORTER_OTLP_PROTOCOL: protocol,
      OTEL_METRIC_EXPORT_INTERVAL: '60000',
      OTEL_NODE_EBPF_STRICT: 'true',
      ...env,
    },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const lines = [];
  let stderr = '';
  child.stderr.on('data', d => (stderr += d));
  readline.createInterface({ input: child.stdout }).on('line', l => {
    let obj;
    try {
      obj = JSON.parse(l);
    } catch {
      obj = { text: l };
    }
    lines.push(obj);
    if (onLine) onLine(obj, child);
  });
  return new Promise(resolve => child.on('close', (code, signal) => resolve({ code, signal, lines, stderr, child })));
}

/** A TCP server that reads everything a client sends, then answers with `reply` bytes and closes. */
async function startPeer(host, reply) {
  const received = [];
  const server = net.createServer(s => {
    let n = 0;
    s.on('data', d => (n += d.length));
    s.on('end', () => {
      received.push(n);
      s.end(Buffer.alloc(reply, 1));
    });
    s.on('error', () => {});
  });
  await new Promise(r => server.listen(0, host, r));
  return { server, port: server.address().port, received, close: () => new Promise(r => server.close(r)) };
}

/** Sends `bytes` to host:port and waits for the peer to close. */
function sendTo(host, port, bytes) {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, host, () => s.end(Buffer.alloc(bytes, 2)));
    s.on('data', () => {});
    s.on('close', resolve);
    s.on('error', reject);
  });
}

/** A port nobody listens on (bound, then closed). */
async function closedPort(host) {
  const s = net.createServer();
  await new Promise(r => s.listen(0, host, r));
  const port = s.address().port;
  await new Promise(r => s.close(r));
  return port;
}

function matches(attrs, want) {
  return Object.entries(want).every(([k, v]) => (v === undefined ? !(k in attrs) : attrs[k] === v));
}

/** Points of one metric whose attributes include `want` (a key with value undefined must be absent). */
function pointsOf(points, name, want = {}) {
  return points.filter(p => p.name === name && matches(p.attributes, want));
}

/** The newest cumulative point of one series, or the sum of its delta points. */
function total(points, name, want = {}) {
  const ps = pointsOf(points, name, want);
  if (ps.length === 0) return undefined;
  if (ps[0].temporality === 'delta') return ps.reduce((a, p) => a + (p.value ?? p.count), 0);
  const newest = ps.reduce((a, p) => (p.timeUnixNano > a.timeUnixNano ? p : a));
  return newest.value ?? newest.count;
}

function describe_(points, name) {
  return pointsOf(points, name)
    .map(p => `${JSON.stringify(p.attributes)} = ${p.value ?? `count ${p.count}`}`)
    .join('\n');
}

/**
 * An OTLP/HTTP endpoint in front of the receiver, on `host`: `refuse(n)` decides, for the n-th request (from 1), an
 * answer ({ status, headers, body }) to give instead of passing it on (undefined: passed on). With `tls` ({ key, cert }) it speaks HTTPS;
 * with `basePath` its OTLP paths are under that prefix, as a backend's OTLP API (`/api/v2/otlp/v1/metrics`), and
 * other paths get 404. Resolves with { endpoint, bodies, requests ({ url, headers } of each), close }.
 */
async function startFront(address, refuse, host = '127.0.0.1', { tls, basePath = '' } = {}) {
  const http = require('http');
  const bodies = [];
  const requests = [];
  const onRequest = (req, res) => {
    const chunks = [];
    req.on('data', c => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      bodies.push(body);
      requests.push({ url: req.url, headers: req.headers });
      if (!req.url.startsWith(`${basePath}/`)) return res.writeHead(404).end();
      const refused = refuse(bodies.length);
      if (refused) return res.writeHead(refused.status, refused.headers ?? {}).end(refused.body);
      const forward = http.request(`${address.httpEndpoint}${req.url.slice(basePath.length)}`, { method: 'POST', headers: req.headers }, back => {
        res.writeHead(back.statusCode, back.headers);
        back.pipe(res);
      });
      forward.end(body);
    });
  };
  const front = tls ? require('https').createServer(tls, onRequest) : http.createServer(onRequest);
  await new Promise(resolve => front.listen(0, host, resolve));
  const name = net.isIPv6(host) ? `[${host}]` : host;
  return { endpoint: `${tls ? 'https' : 'http'}://${name}:${front.address().port}`, bodies, requests, close: () => front.close() };
}

/**
 * Runs test/support/cluster-app.js (a node:cluster server, the SDK in every process; on every address, or on
 * `host`), sends it `connections` connections of 1000 bytes, each answered with 500, stops it, and sums what its
 * processes exported for the listening port. With `otherListener`, this process listens on the same port at that
 * address meanwhile. Resolves with { code, stderr, port, clientPorts (client series but the exporter's), receive,
 * transmit, opened, durations, primaryBytes, show }.
 */
/**
 * A client of test/support/cluster-app.js for its CLUSTER_END: sends 1000 bytes; 'reset', waits for the server's
 * reset; 'peer-reset', reads the 500-byte answer and resets the connection. With a reset, it sends 100 ms after
 * connecting: the primary closes its reference to the connection once the worker has taken it, and a connection
 * whose last reference the primary holds when it is reset is freed by the primary, which then counts it (README,
 * `node:cluster`).
 */
function clusterClient(port, end) {
  if (end === 'fin') return sendTo('127.0.0.1', port, 1000);
  return new Promise((resolve, reject) => {
    let got = 0;
    const s = net.connect(port, '127.0.0.1', () => setTimeout(() => s.write(Buffer.alloc(1000, 2)), 100));
    s.on('data', d => {
      got += d.length;
      if (end === 'peer-reset' && got >= 500) s.resetAndDestroy();
    });
    s.on('close', resolve);
    s.on('error', e => (e.code === 'ECONNRESET' ? undefined : reject(e)));
  });
}

async function runCluster(receiver, address, { policy = 'rr', end = 'fin', connections = 10, host, otherListener, env = {} } = {}) {
  let primary, port, workers, clients;
  const r = await runWorkload([], {
    address,
    script: path.join(__dirname, 'cluster-app.js'),
    env: { NODE_CLUSTER_SCHED_POLICY: policy, CLUSTER_END: end, ...(host ? { CLUSTER_HOST: host } : {}), ...env },
    onLine: (o, child) => {
      if (!o.listening) return;
      ({ listening: port, workers } = o);
      primary = child;
      clients = (async () => {
        // another process (this one) listening on the cluster's port at another address
        const other = otherListener && net.createServer();
        if (other) await new Promise((resolve, reject) => other.listen(port, otherListener, resolve).on('error', reject));
        for (let i = 0; i < connections; i++) await clusterClient(port, end);
        child.stdin.write('stop\n');
        other?.close();
      })();
    },
  });
  await clients;
  if (!primary) return { code: r.code, stderr: `${r.stderr}\n${JSON.stringify(r.lines)}` };
  const pids = [primary.pid, ...workers];
  const ofPid = pid => receiver.points().filter(p => p.resource['process.pid'] === pid);
  const server = { 'tcp.connection.side': 'server', 'server.port': port, 'server.address': undefined, 'network.type': 'ipv4' };
  const sum = (name, want, of = pids) => of.reduce((n, pid) => n + (total(ofPid(pid), name, { ...server, ...want }) ?? 0), 0);
  const io = 'process.network.io';
  const points = pids.flatMap(ofPid);
  const exporterPort = Number(new URL(address.httpEndpoint).port);
  const clientPorts = [...new Set(pointsOf(points, io, { 'tcp.connection.side': 'client' }).map(p => p.attributes['server.port']))];
  return {
    code: r.code,
    stderr: r.stderr,
    port,
    clientPorts: clientPorts.filter(p => p !== exporterPort),
    receive: sum(io, { 'network.io.direction': 'receive' }),
    transmit: sum(io, { 'network.io.direction': 'transmit' }),
    opened: sum('tcp.connection.opened', {}),
    durations: sum('tcp.connection.duration', {}),
    primaryBytes: sum(io, {}, [primary.pid]),
    show: `${describe_(points, io)}\n${describe_(points, 'tcp.connection.opened')}\n${describe_(points, 'tcp.connection.duration')}`,
  };
}

module.exports = { ROOT, REGISTER, CI, startReceiver, startFront, runWorkload, runCluster, clusterClient, startPeer, sendTo, closedPort, pointsOf, total, describe: describe_ };
