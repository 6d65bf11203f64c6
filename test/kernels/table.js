#!/usr/bin/env node
'use strict';
// README's "Kernels and hooks" table, from a real run: `doctor --json` on this machine's kernel and, in one VM boot,
// on Debian's 6.1 kernel (test/kernels/vm.js). Prints Markdown.
//
//   node test/kernels/table.js
const { spawnSync } = require('child_process');
const path = require('path');
const { runInVm } = require('./vm');

const ROOT = path.resolve(__dirname, '../..');
const DOCTOR = [process.execPath, path.join(ROOT, 'dist', 'cli.js'), 'doctor', '--json'];

function cell(report, hook) {
  const attempts = report.measurements.map(m => ({ name: m.name, a: m.attempts.find(a => a.hook === hook) }));
  const ok = attempts.filter(x => x.a.ok);
  if (ok.length === attempts.length) return `attaches (all ${attempts.length})`;
  const failed = attempts.filter(x => !x.a.ok);
  const reasons = [...new Set(failed.map(x => x.a.reason))];
  const names = failed.length === attempts.length ? 'none' : `${ok.length} of ${attempts.length}; not ${failed.map(x => `\`${x.name}\``).join(', ')}`;
  return `${names}: ${reasons.join('; ')}`;
}

function row(label, report) {
  const chosen = [...new Set(report.measurements.map(m => m.chosen ?? 'none'))].join(', ');
  return `| ${label} | ${['kprobe', 'fentry', 'tracepoint'].map(h => cell(report, h)).join(' | ')} | ${chosen} |`;
}

(async () => {
  const host = spawnSync(DOCTOR[0], DOCTOR.slice(1), { encoding: 'utf8' });
  const here = JSON.parse(host.stdout);
  const vm = await runInVm(DOCTOR, { cwd: ROOT });
  if (vm.code !== 0) throw new Error(`doctor in the VM failed (${vm.code}): ${vm.error ?? ''}\n${vm.stderr}${vm.stdout}`);
  const guest = JSON.parse(vm.stdout);
  const date = new Date().toISOString().slice(0, 10);
  console.log(`Measured ${date} with \`node test/kernels/table.js\` (node ${here.node}, libbpf ${here.libbpf}; ` +
    `the guest: Debian's \`${vm.kernel.package}\` ${vm.kernel.version} under qemu TCG, node ${guest.node}, libbpf ${guest.libbpf}).\n`);
  console.log('| kernel | kprobe | fentry | raw tracepoint | chosen (auto) |');
  console.log('| --- | --- | --- | --- | --- |');
  console.log(row(`${here.kernel} (this project's CI machine)`, here));
  console.log(row(`${guest.kernel} (Debian 12, ${vm.kernel.version})`, guest));
})().catch(err => {
  console.error(err.message);
  process.exit(1);
});
