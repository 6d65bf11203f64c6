#!/usr/bin/env node
'use strict';
// The tail of the latency, request by request: what `npm run bench`'s p99 is made of.
//
//   node bench/tail.js            # as root, after npm run build; about 30 s per round
//
// Fresh servers (bench/server.js on CPU 0), one per round, the modes alternating; each is loaded by bench/tail.c
// (built here with clang into build/) on CPU 1 for BENCH_WARMUP + BENCH_DURATION s over the same 32 keep-alive
// connections. The load generator writes every request down, so that the tail can be read in two parts:
//   after connecting   the first second: the server's first load, on 32 new connections
//   steady             the BENCH_DURATION s after the warm-up, on connections that have served for BENCH_WARMUP s:
//                      what a keep-alive service under load sees
//   reconnected        with BENCH_RECONNECT=S, S more seconds on 32 new connections, as wrk's measured burst in
//                      `npm run bench`: its first second, and the rest
// and so that the server's stalls can be counted: a gap between two consecutive responses of more than 0.2 ms (the
// server, 32 requests in flight, answers one every 35 µs or so) is time in which it answered nobody.
//
// `npm run bench` measures with wrk, which connects anew for its measured burst: its p99 holds both parts. Here they
// are apart. wrk also corrects its latencies for coordinated omission, which weighs long stalls far more than their
// share of the requests: each part's p99 is given both ways (wrkP99 below). The SDK's exports go to a receiver in
// this process (on the load generator's CPU, as in bench/run.js), which by default answers without decoding
// (BENCH_RECEIVER=sink): decoding is the collector's work, not the server's, and it takes the load generator's CPU
// for 7-9 ms per export. BENCH_RECEIVER=otlp decodes (the OpenTelemetry receiver of the tests).
//
// BENCH_RATE=R (requests per second) loads the server in an open loop instead: request i is due at i / R s, and its
// latency runs from then, whatever the server did (bench/tail.c). No correction is needed, so wrk's p99 is not given.
// A fresh server's first second at a fixed rate is its cold start's backlog (a p99 of hundreds of ms), not a figure;
// and stall time is not given: below its capacity the server idles between requests.
//
// Environment: BENCH_MODES (a JSON object { name: { sdk, env } }, default off and on), BENCH_PAIRS (default 6),
// BENCH_WARMUP (s, default 15), BENCH_DURATION (s, default 10), BENCH_RECONNECT (s, default 0: none; at least 2),
// BENCH_RATE (requests/s, default 0: closed loop), BENCH_OUT (a JSON file for the rounds' figures).

const { execFileSync, execFile } = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const path = require('node:path');
const { median, pct, range, spread } = require('./burst');
const { startServer, nextMessage, stopServer, cpuTimes } = require('./server-process');

const ROOT = path.join(__dirname, '..');
const MODES = JSON.parse(process.env.BENCH_MODES || '{"off":{"sdk":false},"on":{"sdk":true}}');
const PAIRS = Number(process.env.BENCH_PAIRS || 6);
const WARMUP_S = Number(process.env.BENCH_WARMUP || 15);
const DURATION_S = Number(process.env.BENCH_DURATION || 10);
const RECONNECT_S = Number(process.env.BENCH_RECONNECT || 0);
const RATE = Number(process.env.BENCH_RATE || 0);
const CONNECTIONS = 32;
const SERVER_CPU = 0;
const LOAD_CPU = 1;
const GAP_MS = [0.2, 0.5, 1, 2];
// the share of requests slower than these (ms): the tail's mass, steadier than a quantile of it
const SLOWER_MS = [1.5, 2, 3, 5];

/** build/bench-tail, (re)built when bench/tail.c is newer. */
function loadGenerator() {
  const src = path.join(__dirname, 'tail.c');
  const bin = path.join(ROOT, 'build', 'bench-tail');
  const stale = !fs.existsSync(bin) || fs.statSync(bin).mtimeMs < fs.statSync(src).mtimeMs;
  if (stale) {
    fs.mkdirSync(path.dirname(bin), { recursive: true });
    execFileSync('clang', ['-O2', '-Wall', '-o', bin, src], { stdio: 'inherit' });
  }
  return bin;
}

