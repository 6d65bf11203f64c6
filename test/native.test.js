'use strict';
// The native addon (native/) against the real kernel: real BPF objects from test/fixtures, real attachments, exact
// counts. Needs root (or CAP_BPF + CAP_PERFMON), clang, bpftool and the built addon (npx node-gyp rebuild -C native).
const assert = require('assert');
const fs = require('fs');
const path = require('path');
const { execFileSync, spawnSync } = require('child_process');

const ROOT = path.resolve(__dirname, '..');
const FIXTURES = path.join(__dirname, 'fixtures');
const BUILD = path.join(FIXTURES, 'build');
const ADDON_PATH = path.join(ROOT, 'native', 'build', 'Release', 'otel_node_ebpf.node');

// Mirrors test/fixtures/native_fixture.h.
const FIXTURE_MAGIC = 0x0e8f1234;
const FIXTURE_DATA_MARKER = 0x1122334455667788n;
const COUNTER = { syscall: 0, kprobe: 1, uprobe: 2 };
const RECORD_SIZE = 16;

// The project's BpfError once src/ is built; until then the same shape, so that these tests need only native/.
function errorClass() {
  try {
    return require(path.join(ROOT, 'dist', 'native.js')).BpfError;
  } catch {
    return class BpfError extends Error {
      constructor(message, step, errno, code, log) {
        super(message);
        this.name = 'BpfError';
        Object.assign(this, { step, errno, code, log });
      }
    };
  }
}

const BpfError = errorClass();
let addon;
const opened = [];

function u32(value) {
  const buf = Buffer.alloc(4);
  buf.writeUInt32LE(value);
  return buf;
}

function u64(value) {
  const buf = Buffer.alloc(8);
  buf.writeBigUInt64LE(BigInt(value));
  return buf;
}

function open(name) {
  const object = addon.open(path.join(BUILD, `${name}.bpf.o`));
  opened.push(object);
  return object;
}

// The main fixture, configured for this process.
function openFixture() {
  const object = open('native_fixture');
  object.setGlobal('target_tgid', u32(process.pid));
  return object;
}

function counter(object, which) {
  return object.map('counters').lookup(u32(which)).readBigUInt64LE(0);
}

// Runs fn, which must throw a BpfError with these fields; returns it.
function expectBpfError(fn, expected) {
  let error;
  assert.throws(fn, (err) => {
    error = err;
    return true;
  });
  assert.ok(error instanceof BpfError, `expected a BpfError, got ${error && error.stack}`);
  assert.strictEqual(error.name, 'BpfError');
  for (const [key, value] of Object.entries(expected)) assert.strictEqual(error[key], value, `${key}: ${error.message}`);
  assert.ok(error.errno > 0, `errno ${error.errno} is positive`);
  assert.ok(error.message.startsWith(`${error.step} `), `message names the step: ${error.message}`);
  assert.ok(error.message.endsWith(`(${error.code})`) || error.message.includes(`(${error.code});`), error.message);
  return error;
}

async function waitFor(condition, timeoutMs = 5000) {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  return true;
}

function readPpid(times) {
  for (let i = 0; i < times; i++) void process.ppid;
}

function possibleCpus() {
  // "0-1" or "0,2-5": the count libbpf_num_possible_cpus() reports.
  return fs
    .readFileSync('/sys/devices/system/cpu/possible', 'utf8')
    .trim()
    .split(',')
    .reduce((sum, range) => {
      const [first, last = first] = range.split('-').map(Number);
      return sum + last - first + 1;
    }, 0);
}

function runChild(mode, nodeArgs = []) {
  const result = spawnSync(process.execPath, [...nodeArgs, path.join(FIXTURES, 'native_child.js'), mode], {
    encoding: 'utf8',
    timeout: 60000,
  });
  assert.strictEqual(result.signal, null, `child ${mode} killed by ${result.signal}; stderr:\n${result.stderr}`);
  assert.strictEqual(result.status, 0, `child ${mode} exit code; stderr:\n${result.stderr}`);
  const line = result.stdout.trim().split('\n').pop();
  return line ? JSON.parse(line) : undefined;
}

