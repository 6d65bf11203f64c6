'use strict';
// The event loop from raw_tp/sched_switch (the default), and the main thread's syscalls from raw_tp/sys_enter and
// sys_exit (opt-in: nodejs.syscalls), in this very process; the event loop also under Node 22 and 24.
const assert = require('assert');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { spawn, execFileSync } = require('child_process');
const { KernelTelemetry } = require('../dist/kernel');
const { resolveConfig } = require('../dist/config');
const { ROOT } = require('./support/harness');
const { NODE_VERSIONS, nodeBinary } = require('./support/uprobes');

const sleep = ms => new Promise(r => setTimeout(r, ms));
const busy = ms => {
  const end = process.hrtime.bigint() + BigInt(ms) * 1_000_000n;
  while (process.hrtime.bigint() < end);
};
/** The largest slot with samples added between two histograms, as its upper edge in seconds: (2^(k-21), 2^(k-20)]. */
const topEdge = (before, after) => 2 ** (after.slots.map((c, i) => c - before.slots[i]).findLastIndex(c => c > 0) - 20);

/** The raw tracepoints this process has BPF links on, from /proc/self/fdinfo. */
function rawTracepointLinks() {
  const names = [];
  for (const fd of fs.readdirSync('/proc/self/fd')) {
    let info;
    try {
      if (fs.readlinkSync(`/proc/self/fd/${fd}`) !== 'anon_inode:bpf_link') continue;
      info = fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8');
    } catch {
      continue; // closed meanwhile (readdir's own fd)
    }
    const m = /^tp_name:\s*(\S+)/m.exec(info);
    if (m) names.push(m[1]);
  }
  return names.sort();
}

/** A read(2) that blocks about 300 ms on a FIFO whose writer waits first. Returns how long it blocked, in s. */
async function slowRead() {
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
  return blocked;
}

