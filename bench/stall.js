'use strict';
// A stand-in for periodic work on an application's thread, for bench/interleaved.js: preloaded into a server
// (NODE_OPTIONS=--require bench/stall.js), it busy-waits BENCH_STALL_MS (default 0.7) on the main thread every
// BENCH_STALL_EVERY_MS (default 500). It answers whether stalls of the size and rate the SDK's own periodic work
// has (docs/benchmark.md, "p99: what the excess is not") move the benchmark's p99 at all.

const ms = Number(process.env.BENCH_STALL_MS || 0.7);
const every = Number(process.env.BENCH_STALL_EVERY_MS || 500);
setInterval(() => {
  const end = performance.now() + ms;
  while (performance.now() < end);
}, every).unref();
