#!/usr/bin/env node
'use strict';
// The overhead benchmark (`npm run bench`): an HTTP keep-alive server (bench/server.js) under load from a separate
// process (wrk), with the SDK off and on in alternating rounds of the same run, a fresh server process per round.
// Prints a table, says which targets are met, and writes bench/results.json. Figures and method: docs/benchmark.md.
//
// Needs root (the SDK loads eBPF programs; BPF run-time statistics need CAP_SYS_ADMIN) and a build (npm run build).
// Installs wrk if it is missing (apt-get).
//
// Environment:
//   BENCH_PAIRS        rounds of each mode measured (default 6), after one discarded warm-up round with the SDK on
//   BENCH_ORDER        rotate (default): pair i runs BENCH_MODES rotated left by i, so that every mode runs as often
//                      first, second, ... of its pair when BENCH_PAIRS is a multiple of the number of modes, and no
//                      mode always follows the same one (the summary's "place in the pair" line shows what a place
//                      does to the figures); fixed: every pair in the order of BENCH_MODES, as before 2026-11-28
//   BENCH_DURATION     seconds of load measured per round (default 10)
//   BENCH_WARMUP       seconds of load per round before the measured window, not measured (default 2)
//   BENCH_CONNECTIONS  wrk connections, all keep-alive (default 32)
//   BENCH_THREADS      wrk threads (default 1)
//   BENCH_PIN          1 (default): server on CPU 0, wrk and this driver on CPU 1 (taskset); 0: no pinning
//   BENCH_EXPORT_INTERVAL  ms between the SDK's exports (default 10000): exporting is on, as in production
//   BENCH_MODES        the modes each pair runs, in order (default off,on); `on` is the SDK with its defaults (BPF
//                      run-time statistics sampled in windows, unless OTEL_NODE_EBPF_KERNEL_STATS says otherwise);
//                      also available, to find out where time goes: always (the SDK with the statistics on all the
//                      time: OTEL_NODE_EBPF_KERNEL_STATS=always), nostats (the SDK on, run as `nobody` with only
//                      CAP_BPF+CAP_PERFMON, so without BPF run-time statistics) and bystander (the server without the
//                      SDK, and an idle process with the SDK beside it, on the server's CPU, settled before the
//                      round (BENCH_NEIGHBOUR_SETTLE): what its programs and its periodic work cost the processes it
//                      does not watch); tracing (the SDK on with OTEL_TRACES_EXPORTER=otlp: HTTP instrumentation,
//                      kernel-enriched server spans, spans exported to this process's receiver) and tracing-plain (the
//                      same with OTEL_NODE_EBPF_SPANS=false: KernelSpanProcessor inert); with both, the summary gives
//                      their difference: what the processor costs per span under load (one server span per request);
//                      control (the server without the SDK again, an A/A comparison: how far two modes that do not
//                      differ at all land apart in this run; the summary says so beside the on-vs-off figures; with it, the
//                      throughput and p99 targets are judged against the off and control rounds together)
//   BENCH_QUIET_WAIT   seconds to wait before each round for a quiet machine: no other process's tracing BPF programs
//                      loaded (they tax every syscall, SDK off or on) and both CPUs mostly idle (default 120; the
//                      round then runs anyway)
//   BENCH_NEIGHBOUR_SETTLE  seconds the bystander mode's SDK process runs, after its first export, before the
//                      server starts (default 12): an SDK process's first seconds are its start, not its steady cost
//   BENCH_RETRIES      times a round is run again when it was disturbed: other processes' BPF programs appeared,
//                      other processes used more than a tenth of a CPU, or steal time exceeded 5 % of a CPU, during
//                      the measured window (default 1)
//   BENCH_OUT          where to write the results (default bench/results.json)
//   BENCH_PROFILE      1 (default): in the tracing modes, sample the server with perf during the measured window
//                      (bench/span-profile.js; installs Debian's linux-perf if missing) and report the CPU per span
//                      of KernelSpanProcessor's own frames; 0: no profile
//   BENCH_WORKLOAD     what the server does per request (bench/server.js reads it): http (default), dns (one
//                      dns.lookup of a hosts-file name), threadpool (one fs.stat on the thread pool)
//   BENCH_HEAP_MB      MB of objects the server keeps alive from its start, SDK or not (bench/server.js reads it;
//                      default 0: a live heap of 2.6 MB, smaller than any real service's)
// The SDK's own variables pass through to the SDK's process, for example OTEL_NODE_EBPF_DISABLED_PROBES=nodejs to
// measure without the runtime probes; its exports always go to the OTLP receiver in this process.

