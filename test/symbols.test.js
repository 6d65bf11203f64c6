'use strict';
// src/symbols.ts against binutils' readelf, on the node binaries the uprobe tests run: every function the SDK hooks
// resolves to the address readelf gives, the exported ones through .dynsym's GNU hash table and the static ones
// (libuv's uv__*) through .symtab; a name the binary lacks is absent.
const assert = require('assert');
const { execFileSync } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { CI } = require('./support/harness');
const { NODE_VERSIONS, nodeBinary } = require('./support/uprobes');
const { resolveSymbols } = require('../dist/symbols');

// what the DNS, TLS and thread-pool measurements hook (src/dns.ts, src/tls.ts, src/threadpool.ts)
const NAMES = [
  'uv_getaddrinfo',
  'uv__getaddrinfo_done',
  'ossl_statem_connect',
  'ossl_statem_accept',
  'ossl_statem_fatal',
  'SSL_free',
  'SSL_read',
  'SSL_write',
  'uv__work_submit',
  'uv_queue_work',
  'uv__fs_work',
  'uv__getaddrinfo_work',
  'uv__queue_work',
  '_ZZN4node14ThreadPoolWork12ScheduleWorkEvENUlP9uv_work_sE_4_FUNES2_',
];

/**
 * The defined functions of the binary's .dynsym and .symtab, as readelf prints them (one run): per table, name ->
 * vaddr (a GLOBAL definition before a LOCAL one); and whether it has a GNU hash table.
 */
function readelf(binary) {
  const tables = { '.dynsym': new Map(), '.symtab': new Map() };
  const bind = new Map();
  const text = execFileSync('readelf', ['-W', '--section-headers', '--dyn-syms', '--syms', binary], { encoding: 'utf8', maxBuffer: 1 << 30 });
  let table;
  for (const line of text.split('\n')) {
    const header = /^Symbol table '([^']+)'/.exec(line);
    if (header) table = tables[header[1]];
    // Num: Value Size Type Bind Vis Ndx Name
    const f = line.trim().split(/\s+/);
    if (!table || f.length < 8 || !/^(FUNC|IFUNC)$/.test(f[3]) || f[6] === 'UND') continue;
    const name = f[7].replace(/@.*$/, '');
    const key = `${table === tables['.dynsym']}:${name}`;
    if (!table.has(name) || (bind.get(key) === 'LOCAL' && f[4] !== 'LOCAL')) {
      table.set(name, BigInt('0x' + f[1]));
      bind.set(key, f[4]);
    }
  }
  return { dynamic: tables['.dynsym'], all: tables['.symtab'], gnuHash: /\s\.gnu\.hash\s+GNU_HASH\s/.test(text) };
}

describe('symbols of the node binary', function () {
  this.timeout(300_000);
  for (const v of NODE_VERSIONS) {
    it(`${v.label}: each hooked function resolves where readelf says`, function () {
      let binary;
      try {
        ({ binary } = nodeBinary(v.major));
      } catch (err) {
        if (CI) throw err;
        this.skip();
      }
      const { dynamic, all, gnuHash } = readelf(binary);
      assert.ok(gnuHash, 'the binary has a .gnu.hash section');
      const resolved = resolveSymbols(binary, [...NAMES, 'otel_node_ebpf_no_such_function']);
      assert.ok(!resolved.has('otel_node_ebpf_no_such_function'));
      let exported = 0;
      for (const name of NAMES) {
        const expected = dynamic.get(name) ?? all.get(name);
        assert.ok(expected !== undefined, `readelf finds ${name}`);
        assert.strictEqual(resolved.get(name)?.vaddr, expected, name);
        if (dynamic.has(name)) exported++;
      }
      assert.ok(exported >= 5 && exported < NAMES.length, `${exported} of the names are exported: both tables are used`);
    });
  }

  it('a stripped copy of the system node (no .symtab): the exported functions resolve through .gnu.hash alone, the static ones are absent', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'oneb-symbols-'));
    try {
      const stripped = path.join(dir, 'node');
      execFileSync('strip', ['--strip-all', '-o', stripped, process.execPath]);
      const { dynamic, all, gnuHash } = readelf(stripped);
      assert.ok(gnuHash && all.size === 0, 'stripped: .dynsym and .gnu.hash only');
      const resolved = resolveSymbols(stripped, NAMES);
      assert.deepStrictEqual(
        NAMES.map(n => [n, resolved.get(n)?.vaddr]),
        NAMES.map(n => [n, dynamic.get(n)]),
      );
      assert.ok(NAMES.filter(n => resolved.has(n)).length >= 5);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
