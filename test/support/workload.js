'use strict';
// A process that does a known amount of TCP work, run by the tests with the SDK preloaded
// (node --require dist/register.js workload.js '<json>'). It prints one JSON line per step on stdout and exits
// normally when done, which makes the SDK flush.
//
// Steps (in order):
//   { "listen": "127.0.0.1" }                         listen on an ephemeral port; prints {"listening": port}
//   { "accept": N }                                   wait for one connection to the listener, read exactly N bytes, close
//   { "connect": [host, port], "send": A, "recv": B } send A bytes, read until the peer closes, expect B bytes
//     + "holdOpen": true                              send A bytes without closing, read B bytes, print
//                                                     {"holding": {sent, received, localPort}}, wait for a line on
//                                                     stdin, then close and read until the peer closes (B bytes in all)
//   { "many": [host, port, N], "send": A, "recv": B }  N connections open at once, each sends A and reads B bytes
//   { "refused": [host, port] }                       a connect that must fail with ECONNREFUSED
//   { "failedListen": host }                          a listen() that fails with EADDRINUSE (two sockets bound to one
//                                                     port, SO_REUSEADDR: the second listen() finds it taken), both
//                                                     closed; then a process without the SDK listens on that port and
//                                                     this one connects to it, sends 1000 bytes, reads 500; prints
//                                                     {"failedListen": {port, errno}}
//   { "wait": "line" }                                wait for a line on stdin
//   { "sleep": ms }
//   { "trap": "SIGTERM" }                              the application's own handler: prints {"trapped": sig}, exits 0 after 300 ms
//   { "trap": "SIGTERM", "exitNow": true }             the same handler calling process.exit(0) at once
//   { "signalExit": true }                             a library's passive listener (signal-exit's onExit): prints
//                                                      {"onExit": signal} when the process ends
//   { "beforeExit": true }                             the application's 'beforeExit' listener: prints {"beforeExit": n}
//                                                      for its n-th call
//   { "beforeExit": { "connect": ..., "send": A, "recv": B } }  the same, and its first call starts a job 200 ms
//                                                      later: the connect step's work
//   { "exit": code }                                   process.exit(code), the remaining steps not run; prints the
//                                                      SDK's status().exporter first
const { spawn } = require('child_process');
const net = require('net');
const os = require('os');
const readline = require('readline');

const steps = JSON.parse(process.argv[2]);
const out = obj => process.stdout.write(JSON.stringify(obj) + '\n');
const stdinLines = readline.createInterface({ input: process.stdin });
const lines = [];
let lineWaiter;
stdinLines.on('line', l => (lineWaiter ? (lineWaiter(l), (lineWaiter = undefined)) : lines.push(l)));

let server;
const pendingSockets = [];
let socketWaiter;

