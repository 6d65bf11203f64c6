'use strict';
// libuv's thread pool from uprobes on the node binary, end to end under Node 20, 22 and 24: a workload process with
// the SDK preloaded (measurement nodejs.threadpool turned on, UV_THREADPOOL_SIZE=4) gives the pool known work; its
// exporter sends to a real OTLP receiver.
const assert = require('assert');
const path = require('path');
const { startReceiver, runWorkload, total, pointsOf, describe: describePoints } = require('./support/harness');
const { NODE_VERSIONS, nodeBinary, under } = require('./support/uprobes');

const WORKLOAD = path.join(__dirname, 'support', 'threadpool-workload.js');
const WAIT = 'nodejs.threadpool.wait.duration';
const RUN = 'nodejs.threadpool.run.duration';
const KIND = 'nodejs.threadpool.work.kind';
const PROBE = { 'otel_node_ebpf.probe': 'nodejs.threadpool', 'otel_node_ebpf.hook': 'uprobe' };
/** Bucket i of the exported histogram is the kernel's slot i: (2^(i-21), 2^(i-20)] s. */
const slotOf = seconds => Math.ceil(Math.log2(seconds)) + 20;

function buckets(points, name, kind) {
  const [p] = pointsOf(points, name, { [KIND]: kind });
  assert.ok(p, `no ${name} point for ${kind}:\n${describePoints(points, name)}`);
  return p.bucketCounts;
}

const sum = (counts, from, to = counts.length - 1) => counts.slice(from, to + 1).reduce((a, c) => a + c, 0);

