#!/usr/bin/env node
'use strict';
// What the server's JavaScript allocates under load, and what its scavenges cost (`node bench/alloc.js`): the same
// server and SDK settings as `npm run bench` (bench/server.js, bench/server-process.js), SDK off and on in alternating
// rounds, a fresh process per round. Each round, after ALLOC_WARMUP seconds of load, has two windows of
// ALLOC_DURATION seconds of load each: in the first, every GC pause is observed; in the second, V8's sampling heap
// profiler runs too (objects that GC has freed included, so it counts allocation, not what is live; it slows
// scavenges down, which is why the pauses come from the first window). It reports, per mode (medians over the rounds):
//
//   allocated per request   bytes, by origin (second window): the SDK (its code or its dependencies anywhere on the
//                           stack), the application (bench/server.js), node (its own modules and builtins: the HTTP
//                           stack)
//   scavenges               per 1000 requests, their mean pause, and the scavenge time per 1000 requests (first window)
//   new space               V8's young generation at the end of the first window (both semi-spaces)
//
// Needs root and a build (npm run build). Environment:
//   ALLOC_PAIRS       rounds per mode (default 3)
//   ALLOC_WARMUP      seconds of load before the first window (default 4)
//   ALLOC_DURATION    seconds of load in each window (default 8)
//   ALLOC_NODE_FLAGS  node options for both servers, e.g. `--min-semi-space-size=16 --max-semi-space-size=16` (a
//                     young generation of one size from the start) or `--single-threaded-gc`
// The SDK's own variables pass through to the SDK's process. Run it under `flock /tmp/bench.lock` on a shared machine.

const { execFile } = require('node:child_process');
const os = require('node:os');
const path = require('node:path');
const { intEnv, pinnedTo, startServer, nextMessage, stopServer } = require('./server-process');

const ROOT = path.resolve(__dirname, '..');

const CONFIG = {
  pairs: intEnv('ALLOC_PAIRS', 3, 1),
  warmupS: intEnv('ALLOC_WARMUP', 4),
  durationS: intEnv('ALLOC_DURATION', 8, 1),
  nodeArgs: (process.env.ALLOC_NODE_FLAGS || '').split(/\s+/).filter(Boolean),
  // as npm run bench: the server on CPU 0, wrk on CPU 1
  pin: os.cpus().length >= 2,
};

function wrk(port, seconds) {
  const [cmd, args] = pinnedTo(CONFIG.pin ? 1 : undefined, 'wrk', ['-t1', '-c32', `-d${seconds}s`, `http://127.0.0.1:${port}/`]);
  return new Promise((resolve, reject) =>
    execFile(cmd, args, (err, stdout) => {
      if (err) return reject(err);
      const requests = Number((stdout.match(/(\d+) requests in/) || [])[1]);
      if (!requests) return reject(new Error(`wrk: no request count in:\n${stdout}`));
      resolve(requests);
    }),
  );
}

async function ask(child, type, fields = {}) {
  child.send({ type, ...fields });
  const reply = await nextMessage(child, type, 30_000);
  return reply;
}

async function round(withSdk, endpoint) {
  const child = startServer({ withSdk, endpoint, exportIntervalMs: 10_000, cpu: CONFIG.pin ? 0 : undefined, nodeArgs: CONFIG.nodeArgs });
  try {
    const { port } = await nextMessage(child, 'listening', 30_000);
    if (CONFIG.warmupS) await wrk(port, CONFIG.warmupS);
    await ask(child, 'alloc-start', { profile: false });
    const requests = await wrk(port, CONFIG.durationS);
    const gc = await ask(child, 'alloc-stop');
    await ask(child, 'alloc-start', { profile: true });
    const profiledRequests = await wrk(port, CONFIG.durationS);
    const { allocated } = await ask(child, 'alloc-stop');
    const minor = gc.pauses.minor;
    const scavengeMs = minor.reduce((a, b) => a + b, 0);
    return {
      requests,
      perRequest: Object.fromEntries(Object.entries(allocated).map(([k, v]) => [k, v / profiledRequests])),
      scavengesPer1k: (minor.length * 1000) / requests,
      scavengeMeanMs: scavengeMs / (minor.length || 1),
      scavengeMsPer1k: (scavengeMs * 1000) / requests,
      majorGcs: gc.pauses.major.length,
      newSpaceMB: gc.newSpaceBytes / 1048576,
    };
  } finally {
    await stopServer(child);
  }
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

async function main() {
  const { OtlpReceiver } = require(path.join(ROOT, 'dist', 'otlp', 'receiver.js'));
  const receiver = new OtlpReceiver();
  const endpoint = (await receiver.start()).httpEndpoint;
  const rounds = { off: [], on: [] };
  try {
    for (let i = 0; i < CONFIG.pairs; i++) {
      for (const mode of i % 2 ? ['on', 'off'] : ['off', 'on']) {
        const r = await round(mode === 'on', endpoint);
        rounds[mode].push(r);
        receiver.clear();
        console.log(`  pair ${i + 1} ${mode}: ${r.requests} requests, ${r.scavengesPer1k.toFixed(2)} scavenges per 1000 requests of ` +
          `${r.scavengeMeanMs.toFixed(3)} ms, new space ${r.newSpaceMB.toFixed(1)} MB; ${r.perRequest.sdk.toFixed(1)} B/request allocated under the SDK`);
      }
    }
  } finally {
    await receiver.stop();
  }
  const col = (mode, f) => median(rounds[mode].map(f));
  const rows = [
    ['allocated per request, all (B)', (r) => r.perRequest.sdk + r.perRequest.application + r.perRequest.node, 0],
    ['  under the SDK (its code or dependencies on the stack)', (r) => r.perRequest.sdk, 2],
    ['  application (bench/server.js)', (r) => r.perRequest.application, 0],
    ['  node (HTTP stack, builtins)', (r) => r.perRequest.node, 0],
    ['scavenges per 1000 requests', (r) => r.scavengesPer1k, 2],
    ['mean scavenge (ms)', (r) => r.scavengeMeanMs, 3],
    ['scavenge time per 1000 requests (ms)', (r) => r.scavengeMsPer1k, 3],
    ['mark-compacts in the window', (r) => r.majorGcs, 0],
    ['new space at the end (MB)', (r) => r.newSpaceMB, 1],
  ];
  const flags = CONFIG.nodeArgs.length ? ` (node ${CONFIG.nodeArgs.join(' ')})` : '';
  console.log(`\nMedians of ${CONFIG.pairs} rounds per mode, two windows of ${CONFIG.durationS} s after ${CONFIG.warmupS} s of load${flags}:`);
  console.log('| | SDK off | SDK on |\n| --- | --- | --- |');
  for (const [label, f, digits] of rows) console.log(`| ${label} | ${col('off', f).toFixed(digits)} | ${col('on', f).toFixed(digits)} |`);
}

main().catch((err) => {
  console.error(err && err.stack ? err.stack : err);
  process.exitCode = 1;
});
