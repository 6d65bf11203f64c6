'use strict';
// Bytes per file from the process's own syscalls (raw tracepoint sys_exit, opt-in file.io), end to end under Node 20,
// 22 and 24: a workload process with the SDK preloaded writes and reads known numbers of bytes in a temporary folder,
// synchronously, through the thread pool and through a stream; its exporter sends to a real OTLP receiver.
const assert = require('assert');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { startReceiver, runWorkload, total, pointsOf, describe: describePoints } = require('./support/harness');
const { NODE_VERSIONS, nodeBinary, under } = require('./support/uprobes');

const WORKLOAD = path.join(__dirname, 'support', 'files-workload.js');
const IO = 'process.file.io';
const WRITTEN = { 'sync.bin': 1234567, 'async.bin': 654321, 'stream.bin': 100000, 'open.bin': 4096 };
const READ = { 'sync.bin': 1234567, 'async.bin': 654321 };

describe('bytes per file (raw tracepoint sys_exit, opt-in file.io)', function () {
  let receiver, address;
  before(async () => {
    ({ receiver, address } = await startReceiver());
  });
  after(async () => {
    await receiver.stop();
  });

  for (const v of NODE_VERSIONS) {
    describe(v.label, function () {
      let node, dir;
      before(function () {
        this.timeout(600000);
        node = nodeBinary(v.major);
      });
      beforeEach(() => {
        dir = fs.mkdtempSync(path.join(os.tmpdir(), 'oneb-files-'));
      });
      afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

      const run = (steps, env = {}) =>
        runWorkload(steps, { address, ...under(node.binary, { env: { OTEL_NODE_EBPF_ENABLED_PROBES: 'file.io', ...env } }), script: WORKLOAD });
      const ownPoints = r => receiver.points().filter(p => p.resource['process.pid'] === r.child.pid);

      it('exactly the bytes written and read per path: sync, through the thread pool, a stream, a file still open', async () => {
        const r = await run([{ files: dir }]);
        assert.strictEqual(r.code, 0, r.stderr);
        assert.deepStrictEqual(r.lines.find(l => l.files).files, { syncRead: READ['sync.bin'], asyncRead: READ['async.bin'] });
        const { status } = r.lines.find(l => l.done);
        assert.strictEqual(status.probes.find(p => p.name === 'file.io').hook, 'tracepoint');
        const points = ownPoints(r);
        const dump = describePoints(points, IO);
        for (const [name, bytes] of Object.entries(WRITTEN)) {
          const attrs = { 'file.path': path.join(dir, name), 'file.directory': dir };
          assert.strictEqual(total(points, IO, { ...attrs, 'disk.io.direction': 'write' }), bytes, `${name} written\n${dump}`);
          assert.strictEqual(total(points, IO, { ...attrs, 'disk.io.direction': 'read' }), READ[name], `${name} read\n${dump}`);
        }
      });

      it("the SDK's own files are not the application's: only the workload's paths, none of the SDK's (BTF, its modules and objects, sysctls, the machine id)", async () => {
        const r = await run([{ files: dir }]);
        assert.strictEqual(r.code, 0, r.stderr);
        const paths = new Set(pointsOf(ownPoints(r), IO).map(p => p.attributes['file.path']));
        // V8's own, not the SDK's: Node 22 and 24's garbage collector reads the CPU count (absl's NumCPUs(), through
        // std::thread::hardware_concurrency()) once per process, on the main thread, the first time one of its locks
        // is contended during a scavenge, whenever that is
        paths.delete('/sys/devices/system/cpu/online');
        const workload = [WORKLOAD, path.join(__dirname, 'support', 'steps.js'), ...Object.keys(WRITTEN).map(name => path.join(dir, name))];
        assert.deepStrictEqual([...paths].sort(), workload.sort());
      });

      it("the SDK's export threads' files are not the application's: exports to an endpoint by host name resolve it (/etc/hosts, /etc/resolv.conf) on the addon's threads", async () => {
        const endpoint = address.httpEndpoint.replace('127.0.0.1', 'localhost');
        const r = await run([{ files: dir }, { sleep: 1500 }], { OTEL_EXPORTER_OTLP_ENDPOINT: endpoint, OTEL_METRIC_EXPORT_INTERVAL: '250' });
        assert.strictEqual(r.code, 0, r.stderr);
        const points = ownPoints(r);
        // several exports went out, each resolving localhost, and the files of all but the last were collected
        assert.ok(new Set(points.map(p => p.timeUnixNano ?? p.time)).size >= 3, 'exports');
        const paths = [...new Set(pointsOf(points, IO).map(p => p.attributes['file.path']))];
        assert.deepStrictEqual(paths.filter(p => p.startsWith('/etc/')), [], paths.join('\n'));
        assert.strictEqual(total(points, IO, { 'file.path': path.join(dir, 'sync.bin'), 'disk.io.direction': 'write' }), WRITTEN['sync.bin']);
      });

      it('bounds paths by OTEL_NODE_EBPF_FILE_MAX_PATHS: the tail counts under its directory, no byte lost', async () => {
        const n = 20;
        const r = await run([{ files: dir }, { many: [dir, n] }], { OTEL_NODE_EBPF_FILE_MAX_PATHS: '3' });
        assert.strictEqual(r.code, 0, r.stderr);
        const points = pointsOf(ownPoints(r), IO);
        const paths = new Set(points.filter(p => 'file.path' in p.attributes).map(p => p.attributes['file.path']));
        const dirs = new Set(points.filter(p => !('file.path' in p.attributes)).map(p => p.attributes['file.directory']));
        assert.ok(paths.size <= 3, [...paths].join('\n'));
        assert.ok([...dirs].filter(d => d !== '_OTHER').length <= 3, [...dirs].join('\n'));
        assert.ok(![...paths].some(p => p.startsWith(path.join(dir, 'f'))), 'the tail has no path of its own');
        // the process writes to no file but the workload's: every byte written is in some series, once
        const want = Object.values(WRITTEN).reduce((a, b) => a + b, 0) + (n * (n + 1)) / 2;
        const written = [...new Set(points.filter(p => p.attributes['disk.io.direction'] === 'write').map(p => JSON.stringify(p.attributes)))]
          .map(a => total(points, IO, { 'file.path': undefined, ...JSON.parse(a) })) // a directory's series: no file.path
          .reduce((a, b) => a + b, 0);
        assert.strictEqual(written, want, describePoints(points, IO));
      });

      it('files opened and closed at once on several threads: no byte lost to an fd reused between a close and its exit', async () => {
        // 32 pool threads on this machine's 2 CPUs, 19,200 files: without the fix, 2 of 6 runs lost one file's write
        // (an fd freed by one thread's close, taken by another's open before the close's sys_exit ran); with it, 18 of
        // 18 passed. A race: a run without the fix can pass too.
        // The churn runs about 12,000 syscalls a second through the programs: on a slow or shared machine (1.3-1.6 %
        // of a CPU once) the default budget of 1 % detaches the probe mid-run, which is the budget working
        // (test/budget.test.js), not what this test is about: it is off here.
        const [n, rounds] = [64, 300];
        const env = { OTEL_NODE_EBPF_FILE_MAX_PATHS: '10000', UV_THREADPOOL_SIZE: '32', OTEL_NODE_EBPF_OVERHEAD_BUDGET: '0' };
        const r = await run([{ churn: [dir, n, rounds] }], env);
        assert.strictEqual(r.code, 0, r.stderr);
        const points = ownPoints(r);
        const lost = [];
        for (let i = 0; i < n; i++) {
          const attrs = { 'file.path': path.join(dir, `c${i}.bin`), 'file.directory': dir, 'disk.io.direction': 'write' };
          const got = total(points, IO, attrs);
          if (got !== rounds * (1000 + i)) lost.push(`c${i}.bin: ${got} of ${rounds * (1000 + i)}`);
        }
        assert.deepStrictEqual(lost, [], r.stderr);
      });

      it('is off unless turned on', async () => {
        const r = await run([{ files: dir }], { OTEL_NODE_EBPF_ENABLED_PROBES: '' });
        assert.strictEqual(r.code, 0, r.stderr);
        const p = r.lines.find(l => l.done).status.probes.find(x => x.name === 'file.io');
        assert.strictEqual(p.reason, 'disabled: opt-in, turn on with OTEL_NODE_EBPF_ENABLED_PROBES=file.io');
        assert.strictEqual(pointsOf(ownPoints(r), IO).length, 0);
      });
    });
  }
});

describe('file.io in this process', function () {
  it('a file open at a collection and closed without reading or writing is not remembered (it sends no close record)', async () => {
    const { KernelTelemetry } = require('../dist/kernel');
    const { resolveConfig } = require('../dist/config');
    const { config } = resolveConfig({ strict: true, enabledProbes: ['file.io'], disabledProbes: ['tcp', 'nodejs', 'dns', 'tls'], overheadBudget: 0, kernelStats: false });
    const telemetry = new KernelTelemetry(config);
    telemetry.start();
    const files = telemetry.collectorsByName().get('files');
    const kept = [];
    try {
      for (let round = 0; round < 3; round++) {
        const fds = Array.from({ length: 100 }, () => fs.openSync('/etc/hostname', 'r'));
        files.collect(); // each is in the kernel's map now, with 0 bytes
        for (const fd of fds) fs.closeSync(fd);
        await new Promise(resolve => setTimeout(resolve, 20));
        files.collect();
        kept.push(files.accounted.size);
      }
    } finally {
      telemetry.shutdown();
    }
    // the other files the test process holds that moved bytes are remembered, ours not: 100 more per round before
    assert.ok(kept[0] < 50 && kept[2] - kept[0] < 10, `entries after each round: ${kept}`);
  });
});