const { execFileSync, execSync, spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const { REGISTER, intEnv, pinnedTo, startServer: startServerProcess, nextMessage, stopServer, cpuTimes } = require('./server-process');
const spanProfile = require('./span-profile');

const ROOT = path.resolve(__dirname, '..');
const WRK_SCRIPT = path.join(__dirname, 'wrk-report.lua');

const TARGETS = {
  throughputRatio: 0.99, // on/off, at least
  p99Ratio: 1.03, // on/off, at most
  kernelNsPerRequest: 300, // at most
  rssAddedMB: 15, // at most, outside V8's young generation (see rssOutsideYoungMB)
  // kernel-enriched spans (the tracing mode, profiled): reading a span's kernel state, µs per span, at most
  kernelStateUsPerSpan: 2,
};

/** The programs of bpf/spans.bpf.c (kernel-enriched spans), whose run time is part of a span's reading. */
const SPAN_PROGRAMS = ['span_send', 'span_recv'];

// `stats`: the BPF run-time statistics the SDK must report having (status().kernelTime), checked at every sample:
// 'default' is what OTEL_NODE_EBPF_KERNEL_STATS, passed through, asks for (sampled when unset).
const MODES = {
  off: { label: 'SDK off', sdk: 'none' },
  on: { label: 'SDK on', sdk: 'server', stats: 'default' },
  always: { label: 'SDK on, BPF stats always on', sdk: 'server', stats: 'always', env: { OTEL_NODE_EBPF_KERNEL_STATS: 'always' } },
  nostats: { label: 'SDK on, no BPF stats', sdk: 'server', stats: false, setpriv: true },
  control: { label: 'SDK off again: the A/A control', sdk: 'none' },
  bystander: { label: 'SDK in an idle neighbour', sdk: 'neighbour', stats: 'default' },
  tracing: { label: 'SDK on, tracing, kernel-enriched spans', sdk: 'server', stats: 'default', tracing: true, env: { OTEL_TRACES_EXPORTER: 'otlp', OTEL_NODE_EBPF_SPANS: 'true' } },
  'tracing-plain': { label: 'SDK on, tracing, OTEL_NODE_EBPF_SPANS=false', sdk: 'server', stats: 'default', tracing: true, env: { OTEL_TRACES_EXPORTER: 'otlp', OTEL_NODE_EBPF_SPANS: 'false' } },
};

/** The statistics mode a mode's SDK runs with: sampled, always or off (OTEL_NODE_EBPF_KERNEL_STATS's spellings). */
function statsModeOf(mode) {
  if (!mode.stats) return 'off';
  const v = (mode.stats === 'default' ? process.env.OTEL_NODE_EBPF_KERNEL_STATS || 'sampled' : mode.stats).trim().toLowerCase();
  return v === 'true' ? 'always' : v === 'false' ? 'off' : v;
}

/** Throws unless the SDK's status says its BPF run-time statistics are as the mode expects. */
function checkStats(mode, status) {
  const want = statsModeOf(mode);
  const ok =
    want === 'sampled' ? Boolean(status.kernelTimeSampling) && /^on \(sampled /.test(status.kernelTime)
    : want === 'always' ? status.kernelTime === 'on (BPF_ENABLE_STATS)'
    : true;
  if (!ok) throw new Error(`BPF run-time statistics: expected ${want}, the SDK says: ${status.kernelTime}`);
}

// A round is run again when anything else used more than a tenth of a CPU, or the hypervisor took (steal) more than
// 5 % of a CPU: both change the figures more than the effects measured here.
const OTHER_CPU_LIMIT = 0.1;
const STEAL_LIMIT = 0.05;
const CLK_TCK = 100; // USER_HZ: the unit of /proc/stat

function fail(message) {
  console.error(`bench: ${message}`);
  process.exit(1);
}

/** One of `choices`; the first when unset. */
function enumEnv(name, choices) {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return choices[0];
  if (!choices.includes(raw)) fail(`${name}=${raw}: expected one of ${choices.join(', ')}`);
  return raw;
}

const CONFIG = {
  pairs: intEnv('BENCH_PAIRS', 6, 1),
  order: enumEnv('BENCH_ORDER', ['rotate', 'fixed']),
  durationS: intEnv('BENCH_DURATION', 10, 1),
  warmupS: intEnv('BENCH_WARMUP', 2, 0),
  connections: intEnv('BENCH_CONNECTIONS', 32, 1),
  threads: intEnv('BENCH_THREADS', 1, 1),
  pin: process.env.BENCH_PIN !== '0' && os.cpus().length >= 2,
  exportIntervalMs: intEnv('BENCH_EXPORT_INTERVAL', 10000, 100),
  modes: (process.env.BENCH_MODES || 'off,on').split(',').map((m) => m.trim()),
  quietWaitS: intEnv('BENCH_QUIET_WAIT', 120, 0),
  retries: intEnv('BENCH_RETRIES', 1, 0),
  neighbourSettleS: intEnv('BENCH_NEIGHBOUR_SETTLE', 12, 0),
  out: path.resolve(process.env.BENCH_OUT || path.join(__dirname, 'results.json')),
  profile: process.env.BENCH_PROFILE !== '0',
  serverCpu: 0,
  loadCpu: 1,
};
if (CONFIG.connections < CONFIG.threads) fail('BENCH_CONNECTIONS must be at least BENCH_THREADS');
for (const m of CONFIG.modes) if (!MODES[m]) fail(`BENCH_MODES: unknown mode ${m} (${Object.keys(MODES).join(', ')})`);
if (!CONFIG.modes.includes('off') || !CONFIG.modes.includes('on')) fail('BENCH_MODES must include off and on');

// ---------------------------------------------------------------------------------------------------------------
// Setup and the machine

function has(cmd) {
  try {
    execSync(`command -v ${cmd}`, { stdio: 'ignore', shell: '/bin/sh' });
    return true;
  } catch {
    return false;
  }
}

function ensureWrk() {
  if (has('wrk')) return;
  console.log('bench: installing wrk (apt-get install -y wrk)');
  try {
    execSync('command -v wrk >/dev/null || apt-get install -y wrk || (apt-get update && apt-get install -y wrk)', {
      stdio: 'inherit',
      shell: '/bin/sh',
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    });
  } catch {
    fail('wrk is missing and could not be installed (apt-get install -y wrk needs root)');
  }
}

function machine() {
  const cpuinfo = fs.readFileSync('/proc/cpuinfo', 'utf8');
  const model = (cpuinfo.match(/^model name\s*:\s*(.*)$/m) || [])[1] || 'unknown';
  const flags = (cpuinfo.match(/^flags\s*:\s*(.*)$/m) || [])[1] || '';
  const read = (p) => {
    try {
      return fs.readFileSync(p, 'utf8').trim();
    } catch {
      return 'unknown';
    }
  };
  let wrk = 'unknown';
  try {
    execFileSync('wrk', ['-v'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    wrk = String(err.stdout || '').split('\n')[0].trim() || wrk; // wrk -v prints its version and exits 1
  }
  return {
    nproc: os.cpus().length,
    cpuModel: model,
    hypervisor: /\bhypervisor\b/.test(flags),
    memTotalMB: Math.round(os.totalmem() / 1e6),
    kernel: `${os.release()} ${os.arch()}`,
    clocksource: read('/sys/devices/system/clocksource/clocksource0/current_clocksource'),
    node: process.version,
    wrk,
  };
}

/** Which SDK was measured: the checkout's commit, and whether its sources differ from it. */
function sdkInfo() {
  const git = (...args) => execFileSync('git', ['-C', ROOT, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  try {
    return { root: ROOT, commit: git('rev-parse', 'HEAD'), sourcesModified: git('status', '--porcelain', '--', 'src', 'bpf', 'native') !== '' };
  } catch {
    return { root: ROOT };
  }
}

/** Puts every thread of this process (the OTLP receiver included) on the load generator's CPU. */
function pinSelf() {
  if (CONFIG.pin) execFileSync('taskset', ['-a', '-cp', String(CONFIG.loadCpu), String(process.pid)], { stdio: 'ignore' });
}

/** On `cpu` when pinning is on (BENCH_PIN). */
const pinned = (cpu, cmd, args) => pinnedTo(CONFIG.pin ? cpu : undefined, cmd, args);

// ---------------------------------------------------------------------------------------------------------------
// bpftool: per-program run-time statistics and map memory (a cross-check of the SDK's own figures, and a breakdown)

const BPFTOOL = has('bpftool');

function bpftool(what) {
  if (!BPFTOOL) return [];
  try {
    return JSON.parse(execFileSync('bpftool', ['-j', what, 'show'], { encoding: 'utf8', maxBuffer: 64 << 20 }));
  } catch {
    return [];
  }
}

/** The BPF programs a process holds (its program and link file descriptors name them in fdinfo). */
function progIdsOf(pid) {
  const ids = new Set();
  const dir = `/proc/${pid}/fdinfo`;
  let fds = [];
  try {
    fds = fs.readdirSync(dir);
  } catch {
    return ids;
  }
  for (const fd of fds) {
    try {
      const m = fs.readFileSync(`${dir}/${fd}`, 'utf8').match(/^prog_id:\s*(\d+)/m);
      if (m) ids.add(Number(m[1]));
    } catch {}
  }
  return ids;
}

/**
 * The SDK process's programs with their cumulative statistics, and the programs of anybody else that run in the
 * kernel's hot paths: another process's sys_enter program taxes every syscall of this benchmark too.
 */
function progStats(sdkPid) {
  const mine = sdkPid ? progIdsOf(sdkPid) : new Set();
  const programs = {};
  const foreign = [];
  for (const p of bpftool('prog')) {
    if (mine.has(p.id)) {
      programs[`${p.name}#${p.id}`] = { name: p.name, runTimeNs: p.run_time_ns ?? 0, runCnt: p.run_cnt ?? 0, mapIds: p.map_ids ?? [] };
    } else if (/tracepoint|kprobe|tracing|perf_event/.test(p.type)) {
      foreign.push(`${p.name || '?'}#${p.id}`);
    }
  }
  return { programs, foreign };
}

function mapMemlockBytes(mapIds) {
  const wanted = new Set(mapIds);
  return bpftool('map')
    .filter((m) => wanted.has(m.id))
    .reduce((sum, m) => sum + (m.bytes_memlock ?? 0), 0);
}

// ---------------------------------------------------------------------------------------------------------------
// Processes

/** Whether the tracing modes' servers are profiled (BENCH_PROFILE, and perf at hand: set in main). */
let profileTracing = false;

/** bench/server.js, with or without the SDK preloaded. */
function startServer(withSdk, mode, receiverEndpoint) {
  // a profiled server names its compiled JavaScript for perf (both tracing modes alike)
  const profiled = profileTracing && mode.tracing;
  return startServerProcess({
    withSdk,
    endpoint: receiverEndpoint,
    exportIntervalMs: CONFIG.exportIntervalMs,
    cpu: CONFIG.pin ? CONFIG.serverCpu : undefined,
    setpriv: mode.setpriv,
    env: profiled ? { ...mode.env, NODE_OPTIONS: [process.env.NODE_OPTIONS, '--perf-basic-prof'].filter(Boolean).join(' ') } : mode.env,
  });
}

/** /proc/PID/smaps_rollup in bytes (Rss, Anonymous, ...): where a round's RSS is, anonymous or mapped from files (BPF maps included). */
function smapsRollup(pid) {
  const out = {};
  try {
    for (const m of fs.readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8').matchAll(/^(\w+):\s+(\d+) kB/gm)) out[m[1]] = Number(m[2]) * 1024;
  } catch {
    return { Rss: NaN, Anonymous: NaN };
  }
  return out;
}

/** Runs wrk; its result line, plus its own CPU time (the shell's `times` after it: children's user and system). */
function runWrk(port, seconds) {
  const wrkArgs = [`-t${CONFIG.threads}`, `-c${CONFIG.connections}`, `-d${seconds}s`, '--timeout', '5s', '-s', WRK_SCRIPT, `http://127.0.0.1:${port}/`];
  const [cmd, args] = pinned(CONFIG.loadCpu, 'wrk', wrkArgs);
  const quote = (a) => `'${String(a).replace(/'/g, `'\\''`)}'`;
  const script = `${[cmd, ...args].map(quote).join(' ')}; rc=$?; echo BENCH-TIMES; times; exit $rc`;
  return new Promise((resolve, reject) => {
    const child = spawn('/bin/sh', ['-c', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('exit', (code) => {
      const line = stdout.split('\n').find((l) => l.startsWith('BENCH-RESULT '));
      if (code !== 0 || !line) return reject(new Error(`wrk failed (exit ${code}): ${stderr || stdout}`));
      const r = {};
      for (const kv of line.slice('BENCH-RESULT '.length).trim().split(/\s+/)) {
        const [k, v] = kv.split('=');
        r[k] = Number(v);
      }
      // `times` prints the shell's own line, then its children's: "0m1.234000s 0m2.345000s"
      const times = stdout.slice(stdout.indexOf('BENCH-TIMES')).split('\n')[2] || '';
      const secs = [...times.matchAll(/(\d+)m([\d.]+)s/g)].map((m) => Number(m[1]) * 60 + Number(m[2]));
      r.cpuUs = secs.length === 2 ? (secs[0] + secs[1]) * 1e6 : NaN;
      resolve(r);
    });
  });
}

// ---------------------------------------------------------------------------------------------------------------
// The SDK's own figures, as exported to the receiver

let METRICS;
let ATTRS;

/** Waits for the export that the process's forceFlush made, and returns what the SDK counted, cumulatively. */
async function sdkFiguresAfter(receiver, sampleMsg) {
  const pid = sampleMsg.pid;
  const since = BigInt(sampleMsg.flushStartedUnixNs);
  // The attached gauge is exported for every probe at every collection: it marks the flush's export.
  const at = await receiver.waitFor(() => {
    let t = 0n;
    for (const p of receiver.points())
      if (p.name === METRICS.SELF_PROBE_ATTACHED && p.resource['process.pid'] === pid && p.timeUnixNano >= since && p.timeUnixNano > t) t = p.timeUnixNano;
    return t || undefined;
  }, 10_000);
  const points = receiver.points().filter((p) => p.timeUnixNano === at && p.resource['process.pid'] === pid);
  const probes = {};
  for (const p of points.filter((q) => q.name === METRICS.SELF_PROBE_ATTACHED)) {
    probes[p.attributes[ATTRS.SELF_PROBE]] = { hook: p.attributes[ATTRS.SELF_HOOK], timeNs: 0, runs: 0 };
  }
  for (const p of points.filter((q) => q.name === METRICS.SELF_PROBE_KERNEL_TIME)) probes[p.attributes[ATTRS.SELF_PROBE]].timeNs = Math.round(p.value * 1e9);
  for (const p of points.filter((q) => q.name === METRICS.SELF_PROBE_RUNS)) probes[p.attributes[ATTRS.SELF_PROBE]].runs = p.value;
  let serverTxBytes = 0; // the SDK's count of the bytes the server sent: a check that it saw the load
  let mainThreadSyscalls = 0; // the runtime probe's count of the main thread's syscalls, epoll waits included
  for (const p of points) {
    const a = p.attributes;
    if (p.name === METRICS.PROCESS_NETWORK_IO && a[ATTRS.TCP_CONNECTION_SIDE] === 'server' && a[ATTRS.NETWORK_IO_DIRECTION] === 'transmit') serverTxBytes += p.value;
    if (p.name === METRICS.NODEJS_MAINTHREAD_SYSCALL_DURATION || p.name === METRICS.NODEJS_EVENTLOOP_ACTIVE_DURATION) mainThreadSyscalls += p.count ?? 0;
  }
  return { probes, serverTxBytes, mainThreadSyscalls };
}

/**
 * The spans the receiver got, per process (tracing modes): all, the server spans, and those with the kernel's
 * attributes. Counted as they arrive; the receiver keeps them only until the next round's clear().
 */
const spanTally = new Map();

function countSpans(spans) {
  for (const s of spans) {
    const pid = s.resource['process.pid'];
    let t = spanTally.get(pid);
    if (!t) spanTally.set(pid, (t = { spans: 0, server: 0, enriched: 0 }));
    t.spans++;
    if (s.kind === 'server') t.server++;
    if (s.attributes['tcp.io.transmit'] !== undefined) t.enriched++;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// One round

/** `edge`: 'start' or 'end' of the measured window, which runs from after the start's flush to before the end's. */
async function sample(child, edge) {
  child.send({ type: 'sample' });
  const msg = await nextMessage(child, 'sample', 15_000);
  const cpu = edge === 'start' ? msg.cpuAfterFlush : msg.cpuBeforeFlush;
  return {
    msg,
    cpuUs: cpu.user + cpu.system,
    userUs: cpu.user,
    systemUs: cpu.system,
    ctxSwitches: cpu.voluntaryCtxSwitches + cpu.involuntaryCtxSwitches,
    rss: msg.memory.rss,
    // Physical size of each V8 heap space: the part of RSS that is the JavaScript heap (bench/memory.js has the rest)
    heapSpaces: Object.fromEntries((msg.heap?.spaces ?? []).filter((s) => s.physical > 0).map((s) => [s.name, s.physical])),
    hrtimeNs: BigInt(cpu.hrtimeNs),
  };
}

/** The SDK process's side of a sample: what it exported, and bpftool's view of its programs. */
async function sampleSdk(sdkProc, mode, receiver, serverSample) {
  const msg = sdkProc === serverSample.proc ? serverSample.msg : (await sample(sdkProc, 'start')).msg;
  if (!msg.status || !msg.status.active) throw new Error('the SDK is not active');
  checkStats(mode, msg.status);
  return { status: msg.status, figures: await sdkFiguresAfter(receiver, msg), progs: progStats(sdkProc.pid) };
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Waits (at most BENCH_QUIET_WAIT s) until no other tracing BPF program is loaded and the CPUs are below 15 % busy. */
async function waitQuiet() {
  const started = Date.now();
  for (;;) {
    const before = cpuTimes();
    await sleep(1000);
    const after = cpuTimes();
    const busy = Math.max(...Object.keys(after).map((c) => (after[c].busy - before[c].busy) / (after[c].total - before[c].total || 1)));
    const foreign = progStats(undefined).foreign;
    const reason = foreign.length ? `other BPF programs loaded (${foreign.join(' ')})` : busy > 0.15 ? `a CPU ${Math.round(busy * 100)} % busy` : '';
    const waitedS = (Date.now() - started) / 1000;
    if (!reason) return { waitedS };
    if (waitedS > CONFIG.quietWaitS) return { waitedS, notQuiet: reason };
  }
}

async function round(index, modeName, warmup, receiver) {
  const mode = MODES[modeName];
  const quiet = CONFIG.quietWaitS > 0 ? await waitQuiet() : { waitedS: 0 };
  if (quiet.waitedS > 2) console.log(`  (waited ${Math.round(quiet.waitedS)} s for a quiet machine${quiet.notQuiet ? `; still not: ${quiet.notQuiet}` : ''})`);
  receiver.clear();
  const procs = [];
  try {
    let sdkProc;
    if (mode.sdk === 'neighbour') {
      // Started before the server and left to settle: an SDK process's first seconds (its code compiled, its first
      // export) are its start, not what its programs cost the processes it does not watch.
      sdkProc = startServer(true, mode, receiver.endpoint);
      procs.push(sdkProc);
      await nextMessage(sdkProc, 'listening', 30_000);
      await sample(sdkProc, 'start');
      await sleep(CONFIG.neighbourSettleS * 1000);
    }
    const server = startServer(mode.sdk === 'server', mode, receiver.endpoint);
    procs.push(server);
    const { port, bodyBytes } = await nextMessage(server, 'listening', 30_000);
    if (mode.sdk === 'server') sdkProc = server;
    if (CONFIG.warmupS > 0) await runWrk(port, CONFIG.warmupS);

    const edge = async (name) => {
      const s = await sample(server, name);
      s.proc = server;
      s.machine = cpuTimes();
      const own = process.cpuUsage();
      s.driverCpuUs = own.user + own.system;
      if (sdkProc) s.sdk = await sampleSdk(sdkProc, mode, receiver, s);
      s.foreign = progStats(sdkProc?.pid).foreign;
      s.spans = { ...(spanTally.get(server.pid) ?? { spans: 0, server: 0, enriched: 0 }) };
      return s;
    };
    const a = await edge('start');
    const recording = profileTracing && mode.tracing ? spanProfile.record(server.pid, CONFIG.durationS, CONFIG.pin ? CONFIG.loadCpu : undefined) : undefined;
    const w = await runWrk(port, CONFIG.durationS);
    const samples = await recording;
    const b = await edge('end');
    const profile = samples && (await spanProfile.count(samples));
    const rollup = smapsRollup(server.pid);

    const requests = w.requests;
    const windowNs = Number(b.hrtimeNs - a.hrtimeNs);
    const machineCpu = {};
    let machineBusyUs = 0;
    for (const c of Object.keys(b.machine)) {
      const d = (k) => b.machine[c][k] - (a.machine[c]?.[k] ?? 0);
      machineCpu[`cpu${c}`] = { busy: d('busy') / d('total'), steal: d('steal') / d('total') };
      machineBusyUs += d('busy') * (1e6 / CLK_TCK);
    }
    const r = {
      round: index,
      mode: modeName,
      warmup,
      pid: server.pid,
      bodyBytes,
      requests,
      errors: w.err_connect + w.err_read + w.err_write + w.err_status + w.err_timeout,
      durationS: w.duration_us / 1e6,
      throughput: requests / (w.duration_us / 1e6),
      p50Us: w.p50_us,
      p90Us: w.p90_us,
      p99Us: w.p99_us,
      p999Us: w.p999_us,
      maxUs: w.max_us,
      cpuUsPerRequest: (b.cpuUs - a.cpuUs) / requests,
      userUsPerRequest: (b.userUs - a.userUs) / requests,
      systemUsPerRequest: (b.systemUs - a.systemUs) / requests,
      serverCpuUtilization: ((b.cpuUs - a.cpuUs) * 1000) / windowNs,
      ctxSwitchesPerRequest: (b.ctxSwitches - a.ctxSwitches) / requests,
      rssMB: b.rss / 1e6,
      v8HeapMB: Object.values(b.heapSpaces).reduce((sum, x) => sum + x, 0) / 1e6,
      anonymousMB: rollup.Anonymous / 1e6,
      fileMB: (rollup.Rss - rollup.Anonymous) / 1e6,
      v8SpacesMB: Object.fromEntries(Object.entries(b.heapSpaces).map(([k, v]) => [k, v / 1e6])),
      // RSS less V8's young generation, whose size V8 doubles by steps (to 32 MB here) as objects survive its
      // scavenges: sooner with the SDK's allocations, later (20-60 s under this load) without; docs/benchmark.md
      rssOutsideYoungMB: (b.rss - (b.heapSpaces.new_space ?? 0)) / 1e6,
      wrkCpuUtilization: (w.cpuUs * 1000) / windowNs,
      // this process, beside wrk on its CPU: its OTLP receiver decodes what the SDK exports (in the tracing modes,
      // every span)
      driverCpuUtilization: ((b.driverCpuUs - a.driverCpuUs) * 1000) / windowNs,
      machineCpu,
      // Tick-based accounting charges a process with the softirq time that ran in its context: compare with busy.
      otherCpu: (machineBusyUs - (b.cpuUs - a.cpuUs) - w.cpuUs - (b.driverCpuUs - a.driverCpuUs)) / (windowNs / 1000),
      maxSteal: Math.max(...Object.values(machineCpu).map((c) => c.steal)),
      foreignPrograms: [...new Set([...a.foreign, ...b.foreign])],
      quiet,
    };
    if (sdkProc) Object.assign(r, sdkRoundFigures(a.sdk, b.sdk, requests, mode));
    if (mode.tracing) {
      // Exported between the two flushes: a batch in flight at an edge counts in the next window.
      const d = (k) => b.spans[k] - a.spans[k];
      Object.assign(r, { spansPerRequest: d('spans') / requests, serverSpansPerRequest: d('server') / requests, enrichedSpansPerRequest: d('enriched') / requests });
      if (profile) Object.assign(r, spanProfile.perSpan(profile, r.cpuUsPerRequest, r.serverSpansPerRequest));
      // The programs of bpf/spans.bpf.c run inside the process's sends and receives, outside the processor's frames:
      // their run time per request (the load generator's own calls, which return at the process check, included)
      // over the server spans per request. The reading of the kernel's per-connection state is the processor's
      // read() plus these; a span's whole cost is the processor plus these.
      const programs = r.bpftool?.programs;
      if (programs && r.serverSpansPerRequest > 0) {
        r.spanProgramsNsPerSpan = SPAN_PROGRAMS.reduce((sum, n) => sum + (programs[n]?.nsPerRequest ?? 0), 0) / r.serverSpansPerRequest;
        if (r.readingUsPerSpan !== undefined) {
          r.kernelStateUsPerSpan = r.readingUsPerSpan + r.spanProgramsNsPerSpan / 1000;
          r.spanUsPerSpan = r.processorUsPerSpan + r.spanProgramsNsPerSpan / 1000;
        }
      }
    }
    return r;
  } finally {
    for (const p of procs) {
      const { code, signal } = await stopServer(p);
      if (code !== 0) console.error(`bench: a ${modeName} process of round ${index} exited with ${signal || `code ${code}`}`);
    }
  }
}

function sdkRoundFigures(a, b, requests, mode) {
  const out = {
    hooks: Object.fromEntries(b.status.probes.map((p) => [p.name, p.attached ? p.hook : 'off'])),
    sdkServerTxBytesPerRequest: (b.figures.serverTxBytes - a.figures.serverTxBytes) / requests,
    mainThreadSyscallsPerRequest: (b.figures.mainThreadSyscalls - a.figures.mainThreadSyscalls) / requests,
  };
  if (!mode.stats) return out;
  const probes = {};
  let timeNs = 0;
  let runs = 0;
  for (const [name, pb] of Object.entries(b.figures.probes)) {
    const pa = a.figures.probes[name] ?? { timeNs: 0, runs: 0 };
    const dt = pb.timeNs - pa.timeNs;
    const dr = pb.runs - pa.runs;
    timeNs += dt;
    runs += dr;
    probes[name] = { hook: pb.hook, nsPerRequest: dt / requests, runsPerRequest: dr / requests, nsPerRun: dr > 0 ? dt / dr : 0 };
  }
  // With sampled statistics these are the SDK's estimates (measured in its windows, scaled to the whole time).
  const sampling = b.status.kernelTimeSampling;
  Object.assign(out, { kernelNsPerRequest: timeNs / requests, kernelRunsPerRequest: runs / requests, kernelNsPerRun: runs > 0 ? timeNs / runs : 0, probes, kernelStatsSampling: sampling ?? undefined });
  if (BPFTOOL) {
    // bpftool reads the raw counters, which only run in the windows: scaled by period / window (nominal), a cross-check
    // of the SDK's own scaling, which uses each window's measured length
    const scale = sampling ? sampling.periodMillis / sampling.windowMillis : 1;
    const programs = {};
    const mapIds = new Set();
    for (const [key, pb] of Object.entries(b.progs.programs)) {
      const pa = a.progs.programs[key] ?? { runTimeNs: 0, runCnt: 0 };
      for (const id of pb.mapIds) mapIds.add(id);
      const p = (programs[pb.name] ??= { nsPerRequest: 0, runsPerRequest: 0 });
      p.nsPerRequest += (scale * (pb.runTimeNs - pa.runTimeNs)) / requests;
      p.runsPerRequest += (scale * (pb.runCnt - pa.runCnt)) / requests;
    }
    for (const p of Object.values(programs)) p.nsPerRun = p.runsPerRequest > 0 ? p.nsPerRequest / p.runsPerRequest : 0;
    out.bpftool = { programs, scaledBy: scale, kernelNsPerRequest: Object.values(programs).reduce((s, p) => s + p.nsPerRequest, 0) };
    out.mapMemlockMB = mapMemlockBytes([...mapIds]) / 1e6;
  }
  return out;
}

/** A round, run again (up to BENCH_RETRIES times) when something else disturbed it. */
async function undisturbedRound(index, modeName, warmup, receiver) {
  for (let attempt = 0; ; attempt++) {
    const r = await round(index, modeName, warmup, receiver);
    r.attempt = attempt;
    const why = r.foreignPrograms.length
      ? `other processes' BPF programs were loaded (${r.foreignPrograms.join(' ')})`
      : r.otherCpu > OTHER_CPU_LIMIT
        ? `other processes used ${fmt(r.otherCpu * 100)} % of a CPU`
        : r.maxSteal > STEAL_LIMIT
          ? `the hypervisor took ${fmt(r.maxSteal * 100)} % of a CPU (steal)`
          : '';
    if (!why) return r;
    r.disturbed = why;
    if (attempt >= CONFIG.retries) {
      console.log(`  round ${index} disturbed: ${why}; kept after ${attempt + 1} attempts`);
      return r;
    }
    console.log(`  round ${index} disturbed: ${why}; running it again`);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Summary

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function stats(rows, key) {
  const xs = rows.map((r) => r[key]).filter((x) => typeof x === 'number');
  if (!xs.length) return undefined;
  return { median: median(xs), min: Math.min(...xs), max: Math.max(...xs), values: xs };
}

const KEYS = [
  'throughput', 'p50Us', 'p99Us', 'cpuUsPerRequest', 'userUsPerRequest', 'systemUsPerRequest', 'serverCpuUtilization',
  'ctxSwitchesPerRequest', 'rssMB', 'rssOutsideYoungMB', 'wrkCpuUtilization', 'kernelNsPerRequest', 'kernelRunsPerRequest', 'kernelNsPerRun',
  'sdkServerTxBytesPerRequest', 'mainThreadSyscallsPerRequest', 'mapMemlockMB', 'spansPerRequest', 'serverSpansPerRequest',
  'enrichedSpansPerRequest', 'processorShare', 'processorUsPerSpan', 'readingUsPerSpan', 'spanProgramsNsPerSpan',
  'kernelStateUsPerSpan', 'spanUsPerSpan',
];

function breakdown(rows, pick) {
  const names = new Set(rows.flatMap((r) => Object.keys(pick(r) ?? {})));
  const out = {};
  for (const name of names) {
    const of = (k) => median(rows.map((r) => pick(r)?.[name]?.[k] ?? 0));
    out[name] = { hook: rows.map((r) => pick(r)?.[name]?.hook).find(Boolean), nsPerRequest: of('nsPerRequest'), runsPerRequest: of('runsPerRequest'), nsPerRun: of('nsPerRun') };
  }
  return out;
}

/** A small seeded generator (mulberry32): the same rounds give the same interval. */
function seeded(seed) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * The 95 % bootstrap interval of median(mode) / median(base) for one key, resampling whole pairs (`pairRounds`: each
 * pair's rounds): the pairs in which the mode and a base mode ran (`base`: the modes whose rounds are pooled as the
 * reference, off by default). Undefined with fewer than 3 such pairs.
 */
function pairInterval(pairRounds, name, key, base = ['off']) {
  const pairs = pairRounds
    .map((rounds) => ({
      base: rounds.filter((r) => base.includes(r.mode)).map((r) => r[key]),
      other: rounds.filter((r) => r.mode === name).map((r) => r[key]),
    }))
    .filter((x) => x.base.length && x.other.length);
  if (pairs.length < 3) return undefined;
  const random = seeded(pairs.length * 7919 + key.length);
  const ratios = [];
  for (let b = 0; b < 4000; b++) {
    const sample = Array.from({ length: pairs.length }, () => pairs[Math.floor(random() * pairs.length)]);
    ratios.push(median(sample.flatMap((x) => x.other)) / median(sample.flatMap((x) => x.base)));
  }
  ratios.sort((a, b) => a - b);
  return { low: ratios[Math.floor(0.025 * ratios.length)], high: ratios[Math.ceil(0.975 * ratios.length) - 1] };
}

/** Whether an interval lies on one side of a target (undefined without an interval). */
const resolves = (interval, target) => (interval ? !(interval.low <= target && target <= interval.high) : undefined);

function summarize(rounds) {
  const measured = rounds.filter((r) => !r.warmup);
  const modes = {};
  for (const name of CONFIG.modes) {
    const rows = measured.filter((r) => r.mode === name);
    const s = {};
    for (const k of KEYS) {
      const st = stats(rows, k);
      if (st) s[k] = st;
    }
    if (rows.some((r) => r.probes)) s.perProbe = breakdown(rows, (r) => r.probes);
    if (rows.some((r) => r.bpftool)) s.perProgram = breakdown(rows, (r) => r.bpftool?.programs);
    modes[name] = s;
  }
  const off = modes.off;
  const versusOff = {};
  for (const name of CONFIG.modes.filter((m) => m !== 'off')) {
    const m = modes[name];
    versusOff[name] = {
      throughputRatio: m.throughput.median / off.throughput.median,
      p99Ratio: m.p99Us.median / off.p99Us.median,
      p50Ratio: m.p50Us.median / off.p50Us.median,
      cpuUsPerRequestAdded: m.cpuUsPerRequest.median - off.cpuUsPerRequest.median,
      systemUsPerRequestAdded: m.systemUsPerRequest.median - off.systemUsPerRequest.median,
      rssAddedMB: m.rssMB.median - off.rssMB.median,
      rssAddedOutsideYoungMB: m.rssOutsideYoungMB.median - off.rssOutsideYoungMB.median,
    };
  }
  // The measured rounds of each pair, in the order the pairs ran.
  const byPair = new Map();
  for (const r of measured) byPair.set(r.pair, [...(byPair.get(r.pair) ?? []), r]);
  const pairRounds = [...byPair.values()];

  // Each pair's own ratio: the spread that the ratio of medians hides.
  const pairs = pairRounds.flatMap((rounds) => {
    const o = rounds.find((r) => r.mode === 'off');
    const on = rounds.find((r) => r.mode === 'on');
    if (!o || !on) return [];
    return [{
      throughputRatio: on.throughput / o.throughput,
      p99Ratio: on.p99Us / o.p99Us,
      cpuUsPerRequestAdded: on.cpuUsPerRequest - o.cpuUsPerRequest,
      rssAddedMB: on.rssMB - o.rssMB,
      rssAddedOutsideYoungMB: on.rssOutsideYoungMB - o.rssOutsideYoungMB,
    }];
  });
  const pairStats = {};
  for (const k of Object.keys(pairs[0] ?? {})) pairStats[k] = stats(pairs, k);

  // How far the ratios of medians would move with other pairs from the same machine: resample the pairs (a pair's
  // rounds stay together) and take the middle 95 % of the ratios. An interval that holds both sides of a target
  // says that this run cannot tell whether it is met.
  const intervals = {};
  for (const name of CONFIG.modes.filter((m) => m !== 'off')) {
    intervals[name] = { throughputRatio: pairInterval(pairRounds, name, 'throughput'), p99Ratio: pairInterval(pairRounds, name, 'p99Us') };
  }

  // With a control, the SDK against every plain round (off and control: two per pair): the same reference, twice the
  // rounds. The targets are judged on it (below): one off median alone moved a run's verdict both ways on this VM.
  let versusPlain;
  if (modes.control) {
    const PLAIN = ['off', 'control'];
    const plain = measured.filter((r) => PLAIN.includes(r.mode));
    const of = (key) => median(modes.on[key].values) / median(plain.map((r) => r[key]));
    versusPlain = {
      rounds: plain.length,
      throughputRatio: of('throughput'),
      p99Ratio: of('p99Us'),
      intervals: {
        throughputRatio: pairInterval(pairRounds, 'on', 'throughput', PLAIN),
        p99Ratio: pairInterval(pairRounds, 'on', 'p99Us', PLAIN),
      },
    };
  }

  // Where a round ran in its pair, whatever its mode: each round's figure against the mean of its pair's rounds.
  // With the order rotated and BENCH_PAIRS a multiple of the modes, every place holds every mode equally often, so a
  // place that differs from the others is the machine (what ran just before, the time since the pair began), not a mode.
  const places = CONFIG.modes.map((_, position) => {
    const rel = (key) =>
      median(
        measured
          .filter((r) => r.position === position)
          .map((r) => {
            const pair = byPair.get(r.pair);
            return r[key] / (pair.reduce((sum, x) => sum + x[key], 0) / pair.length);
          }),
      );
    return { position, throughputRelative: rel('throughput'), p99Relative: rel('p99Us') };
  });

  // KernelSpanProcessor under load: tracing against tracing-plain, which differ in the processor only. One server
  // span per request, so CPU per request is CPU per span.
  let spanCost;
  if (modes.tracing && modes['tracing-plain']) {
    const withRows = measured.filter((r) => r.mode === 'tracing');
    const plainRows = measured.filter((r) => r.mode === 'tracing-plain');
    const spanPairs = plainRows.slice(0, withRows.length).map((p, i) => ({
      cpuUsPerSpanAdded: withRows[i].cpuUsPerRequest - p.cpuUsPerRequest,
      disturbed: Boolean(withRows[i].disturbed || p.disturbed),
    }));
    // The median of the pairs' differences: a round disturbed (steal, say) moves one pair, not the figure.
    const pairs = stats(spanPairs, 'cpuUsPerSpanAdded');
    spanCost = {
      cpuUsPerSpanAdded: pairs.median,
      differenceOfMedians: modes.tracing.cpuUsPerRequest.median - modes['tracing-plain'].cpuUsPerRequest.median,
      pairs,
      undisturbedPairs: spanPairs.filter((x) => !x.disturbed).map((x) => x.cpuUsPerSpanAdded),
      throughputRatio: modes.tracing.throughput.median / modes['tracing-plain'].throughput.median,
      p99Ratio: modes.tracing.p99Us.median / modes['tracing-plain'].p99Us.median,
    };
  }

  const v = versusOff.on;
  // the reference: every plain round when a control ran, off's rounds otherwise
  const judged = versusPlain ?? { throughputRatio: v.throughputRatio, p99Ratio: v.p99Ratio, intervals: intervals.on };
  const figures = {
    throughputRatio: judged.throughputRatio,
    p99Ratio: judged.p99Ratio,
    reference: versusPlain ? 'off and control' : 'off',
    cpuUsPerRequestOff: off.cpuUsPerRequest.median,
    cpuUsPerRequestOn: modes.on.cpuUsPerRequest.median,
    cpuUsPerRequestAdded: v.cpuUsPerRequestAdded,
    rssAddedMB: v.rssAddedMB,
    rssAddedOutsideYoungMB: v.rssAddedOutsideYoungMB,
    kernelNsPerRequest: modes.on.kernelNsPerRequest.median,
  };
  const targets = {
    throughputRatio: { target: `>= ${TARGETS.throughputRatio}`, value: figures.throughputRatio, met: figures.throughputRatio >= TARGETS.throughputRatio, resolved: resolves(judged.intervals?.throughputRatio, TARGETS.throughputRatio) },
    p99Ratio: { target: `<= ${TARGETS.p99Ratio}`, value: figures.p99Ratio, met: figures.p99Ratio <= TARGETS.p99Ratio, resolved: resolves(judged.intervals?.p99Ratio, TARGETS.p99Ratio) },
    kernelNsPerRequest: { target: `<= ${TARGETS.kernelNsPerRequest}`, value: figures.kernelNsPerRequest, met: figures.kernelNsPerRequest <= TARGETS.kernelNsPerRequest },
    // judged outside V8's young generation: a long-running server's grows to the same size with the SDK or without
    rssAddedMB: { target: `<= ${TARGETS.rssAddedMB}`, value: figures.rssAddedOutsideYoungMB, met: figures.rssAddedOutsideYoungMB <= TARGETS.rssAddedMB },
  };
  const kernelState = modes.tracing?.kernelStateUsPerSpan?.median;
  if (kernelState !== undefined) {
    figures.kernelStateUsPerSpan = kernelState;
    targets.kernelStateUsPerSpan = { target: `<= ${TARGETS.kernelStateUsPerSpan}`, value: kernelState, met: kernelState <= TARGETS.kernelStateUsPerSpan };
  }
  return { modes, versusOff, versusPlain, figures, targets, pairs, pairStats, intervals, places, spanCost };
}

const fmt = (x, d = 0) => (Number.isFinite(x) ? x.toFixed(d) : '');
const spread = (st, d) => (st ? `${fmt(st.median, d)} (${fmt(st.min, d)}–${fmt(st.max, d)})` : '');
const pct = (x) => `${fmt(x * 100, 1)} %`;
const signed = (x, d) => (Number.isFinite(x) ? `${x >= 0 ? '+' : ''}${x.toFixed(d)}` : '');

function table(headers, rows) {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
  const line = (cells) => `| ${cells.map((c, i) => String(c).padEnd(widths[i])).join(' | ')} |`;
  return [line(headers), `| ${widths.map((w) => '-'.repeat(w)).join(' | ')} |`, ...rows.map(line)].join('\n');
}

function report(result) {
  const { rounds, summary: sm } = result;
  const lines = [];
  lines.push('Rounds:');
  lines.push(
    table(
      ['round', 'mode', 'req/s', 'p50 µs', 'p99 µs', 'server CPU µs/req', 'of which sys', 'server CPU', 'wrk CPU', 'RSS MB', 'BPF ns/req', 'BPF runs/req', 'disturbed'],
      rounds.map((r) => [
        r.warmup ? `${r.round} (warm-up)` : r.round,
        r.mode,
        fmt(r.throughput),
        r.p50Us,
        r.p99Us,
        fmt(r.cpuUsPerRequest, 2),
        fmt(r.systemUsPerRequest, 2),
        pct(r.serverCpuUtilization),
        pct(r.wrkCpuUtilization),
        fmt(r.rssMB, 1),
        fmt(r.kernelNsPerRequest, 0),
        fmt(r.kernelRunsPerRequest, 1),
        r.disturbed ? 'yes' : '',
      ]),
    ),
  );
  lines.push('');
  lines.push(
    'Summary (warm-up discarded): median (min–max) per mode; "on vs off" compares the medians, in brackets the 95 % interval ' +
      'of that ratio with the pairs resampled ("not resolved": the target lies inside it):',
  );
  const m = sm.modes;
  const f = sm.figures;
  const t = sm.targets;
  const yes = (x) => (x.met ? 'met' : 'MISSED') + (x.resolved === false ? ', not resolved' : '');
  const plainMark = sm.versusPlain ? ' (*)' : '';
  const withInterval = (ratio, i) => (i ? `${pct(ratio)} (${fmt(i.low * 100, 1)}–${fmt(i.high * 100, 1)})` : pct(ratio));
  lines.push(
    table(
      ['figure', 'SDK off', 'SDK on', 'on vs off', 'target', ''],
      [
        ['throughput (req/s)', spread(m.off.throughput, 0), spread(m.on.throughput, 0), withInterval(sm.versusOff.on.throughputRatio, sm.intervals.on?.throughputRatio), '≥ 99 %', yes(t.throughputRatio) + plainMark],
        ['p99 latency (µs)', spread(m.off.p99Us, 0), spread(m.on.p99Us, 0), withInterval(sm.versusOff.on.p99Ratio, sm.intervals.on?.p99Ratio), '≤ 103 %', yes(t.p99Ratio) + plainMark],
        ['p50 latency (µs)', spread(m.off.p50Us, 0), spread(m.on.p50Us, 0), pct(sm.versusOff.on.p50Ratio), '', ''],
        ['server CPU per request (µs)', spread(m.off.cpuUsPerRequest, 2), spread(m.on.cpuUsPerRequest, 2), `${signed(f.cpuUsPerRequestAdded, 2)} µs`, '', ''],
        ['  of which system (µs)', spread(m.off.systemUsPerRequest, 2), spread(m.on.systemUsPerRequest, 2), `${signed(sm.versusOff.on.systemUsPerRequestAdded, 2)} µs`, '', ''],
        ['server main-thread context switches per request', spread(m.off.ctxSwitchesPerRequest, 3), spread(m.on.ctxSwitchesPerRequest, 3), '', '', ''],
        ['RSS after the round (MB)', spread(m.off.rssMB, 1), spread(m.on.rssMB, 1), `${signed(f.rssAddedMB, 1)} MB`, '', ''],
        ['  less V8\'s young generation (MB)', spread(m.off.rssOutsideYoungMB, 1), spread(m.on.rssOutsideYoungMB, 1), `${signed(f.rssAddedOutsideYoungMB, 1)} MB`, '≤ 15 MB', yes(t.rssAddedMB)],
        [`BPF kernel time per request (ns${statsModeOf(MODES.on) === 'sampled' ? ', estimated from sampled windows' : ''})`, '', spread(m.on.kernelNsPerRequest, 0), '', '≤ 300 ns', yes(t.kernelNsPerRequest)],
        ['BPF program runs per request', '', spread(m.on.kernelRunsPerRequest, 1), '', '', ''],
        ['BPF ns per run', '', spread(m.on.kernelNsPerRun, 1), '', '', ''],
      ],
    ),
  );
  if (sm.versusPlain) {
    const x = sm.versusPlain;
    lines.push(
      `(*) judged against every plain round, off and control (${x.rounds} rounds): ` +
        `throughput ${withInterval(x.throughputRatio, x.intervals.throughputRatio)}, p99 ${withInterval(x.p99Ratio, x.intervals.p99Ratio)}.`,
    );
  }
  if (sm.versusOff.control) {
    const c = sm.versusOff.control;
    lines.push(
      `A/A control (SDK off in both, same run): throughput ${withInterval(c.throughputRatio, sm.intervals.control?.throughputRatio)}, ` +
        `p99 ${withInterval(c.p99Ratio, sm.intervals.control?.p99Ratio)}, ` +
        `CPU/req ${signed(c.cpuUsPerRequestAdded, 2)} µs, RSS ${signed(c.rssAddedMB, 1)} MB ` +
        `(less V8's young generation ${signed(c.rssAddedOutsideYoungMB, 1)} MB) of off. ` +
        'A difference between on and off no larger than this is not resolved by this run.',
    );
  }
  const ps = sm.pairStats;
  lines.push('');
  lines.push(
    'Per pair, on/off (min–max): ' +
      `throughput ${pct(ps.throughputRatio.min)}–${pct(ps.throughputRatio.max)}, p99 ${pct(ps.p99Ratio.min)}–${pct(ps.p99Ratio.max)}, ` +
      `CPU/req ${signed(ps.cpuUsPerRequestAdded.min, 2)}…${signed(ps.cpuUsPerRequestAdded.max, 2)} µs, RSS ${signed(ps.rssAddedMB.min, 1)}…${signed(ps.rssAddedMB.max, 1)} MB ` +
      `(less V8's young generation ${signed(ps.rssAddedOutsideYoungMB.min, 1)}…${signed(ps.rssAddedOutsideYoungMB.max, 1)} MB)`,
  );
  if (sm.places.length > 1) {
    const ordinal = (n) => `${n + 1}${['st', 'nd', 'rd'][n] ?? 'th'}`;
    lines.push(
      `Place in the pair, any mode (each round against its pair's mean, medians; ${CONFIG.order === 'rotate' ? 'the order rotated' : 'the order fixed: each place is one mode'}): ` +
        sm.places.map((x) => `${ordinal(x.position)} throughput ${pct(x.throughputRelative)}, p99 ${pct(x.p99Relative)}`).join('; '),
    );
  }
  const extra = CONFIG.modes.filter((x) => x !== 'off' && x !== 'on');
  if (extra.length) {
    lines.push('');
    lines.push('Other modes (median vs the SDK-off median):');
    lines.push(
      table(
        ['mode', 'req/s', 'vs off', 'p99 vs off', 'server CPU µs/req', 'vs off', 'RSS vs off', 'BPF ns/req'],
        extra.map((x) => {
          const v = sm.versusOff[x];
          return [`${x} (${MODES[x].label})`, fmt(m[x].throughput.median), pct(v.throughputRatio), pct(v.p99Ratio), fmt(m[x].cpuUsPerRequest.median, 2), `${signed(v.cpuUsPerRequestAdded, 2)} µs`, `${signed(v.rssAddedMB, 1)} MB`, m[x].kernelNsPerRequest ? fmt(m[x].kernelNsPerRequest.median) : ''];
        }),
      ),
    );
  }
  const traced = CONFIG.modes.filter((x) => MODES[x].tracing);
  if (traced.length) {
    lines.push('');
    lines.push('Tracing modes: spans the receiver got per request (medians): all, server spans, with the kernel\'s attributes:');
    lines.push(table(['mode', 'spans/req', 'server spans/req', 'enriched/req'], traced.map((x) => [x, fmt(m[x].spansPerRequest?.median, 3), fmt(m[x].serverSpansPerRequest?.median, 3), fmt(m[x].enrichedSpansPerRequest?.median, 3)])));
  }
  if (sm.spanCost) {
    const c = sm.spanCost;
    lines.push(
      `KernelSpanProcessor under load (tracing − tracing-plain, one server span per request): ${signed(c.cpuUsPerSpanAdded, 2)} µs CPU per span, ` +
        `the median of ${c.pairs.values.length} pairs (per pair ${signed(c.pairs.min, 2)}…${signed(c.pairs.max, 2)} µs; ` +
        `pairs with neither round disturbed: ${c.undisturbedPairs.map((x) => signed(x, 2)).join(', ') || 'none'}); ` +
        `throughput ${pct(c.throughputRatio)}, p99 ${pct(c.p99Ratio)} of tracing-plain. In process, without load: node bench/spans.js (docs/benchmark.md).`,
    );
  }
  const profiled = m.tracing;
  if (profiled?.processorUsPerSpan) {
    lines.push(
      `KernelSpanProcessor's own frames under load (perf samples of the tracing servers, bench/span-profile.js): ` +
        `${fmt(profiled.processorUsPerSpan.median, 2)} µs CPU per span (per round ${fmt(profiled.processorUsPerSpan.min, 2)}–${fmt(profiled.processorUsPerSpan.max, 2)}), ` +
        `${pct(profiled.processorShare.median)} of the server's samples; of which the reading (its read(): a slot of bpf/spans.bpf.c, or the addon's getsockopt(TCP_INFO) with N-API) ` +
        `${fmt(profiled.readingUsPerSpan.median, 2)} µs (${fmt(profiled.readingUsPerSpan.min, 2)}–${fmt(profiled.readingUsPerSpan.max, 2)}).`,
    );
  }
  if (profiled?.kernelStateUsPerSpan) {
    lines.push(
      `Per span under load, with the programs of bpf/spans.bpf.c (${fmt(profiled.spanProgramsNsPerSpan.median)} ns per span, ${fmt(profiled.spanProgramsNsPerSpan.min)}–${fmt(profiled.spanProgramsNsPerSpan.max)}, ` +
        `the load generator's process checks included): reading the kernel's per-connection state (read() + programs) ${spread(profiled.kernelStateUsPerSpan, 2)} µs; ` +
        `the whole processor with the programs ${spread(profiled.spanUsPerSpan, 2)} µs.`,
    );
  }
  for (const x of CONFIG.modes.filter((y) => m[y].perProbe && m[y].kernelNsPerRequest)) {
    lines.push('');
    const sampled = statsModeOf(MODES[x]) === 'sampled';
    lines.push(
      `BPF kernel time per probe, mode ${x} (the SDK's otel_node_ebpf.probe.kernel.time and .runs` +
        `${sampled ? ': estimates from its sampled windows' : ''}; medians):`,
    );
    lines.push(
      table(
        ['probe', 'hook', 'ns/req', 'runs/req', 'ns/run'],
        Object.entries(m[x].perProbe)
          .sort((a, b) => b[1].nsPerRequest - a[1].nsPerRequest)
          .map(([n, p]) => [n, p.hook, fmt(p.nsPerRequest, 1), fmt(p.runsPerRequest, 2), fmt(p.nsPerRun, 1)]),
      ),
    );
    if (m[x].perProgram) {
      lines.push(`Per program (bpftool prog show: run_time_ns and run_cnt${sampled ? ', counted in the windows only, × period / window' : ''}; medians):`);
      lines.push(
        table(
          ['program', 'ns/req', 'runs/req', 'ns/run'],
          Object.entries(m[x].perProgram)
            .sort((a, b) => b[1].nsPerRequest - a[1].nsPerRequest)
            .map(([n, p]) => [n, fmt(p.nsPerRequest, 1), fmt(p.runsPerRequest, 2), fmt(p.nsPerRun, 1)]),
        ),
      );
    }
  }
  lines.push('');
  if (m.on.mapMemlockMB) lines.push(`Kernel memory of the SDK's BPF maps (memlock; not in RSS): ${fmt(m.on.mapMemlockMB.median, 1)} MB`);
  if (m.on.mainThreadSyscallsPerRequest) lines.push(`Server main-thread epoll sleeps (active stretches) plus syscalls (opt-in nodejs.syscalls) per request, as the runtime probe counted them: ${fmt(m.on.mainThreadSyscallsPerRequest.median, 2)}`);
  if (m.on.sdkServerTxBytesPerRequest) lines.push(`Server bytes sent per request, as the SDK counted them: ${fmt(m.on.sdkServerTxBytesPerRequest.median, 1)}`);
  return lines.join('\n');
}

// ---------------------------------------------------------------------------------------------------------------

async function main() {
  if (!fs.existsSync(REGISTER)) fail(`${path.relative(process.cwd(), REGISTER)} not found: build first (npm run build)`);
  if (process.getuid && process.getuid() !== 0) fail('run as root: the SDK loads eBPF programs and reads BPF run-time statistics');
  ensureWrk();
  if (CONFIG.profile && CONFIG.modes.some((x) => MODES[x].tracing)) profileTracing = spanProfile.ensurePerf();
  ({ METRICS, ATTRS } = require(path.join(ROOT, 'dist', 'semconv.js')));
  const { OtlpReceiver } = require(path.join(ROOT, 'dist', 'otlp', 'receiver.js'));

  pinSelf();
  const receiver = new OtlpReceiver();
  receiver.endpoint = (await receiver.start()).httpEndpoint;
  receiver.on('spans', countSpans);

  /** The modes of pair i, in the order they run. */
  const pairOrder = (i) => {
    const k = CONFIG.order === 'rotate' ? i % CONFIG.modes.length : 0;
    return [...CONFIG.modes.slice(k), ...CONFIG.modes.slice(0, k)];
  };
  const plan = [{ mode: 'on', warmup: true }];
  for (let i = 0; i < CONFIG.pairs; i++) plan.push(...pairOrder(i).map((mode, position) => ({ mode, pair: i, position, warmup: false })));
  const settleS = (mode) => (MODES[mode].sdk === 'neighbour' ? CONFIG.neighbourSettleS : 0);
  const perRound = (mode) => CONFIG.warmupS + CONFIG.durationS + 2.5 + settleS(mode);
  console.log(
    `bench: ${plan.length} rounds (1 warm-up + ${CONFIG.pairs} × ${CONFIG.modes.join('/')}${CONFIG.order === 'rotate' ? ' rotated by one each pair' : ''}), ${CONFIG.warmupS} s + ${CONFIG.durationS} s of load each, ` +
      `wrk -t${CONFIG.threads} -c${CONFIG.connections}` +
      (CONFIG.pin ? `, server on CPU ${CONFIG.serverCpu}, wrk on CPU ${CONFIG.loadCpu}` : ', unpinned') +
      `; about ${Math.ceil(plan.reduce((sum, r) => sum + perRound(r.mode), 0) / 60)} min on a quiet machine`,
  );

  const rounds = [];
  process.once('SIGINT', () => process.exit(130));
  try {
    for (let i = 0; i < plan.length; i++) {
      const r = await undisturbedRound(i, plan[i].mode, plan[i].warmup, receiver);
      r.pair = plan[i].pair;
      r.position = plan[i].position;
      rounds.push(r);
      console.log(
        `  round ${i}${r.warmup ? ' (warm-up)' : ''} ${r.mode}: ${fmt(r.throughput)} req/s, p99 ${r.p99Us} µs, ` +
          `${fmt(r.cpuUsPerRequest, 2)} µs CPU/req, RSS ${fmt(r.rssMB, 1)} MB (V8 heap ${fmt(r.v8HeapMB, 1)} of which young generation ${fmt(r.rssMB - r.rssOutsideYoungMB, 1)}, other anonymous ${fmt(r.anonymousMB - r.v8HeapMB, 1)}, files and BPF maps ${fmt(r.fileMB, 1)})` +
          (r.kernelNsPerRequest !== undefined ? `, BPF ${fmt(r.kernelNsPerRequest)} ns/req` : '') +
          (r.processorUsPerSpan !== undefined ? `, span processor ${fmt(r.processorUsPerSpan, 2)} µs/span (perf)` : '') +
          (r.errors ? `, ${r.errors} ERRORS` : '') +
          `; wrk CPU ${pct(r.wrkCpuUtilization)}, driver ${pct(r.driverCpuUtilization)}, others ${pct(r.otherCpu)}, steal ≤ ${pct(r.maxSteal)}`,
      );
    }
  } finally {
    await receiver.stop();
  }

  const summary = summarize(rounds);
  const result = { date: new Date().toISOString(), machine: machine(), sdk: sdkInfo(), config: { ...CONFIG, out: undefined }, targets: TARGETS, summary, rounds };
  console.log('');
  console.log(report(result));
  fs.writeFileSync(CONFIG.out, JSON.stringify(result, null, 2) + '\n');
  console.log(`\nwritten: ${path.relative(process.cwd(), CONFIG.out)}`);
  const missed = Object.entries(summary.targets).filter(([, x]) => !x.met);
  const unresolved = Object.entries(summary.targets).filter(([, x]) => x.resolved === false);
  console.log(
    (missed.length ? `targets missed: ${missed.map(([k]) => k).join(', ')}` : 'all targets met') +
      (unresolved.length ? `; not resolved by this run (the target inside the 95 % interval): ${unresolved.map(([k]) => k).join(', ')}` : ''),
  );
  if (rounds.some((r) => r.errors)) console.log('note: wrk reported errors in some rounds (see results.json)');
  if (rounds.some((r) => r.disturbed)) console.log('note: some rounds were disturbed by other processes even after retries ("disturbed" in results.json)');
}

main().catch((err) => {
  console.error(`bench failed: ${err && err.stack ? err.stack : err}`);
  process.exit(1);
});
