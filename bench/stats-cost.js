#!/usr/bin/env node
'use strict';
// What BPF run-time statistics cost here, for choosing the sampled windows' defaults (src/kernel-stats.ts,
// docs/benchmark.md): (1) the time one BPF program run gains while they are on, from getppid(2) calls with a
// raw_tp/sys_enter program attached (the test fixture's, filtering on another tgid: it returns at once), in slices
// alternating statistics off and on, paired; (2) the time to open and to close a BPF_ENABLE_STATS fd (the kernel
// patches its static key both times). Needs root and `make -C test/fixtures` (clang, bpftool).
//   BENCH_SLICES  pairs of slices (default 41); BENCH_CALLS  getppid calls per slice (default 200000)
const path = require('node:path');
const { execFileSync } = require('node:child_process');

const ROOT = path.resolve(__dirname, '..');
const { loadAddon } = require(path.join(ROOT, 'dist', 'native.js'));
const SLICES = Number(process.env.BENCH_SLICES || 41);
const CALLS = Number(process.env.BENCH_CALLS || 200000);

execFileSync('make', ['-s', '-C', path.join(ROOT, 'test', 'fixtures')], { stdio: 'inherit' });
const addon = loadAddon();
if (addon instanceof Error) throw addon;
const median = xs => [...xs].sort((a, b) => a - b)[xs.length >> 1];
const quartiles = xs => {
  const s = [...xs].sort((a, b) => a - b);
  return [s[Math.floor(s.length / 4)], s[Math.floor((3 * s.length) / 4)]];
};

const object = addon.open(path.join(ROOT, 'test', 'fixtures', 'build', 'native_fixture.bpf.o'));
const tgid = Buffer.alloc(4);
tgid.writeUInt32LE(1); // init's: this process's calls run the program, which returns after its tgid check
object.setGlobal('target_tgid', tgid);
object.load();
object.attach('on_sys_enter');
const slice = () => {
  const t = process.hrtime.bigint();
  for (let i = 0; i < CALLS; i++) void process.ppid; // getppid(2)
  return Number(process.hrtime.bigint() - t) / CALLS;
};
slice(); // warm-up
const added = [];
const toggle = { open: [], close: [] };
for (let i = 0; i < SLICES; i++) {
  const off = slice();
  let t = process.hrtime.bigint();
  const stats = addon.enableStats();
  toggle.open.push(Number(process.hrtime.bigint() - t) / 1000);
  const on = slice();
  t = process.hrtime.bigint();
  stats.close();
  toggle.close.push(Number(process.hrtime.bigint() - t) / 1000);
  added.push(on - off);
}
object.close();
const [q1, q3] = quartiles(added);
console.log(`BPF run-time statistics on: +${median(added).toFixed(0)} ns per getppid(2) with one raw_tp/sys_enter program (median of ${SLICES} paired slices; quartiles ${q1.toFixed(0)}…${q3.toFixed(0)} ns)`);
console.log(`BPF_ENABLE_STATS: open ${median(toggle.open).toFixed(0)} µs, close ${median(toggle.close).toFixed(0)} µs (medians)`);