describe('runtime probes: the event loop from sched_switch (default set)', function () {
  let telemetry, runtime, linksBefore;
  before(() => {
    linksBefore = rawTracepointLinks();
    telemetry = new KernelTelemetry(resolveConfig({ strict: true, disabledProbes: ['tcp'] }).config);
    telemetry.start();
    runtime = telemetry.collectorsByName().get('runtime');
  });
  after(() => telemetry.shutdown());

  const metric = name => telemetry.collect().find(m => m.name === name);

  it('attaches sched_switch only: the per-syscall measurement is opt-in, sys_enter/sys_exit stay unhooked', () => {
    const [loop, syscalls] = runtime.status();
    assert.deepStrictEqual([loop.name, loop.attached, loop.hook], ['nodejs.eventloop', true, 'tracepoint']);
    assert.deepStrictEqual([syscalls.name, syscalls.attached], ['nodejs.syscalls', false]);
    assert.strictEqual(syscalls.reason, 'disabled: opt-in, turn on with OTEL_NODE_EBPF_ENABLED_PROBES=nodejs.syscalls');
    const count = names => names.reduce((m, n) => ({ ...m, [n]: (m[n] ?? 0) + 1 }), {});
    const [now, then] = [count(rawTracepointLinks()), count(linksBefore)];
    const added = Object.keys(now).filter(n => now[n] > (then[n] ?? 0));
    assert.ok(added.includes('sched_switch'), added.join(' '));
    assert.ok(!added.includes('sys_enter') && !added.includes('sys_exit'), added.join(' '));
    assert.deepStrictEqual([...runtime.runStats().keys()], ['nodejs.eventloop']);
    assert.strictEqual(metric('nodejs.mainthread.syscall.duration'), undefined);
  });

  it('records a busy stretch of 300 ms as an active stretch of at least 300 ms', async () => {
    await sleep(20); // start from a fresh stretch
    const before = runtime.loopState().active;
    busy(300);
    await sleep(20);
    const after = runtime.loopState().active;
    assert.ok(topEdge(before, after) >= 0.3, `largest new stretch below ${topEdge(before, after)} s`);
    assert.ok(Number(after.sumNs - before.sumNs) >= 300e6);
  });

  it('counts a sleeping process as idle, and active + idle add up to wall time', async () => {
    await sleep(5);
    const a = runtime.loopState();
    const t0 = process.hrtime.bigint();
    await sleep(1000);
    const b = runtime.loopState();
    const t1 = process.hrtime.bigint();
    const idle = Number(b.idleNowNs - a.idleNowNs) / 1e6;
    const active = Number(b.activeNowNs - a.activeNowNs) / 1e6;
    assert.ok(idle >= 990, `idle ${idle} ms`);
    assert.ok(active < 50, `active ${active} ms while sleeping`);
    // Both readings take "now" from the monotonic clock the kernel uses, and the kernel splits the time between them
    // at the same instants; 2 ms covers the two reads and the clock reads around them.
    const wall = Number(t1 - t0) / 1e6;
    assert.ok(Math.abs(idle + active - wall) < 2, `idle ${idle} + active ${active} vs wall ${wall} ms`);
  });

  it('counts a main thread blocked in another syscall (a slow read) as active, not idle', async () => {
    await sleep(5);
    const a = runtime.loopState();
    const blocked = await slowRead();
    await sleep(20); // the loop sleeps: the stretch ends (the writer's exit may have been ready without one)
    const b = runtime.loopState();
    const active = Number(b.activeNowNs - a.activeNowNs) / 1e9;
    assert.ok(active >= blocked, `active ${active} s, the read blocked ${blocked} s`);
    assert.ok(topEdge(a.active, b.active) >= blocked, `largest new stretch below ${topEdge(a.active, b.active)} s, the read blocked ${blocked} s`);
  });

  it('counts a main thread blocked in execSync (a loop of its own, sleeping in epoll_wait on another fd) as active, not idle', async () => {
    await sleep(5);
    const a = runtime.loopState();
    const t0 = process.hrtime.bigint();
    execFileSync('sleep', ['0.3']);
    const blocked = Number(process.hrtime.bigint() - t0) / 1e9;
    await sleep(20);
    const b = runtime.loopState();
    const active = Number(b.activeNowNs - a.activeNowNs) / 1e9;
    assert.ok(active >= blocked, `active ${active} s, execSync blocked ${blocked} s`);
    assert.ok(topEdge(a.active, b.active) >= blocked, `largest new stretch below ${topEdge(a.active, b.active)} s, execSync blocked ${blocked} s`);
  });

  it('merges the stretches of a saturated loop: epoll waits that never sleep do not split it', async () => {
    await sleep(20);
    const before = runtime.loopState();
    // setImmediate makes libuv poll with a zero timeout: every iteration waits in epoll, none sleeps
    const end = process.hrtime.bigint() + 200_000_000n;
    let iterations = 0;
    await new Promise(resolve => {
      const spin = () => (++iterations, process.hrtime.bigint() < end ? setImmediate(spin) : resolve());
      setImmediate(spin);
    });
    await sleep(20);
    const after = runtime.loopState();
    assert.ok(iterations > 100, `${iterations} loop iterations`);
    assert.ok(topEdge(before.active, after.active) >= 0.2, `largest new stretch below ${topEdge(before.active, after.active)} s`);
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
});

describe('runtime probes: the main thread\'s syscalls (opt-in nodejs.syscalls)', function () {
  let telemetry, runtime;
  before(() => {
    telemetry = new KernelTelemetry(resolveConfig({ strict: true, disabledProbes: ['tcp', 'dns', 'tls'], enabledProbes: ['nodejs.syscalls'] }).config);
    telemetry.start();
    runtime = telemetry.collectorsByName().get('runtime');
  });
  after(() => telemetry.shutdown());

  const metric = name => telemetry.collect().find(m => m.name === name);

  it('attaches sys_enter and sys_exit when named in OTEL_NODE_EBPF_ENABLED_PROBES', () => {
    assert.deepStrictEqual(runtime.status().map(p => [p.name, p.attached, p.hook]), [
      ['nodejs.eventloop', true, 'tracepoint'],
      ['nodejs.syscalls', true, 'tracepoint'],
    ]);
    const links = rawTracepointLinks();
    assert.ok(links.includes('sys_enter') && links.includes('sys_exit'), links.join(' '));
  });

  it('shows a slow synchronous read under its syscall name with at least its duration', async () => {
    const blocked = await slowRead();
    const read = metric('nodejs.mainthread.syscall.duration').points.find(p => p.attributes['syscall.name'] === 'read');
    assert.ok(read, 'no read(2) samples');
    const top = read.hist.slots.findLastIndex(c => c > 0);
    assert.ok(2 ** (top - 20) >= blocked, `longest read is in slot ${top}, the read blocked ${blocked} s`);
    assert.ok(Number(read.hist.sumNs) / 1e9 >= blocked);
  });

  it('does not count the epoll waits as syscalls of the main thread', () => {
    const names = metric('nodejs.mainthread.syscall.duration').points.map(p => p.attributes['syscall.name']);
    assert.ok(names.length > 0);
    assert.ok(!names.some(n => n.startsWith('epoll_wait') || n.startsWith('epoll_pwait')), names.join(' '));
  });
});

// libuv's poll syscall differs between versions (epoll_wait, epoll_pwait, epoll_pwait2): each Node major is checked,
// with the opt-in per-syscall measurement on (a slow read under "read", no epoll wait among the syscalls).
const CHILD = `
const { KernelTelemetry } = require(${JSON.stringify(path.join(ROOT, 'dist', 'kernel'))});
const { resolveConfig } = require(${JSON.stringify(path.join(ROOT, 'dist', 'config'))});
const { execFileSync, spawn } = require('child_process');
const fs = require('fs'), os = require('os'), path = require('path');
const t = new KernelTelemetry(resolveConfig({ strict: true, disabledProbes: ['tcp', 'dns', 'tls'], enabledProbes: ['nodejs.syscalls'] }).config);
t.start();
const rt = t.collectorsByName().get('runtime');
const sleep = ms => new Promise(r => setTimeout(r, ms));
(async () => {
  await sleep(20);
  const a = rt.loopState();
  const end = process.hrtime.bigint() + 300_000_000n;
  while (process.hrtime.bigint() < end);
  await sleep(500);
  const b = rt.loopState();
  const top = b.active.slots.map((c, i) => c - a.active.slots[i]).findLastIndex(c => c > 0);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'oneb-'));
  const fifo = path.join(dir, 'slow');
  execFileSync('mkfifo', [fifo]);
  const writer = spawn('sh', ['-c', 'exec 3>"' + fifo + '"; sleep 0.3; echo slow >&3']);
  const fd = fs.openSync(fifo, 'r');
  const t0 = process.hrtime.bigint();
  fs.readSync(fd, Buffer.alloc(16));
  const blocked = Number(process.hrtime.bigint() - t0) / 1e9;
  fs.closeSync(fd);
  await new Promise(r => writer.on('close', r));
  fs.rmSync(dir, { recursive: true });
  const sys = rt.collect().find(m => m.name === 'nodejs.mainthread.syscall.duration').points;
  const read = sys.find(p => p.attributes['syscall.name'] === 'read');
  console.log(JSON.stringify({
    top, idle: Number(b.idleNowNs - a.idleNowNs) / 1e6, waits: b.waits - a.waits, blocked,
    // the two readings as the kernel left them, for a failure's message
    readings: [a, b].map(s => ({ waits: s.waits, inWait: s.inWait, idleNs: String(s.idleNs), waitStartedNs: String(s.waitStartedNs), waitEndedNs: String(s.waitEndedNs) })),
    readTop: read ? read.hist.slots.findLastIndex(c => c > 0) : -1,
    names: sys.map(p => p.attributes['syscall.name']),
  }));
  t.shutdown();
})();
`;

describe('runtime probes: the event loop under each Node.js version', function () {
  for (const v of NODE_VERSIONS) {
    it(`${v.label}: a 300 ms busy stretch is active, a 500 ms sleep idle; with nodejs.syscalls, a slow read is under "read"`, function () {
      this.timeout(600000);
      const { binary } = nodeBinary(v.major);
      const out = execFileSync(binary, ['-e', CHILD], { encoding: 'utf8', timeout: 60000 });
      const r = JSON.parse(out.trim().split('\n').pop());
      assert.ok(2 ** (r.top - 20) >= 0.3, `largest new stretch in slot ${r.top}`);
      assert.ok(r.idle >= 490 && r.idle < 600, `idle ${r.idle} ms`);
      assert.ok(r.waits >= 1, `no epoll wait counted: ${JSON.stringify(r)}`);
      assert.ok(r.blocked > 0.2, `read returned after ${r.blocked} s`);
      assert.ok(2 ** (r.readTop - 20) >= r.blocked, `longest read in slot ${r.readTop}, the read blocked ${r.blocked} s`);
      assert.ok(!r.names.some(n => n.startsWith('epoll_wait') || n.startsWith('epoll_pwait')), r.names.join(' '));
    });
  }
});