/** A receiver that answers every export with an empty success and keeps nothing. */
async function sinkReceiver() {
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => res.writeHead(200, { 'content-type': 'application/x-protobuf', 'content-length': 0 }).end());
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { endpoint: `http://127.0.0.1:${server.address().port}`, stop: () => new Promise((resolve) => server.close(resolve)) };
}

async function otlpReceiver() {
  const { OtlpReceiver } = require(path.join(ROOT, 'dist', 'otlp', 'receiver.js'));
  const receiver = new OtlpReceiver();
  const { httpEndpoint } = await receiver.start();
  return { endpoint: httpEndpoint, stop: () => receiver.stop() };
}

/** Steal jiffies of all CPUs together. */
const stealJiffies = () => Object.values(cpuTimes()).reduce((sum, cpu) => sum + cpu.steal, 0);

/** The records of one run: send time (ms from the first request) and latency (µs), in completion order. */
function readRecords(file) {
  const bytes = fs.readFileSync(file);
  const words = new BigUint64Array(bytes.buffer, bytes.byteOffset, bytes.length / 8);
  const n = words.length / 2;
  const t0 = n ? words[0] : 0n;
  const sent = new Float64Array(n);
  const latency = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    sent[i] = Number(words[2 * i] - t0) / 1e6;
    latency[i] = Number(words[2 * i + 1]) / 1e3;
  }
  return { sent, latency, n };
}

const quantile = (sorted, q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];

/**
 * The p99 that wrk would report for these requests (µs). After its run, wrk corrects for coordinated omission
 * (stats_correct in wrk.c): e is the mean time between two requests of one connection (duration × connections /
 * requests), and every latency L of at least 2e adds samples at L − e, L − 2e, ... while they are above e: the requests
 * that the connection would have sent while it waited. A stall of S ms on 32 connections then weighs about 32 × S/e
 * samples, and wrk's p99 follows the long stalls, where the requests' own p99 hardly moves. wrk's quantile: the
 * smallest whole µs at which the count reaches q × count + 0.5, rounded.
 */
function wrkP99(latencies, seconds) {
  let max = 0;
  for (const l of latencies) max = Math.max(max, l);
  const count = new Float64Array(Math.floor(max) + 1);
  for (const l of latencies) count[Math.floor(l)]++;
  const e = Math.floor((seconds * 1e6) / Math.floor(latencies.length / CONNECTIONS));
  let total = latencies.length;
  for (let l = 2 * e; l < count.length; l++) {
    const c = count[l];
    if (c === 0) continue;
    for (let m = l - e; m > e; m -= e) {
      count[m] += c;
      total += c;
    }
  }
  const rank = Math.round(0.99 * total + 0.5);
  let seen = 0;
  for (let l = 0; l < count.length; l++) if ((seen += count[l]) >= rank) return l;
  return count.length - 1;
}

/** Latency quantiles (µs) and throughput of the requests sent in [fromMs, toMs), and the gaps between their responses. */
function part({ sent, latency, n }, fromMs, toMs) {
  const lat = [];
  const done = [];
  for (let i = 0; i < n; i++) {
    if (sent[i] < fromMs || sent[i] >= toMs) continue;
    lat.push(latency[i]);
    done.push(sent[i] + latency[i] / 1000);
  }
  lat.sort((a, b) => a - b);
  done.sort((a, b) => a - b);
  const seconds = (toMs - fromMs) / 1000;
  const gaps = GAP_MS.map(() => ({ perSecond: 0, msPerSecond: 0 }));
  for (let i = 1; i < done.length; i++) {
    const gap = done[i] - done[i - 1];
    GAP_MS.forEach((min, k) => {
      if (gap > min) {
        gaps[k].perSecond += 1 / seconds;
        gaps[k].msPerSecond += gap / seconds;
      }
    });
  }
  return {
    requests: lat.length,
    rps: lat.length / seconds,
    p50: quantile(lat, 0.5),
    p90: quantile(lat, 0.9),
    p99: quantile(lat, 0.99),
    wrkP99: RATE > 0 ? undefined : wrkP99(lat, seconds),
    p999: quantile(lat, 0.999),
    max: lat[lat.length - 1],
    gaps: Object.fromEntries(GAP_MS.map((min, k) => [`over${min}ms`, gaps[k]])),
    slower: Object.fromEntries(SLOWER_MS.map((ms) => [`${ms}ms`, lat.filter((l) => l > ms * 1000).length / lat.length])),
  };
}