describe('native addon', function () {
  before(function () {
    this.timeout(300000);
    try {
      execFileSync('make', ['-s', '-C', FIXTURES], { encoding: 'utf8', stdio: 'pipe' });
    } catch (err) {
      throw new Error(`building test/fixtures failed (needs clang and bpftool):\n${err.stdout}${err.stderr}`);
    }
    if (!fs.existsSync(ADDON_PATH)) {
      throw new Error(`${ADDON_PATH} is missing: build it with "npx node-gyp rebuild -C native"`);
    }
    addon = require(ADDON_PATH);
    addon.setErrorClass(BpfError);
  });

  afterEach(function () {
    for (const object of opened.splice(0)) object.close();
  });

  describe('module', function () {
    it('reports the libbpf version', function () {
      assert.match(addon.libbpfVersion(), /^\d+\.\d+$/);
    });

    it('probes program types by libbpf name', function () {
      assert.strictEqual(addon.probeProgramType('raw_tracepoint'), true);
      assert.strictEqual(addon.probeProgramType('kprobe'), true);
      expectBpfError(() => addon.probeProgramType('no_such_type'), { step: 'config', code: 'EINVAL' });
    });

    it('does not let JavaScript construct its classes', function () {
      const object = openFixture();
      expectBpfError(() => new object.constructor(), { step: 'addon', code: 'EINVAL' });
    });
  });

  describe('open and configure', function () {
    it('fails to open a missing file or a non-ELF file with step open', function () {
      const missing = expectBpfError(() => addon.open(path.join(BUILD, 'missing.bpf.o')), {
        step: 'open',
        code: 'ENOENT',
      });
      assert.ok(missing.message.includes('missing.bpf.o'), missing.message);
      expectBpfError(() => addon.open(__filename), { step: 'open' });
    });

    it('lists programs and maps', function () {
      const object = openFixture();
      assert.strictEqual(object.path, path.join(BUILD, 'native_fixture.bpf.o'));
      assert.deepStrictEqual(
        object.programs().sort((a, b) => a.name.localeCompare(b.name)),
        [
          { name: 'on_kprobe', section: 'kprobe/do_nanosleep', type: 'kprobe' },
          { name: 'on_sys_enter', section: 'raw_tp/sys_enter', type: 'raw_tracepoint' },
          { name: 'on_uprobe', section: 'uprobe', type: 'kprobe' },
        ],
      );
      const maps = Object.fromEntries(object.maps().map((m) => [m.name, m]));
      assert.deepStrictEqual(maps.kv, { name: 'kv', type: 'hash', keySize: 4, valueSize: 8, maxEntries: 64 });
      assert.deepStrictEqual(maps.counters, { name: 'counters', type: 'array', keySize: 4, valueSize: 8, maxEntries: 4 });
      assert.strictEqual(maps.events.type, 'ringbuf');
      assert.strictEqual(maps.percpu.type, 'percpu_array');
      for (const section of ['.rodata', '.data', '.bss']) {
        assert.ok(
          object.maps().some((m) => m.name.endsWith(section)),
          `an internal ${section} map in ${object.maps().map((m) => m.name)}`,
        );
      }
    });

    it('sets globals of .rodata, .data and .bss before load', function () {
      const object = openFixture();
      object.setGlobal('data_marker', u64(7));
      object.setGlobal('bss_marker', u64(42));
      object.load();
      const internal = (section) => object.map(object.maps().find((m) => m.name.endsWith(section)).name);
      assert.strictEqual(internal('.rodata').lookup(u32(0)).readUInt32LE(0), process.pid);
      assert.strictEqual(internal('.data').lookup(u32(0)).readBigUInt64LE(0), 7n);
      assert.strictEqual(internal('.bss').lookup(u32(0)).readBigUInt64LE(0), 42n);
    });

    it('keeps the compiled-in value of a global that is not set', function () {
      const object = openFixture();
      object.load();
      const data = object.map(object.maps().find((m) => m.name.endsWith('.data')).name);
      assert.strictEqual(data.lookup(u32(0)).readBigUInt64LE(0), FIXTURE_DATA_MARKER);
    });

    it('refuses a global of the wrong size, an unknown global, and any global after load', function () {
      const object = openFixture();
      const size = expectBpfError(() => object.setGlobal('target_tgid', Buffer.alloc(8)), {
        step: 'config',
        code: 'EINVAL',
      });
      assert.ok(size.message.includes('target_tgid'), size.message);
      expectBpfError(() => object.setGlobal('no_such_global', Buffer.alloc(4)), { step: 'config', code: 'ENOENT' });
      expectBpfError(() => object.setGlobal('target_tgid', 'not a buffer'), { step: 'config', code: 'EINVAL' });
      object.load();
      expectBpfError(() => object.setGlobal('target_tgid', u32(1)), { step: 'config', code: 'EBUSY' });
      expectBpfError(() => object.setMaxEntries('kv', 8), { step: 'config' });
      expectBpfError(() => object.setAutoload('on_kprobe', false), { step: 'config' });
    });

    it('sets max entries, seen in maps() and enforced by the kernel', function () {
      const object = openFixture();
      object.setMaxEntries('kv', 3);
      expectBpfError(() => object.setMaxEntries('no_such_map', 1), { step: 'config', code: 'ENOENT' });
      assert.strictEqual(object.maps().find((m) => m.name === 'kv').maxEntries, 3);
      object.load();
      assert.strictEqual(object.maps().find((m) => m.name === 'kv').maxEntries, 3);
      const kv = object.map('kv');
      for (let key = 0; key < 3; key++) kv.update(u32(key), u64(key));
      expectBpfError(() => kv.update(u32(3), u64(3)), { step: 'map', code: 'E2BIG' });
    });

    it('leaves a program out of load with setAutoload(false)', function () {
      const object = openFixture();
      object.setAutoload('on_kprobe', false);
      expectBpfError(() => object.setAutoload('no_such_program', false), { step: 'config', code: 'ENOENT' });
      object.load();
      expectBpfError(() => object.programStats('on_kprobe'), { step: 'stats', code: 'EBADF' });
      assert.strictEqual(typeof object.programStats('on_sys_enter').id, 'number');
    });

    it('shares maps between two objects with reuseMapsFrom', function () {
      const first = openFixture();
      const second = openFixture();
      expectBpfError(() => second.reuseMapsFrom(first), { step: 'config', code: 'EINVAL' }); // first not loaded
      first.load();
      second.reuseMapsFrom(first);
      second.load();
      first.map('kv').update(u32(5), u64(500));
      assert.strictEqual(second.map('kv').lookup(u32(5)).readBigUInt64LE(0), 500n);
      second.map('kv').delete(u32(5));
      assert.strictEqual(first.map('kv').lookup(u32(5)), undefined);
      // A name longer than the kernel's 15-character map names is matched too.
      second.map('a_rather_long_map_name').update(u32(0), u64(9));
      assert.strictEqual(first.map('a_rather_long_map_name').lookup(u32(0)).readBigUInt64LE(0), 9n);
      // The maps outlive the object they came from.
      first.close();
      second.map('kv').update(u32(6), u64(600));
      assert.strictEqual(second.map('kv').lookup(u32(6)).readBigUInt64LE(0), 600n);
    });
  });

  describe('load', function () {
    it('reports a verifier rejection with step load and the verifier log', function () {
      const object = open('native_bad');
      const error = expectBpfError(() => object.load(), { step: 'load', code: 'EACCES', errno: 13 });
      assert.ok(error.message.includes('out_of_bounds'), error.message);
      assert.ok(error.message.includes('see error.log'), error.message);
      assert.strictEqual(typeof error.log, 'string');
      assert.match(error.log, /invalid access to map value, value_size=8 off=64 size=8/);
      assert.ok(error.log.length <= 64 * 1024 + 100, `log is truncated: ${error.log.length}`);
      // libbpf allows one load attempt per object.
      expectBpfError(() => object.load(), { step: 'load', code: 'EBUSY' });
    });

    it('names a map the kernel refused to create', function () {
      const object = openFixture();
      object.setMaxEntries('kv', 0);
      const error = expectBpfError(() => object.load(), { step: 'load', code: 'EINVAL' });
      assert.ok(error.message.startsWith('load native_fixture.bpf.o, map kv: '), error.message);
      assert.match(error.log, /map 'kv': failed to create/);
    });

    it('loads a fentry program or fails with step load (EPERM on this project CI kernel)', function () {
      const object = open('native_fentry');
      let error;
      try {
        object.load();
      } catch (err) {
        error = err;
      }
      if (error === undefined) {
        object.attach('on_fentry').destroy();
        return;
      }
      expectBpfError(() => {
        throw error;
      }, { step: 'load' });
      assert.ok(error.message.includes('on_fentry'), error.message);
      if (error.code !== 'EPERM') console.log(`      (fentry load failed with ${error.code}, not EPERM: ${error.message})`);
    });

    it('needs load before attach, map, stats and ring buffers', function () {
      const object = openFixture();
      expectBpfError(() => object.attach('on_sys_enter'), { step: 'attach', code: 'EINVAL' });
      expectBpfError(() => object.map('kv'), { step: 'map', code: 'EINVAL' });
      expectBpfError(() => object.programStats('on_sys_enter'), { step: 'stats', code: 'EINVAL' });
      expectBpfError(() => object.ringBuffer('events', () => {}), { step: 'ringbuf', code: 'EINVAL' });
    });
  });

  describe('attach', function () {
    it('counts exactly the getppid calls of process.ppid through raw_tp/sys_enter', function () {
      const object = openFixture();
      object.load();
      const link = object.attach('on_sys_enter');
      readPpid(1234);
      assert.strictEqual(counter(object, COUNTER.syscall), 1234n);
      link.destroy();
      link.destroy();
      readPpid(10);
      assert.strictEqual(counter(object, COUNTER.syscall), 1234n, 'no counting after destroy()');
    });

    it('fails to attach a kprobe where the kernel has no kprobes, and attaches one where it has', function () {
      const object = openFixture();
      object.load();
      if (fs.existsSync('/sys/bus/event_source/devices/kprobe')) {
        object.attach('on_kprobe').destroy();
        return;
      }
      const error = expectBpfError(() => object.attach('on_kprobe'), { step: 'attach' });
      assert.ok(error.message.startsWith('attach kprobe/do_nanosleep (on_kprobe): '), error.message);
      assert.match(error.log, /kprobe/);
    });

    it('attaches a uprobe to a symbol of the node binary and counts exactly its calls', function () {
      const object = openFixture();
      object.load();
      // process.ppid calls uv_os_getppid() once per read (node::GetParentProcessId).
      const link = object.attachUprobe('on_uprobe', { binary: process.execPath, symbol: 'uv_os_getppid' });
      readPpid(321);
      assert.strictEqual(counter(object, COUNTER.uprobe), 321n);
      link.destroy();
      readPpid(5);
      assert.strictEqual(counter(object, COUNTER.uprobe), 321n);
      const ret = object.attachUprobe('on_uprobe', {
        binary: process.execPath,
        symbol: 'uv_os_getppid',
        retprobe: true,
        pid: process.pid,
      });
      readPpid(4);
      assert.strictEqual(counter(object, COUNTER.uprobe), 325n);
      ret.destroy();
    });

    it('attaches uprobe_multi links (setUprobeMulti, linux 6.6) that count exactly their calls', function () {
      if (!require('./support/uprobes').UPROBE_MULTI) {
        this.test.title += ' — skipped: this kernel predates uprobe_multi links (6.6)';
        this.skip();
      }
      const { resolveSymbols } = require(path.join(ROOT, 'dist', 'symbols.js'));
      const offset = resolveSymbols(process.execPath, ['uv_os_getppid']).get('uv_os_getppid').offset;
      const object = openFixture();
      object.setUprobeMulti('on_uprobe');
      object.load();
      // the kernel's own word for each link of this program (other tests' links may be closing on other threads)
      const progId = object.programStats('on_uprobe').id;
      const linkTypes = () =>
        fs.readdirSync('/proc/self/fdinfo').flatMap(fd => {
          try {
            const info = fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8');
            const type = /^link_type:\s*(\S+)/m.exec(info)?.[1];
            return type && Number(/^prog_id:\s*(\d+)/m.exec(info)?.[1]) === progId ? [type] : [];
          } catch {
            return [];
          }
        });
      assert.deepStrictEqual(linkTypes(), []);
      const link = object.attachUprobe('on_uprobe', { binary: process.execPath, symbol: 'uv_os_getppid', pid: process.pid, offset });
      assert.deepStrictEqual(linkTypes(), ['uprobe_multi']);
      readPpid(321);
      assert.strictEqual(counter(object, COUNTER.uprobe), 321n);
      link.destroy();
      assert.deepStrictEqual(linkTypes(), []);
      readPpid(5);
      assert.strictEqual(counter(object, COUNTER.uprobe), 321n);
      const ret = object.attachUprobe('on_uprobe', { binary: process.execPath, symbol: 'uv_os_getppid', retprobe: true, pid: process.pid, offset });
      assert.deepStrictEqual(linkTypes(), ['uretprobe_multi']);
      readPpid(4);
      assert.strictEqual(counter(object, COUNTER.uprobe), 325n);
      ret.destroy();
      // without the symbol's offset there is no such link (libbpf would resolve the name only for a perf event)
      expectBpfError(() => object.attachUprobe('on_uprobe', { binary: process.execPath, symbol: 'uv_os_getppid' }), { step: 'attach', code: 'EINVAL' });
    });

    it('fails to attach a uprobe to a missing symbol or binary with step attach', function () {
      const object = openFixture();
      object.load();
      const error = expectBpfError(
        () => object.attachUprobe('on_uprobe', { binary: process.execPath, symbol: 'no_such_symbol_here' }),
        { step: 'attach' },
      );
      assert.ok(error.message.includes('no_such_symbol_here'), error.message);
      expectBpfError(() => object.attachUprobe('on_uprobe', { binary: '/nonexistent/node', symbol: 'uv_os_getppid' }), {
        step: 'attach',
      });
      expectBpfError(() => object.attachUprobe('on_uprobe', { binary: process.execPath }), {
        step: 'attach',
        code: 'EINVAL',
      });
      expectBpfError(() => object.attach('no_such_program'), { step: 'attach', code: 'ENOENT' });
    });
  });

  describe('maps', function () {
    it('updates, looks up, deletes and lists entries', function () {
      const object = openFixture();
      object.load();
      const kv = object.map('kv');
      assert.strictEqual(kv.name, 'kv');
      assert.strictEqual(kv.keySize, 4);
      assert.strictEqual(kv.valueSize, 8);
      assert.ok(kv.fd > 0);
      assert.strictEqual(kv.lookup(u32(1)), undefined);
      assert.deepStrictEqual(kv.keys(), []);
      kv.update(u32(1), u64(100));
      kv.update(u32(2), u64(200), 1); // BPF_NOEXIST
      expectBpfError(() => kv.update(u32(2), u64(201), 1), { step: 'map', code: 'EEXIST' });
      expectBpfError(() => kv.update(u32(3), u64(300), 2), { step: 'map', code: 'ENOENT' }); // BPF_EXIST
      kv.update(u32(2), u64(202), 2);
      assert.strictEqual(kv.lookup(u32(2)).readBigUInt64LE(0), 202n);
      const keys = kv.keys().map((k) => k.readUInt32LE(0)).sort();
      assert.deepStrictEqual(keys, [1, 2]);
      const entries = kv
        .entries()
        .map(([k, v]) => [k.readUInt32LE(0), v.readBigUInt64LE(0)])
        .sort((a, b) => a[0] - b[0]);
      assert.deepStrictEqual(entries, [
        [1, 100n],
        [2, 202n],
      ]);
      assert.strictEqual(kv.delete(u32(1)), true);
      assert.strictEqual(kv.delete(u32(1)), false);
      assert.deepStrictEqual(kv.keys().map((k) => k.readUInt32LE(0)), [2]);
      expectBpfError(() => kv.lookup(Buffer.alloc(8)), { step: 'map', code: 'EINVAL' });
      expectBpfError(() => kv.update(u32(1), Buffer.alloc(4)), { step: 'map', code: 'EINVAL' });
      expectBpfError(() => object.map('no_such_map'), { step: 'map', code: 'ENOENT' });
    });

    it('lists every index of an array map', function () {
      const object = openFixture();
      object.load();
      const counters = object.map('counters');
      assert.deepStrictEqual(counters.keys().map((k) => k.readUInt32LE(0)), [0, 1, 2, 3]);
      assert.strictEqual(counters.entries().length, 4);
    });

    it('returns one value per possible CPU for a per-CPU map, summing to the exact count', function () {
      const object = openFixture();
      object.load();
      object.attach('on_sys_enter');
      readPpid(77);
      const percpu = object.map('percpu');
      const value = percpu.lookup(u32(0));
      const cpus = possibleCpus();
      assert.strictEqual(value.length, 8 * cpus); // 4-byte values, each padded to 8
      let sum = 0;
      for (let cpu = 0; cpu < cpus; cpu++) sum += value.readUInt32LE(cpu * 8);
      assert.strictEqual(sum, 77);
      percpu.update(u32(0), Buffer.alloc(8 * cpus));
      expectBpfError(() => percpu.update(u32(0), Buffer.alloc(4)), { step: 'map', code: 'EINVAL' });
    });
  });

  describe('ring buffer', function () {
    it('delivers exactly N records asynchronously, as one array of Buffers per wake-up', async function () {
      const object = openFixture();
      object.load();
      object.attach('on_sys_enter');
      const records = [];
      let calls = 0;
      object.ringBuffer('events', (batch) => {
        calls++;
        assert.ok(Array.isArray(batch) && batch.length > 0);
        records.push(...batch);
      });
      readPpid(500);
      assert.strictEqual(records.length, 0, 'nothing is delivered synchronously');
      assert.ok(await waitFor(() => records.length >= 500), `got ${records.length} of 500 records`);
      await new Promise((resolve) => setTimeout(resolve, 50));
      assert.strictEqual(records.length, 500);
      assert.ok(calls >= 1 && calls <= 500);
      records.forEach((record, i) => {
        assert.ok(Buffer.isBuffer(record));
        assert.strictEqual(record.length, RECORD_SIZE);
        assert.strictEqual(record.readUInt32LE(0), FIXTURE_MAGIC);
        assert.strictEqual(record.readUInt32LE(4), process.pid);
        assert.strictEqual(record.readBigUInt64LE(8), BigInt(i));
      });
    });

    it('consumes synchronously with consume()', function () {
      const object = openFixture();
      object.load();
      object.attach('on_sys_enter');
      const records = [];
      const ring = object.ringBuffer('events', (batch) => records.push(...batch));
      readPpid(25);
      assert.strictEqual(ring.consume(), 25);
      assert.strictEqual(records.length, 25);
      assert.strictEqual(ring.consume(), 0);
      ring.close();
      ring.close();
      expectBpfError(() => ring.consume(), { step: 'ringbuf', code: 'EBADF' });
    });

    it('lets an exception of the callback reach consume()', function () {
      const object = openFixture();
      object.load();
      object.attach('on_sys_enter');
      const ring = object.ringBuffer('events', () => {
        throw new Error('from onRecords');
      });
      readPpid(1);
      assert.throws(() => ring.consume(), /from onRecords/);
    });

    it('refuses a map that is not a ring buffer', function () {
      const object = openFixture();
      object.load();
      expectBpfError(() => object.ringBuffer('kv', () => {}), { step: 'ringbuf', code: 'EINVAL' });
      expectBpfError(() => object.ringBuffer('events'), { step: 'ringbuf', code: 'EINVAL' });
    });
  });

  describe('statistics', function () {
    it('returns BigInt statistics, counting runs while enableStats() is open', function () {
      const object = openFixture();
      object.load();
      object.attach('on_sys_enter');
      const idle = object.programStats('on_sys_enter');
      assert.ok(Number.isInteger(idle.id) && idle.id > 0);
      for (const key of ['runTimeNs', 'runCount', 'recursionMisses']) assert.strictEqual(typeof idle[key], 'bigint');
      const stats = addon.enableStats();
      try {
        const before = object.programStats('on_sys_enter');
        readPpid(50);
        const after = object.programStats('on_sys_enter');
        // sys_enter runs for every syscall on the machine, so at least our 50.
        assert.ok(after.runCount - before.runCount >= 50n, `${before.runCount} -> ${after.runCount}`);
        assert.ok(after.runTimeNs > before.runTimeNs);
      } finally {
        stats.close();
        stats.close();
      }
    });
  });

  describe('close', function () {
    it('is idempotent and makes every child fail with EBADF', function () {
      const object = openFixture();
      object.load();
      const link = object.attach('on_sys_enter');
      const kv = object.map('kv');
      const ring = object.ringBuffer('events', () => {});
      object.close();
      object.close();
      assert.strictEqual(kv.fd, -1);
      expectBpfError(() => kv.lookup(u32(0)), { step: 'map', code: 'EBADF' });
      expectBpfError(() => kv.update(u32(0), u64(0)), { step: 'map', code: 'EBADF' });
      expectBpfError(() => kv.keys(), { step: 'map', code: 'EBADF' });
      expectBpfError(() => object.map('kv'), { step: 'map', code: 'EBADF' });
      expectBpfError(() => object.attach('on_sys_enter'), { step: 'attach', code: 'EBADF' });
      expectBpfError(() => object.programs(), { code: 'EBADF' });
      expectBpfError(() => ring.consume(), { step: 'ringbuf', code: 'EBADF' });
      link.destroy();
      ring.close();
    });

    it('detaches its links on close', function () {
      const first = openFixture();
      first.load();
      const second = openFixture();
      second.reuseMapsFrom(first);
      second.load();
      second.attach('on_sys_enter');
      readPpid(3);
      second.close();
      readPpid(3);
      assert.strictEqual(counter(first, COUNTER.syscall), 3n);
    });

    it('lets a process exit with objects, links and ring buffers open', function () {
      runChild('exit-open');
    });

    it('lets worker threads exit with objects, links and ring buffers open', function () {
      assert.deepStrictEqual(runChild('workers'), { codes: [0, 0, 0] });
    });

    it('survives worker threads terminated while their ring buffers deliver', function () {
      assert.deepStrictEqual(runChild('terminate'), { codes: [1, 1, 1, 1, 1] });
    });

    it('frees everything when wrappers are garbage-collected in any order', function () {
      const { before, after } = runChild('gc', ['--expose-gc']);
      assert.strictEqual(after, before);
    });

    it('raises an exception of an asynchronous callback as uncaughtException', function () {
      assert.deepStrictEqual(runChild('throw'), { uncaught: 'thrown by onRecords' });
    });
  });
  describe('TCP_INFO of own sockets (no BPF)', function () {
    const net = require('net');
    const { countersOf, TCP_INFO, TCP_INFO_SLOTS, TCP_STATES } = require(path.join(ROOT, 'dist', 'tcpinfo.js'));

    async function connectTo(server) {
      const accepted = new Promise(resolve => server.once('connection', resolve));
      const client = net.connect(server.address().port, '127.0.0.1');
      await new Promise(resolve => client.once('connect', resolve));
      return { client, peer: await accepted };
    }

    /** Runs test with a connected pair; afterwards closes it, the server, and the sockets the test put in `others`. */
    async function withPair(test) {
      const server = net.createServer();
      await new Promise(resolve => server.listen(0, '127.0.0.1', resolve));
      const p = { server, ...(await connectTo(server)), others: [] };
      try {
        await test(p);
      } finally {
        for (const s of [p.client, p.peer, ...p.others]) s.destroy();
        p.server.close();
      }
    }

    function drain(socket, bytes) {
      let got = 0;
      return new Promise(resolve => socket.on('data', d => (got += d.length) >= bytes && resolve()));
    }

    /** Writes data on one end; resolves once the other end has read all of it. */
    function deliver(from, to, data) {
      const received = drain(to, data.length);
      from.write(data);
      return received;
    }

    it('counts exactly the bytes each side wrote and received, and the FIN not as data', () => withPair(async ({ server, client, peer }) => {
      await Promise.all([deliver(client, peer, Buffer.alloc(1234567, 1)), deliver(peer, client, Buffer.alloc(7654321, 2))]);
      const out = new Float64Array(TCP_INFO_SLOTS);
      const readOut = addon.tcpInfoReader(out);
      assert.strictEqual(readOut(client._handle.fd), 0);
      assert.deepStrictEqual([countersOf(out).txBytes, countersOf(out).rxBytes], [1234567, 7654321]);
      assert.strictEqual(readOut(peer._handle.fd), 0);
      assert.deepStrictEqual([countersOf(out).txBytes, countersOf(out).rxBytes], [7654321, 1234567]);
      assert.strictEqual(out[TCP_INFO.STATE], TCP_STATES.ESTABLISHED);
      // a second reader reads the same counters into the array it was made with
      const mine = new Float64Array(TCP_INFO_SLOTS);
      const read = addon.tcpInfoReader(mine);
      assert.strictEqual(read(client._handle.fd), 0);
      assert.deepStrictEqual([countersOf(mine).txBytes, countersOf(mine).rxBytes], [1234567, 7654321]);
      assert.strictEqual(read(peer._handle.fd), 0);
      assert.deepStrictEqual([...mine], [...out]);

      // The peer half-closes: the client's bytes_received grows by one for the FIN, the count does not.
      client.allowHalfOpen = true;
      const ended = new Promise(resolve => client.once('end', resolve));
      peer.end();
      await ended;
      assert.strictEqual(readOut(client._handle.fd), 0);
      assert.strictEqual(out[TCP_INFO.STATE], TCP_STATES.CLOSE_WAIT);
      assert.strictEqual(out[TCP_INFO.BYTES_RECEIVED], 7654322);
      assert.strictEqual(countersOf(out).rxBytes, 7654321);
    }));

    it('tcpSocketReader() lists only the sockets whose counters moved since its previous call, and every listening one', () => withPair(async ({ server, client, peer }) => {
      const read = addon.tcpSocketReader();
      const fds = sockets => sockets.map(s => s.fd);
      const first = read();
      for (const fd of [client._handle.fd, peer._handle.fd, server._handle.fd]) assert.ok(fds(first).includes(fd), `fd ${fd} in the first reading`);
      const before = first.find(s => s.fd === client._handle.fd);
      const sentBefore = before.info[TCP_INFO.BYTES_SENT];
      const idle = read();
      assert.ok(!fds(idle).includes(client._handle.fd) && !fds(idle).includes(peer._handle.fd), JSON.stringify(fds(idle)));
      assert.ok(fds(idle).includes(server._handle.fd), 'a listening socket is always there');
      await deliver(client, peer, Buffer.alloc(1000));
      const moved = read();
      const sent = moved.find(s => s.fd === client._handle.fd);
      const received = moved.find(s => s.fd === peer._handle.fd);
      assert.ok(sent && received, JSON.stringify(fds(moved)));
      assert.strictEqual(sent.info[TCP_INFO.BYTES_SENT] - sentBefore, 1000);
      assert.strictEqual(sent, before, 'the same record for the same socket, its counters overwritten');
      assert.strictEqual(received.peerPort, client.localPort);
      // another reader keeps its own previous reading
      assert.ok(fds(addon.tcpSocketReader()()).includes(client._handle.fd));
    }));

    it('tcpSocketReader()(max) makes the same pass in steps of max fds, then returns null', () => withPair(async ({ server, client, peer }) => {
      const whole = addon.tcpSocketReader();
      const inSteps = addon.tcpSocketReader();
      const stepped = () => {
        const all = [];
        let calls = 0;
        for (let sockets; (sockets = inSteps(2)) !== null; calls++) {
          assert.ok(sockets.length <= 2, `${sockets.length} records from 2 fds`);
          all.push(...sockets);
        }
        return { fds: all.map(s => s.fd).sort((a, b) => a - b), calls };
      };
      const fds = sockets => sockets.map(s => s.fd).sort((a, b) => a - b);
      const first = stepped();
      const firstWhole = fds(whole());
      assert.deepStrictEqual(first.fds, firstWhole);
      assert.ok(first.calls >= Math.ceil(firstWhole.length / 2), `${first.calls} steps for ${firstWhole.length} sockets`);
      await deliver(client, peer, Buffer.alloc(1000));
      const second = stepped();
      assert.deepStrictEqual(second.fds, fds(whole()));
      for (const fd of [client._handle.fd, peer._handle.fd, server._handle.fd]) assert.ok(second.fds.includes(fd), `fd ${fd} in the second pass`);
      assert.ok(!stepped().fds.includes(client._handle.fd), 'a third pass: nothing moved');
    }));

    it('tcpSocketReader() gives a new record when an fd holds another socket than at its previous call', () => withPair(async ({ server, client, others }) => {
      const read = addon.tcpSocketReader();
      const fd = client._handle.fd;
      const old = read().find(s => s.fd === fd);
      const oldPort = client.localPort;
      assert.strictEqual(old.localPort, oldPort);
      client.destroy();
      // the kernel gives the lowest free fd: one of the next sockets gets the one just closed (either end)
      let reused;
      for (let i = 0; i < 10 && !reused; i++) {
        const { client: next, peer: nextPeer } = await connectTo(server);
        others.push(next, nextPeer);
        if (next._handle.fd === fd) reused = [next, nextPeer];
        else if (nextPeer._handle.fd === fd) reused = [nextPeer, next];
      }
      assert.ok(reused, `no socket got fd ${fd} again`);
      const [mine, other] = reused;
      await deliver(mine, other, Buffer.from('moved')); // a new socket whose counters equal the old one's last reading is not listed yet
      const now = read().find(s => s.fd === fd);
      assert.notStrictEqual(now, old);
      assert.deepStrictEqual([now.localPort, now.peerPort, old.localPort], [mine.localPort, mine.remotePort, oldPort]);
    }));

    it('lists the process\'s TCP sockets with their addresses, and reports non-TCP fds as errors', () => withPair(async ({ server, client, peer }) => {
      const sockets = addon.tcpSocketReader()();
      const find = fd => sockets.find(s => s.fd === fd);
      assert.deepStrictEqual(
        { ...find(client._handle.fd), info: undefined },
        { fd: client._handle.fd, family: 4, localAddress: '127.0.0.1', localPort: client.localPort,
          peerAddress: '127.0.0.1', peerPort: server.address().port, info: undefined },
      );
      assert.strictEqual(find(peer._handle.fd).peerPort, client.localPort);
      const listening = find(server._handle.fd);
      assert.strictEqual(listening.info[TCP_INFO.STATE], TCP_STATES.LISTEN);
      assert.strictEqual(listening.peerPort, undefined);
      const out = new Float64Array(TCP_INFO_SLOTS);
      const file = fs.openSync(__filename, 'r');
      const read = addon.tcpInfoReader(out);
      assert.strictEqual(read(file), -88 /* ENOTSOCK */);
      assert.strictEqual(read('not an fd'), -9 /* EBADF */);
      assert.throws(() => addon.tcpInfoReader(new Float64Array(TCP_INFO_SLOTS - 1)), err => err instanceof BpfError && /tcpInfoReader/.test(err.message));
      fs.closeSync(file);
      assert.strictEqual(find(file), undefined);
    }));
  });

  describe('HTTP client (httpPost, the exporter\'s thread)', function () {
    const net = require('net');

    /** A server that answers every connection with `reply(socket)`; the request's bytes are read or not, as it likes. */
    async function withServer(reply, fn) {
      const server = net.createServer(reply);
      await new Promise(resolve => server.listen(0, '127.0.0.1', resolve));
      try {
        return await fn(String(server.address().port));
      } finally {
        server.close();
      }
    }
    const post = (port, body = Buffer.from('{}')) =>
      addon.httpPost({ host: '127.0.0.1', port, head: 'POST /v1/metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n', body, gzip: false, timeoutMs: 5000 });

    it('waits as long as a timeout of years asks, not less (the deadline would overflow the clock)', () =>
      withServer(
        s => s.once('data', () => setTimeout(() => s.end('HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n'), 100)),
        async port => {
          const request = { host: '127.0.0.1', port, head: 'POST / HTTP/1.1\r\nHost: 127.0.0.1\r\n', body: Buffer.from('{}'), gzip: false };
          assert.deepStrictEqual(await addon.httpPost({ ...request, timeoutMs: 1e13 }), { status: 200 });
        },
      ));

    it('passes over an interim 100 Continue to the final answer', () =>
      withServer(
        s => s.once('data', () => s.end('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n')),
        async port => assert.deepStrictEqual(await post(port), { status: 200 }),
      ));

    it('takes an answer whose head the connection\'s end cuts short for no answer (EPROTO)', () =>
      withServer(
        s => s.once('data', () => s.end('HTTP/1.1 200 OK\r\nContent-Le')),
        port => assert.rejects(post(port), err => err instanceof BpfError && err.code === 'EPROTO' && /http response/.test(err.message)),
      ));

    // The body of a 2xx answer (OTLP's partial success) comes back, however the server delimits it; the answer it
    // came with stands when it is cut short. A head and its body in two writes, as a server sends them.
    const answer = (head, ...rest) => s =>
      s.once('data', () => {
        s.write(head);
        setTimeout(() => (rest.length ? s.end(rest.join('')) : undefined), 20);
      });
    for (const [how, reply, body] of [
      ['Content-Length', answer('HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n', 'partial ok!'), 'partial ok!'],
      ['chunks, with an extension and a trailer', answer('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n7;x=1\r\npartial\r\n', '4\r\n ok!\r\n0\r\nX-T: 1\r\n\r\n'), 'partial ok!'],
      ['the connection\'s end (Connection: close, no length)', answer('HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n', 'partial ok!'), 'partial ok!'],
      ['an empty body (Content-Length: 0)', answer('HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n'), undefined],
    ]) {
      it(`returns the body of a 2xx answer delimited by ${how}`, () =>
        withServer(reply, async port => {
          const result = await post(port);
          assert.deepStrictEqual({ ...result, body: result.body && Buffer.from(result.body).toString() }, { status: 200, body });
        }));
    }

    it('keeps a 2xx answer whose body never ends as it said, without the body, at the deadline', () =>
      withServer(answer('HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\npartial'), async port => {
        const started = Date.now();
        const request = { host: '127.0.0.1', port, head: 'POST /v1/metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n', body: Buffer.from('{}'), gzip: false };
        assert.deepStrictEqual(await addon.httpPost({ ...request, timeoutMs: 300 }), { status: 200 });
        assert.ok(Date.now() - started >= 290, 'it waited for the rest until the deadline');
      }));

    it('the synchronous post (the last export of an exiting process) does not wait for a body at all', async () => {
      // the server in another process: httpPostSync blocks this one's event loop
      const { spawn } = require('child_process');
      const server = spawn(process.execPath, ['-e', `
        const s = require('net').createServer(c => c.once('data', () => c.write('HTTP/1.1 200 OK\\r\\nContent-Length: 50\\r\\n\\r\\npartial')));
        s.listen(0, '127.0.0.1', () => console.log(s.address().port));`]);
      try {
        const port = await new Promise((resolve, reject) => {
          server.stdout.once('data', d => resolve(String(d).trim()));
          server.once('exit', code => reject(new Error(`server exited (${code})`)));
        });
        const started = Date.now();
        const request = { host: '127.0.0.1', port, head: 'POST /v1/metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n', body: Buffer.from('{}'), gzip: false };
        assert.deepStrictEqual(addon.httpPostSync({ ...request, timeoutMs: 2000 }), { status: 200 });
        assert.ok(Date.now() - started < 1000, `${Date.now() - started} ms`);
      } finally {
        server.kill();
      }
    });

    it('reports the answer of a server that refuses the body before reading it (413), not the reset that follows', () =>
      withServer(
        // answers at the first bytes and closes with the rest unread: the kernel resets the connection
        s => s.once('data', () => {
          s.write('HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n\r\n');
          setTimeout(() => s.destroy(), 20);
        }),
        async port => assert.deepStrictEqual(await post(port, Buffer.alloc(64 << 20, 1)), { status: 413 }),
      ));
  });
});
