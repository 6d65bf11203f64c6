#!/usr/bin/env node
'use strict';
// Where the resident memory that the SDK adds goes (`node bench/memory.js`). The same server as the overhead
// benchmark (bench/server.js, with the same SDK settings as `npm run bench`), SDK off and on in alternating rounds,
// a fresh process per round. Each round is sampled twice: idle (just after start and one export) and after a load
// (wrk). Each sample splits the resident set by where it lives, from /proc/PID/smaps and V8's own figures:
//
//   file-backed      node binary: pages of /usr/bin/node's code and data that have been touched (shared with other
//                    node processes, but counted in each one's RSS); addon and libraries: the .node file, libbpf,
//                    libelf, libz; other files: the rest (libc, libstdc++, ...)
//   BPF maps         mmap'd maps (ring buffers, global-variable arrays): anon_inode:bpf-map, the pages touched
//   V8 heap          physical size of V8's heap spaces (v8.getHeapSpaceStatistics), each space on its own line
//   malloc           the main arena ([heap], the brk heap) and the thread arenas (anonymous, 64 MiB aligned: glibc
//                    gives each thread that mallocs an arena, and keeps what is freed at the top of one)
//   thread stacks    anonymous mappings behind a guard page, at most 8 MiB + 4 KiB (pthread stacks)
//   other anonymous  the rest: V8's code range and bookkeeping, node's own mmaps
//
// Figures are MB (10^6 bytes), as the RSS column of `npm run bench`; medians over the rounds of a mode.
//
// Needs root and a build (npm run build), like the benchmark. Environment:
//   MEMORY_ROUNDS     rounds per mode (default 3)
//   MEMORY_LOAD       seconds of wrk load before the second sample (default 5; 0: idle samples only)
//   MEMORY_IDLE_WAIT  ms between start and the idle sample (default 2000)
//   MEMORY_OUT        also write every sample as JSON to this file
//   MEMORY_DETAIL     1: also list every anonymous mapping of the last SDK-on sample, and the modules it loaded
// The SDK's own variables pass through to the SDK's process (for example OTEL_NODE_EBPF_DISABLED_PROBES), and so do
// glibc's (MALLOC_ARENA_MAX, ...) to both modes. Run it under `flock /tmp/bench.lock` on a shared machine.

const { execFile } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { REGISTER, intEnv, pinnedTo, startServer, nextMessage, stopServer } = require('./server-process');

const ROOT = path.resolve(__dirname, '..');

const CONFIG = {
  rounds: Math.max(1, intEnv('MEMORY_ROUNDS', 3)),
  loadS: intEnv('MEMORY_LOAD', 5),
  idleWaitMs: intEnv('MEMORY_IDLE_WAIT', 2000),
  out: process.env.MEMORY_OUT,
  detail: process.env.MEMORY_DETAIL === '1',
  pin: os.cpus().length >= 2,
};
const MB = 1e6;

// ---------------------------------------------------------------------------------------------------------------
// /proc/PID/smaps

/** The mappings of a process, each with its fields in bytes (Rss, Anonymous, ...). */
function readSmaps(pid) {
  const maps = [];
  let cur;
  for (const line of fs.readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
    const m = line.match(/^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)$/);
    if (m) {
      cur = { start: BigInt(`0x${m[1]}`), end: BigInt(`0x${m[2]}`), perms: m[3], name: m[4], kb: {} };
      maps.push(cur);
      continue;
    }
    const f = line.match(/^(\w+):\s+(\d+) kB/);
    if (f && cur) cur.kb[f[1]] = Number(f[2]) * 1024;
  }
  return maps;
}

const ARENA_ALIGN = 64n << 20n; // glibc HEAP_MAX_SIZE on 64-bit: each thread arena's heap is aligned to it
const STACK_MAX = (8n << 20n) + 4096n; // pthread's default stack (RLIMIT_STACK 8 MiB) and its guard