function runLoad(bin, port, seconds, file) {
  return new Promise((resolve, reject) => {
    execFile('taskset', ['-c', String(LOAD_CPU), bin, String(port), String(CONNECTIONS), String(seconds), file, ...(RATE > 0 ? [String(RATE)] : [])], (err, stdout, stderr) => {
      if (err) reject(new Error(`bench/tail.c: ${stderr.trim() || err.message}`));
      else resolve(stdout.trim());
    });
  });
}

async function round(bin, receiver, name, mode, dir) {
  const child = startServer({ withSdk: mode.sdk, endpoint: receiver.endpoint, exportIntervalMs: 10_000, cpu: SERVER_CPU, env: mode.env ?? {} });
  try {
    const { port } = await nextMessage(child, 'listening', 30_000);
    const file = path.join(dir, `${name}-${child.pid}.bin`);
    /** `seconds` of load on 32 new connections, every request written down. */
    const recorded = async (seconds) => {
      await runLoad(bin, port, seconds, file);
      const records = readRecords(file);
      fs.rmSync(file);
      return records;
    };
    const steal0 = stealJiffies();
    const records = await recorded(WARMUP_S + DURATION_S);
    // jiffies (1/100 s) of steal per second: percent of a CPU
    const stealPct = (stealJiffies() - steal0) / (WARMUP_S + DURATION_S);
    const r = {
      mode: name,
      stealPct,
      afterConnect: part(records, 0, 1000),
      steady: part(records, WARMUP_S * 1000, (WARMUP_S + DURATION_S) * 1000),
    };
    if (RECONNECT_S > 0) {
      // the first run's connections are closed (its process exited): the same server, 32 new connections
      const again = await recorded(RECONNECT_S);
      r.reconnected = { firstSecond: part(again, 0, 1000), rest: part(again, 1000, RECONNECT_S * 1000), all: part(again, 0, RECONNECT_S * 1000) };
    }
    return r;
  } finally {
    await stopServer(child);
  }
}

