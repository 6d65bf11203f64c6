'use strict';
// What bench/interleaved.js and bench/shared-cpu.js share: one wrk run on CPU 1 against a server of this machine,
// asynchronous (the OTLP receiver in the driver keeps answering the servers' exports meanwhile), and a median.

const { spawn } = require('node:child_process');
const path = require('node:path');

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

module.exports = { wrkBurst, median };