/** Resident bytes by category (see the header), plus the V8 spaces from the server's own sample. */
function breakdown(maps, sample) {
  const c = {
    rss: 0, nodeBinary: 0, addonLibs: 0, otherFiles: 0, bpfMaps: 0, anonymous: 0,
    mallocMain: 0, mallocThreads: 0, threadArenas: 0, threadStacks: 0,
  };
  const addonLib = /otel_node_ebpf\.node$|libbpf\.so|libelf|libz\.so/;
  for (let i = 0; i < maps.length; i++) {
    const m = maps[i];
    const rss = m.kb.Rss ?? 0;
    c.rss += rss;
    const size = m.end - m.start;
    if (m.name === process.execPath || m.name === fs.realpathSync(process.execPath)) c.nodeBinary += rss;
    else if (m.name.startsWith('anon_inode:bpf-map')) c.bpfMaps += rss;
    else if (m.name === '[heap]') {
      c.mallocMain += rss;
      c.anonymous += rss;
    } else if (m.name.startsWith('/')) {
      if (addonLib.test(m.name)) c.addonLibs += rss;
      else c.otherFiles += rss;
    } else if (m.name === '' || m.name === '[stack]') {
      c.anonymous += rss;
      const prev = maps[i - 1];
      if (m.perms === 'rw-p' && m.start % ARENA_ALIGN === 0n && m.start > 0x7f0000000000n) {
        c.mallocThreads += rss;
        c.threadArenas++;
      } else if (m.name === '[stack]' || (m.perms === 'rw-p' && prev && prev.perms === '---p' && prev.end === m.start && prev.end - prev.start === 4096n && size <= STACK_MAX)) {
        c.threadStacks += rss;
      }
    } else {
      c.otherFiles += rss; // [vdso], [vvar], /dev/zero (deleted) (node's own shared memory) and the like
    }
  }
  const v8 = {};
  let v8Physical = 0;
  for (const s of sample.heap.spaces) {
    if (s.physical === 0) continue;
    v8[s.name] = s.physical;
    v8Physical += s.physical;
  }
  c.v8Heap = v8Physical;
  c.otherAnonymous = c.anonymous - c.v8Heap - c.mallocMain - c.mallocThreads - c.threadStacks;
  return { ...c, v8Spaces: v8, heapUsed: sample.memory.heapUsed, external: sample.memory.external, modules: sample.modules.length };
}

function threads(pid) {
  return fs.readdirSync(`/proc/${pid}/task`).length;
}

// ---------------------------------------------------------------------------------------------------------------
// Rounds

/** On `cpu` when pinning is on (two CPUs or more). */
const pinned = (cpu, cmd, args) => pinnedTo(CONFIG.pin ? cpu : undefined, cmd, args);

/** Asks the server for a sample (with the SDK: after an export), then reads its mappings. */
async function sample(child) {
  child.send({ type: 'sample' });
  const msg = await nextMessage(child, 'sample', 15_000);
  const maps = readSmaps(child.pid);
  return { ...breakdown(maps, msg), threads: threads(child.pid), maps, moduleList: msg.modules };
}

/**
 * Runs wrk; resolves to its requests per second (the heap the server needs grows with the rate). Asynchronously: the
 * OTLP receiver in this process must answer the SDK's periodic exports meanwhile, or they would time out and retry.
 */