async function main() {
  if (!fs.existsSync(path.join(ROOT, 'dist', 'register.js'))) throw new Error('run npm run build first');
  if (RECONNECT_S > 0 && !(Number.isInteger(RECONNECT_S) && RECONNECT_S >= 2)) throw new Error(`BENCH_RECONNECT=${process.env.BENCH_RECONNECT}: whole seconds, at least 2`);
  if (!(RATE >= 0)) throw new Error(`BENCH_RATE=${process.env.BENCH_RATE}: requests per second, or 0 for a closed loop`);
  const bin = loadGenerator();
  execFileSync('taskset', ['-a', '-cp', String(LOAD_CPU), String(process.pid)], { stdio: 'ignore' });
  const receiver = process.env.BENCH_RECEIVER === 'otlp' ? await otlpReceiver() : await sinkReceiver();
  const dir = fs.mkdtempSync(path.join(require('node:os').tmpdir(), 'bench-tail-'));
  const names = Object.keys(MODES);
  const rounds = [];
  try {
    for (let pair = 0; pair < PAIRS; pair++) {
      for (const name of names) {
        const r = { pair, ...(await round(bin, receiver, name, MODES[name], dir)) };
        rounds.push(r);
        const s = r.steady;
        console.log(
          `pair ${pair} ${name.padEnd(8)} steady: ${Math.round(s.rps)} req/s, p50 ${s.p50.toFixed(0)} p99 ${s.p99.toFixed(0)}${RATE > 0 ? '' : ` (wrk's ${s.wrkP99})`} ` +
            `p99.9 ${s.p999.toFixed(0)} µs` +
            (RATE > 0 ? ' ' : `, stalls >0.2 ms ${s.gaps['over0.2ms'].msPerSecond.toFixed(1)} ms/s (>1 ms: ${s.gaps.over1ms.perSecond.toFixed(1)}/s) `) +
            `| first second: p99 ${r.afterConnect.p99.toFixed(0)} µs | steal ${r.stealPct.toFixed(1)} %` +
            (r.reconnected ? ` | reconnected: p99 ${r.reconnected.firstSecond.p99.toFixed(0)} µs in the first second, ${r.reconnected.rest.p99.toFixed(0)} µs after` : ''),
        );
      }
    }
  } finally {
    await receiver.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }

  // per mode: median (min–max) over its rounds, the figures of docs/benchmark.md's tables
  const fixed = (digits) => (x) => x.toFixed(digits);
  console.log(`\nsteady part, per mode, median (min–max) of the rounds:`);
  for (const name of names) {
    const s = rounds.filter((r) => r.mode === name).map((r) => r.steady);
    console.log(
      `${name}: ${range(s.map((x) => x.rps), fixed(0))} req/s, p50 ${range(s.map((x) => x.p50), fixed(0))} µs, p99 ${range(s.map((x) => x.p99), fixed(0))} µs, ` +
        (RATE > 0
          ? ''
          : `stall time ${range(s.map((x) => x.gaps['over0.2ms'].msPerSecond), fixed(1))} ms/s, stalls > 0.5 ms ${range(s.map((x) => x.gaps['over0.5ms'].perSecond), fixed(1))} /s, ` +
            `> 1 ms ${range(s.map((x) => x.gaps.over1ms.perSecond), fixed(1))} /s, `) +
        `longest request ${range(s.map((x) => x.max / 1000), fixed(1))} ms`,
    );
  }
  const base = names[0];
  const of = (pair, name) => rounds.find((r) => r.pair === pair && r.mode === name);
  console.log(`\n${PAIRS} pairs, ${WARMUP_S} s warm-up, ${DURATION_S} s steady; against ${base}, median (min–max) of the pairs:`);
  for (const name of names.slice(1)) {
    const pairs = [...Array(PAIRS).keys()].map((p) => [of(p, base), of(p, name)]);
    const ratio = (f) => pairs.map(([b, m]) => f(m) / f(b));
    console.log(
      `${name}: steady p99 ${spread(ratio((r) => r.steady.p99))}${RATE > 0 ? '' : ` (as wrk would report it: ${spread(ratio((r) => r.steady.wrkP99))})`}, ` +
        `throughput ${spread(ratio((r) => r.steady.rps))}, ` +
        `p50 ${spread(ratio((r) => r.steady.p50))}; ` +
        (RATE > 0
          ? ''
          : `stalls >0.2 ms ${median(pairs.map(([, m]) => m.steady.gaps['over0.2ms'].msPerSecond)).toFixed(1)} ` +
            `against ${median(pairs.map(([b]) => b.steady.gaps['over0.2ms'].msPerSecond)).toFixed(1)} ms/s, of more than 0.5 ms ` +
            `${median(pairs.map(([, m]) => m.steady.gaps['over0.5ms'].perSecond)).toFixed(1)} against ` +
            `${median(pairs.map(([b]) => b.steady.gaps['over0.5ms'].perSecond)).toFixed(1)} per s; `) +
        `first second p99 ${spread(ratio((r) => r.afterConnect.p99))}; slower than 2 ms ` +
        `${pct(median(pairs.map(([, m]) => m.steady.slower['2ms'])))} against ${pct(median(pairs.map(([b]) => b.steady.slower['2ms'])))} of the requests` +
        (RECONNECT_S > 0
          ? `; reconnected: p99 ${spread(ratio((r) => r.reconnected.firstSecond.p99))} in the first second, ${spread(ratio((r) => r.reconnected.rest.p99))} after it` +
            (RATE > 0 ? '' : `, wrk's p99 of the whole ${spread(ratio((r) => r.reconnected.all.wrkP99))}`)
          : ''),
    );
  }
  if (process.env.BENCH_OUT) {
    const out = { date: new Date().toISOString(), node: process.version, pairs: PAIRS, warmupS: WARMUP_S, durationS: DURATION_S, reconnectS: RECONNECT_S, rate: RATE, modes: MODES, rounds };
    fs.writeFileSync(process.env.BENCH_OUT, JSON.stringify(out, null, 2) + '\n');
  }
}

main().catch((err) => {
  console.error(`bench/tail.js: ${err.message}`);
  process.exit(1);
});
