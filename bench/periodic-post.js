'use strict';
// A control for bench/shared-cpu.js, without the SDK: `--require` it into bench/server.js to make the server POST
// 2000 bytes to POST_URL every 10 s (the first after 1 s), as an OTLP/HTTP exporter does. POST_FROM=main (default)
// posts from the main thread; POST_FROM=worker from a worker thread, a V8 isolate of its own. docs/benchmark.md,
// "Shared CPU", says what each does to the server's throughput. Preloads run in workers too: only the main thread
// starts one.
const http = require('node:http');
const { Worker, isMainThread } = require('node:worker_threads');

function postEvery10s() {
  const post = () => {
    const req = http.request(process.env.POST_URL, { method: 'POST', headers: { 'content-type': 'application/x-protobuf' } }, (res) => res.resume());
    req.on('error', () => {});
    req.end(Buffer.alloc(2000));
  };
  setTimeout(post, 1000).unref();
  setInterval(post, 10_000).unref();
}

if (!isMainThread) postEvery10s();
else if (process.env.POST_FROM === 'worker') new Worker(__filename).unref();
else postEvery10s();