/** The npm packages this process has loaded (the SDK's dependencies: the workload itself uses only Node's own). */
function loadedPackages() {
  const names = Object.keys(require.cache).map(file => file.match(/node_modules\/((?:@[^/]+\/)?[^/]+)\//)?.[1]);
  return [...new Set(names.filter(Boolean))].sort();
}

function nextLine() {
  return lines.length ? Promise.resolve(lines.shift()) : new Promise(r => (lineWaiter = r));
}

function nextSocket() {
  return pendingSockets.length ? Promise.resolve(pendingSockets.shift()) : new Promise(r => (socketWaiter = r));
}

function readAll(socket, onCount) {
  return new Promise((resolve, reject) => {
    let n = 0;
    socket.on('data', d => {
      n += d.length;
      if (onCount) onCount(n);
    });
    socket.on('end', () => resolve(n));
    socket.on('error', reject);
  });
}

async function finishConnect(step, s, received) {
  const n = await received;
  await new Promise(r => (s.destroyed ? r() : s.on('close', r)));
  if (n !== step.recv) throw new Error(`connect: received ${n} bytes, expected ${step.recv}`);
  out({ connected: { sent: step.send, received: n, localPort: s.localPort } });
}

const handlers = {
  async listen(step) {
    server = net.createServer(s => (socketWaiter ? (socketWaiter(s), (socketWaiter = undefined)) : pendingSockets.push(s)));
    await new Promise(r => server.listen(0, step.listen, r));
    out({ listening: server.address().port });
  },
  async accept(step) {
    const s = await nextSocket();
    const n = await readAll(s);
    s.end();
    await new Promise(r => s.on('close', r));
    if (n !== step.accept) throw new Error(`accepted connection: read ${n} bytes, expected ${step.accept}`);
    out({ accepted: n });
  },
  async connect(step) {
    const [host, port] = step.connect;
    const s = net.connect(port, host);
    await new Promise((r, j) => (s.once('connect', r), s.once('error', j)));
    if (step.holdOpen) {
      let gotAll;
      const all = new Promise(r => (gotAll = r));
      const received = readAll(s, n => n >= step.recv && gotAll(n));
      s.write(Buffer.alloc(step.send, 7));
      // resolves early if the peer closes (or the socket fails) before B bytes came: checked below
      const n = await Promise.race([all, received]);
      out({ holding: { sent: step.send, received: n, localPort: s.localPort } });
      await nextLine();
      s.end();
      return finishConnect(step, s, received);
    }
    const received = readAll(s);
    s.end(Buffer.alloc(step.send, 7));
    return finishConnect(step, s, received);
  },
  async many(step) {
    const [host, port, n] = step.many;
    const sockets = await Promise.all(
      Array.from({ length: n }, () => new Promise((r, j) => { const s = net.connect(port, host, () => r(s)); s.once('error', j); })),
    );
    const counts = await Promise.all(sockets.map(s => { const n = readAll(s); s.end(Buffer.alloc(step.send, 5)); return n; }));
    if (counts.some(c => c !== step.recv)) throw new Error(`many: received ${counts}, expected ${step.recv} each`);
    out({ many: n });
  },
  async failedListen(step) {
    const host = step.failedListen;
    // Node binds before it listens, and a bind to a listening port fails: the handles of net.Server, by hand
    const { TCP, constants } = process.binding('tcp_wrap');
    const first = new TCP(constants.SERVER);
    const second = new TCP(constants.SERVER);
    const address = {};
    if (first.bind(host, 0) || first.getsockname(address) || second.bind(host, address.port) || first.listen(16)) {
      throw new Error('failedListen: could not bind and listen');
    }
    const errno = second.listen(16);
    await Promise.all([first, second].map(h => new Promise(r => h.close(r))));
    if (errno !== -os.constants.errno.EADDRINUSE) throw new Error(`failedListen: second listen() gave ${errno}`);
    const peer = spawn(process.execPath, ['-e', `
      const server = require('net').createServer(c => {
        c.resume().on('end', () => { c.end(Buffer.alloc(500)); server.close(); });
      }).listen(${address.port}, ${JSON.stringify(host)}, () => console.log('ready'));`], { env: {}, stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise((r, j) => (peer.stdout.once('data', r), peer.once('exit', code => j(new Error(`failedListen: peer exited ${code}`)))));
    const s = net.connect(address.port, host);
    await new Promise((r, j) => (s.once('connect', r), s.once('error', j)));
    const received = readAll(s);
    s.end(Buffer.alloc(1000, 3));
    await finishConnect({ send: 1000, recv: 500 }, s, received);
    out({ failedListen: { port: address.port, errno } });
  },
  async refused(step) {
    const [host, port] = step.refused;
    const err = await new Promise(r => net.connect(port, host).on('error', r).on('connect', () => r(new Error('connected'))));
    if (err.code !== 'ECONNREFUSED') throw new Error(`expected ECONNREFUSED, got ${err.code || err.message}`);
    out({ refused: port });
  },
  async wait() {
    out({ waiting: true });
    await nextLine();
  },
  async trap(step) {
    process.on(step.trap, sig => {
      out({ trapped: sig });
      if (step.exitNow) process.exit(0);
      setTimeout(() => process.exit(0), 300);
    });
  },
  async signalExit() {
    // a callback that returns true keeps the process alive: this one returns nothing
    require('signal-exit').onExit((code, signal) => {
      out({ onExit: signal });
    });
  },
  async beforeExit(step) {
    let n = 0;
    process.on('beforeExit', () => {
      out({ beforeExit: ++n });
      if (n === 1 && step.beforeExit.connect) setTimeout(() => handlers.connect(step.beforeExit), 200);
    });
  },
  async exit(step) {
    out({ exiting: step.exit, exporter: globalThis[Symbol.for('otel-node-ebpf')]?.status().exporter });
    process.exit(step.exit);
  },
  async sleep(step) {
    await new Promise(r => setTimeout(r, step.sleep));
  },
};

(async () => {
  for (const step of steps) {
    const name = Object.keys(handlers).find(k => k in step);
    await handlers[name](step);
  }
  if (server) server.close();
  stdinLines.close();
  process.stdin.destroy();
  const handle = globalThis[Symbol.for('otel-node-ebpf')];
  const diagLogger = globalThis[Symbol.for('opentelemetry.js.api.1')]?.diag !== undefined;
  out({ done: true, status: handle ? handle.status() : null, packages: loadedPackages(), diagLogger });
})().catch(err => {
  out({ error: err.message });
  process.exitCode = 1;
  if (server) server.close();
  stdinLines.close();
  process.stdin.destroy();
});
