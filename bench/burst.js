'use strict';
// What bench/interleaved.js and bench/shared-cpu.js share: their driver (this process on CPU 1 with an OTLP
// receiver, one bench/server.js per mode on CPU 0, all stopped at the end), one wrk run on CPU 1, asynchronous (the
// receiver keeps answering the servers' exports meanwhile), and the figures' median (min–max).

const { execFileSync, spawn } = require('node:child_process');
const path = require('node:path');
const { startServer, nextMessage, stopServer } = require('./server-process');

/** wrk -t1 -c32 for `seconds` against 127.0.0.1:port, on CPU 1: { rps, p99 (µs) }. */
function wrkBurst(port, seconds) {
  const args = ['-c', '1', 'wrk', '-t1', '-c32', `-d${seconds}s`, '--timeout', '5s', '-s', path.join(__dirname, 'wrk-report.lua'), `http://127.0.0.1:${port}/`];
  return new Promise((resolve, reject) => {
    const child = spawn('taskset', args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.on('close', () => {
      const m = /BENCH-RESULT (.*)/.exec(out);
      if (!m) return reject(new Error(`wrk: no result (${out.trim()})`));
      const r = Object.fromEntries(m[1].split(' ').map((kv) => kv.split('=').map((x, i) => (i ? Number(x) : x))));
      resolve({ rps: r.requests / (r.duration_us / 1e6), p99: r.p99_us });
    });
  });
}

const median = (a) => {
  const s = [...a].sort((x, y) => x - y);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

const pct = (x) => `${(100 * x).toFixed(1)} %`;

/** `median (min–max)` of values, each written by `format`. */
function range(values, format) {
  return `${format(median(values))} (${format(Math.min(...values))}–${format(Math.max(...values))})`;
}

/** `median (min–max)` of ratios, in percent. */
const spread = (ratios) => range(ratios, pct);

/**
 * Runs `measure(servers, names)` with one server per mode of `modes` ({ name: { sdk, env } }; in env, GRPC_ENDPOINT
 * and HTTP_ENDPOINT stand for this process's receiver), each `{ child, port }`, exporting every 10 s; then stops
 * them all and exits (1 on an error, said as `label: ...`).
 */
function runWithServers(label, modes, measure) {
  const run = async () => {
    execFileSync('taskset', ['-a', '-cp', '1', String(process.pid)], { stdio: 'ignore' });
    const { OtlpReceiver } = require(path.join(__dirname, '..', 'dist', 'otlp', 'receiver.js'));
    const receiver = new OtlpReceiver();
    const endpoints = await receiver.start();
    const names = Object.keys(modes);
    const servers = {};
    try {
      for (const name of names) {
        const env = JSON.parse(JSON.stringify(modes[name].env ?? {}).replaceAll('GRPC_ENDPOINT', endpoints.grpcEndpoint).replaceAll('HTTP_ENDPOINT', endpoints.httpEndpoint));
        const child = startServer({ withSdk: modes[name].sdk, endpoint: endpoints.httpEndpoint, exportIntervalMs: 10_000, cpu: 0, env });
        servers[name] = { child, port: (await nextMessage(child, 'listening', 30_000)).port };
      }
      await measure(servers, names);
    } finally {
      for (const s of Object.values(servers)) await stopServer(s.child);
      await receiver.stop();
    }
  };
  run().then(
    () => process.exit(0),
    (err) => {
      console.error(`${label}: ${err.stack}`);
      process.exit(1);
    },
  );
}

module.exports = { wrkBurst, median, pct, range, spread, runWithServers };
