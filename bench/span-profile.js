'use strict';
// KernelSpanProcessor's own cost under load, from CPU samples: bench/run.js profiles the server of each tracing round
// with `perf record` (cpu-clock, call graphs) during the measured window, and counts the samples whose stack holds a
// frame of the processor. Its share of the server's samples, times the server's CPU per request, over the server
// spans per request, is its CPU per span: a figure that the difference between two modes' CPU per request (±10 %
// of 120 µs between rounds on the project's VM) cannot resolve at a few µs.
//
// What counts as the processor: its JavaScript (dist/spans.js, dist/span-slots.js, dist/tcpinfo.js; the servers run
// with --perf-basic-prof, so V8 names its compiled functions for perf) with everything it calls (the SDK's
// setAttributes, the addon), and the addon's per-span reader (ReadTcpInfo, otel_read_tcp_info) with the getsockopt
// below it. Not counted: Node's diagnostics-channel messages that exist because the processor subscribes, the garbage
// it leaves to the collector, the exporter's work for the four attributes, and the BPF programs of bpf/spans.bpf.c,
// which run in the process's sends and receives (bench/run.js reports their run time per request beside).

const { execSync, spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const readline = require('node:readline');

const PROCESSOR = /\/dist\/(?:spans|span-slots|tcpinfo)\.js:|ReadTcpInfo|otel_read_tcp_info/;
/**
 * The reading alone: the processor's read() (a socket's slot, or the addon's getsockopt(TCP_INFO) with its N-API
 * call, and the counters made of either), when V8 did not inline it into its caller, and those parts when it did.
 */
// V8 marks a function's tier before its name (`JS:*read`; node 24: `JS:*'read`)
const READING = /JS:\W*read \S*\/dist\/(?:spans|span-slots)\.js:|ReadTcpInfo|otel_read_tcp_info/;
const FREQUENCY = 999;

/** Whether perf records here. */
function canRecord() {
  try {
    execSync('perf record -q -e cpu-clock -o /dev/null -- true', { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Whether perf can record here, installed (Debian's linux-perf) if missing; if not, says so. */
function ensurePerf() {
  if (canRecord()) return true;
  console.log('bench: installing perf for the tracing modes\' profile (apt-get install -y linux-perf)');
  try {
    execSync('apt-get install -y linux-perf || (apt-get update && apt-get install -y linux-perf)', {
      stdio: 'inherit',
      shell: '/bin/sh',
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    });
  } catch {
    // said below
  }
  if (canRecord()) return true;
  console.log('bench: perf is missing or cannot record here: the tracing modes are not profiled (BENCH_PROFILE=0 turns the profile off)');
  return false;
}

/**
 * Samples process `pid` (all its threads) for `seconds`, perf itself on `cpu` (undefined: anywhere). Returns a
 * promise of the recording, for count() once the round's window has closed (perf script takes seconds of CPU).
 */
function record(pid, seconds, cpu) {
  const data = path.join(os.tmpdir(), `otel-node-ebpf-bench-${pid}.perf`);
  const perf = ['perf', 'record', '-q', '-e', 'cpu-clock', '-F', String(FREQUENCY), '-g', '-p', String(pid), '-o', data, '--', 'sleep', String(seconds)];
  const [cmd, ...args] = cpu === undefined ? perf : ['taskset', '-c', String(cpu), ...perf];
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve({ data, pid }) : reject(new Error(`perf record failed (exit ${code}): ${stderr.trim()}`))));
  });
}

/**
 * { samples, processor, reading }: the recorded samples, and those with a frame of the processor, of its reading.
 * perf script prints one sample per block, its call chain indented below its header line. The data file, and the map
 * of compiled JavaScript that the process wrote for perf (/tmp/perf-PID.map), are removed.
 */
function count({ data, pid }) {
  return new Promise((resolve, reject) => {
    const child = spawn('perf', ['script', '-i', data], { stdio: ['ignore', 'pipe', 'ignore'] });
    const totals = { samples: 0, processor: 0, reading: 0 };
    let inSample = false;
    let processor = false;
    let reading = false;
    const end = () => {
      if (!inSample) return;
      totals.samples++;
      if (processor) totals.processor++;
      if (reading) totals.reading++;
      inSample = processor = reading = false;
    };
    readline.createInterface({ input: child.stdout }).on('line', (line) => {
      if (line === '') return end();
      if (!/^\s/.test(line)) {
        end();
        inSample = true;
        return;
      }
      if (!processor && PROCESSOR.test(line)) processor = true;
      if (!reading && READING.test(line)) reading = true;
    });
    child.on('error', reject);
    child.on('close', (code) => {
      end();
      if (code !== 0) reject(new Error(`perf script failed (exit ${code})`));
      else resolve(totals);
    });
  }).finally(() => {
    fs.rmSync(data, { force: true });
    fs.rmSync(`/tmp/perf-${pid}.map`, { force: true });
  });
}

/** The round's figures: µs of CPU per server span in the processor and in its reading, and the processor's share. */
function perSpan(totals, cpuUsPerRequest, serverSpansPerRequest) {
  if (!totals.samples || !(serverSpansPerRequest > 0)) return {};
  const usPerSpan = (n) => ((n / totals.samples) * cpuUsPerRequest) / serverSpansPerRequest;
  return {
    profileSamples: totals.samples,
    processorShare: totals.processor / totals.samples,
    processorUsPerSpan: usPerSpan(totals.processor),
    readingUsPerSpan: usPerSpan(totals.reading),
  };
}

module.exports = { ensurePerf, record, count, perSpan };