describe('libuv thread pool (uprobes, opt-in nodejs.threadpool)', function () {
  let receiver, address;
  before(async () => {
    ({ receiver, address } = await startReceiver());
  });
  after(async () => {
    await receiver.stop();
  });

  for (const v of NODE_VERSIONS) {
    describe(v.label, function () {
      let node;
      before(function () {
        this.timeout(600000);
        node = nodeBinary(v.major);
      });

      const run = (steps, env = {}) => {
        const opts = under(node.binary, { env: { UV_THREADPOOL_SIZE: '4', OTEL_NODE_EBPF_ENABLED_PROBES: 'nodejs.threadpool', ...env } });
        return runWorkload(steps, { address, ...opts, script: WORKLOAD });
      };
      const ownPoints = r => receiver.points().filter(p => p.resource['process.pid'] === r.child.pid);

      it('12 tasks of 200 ms on 4 workers: queue waits form a staircase (4 at ~0, 4 at ~200 ms, 4 at ~400 ms), runs are 200 ms', async () => {
        // sleep first: the SDK's own start-up (resource detection) reads files through the pool
        const r = await run([{ sleep: 500 }, { staircase: [12, 200] }]);
        assert.strictEqual(r.code, 0, r.stderr);
        const { status } = r.lines.find(l => l.done);
        assert.strictEqual(status.probes.find(p => p.name === 'nodejs.threadpool').hook, 'uprobe');
        const points = ownPoints(r);
        const wait = buckets(points, WAIT, 'fs');
        const runs = buckets(points, RUN, 'fs');
        const dump = `wait ${wait.map((c, i) => (c ? `${i}:${c}` : '')).filter(Boolean)} run ${runs.map((c, i) => (c ? `${i}:${c}` : '')).filter(Boolean)}`;
        // 200 ms lies in (125, 250] ms, 400 ms in (250, 500] ms: a margin of 75 ms down and 50 ms up each
        assert.strictEqual(slotOf(0.2), 18);
        assert.strictEqual(wait[18], 4, dump);
        assert.strictEqual(wait[19], 4, dump);
        assert.strictEqual(sum(wait, 20), 0, dump);
        // the first batch (and the start-up's few file reads) waited for no one: under 16 ms
        assert.strictEqual(sum(wait, slotOf(1 / 64) + 1, 17), 0, dump);
        assert.ok(sum(wait, 0, slotOf(1 / 64)) >= 4, dump);
        assert.strictEqual(runs[18], 12, dump);
        assert.strictEqual(sum(runs, 19), 0, dump);
      });

      it('counts every task under its kind (fs, dns, crypto, zlib), exactly; a synchronous fs call is no task', async () => {
        const base = await run([{ sleep: 500 }]);
        assert.strictEqual(base.code, 0, base.stderr);
        const n = 5;
        const r = await run([{ sleep: 500 }, { kinds: n }]);
        assert.strictEqual(r.code, 0, r.stderr);
        const before = ownPoints(base);
        const points = ownPoints(r);
        const startup = total(before, WAIT, { [KIND]: 'fs' }) ?? 0;
        const dump = describePoints(points, WAIT);
        assert.strictEqual(total(points, WAIT, { [KIND]: 'fs' }), startup + n, dump);
        assert.strictEqual(total(points, WAIT, { [KIND]: 'crypto' }), n, dump);
        assert.strictEqual(total(points, WAIT, { [KIND]: 'dns' }), n, dump);
        assert.ok(total(points, WAIT, { [KIND]: 'zlib' }) >= n, dump);
        assert.strictEqual(total(points, WAIT, { [KIND]: 'user' }), undefined, dump);
        for (const kind of ['fs', 'crypto', 'dns', 'zlib'])
          assert.strictEqual(total(points, RUN, { [KIND]: kind }), total(points, WAIT, { [KIND]: kind }), `${kind} runs`);
        // the programs count their hits; the cost is estimated from the hit cost measured at start
        const hits = total(points, 'otel_node_ebpf.probe.runs', PROBE);
        const tasks = pointsOf(points, WAIT).reduce((a, p) => a + p.count, 0);
        assert.ok(hits >= 3 * tasks, `${hits} hits for ${tasks} tasks`);
        assert.ok(total(points, 'otel_node_ebpf.probe.cpu.time', PROBE) > 0);
      });

      it('is off unless turned on: nothing loaded, status says how to turn it on', async () => {
        const r = await run([{ kinds: 1 }], { OTEL_NODE_EBPF_ENABLED_PROBES: '' });
        assert.strictEqual(r.code, 0, r.stderr);
        const { status } = r.lines.find(l => l.done);
        const p = status.probes.find(x => x.name === 'nodejs.threadpool');
        assert.strictEqual(p.attached, false);
        assert.strictEqual(p.reason, 'disabled: opt-in, turn on with OTEL_NODE_EBPF_ENABLED_PROBES=nodejs.threadpool');
        assert.strictEqual(pointsOf(ownPoints(r), WAIT).length, 0);
      });

      it('a hot loop of tasks over a small budget: detached with one warning, every task still completes', async () => {
        const r = await run([{ busy: 1500 }], { OTEL_NODE_EBPF_STRICT: 'false', OTEL_NODE_EBPF_OVERHEAD_BUDGET: '0.001', OTEL_NODE_EBPF_OVERHEAD_WINDOW: '300' });
        assert.strictEqual(r.code, 0, r.stderr);
        const n = r.lines.find(l => 'tasks' in l).tasks;
        const { status } = r.lines.find(l => l.done);
        const p = status.probes.find(x => x.name === 'nodejs.threadpool');
        assert.strictEqual(p.attached, false, JSON.stringify(status.probes));
        assert.match(p.reason, /^detached: over the overhead budget \(OTEL_NODE_EBPF_OVERHEAD_BUDGET=0\.001\)/);
        assert.match(r.stderr, /probe nodejs\.threadpool detached/);
        // what was seen until the detach (which itself takes about 1 s here: 10 uprobes, an RCU grace period each)
        const seen = total(ownPoints(r), WAIT, { [KIND]: 'crypto' });
        assert.ok(seen > 0 && seen <= n, `${seen} of ${n} tasks seen`);
      });
    });
  }
});
