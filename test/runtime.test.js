'use strict';
// The event loop and the main thread's syscalls, from raw syscall tracepoints, in this very process.
const assert = require('assert');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { spawn, execFileSync } = require('child_process');
const { KernelTelemetry } = require('../dist/kernel');
const { resolveConfig } = require('../dist/config');

const sleep = ms => new Promise(r => setTimeout(r, ms));
const busy = ms => {
  const end = process.hrtime.bigint() + BigInt(ms) * 1_000_000n;
  while (process.hrtime.bigint() < end);
};

describe('runtime probes: event loop and blocking syscalls', function () {
  let telemetry, runtime;
  before(() => {
    telemetry = new KernelTelemetry(resolveConfig({ strict: true, disabledProbes: ['tcp'] }).config);
    telemetry.start();
    runtime = telemetry.collectorsByName().get('runtime');
  });
  after(() => telemetry.shutdown());

  const metric = name => telemetry.collect().find(m => m.name === name);

  it('attaches with raw tracepoints', () => {
    const [p] = runtime.status();
    assert.deepStrictEqual([p.name, p.attached, p.hook], ['nodejs.eventloop', true, 'tracepoint']);
  });

  it('records a busy stretch of 300 ms as an active stretch of at least 300 ms', async () => {
    await sleep(20); // start from a fresh stretch
    const before = runtime.loopState().active;
    busy(300);
    await sleep(20);
    const after = runtime.loopState().active;
    const added = after.slots.map((c, i) => c - before.slots[i]);
    // the slot holding the busy stretch: (2^(k-21), 2^(k-20)] s must reach 0.3 s
    const top = added.findLastIndex(c => c > 0);
    assert.ok(2 ** (top - 20) >= 0.3, `largest new stretch is in slot ${top}`);
    assert.ok(Number(after.sumNs - before.sumNs) >= 300e6);
  });

  it('counts a sleeping process as idle, and active + idle add up to wall time', async () => {
    const a = runtime.loopState();
    const t0 = process.hrtime.bigint();
    await sleep(1000);
    const b = runtime.loopState();
    const t1 = process.hrtime.bigint();
    const idle = Number(b.idleNowNs - a.idleNowNs) / 1e6;
    const active = Number(b.activeNowNs - a.activeNowNs) / 1e6;
    assert.ok(idle >= 990, `idle ${idle} ms`);
    assert.ok(active < 50, `active ${active} ms while sleeping`);
    // both readings take "now" from the same monotonic clock the kernel uses; the tolerance covers the reads
    const wall = Number(t1 - t0) / 1e6;
    assert.ok(Math.abs(idle + active - wall) < 2, `idle ${idle} + active ${active} vs wall ${wall} ms`);
  });

  it('exports nodejs.eventloop.time by state and the utilization since the previous export', async () => {
    metric('nodejs.eventloop.utilization'); // start an interval
    busy(200);
    await sleep(200);
    const util = metric('nodejs.eventloop.utilization').points[0].value;
    assert.ok(util > 0.35 && util < 0.75, `utilization ${util} for 200 ms busy + 200 ms asleep`);
    const time = metric('nodejs.eventloop.time');
    assert.deepStrictEqual(time.points.map(p => p.attributes['nodejs.eventloop.state']), ['active', 'idle']);
  });

  it('shows a slow synchronous read under its syscall name with at least its duration', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'oneb-'));
    const fifo = path.join(dir, 'slow');
    execFileSync('mkfifo', [fifo]);
    // the writer opens at once, then writes after 300 ms: the reader blocks inside read(2)
    const writer = spawn('sh', ['-c', `exec 3>"${fifo}"; sleep 0.3; echo slow >&3`]);
    const fd = fs.openSync(fifo, 'r');
    const t0 = process.hrtime.bigint();
    const n = fs.readSync(fd, Buffer.alloc(16));
    const blocked = Number(process.hrtime.bigint() - t0) / 1e9;
    fs.closeSync(fd);
    await new Promise(r => writer.on('close', r));
    fs.rmSync(dir, { recursive: true });
    assert.strictEqual(n, 5);
    assert.ok(blocked > 0.2, `read returned after ${blocked} s`);
    const read = metric('nodejs.mainthread.syscall.duration').points.find(p => p.attributes['syscall.name'] === 'read');
    assert.ok(read, 'no read(2) samples');
    const top = read.hist.slots.findLastIndex(c => c > 0);
    assert.ok(2 ** (top - 20) >= blocked, `longest read is in slot ${top}, the read blocked ${blocked} s`);
    assert.ok(Number(read.hist.sumNs) / 1e9 >= blocked);
  });

  it('does not count the epoll waits as syscalls of the main thread', () => {
    const names = metric('nodejs.mainthread.syscall.duration').points.map(p => p.attributes['syscall.name']);
    assert.ok(!names.some(n => n.startsWith('epoll_wait') || n.startsWith('epoll_pwait')), names.join(' '));
  });
});
