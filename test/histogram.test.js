'use strict';
// The log2 slot of a duration, as the BPF programs compute it (bpf/bits.bpf.h's hist_slot_ns, compiled here for this
// machine from the same source) and as user space does (src/histogram.ts's slotOfNs), against the slots' definition:
// slot 0 holds up to 2^-20 s, slot k (2^(k-21), 2^(k-20)] s, the top slot everything above 2^26 s.
const assert = require('assert');
const { execFileSync } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { slotOfNs, toExplicit, emptyHist, recordNs } = require('../dist/histogram');
const { HIST_MAX_SLOTS, HIST_MIN_EXP } = require('../dist/bpf-layout');

/** The slot by its definition, in exact integers: the first k whose upper edge, 1e9 * 2^(k + MIN_EXP) ns, holds ns. */
function slotByDefinition(ns) {
  for (let k = 0; k < HIST_MAX_SLOTS - 1; k++) if (ns << BigInt(-HIST_MIN_EXP) <= 1_000_000_000n << BigInt(k)) return k;
  return HIST_MAX_SLOTS - 1;
}

/** Every slot edge in ns and its neighbours, 0, and the largest u64. */
function samples() {
  const out = new Set([0n, 1n, (1n << 52n) - 1n, 1n << 52n, (1n << 64n) - 1n]);
  for (let k = 0; k < HIST_MAX_SLOTS; k++) {
    // the edge 2^(k + MIN_EXP) s in ns, rounded down and up
    const down = (1_000_000_000n << BigInt(k)) >> BigInt(-HIST_MIN_EXP);
    for (const ns of [down - 1n, down, down + 1n, down + 2n]) if (ns >= 0n && ns < 1n << 64n) out.add(ns);
  }
  for (const days of [1, 30, 52, 53, 60, 100, 400, 776, 777, 778, 10_000]) out.add(BigInt(days) * 86_400n * 1_000_000_000n);
  return [...out].sort((a, b) => (a < b ? -1 : 1));
}

describe('histogram slots', function () {
  let kernelSlots;

  before(function () {
    this.timeout(60_000);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'otel-node-ebpf-slots-'));
    const src = path.join(dir, 'slots.c');
    fs.writeFileSync(
      src,
      [
        '#include <linux/types.h>',
        '#include <stdio.h>',
        '#ifndef __always_inline',
        '#define __always_inline inline __attribute__((always_inline))',
        '#endif',
        '#include "bits.bpf.h"',
        'int main(void) { unsigned long long ns; while (scanf("%llu", &ns) == 1) printf("%u\\n", hist_slot_ns(ns)); return 0; }',
        '',
      ].join('\n'),
    );
    const bin = path.join(dir, 'slots');
    execFileSync('clang', ['-O2', '-Wall', '-Werror', '-Wno-unknown-pragmas', '-I', path.join(__dirname, '..', 'bpf'), '-o', bin, src]);
    kernelSlots = ns => execFileSync(bin, { input: ns.join('\n') + '\n', encoding: 'utf8' }).trim().split('\n').map(Number);
    after(() => fs.rmSync(dir, { recursive: true, force: true }));
  });

  it('bits.bpf.h and slotOfNs put every slot edge, and the durations around them, in the slot that holds it', () => {
    const ns = samples();
    const want = ns.map(slotByDefinition);
    assert.deepStrictEqual(kernelSlots(ns), want);
    assert.deepStrictEqual(ns.map(slotOfNs), want);
    // durations beyond 2^52 ns (52.1 days) keep their slots: a connection of 60 days is in (2^22, 2^23] s
    const sixtyDays = 60n * 86_400n * 1_000_000_000n;
    assert.strictEqual(slotOfNs(sixtyDays), 43);
    const h = emptyHist();
    recordNs(h, sixtyDays);
    const explicit = toExplicit(h);
    const bucket = explicit.buckets.counts.indexOf(1);
    assert.ok(explicit.buckets.boundaries[bucket - 1] < 60 * 86_400 && 60 * 86_400 <= explicit.buckets.boundaries[bucket], `bucket ${bucket}`);
  });
});