function runWrk(port, seconds) {
  const [cmd, args] = pinned(1, 'wrk', ['-t1', '-c32', `-d${seconds}s`, `http://127.0.0.1:${port}/`]);
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { encoding: 'utf8' }, (err, stdout) => {
      if (err) reject(new Error(`wrk failed: ${err.message}`));
      else resolve(Number((stdout.match(/Requests\/sec:\s+([\d.]+)/) || [])[1]));
    });
  });
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function round(withSdk, endpoint) {
  // As `npm run bench` starts it: the same SDK settings, the server on CPU 0 and wrk on CPU 1.
  const child = startServer({ withSdk, endpoint, exportIntervalMs: 10_000, cpu: CONFIG.pin ? 0 : undefined });
  try {
    const { port } = await nextMessage(child, 'listening', 30_000);
    await sleep(CONFIG.idleWaitMs);
    const out = { idle: await sample(child) };
    if (CONFIG.loadS > 0) {
      const requestsPerSecond = await runWrk(port, CONFIG.loadS);
      out.load = { ...(await sample(child)), requestsPerSecond };
    }
    return out;
  } finally {
    await stopServer(child);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Report

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

const ROWS = [
  ['RSS', 'rss'],
  ['  file: node binary', 'nodeBinary'],
  ['  file: addon, libbpf, libelf, libz', 'addonLibs'],
  ['  file: other (libc, libstdc++, vdso, ...)', 'otherFiles'],
  ['  BPF maps (mmap\'d, touched)', 'bpfMaps'],
  ['  anonymous', 'anonymous'],
  ['    V8 heap (physical)', 'v8Heap'],
  ['    malloc: main arena (brk heap)', 'mallocMain'],
  ['    malloc: thread arenas', 'mallocThreads'],
  ['    thread stacks', 'threadStacks'],
  ['    other anonymous', 'otherAnonymous'],
];

function table(phase, off, on) {
  const v8Names = [...new Set([...off, ...on].flatMap((s) => Object.keys(s.v8Spaces)))];
  const rows = [];
  for (const [label, key] of ROWS) {
    rows.push([label, (s) => s[key] / MB, 1]);
    if (key === 'v8Heap') for (const n of v8Names) rows.push([`      ${n}`, (s) => (s.v8Spaces[n] ?? 0) / MB, 1]);
  }
  rows.push(['V8 heap used (heapUsed)', (s) => s.heapUsed / MB, 1], ['threads', (s) => s.threads, 0],
    ['thread arenas', (s) => s.threadArenas, 0], ['modules loaded', (s) => s.modules, 0]);
  const lines = [`${phase}: median of ${off.length} rounds (MB)`, '| | SDK off | SDK on | added |', '| --- | --- | --- | --- |'];
  for (const [label, f, digits] of rows) {
    const a = median(off.map(f));
    const b = median(on.map(f));
    const d = b - a;
    lines.push(`| ${label} | ${a.toFixed(digits)} | ${b.toFixed(digits)} | ${d >= 0 ? '+' : ''}${d.toFixed(digits)} |`);
  }
  return lines.join('\n');
}

function detail(s) {
  const lines = ['Anonymous mappings of the last SDK-on sample with at least 64 KiB resident (address, perms, size, RSS):'];
  for (const m of s.maps) {
    if (m.name !== '' && m.name !== '[heap]' && m.name !== '[stack]') continue;
    if ((m.kb.Rss ?? 0) < 65536) continue;
    lines.push(`  ${m.start.toString(16).padStart(12)} ${m.perms} ${String((m.end - m.start) / 1024n).padStart(8)} KiB ${String(m.kb.Rss / 1024).padStart(6)} KiB ${m.name}`);
  }
  const packages = {};
  for (const k of s.moduleList) {
    const m = k.match(/node_modules\/((?:@[^/]+\/)?[^/]+)/);
    const p = m ? m[1] : path.relative(ROOT, k);
    packages[p] = (packages[p] ?? 0) + 1;
  }
  lines.push('Modules loaded, by package:');
  for (const [p, n] of Object.entries(packages).sort((a, b) => b[1] - a[1])) lines.push(`  ${String(n).padStart(4)} ${p}`);
  return lines.join('\n');
}

async function main() {
  if (!fs.existsSync(REGISTER)) throw new Error('dist/ is missing: npm run build');
  const { OtlpReceiver } = require(path.join(ROOT, 'dist', 'otlp', 'receiver.js'));
  const receiver = new OtlpReceiver();
  const { httpEndpoint } = await receiver.start();
  const results = { off: [], on: [] };
  try {
    console.log(`memory: ${CONFIG.rounds} rounds per mode, idle sample after ${CONFIG.idleWaitMs} ms${CONFIG.loadS ? `, then ${CONFIG.loadS} s of wrk -t1 -c32` : ''}`);
    for (let i = 0; i < CONFIG.rounds; i++) {
      for (const mode of ['off', 'on']) {
        receiver.clear();
        const r = await round(mode === 'on', httpEndpoint);
        results[mode].push(r);
        const fmt = (s) => `${(s.rss / MB).toFixed(1)} MB`;
        const load = r.load ? `, after load ${fmt(r.load)} (${Math.round(r.load.requestsPerSecond)} req/s; V8 ${(r.load.v8Heap / MB).toFixed(1)} MB)` : '';
        console.log(`  round ${i + 1} ${mode}: idle ${fmt(r.idle)}${load}`);
      }
    }
  } finally {
    await receiver.stop();
  }
  for (const phase of CONFIG.loadS > 0 ? ['idle', 'load'] : ['idle']) {
    console.log();
    console.log(table(phase === 'idle' ? 'Idle' : `After ${CONFIG.loadS} s of load`, results.off.map((r) => r[phase]), results.on.map((r) => r[phase])));
  }
  if (CONFIG.detail) {
    const last = results.on[results.on.length - 1];
    console.log();
    console.log(detail(last.load ?? last.idle));
  }
  if (CONFIG.out) {
    const strip = (s) => ({ ...s, maps: undefined, moduleList: undefined });
    const json = { config: CONFIG, node: process.version, off: results.off.map((r) => ({ idle: strip(r.idle), load: r.load && strip(r.load) })), on: results.on.map((r) => ({ idle: strip(r.idle), load: r.load && strip(r.load) })) };
    fs.writeFileSync(CONFIG.out, JSON.stringify(json, null, 2) + '\n');
    console.log(`written: ${CONFIG.out}`);
  }
}

main().catch((err) => {
  console.error(`memory: ${err.stack || err}`);
  process.exit(1);
});
