'use strict';
// src/bpf-layout.ts mirrors bpf/histogram.h, bpf/sockets.h and the other objects' headers: every size and offset must
// match the BTF that clang wrote into the compiled object.
const assert = require('assert');
const path = require('path');
const { execFileSync } = require('child_process');
const { ROOT } = require('./support/harness');
const { LAYOUTS, DNS_LAYOUTS, TLS_LAYOUTS, THREADPOOL_LAYOUTS, FILES_LAYOUTS, SPANS_LAYOUTS, HIST_MAX_SLOTS, decodeHist, decodeSeriesStats } = require('../dist/bpf-layout');

const OBJECTS = ['sockets', 'runtime', 'dns', 'tls', 'budget', 'threadpool', 'files', 'spans'].map(n => path.join(ROOT, 'bpf', 'build', `${n}.bpf.o`));

/** STRUCT name -> { size, members: { name: byte offset } } and DATASEC name -> { var: offset }, from bpftool. */
function readBtf(file) {
  const text = execFileSync('bpftool', ['btf', 'dump', 'file', file, 'format', 'raw'], { encoding: 'utf8' });
  const structs = {};
  const datasecs = {};
  let current;
  for (const line of text.split('\n')) {
    let m;
    if ((m = /^\[\d+\] STRUCT '([^']+)' size=(\d+)/.exec(line))) current = structs[m[1]] = { size: +m[2], members: {} };
    else if ((m = /^\[\d+\] DATASEC '([^']+)'/.exec(line))) current = datasecs[m[1]] = { members: {} };
    else if (/^\[/.test(line)) current = undefined;
    else if (current && (m = /^\t'([^']+)' type_id=\d+ bits_offset=(\d+)/.exec(line))) current.members[m[1]] = +m[2] / 8;
    else if (current && (m = /^\ttype_id=\d+ offset=(\d+) size=\d+ \(VAR '([^']+)'\)/.exec(line))) current.members[m[2]] = +m[1];
  }
  return { structs, datasecs };
}

describe('kernel/user-space layout', function () {
  const btfs = OBJECTS.map(readBtf);
  const structs = Object.assign({}, ...btfs.map(b => b.structs));

  for (const layout of Object.values({ ...LAYOUTS, ...DNS_LAYOUTS, ...TLS_LAYOUTS, ...THREADPOOL_LAYOUTS, ...FILES_LAYOUTS, ...SPANS_LAYOUTS })) {
    it(`struct ${layout.name}: size and every offset match the object's BTF`, () => {
      const btf = structs[layout.name];
      assert.ok(btf, `struct ${layout.name} is in none of ${OBJECTS.join(', ')}`);
      assert.strictEqual(layout.size, btf.size, 'size');
      assert.deepStrictEqual(
        Object.fromEntries(Object.entries(layout.fields).map(([k, v]) => [k, v.offset])),
        btf.members,
      );
    });
  }

  it('the histogram has HIST_MAX_SLOTS slots', () => {
    assert.strictEqual(structs.hist.size, 8 + 8 * HIST_MAX_SLOTS);
  });

  it('u64 fields decode exactly, high words and values past 2^53 included, at any offset in a buffer', () => {
    const values = [0n, 1n, 2n ** 32n - 1n, 2n ** 32n, 2n ** 32n + 7n, 2n ** 53n - 1n, 2n ** 53n + 1n, 2n ** 64n - 1n];
    const hist = Buffer.alloc(3 + structs.hist.size).subarray(3); // not 8-byte aligned in its ArrayBuffer
    hist.writeBigUInt64LE(2n ** 60n + 3n, 0);
    values.forEach((v, i) => hist.writeBigUInt64LE(v, 8 + 8 * i));
    const h = decodeHist(hist, 0);
    assert.strictEqual(h.sumNs, 2n ** 60n + 3n);
    assert.deepStrictEqual(h.slots.slice(0, values.length), values.map(Number)); // Number() rounds past 2^53, as the decoder must
    assert.ok(h.slots.slice(values.length).every(c => c === 0));
    const stats = Buffer.alloc(LAYOUTS.series_stats.size);
    stats.writeBigUInt64LE(2n ** 40n + 5n, LAYOUTS.series_stats.fields.opened.offset);
    assert.strictEqual(decodeSeriesStats(stats).opened, 2 ** 40 + 5);
  });

  it('.bss holds one struct at offset 0 (user space reads it as the value of key 0)', () => {
    assert.deepStrictEqual(btfs[0].datasecs['.bss'].members, { health: 0 });
    assert.deepStrictEqual(btfs[1].datasecs['.bss'].members, { loop: 0 });
    assert.deepStrictEqual(btfs[2].datasecs['.bss'].members, { health: 0 });
    assert.deepStrictEqual(btfs[3].datasecs['.bss'].members, { health: 0 });
    assert.deepStrictEqual(btfs[4].datasecs['.bss'].members, { calibration: 0 });
    assert.deepStrictEqual(btfs[5].datasecs['.bss'].members, { health: 0 });
    assert.deepStrictEqual(btfs[6].datasecs['.bss'].members, { health: 0 });
  });
});
