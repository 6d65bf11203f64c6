'use strict';
// BPF run-time statistics in sampled windows (src/kernel-stats.ts): the windows really open and close in the kernel,
// the estimate of runs and kernel time is close to what `always` measures for the same workload, the window timer
// never keeps a process alive, and shutdown closes the statistics fd.
const assert = require('assert');
const fs = require('fs');
const net = require('net');
const path = require('path');
const { execFileSync, spawn, spawnSync } = require('child_process');
const { performance } = require('perf_hooks');
const { ROOT, REGISTER } = require('./support/harness');
const { loadAddon } = require('../dist/native');
const { KernelTelemetry } = require('../dist/kernel');
const { resolveConfig } = require('../dist/config');

const FIXTURES = path.join(__dirname, 'fixtures');
const STATS_FD = 'anon_inode:bpf-stats'; // what /proc/<pid>/fd shows for a BPF_ENABLE_STATS fd
const SAMPLED = 'otel_node_ebpf.kernel_stats.sampled';
const sleep = ms => new Promise(r => setTimeout(r, ms));

/** Whether the process holds a BPF_ENABLE_STATS fd. */
function holdsStats(pid) {
  let fds;
  try {
    fds = fs.readdirSync(`/proc/${pid}/fd`);
  } catch {
    return false;
  }
  return fds.some(fd => {
    try {
      return fs.readlinkSync(`/proc/${pid}/fd/${fd}`) === STATS_FD;
    } catch {
      return false;
    }
  });
}

/** Other processes that hold the statistics on (the sysctl shows only its own setting, not BPF_ENABLE_STATS fds). */
function otherHolders(except) {
  const out = [];
  for (const pid of fs.readdirSync('/proc').filter(d => /^\d+$/.test(d) && Number(d) !== except)) {
    if (holdsStats(pid)) {
      let cmd = '?';
      try {
        cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ').slice(0, 120);
      } catch {}
      out.push(`${pid} ${cmd}`);
    }
  }
  if (fs.readFileSync('/proc/sys/kernel/bpf_stats_enabled', 'utf8').trim() === '1') out.push('sysctl kernel.bpf_stats_enabled=1');
  return out;
}

/** Runs a script with the SDK preloaded (no exporter), waits for it; its last JSON line, and how long it took. */
function runSdk(script, env, timeout = 60000) {
  const t0 = performance.now();
  const r = spawnSync(process.execPath, ['--require', REGISTER, '-e', script], {
    encoding: 'utf8',
    timeout,
    env: { ...process.env, OTEL_METRICS_EXPORTER: 'none', OTEL_NODE_EBPF_STRICT: 'true', ...env },
  });
  const ms = performance.now() - t0;
  assert.strictEqual(r.signal, null, `killed by ${r.signal} after ${ms.toFixed(0)} ms (did a timer keep it alive?)\n${r.stderr}`);
  assert.strictEqual(r.status, 0, r.stderr);
  const last = r.stdout.trim().split('\n').pop();
  return { ms, out: last ? JSON.parse(last) : undefined, stderr: r.stderr };
}

describe('BPF run-time statistics, sampled', function () {
  it('the windows open and close in the kernel: a program counts runs only while the SDK holds its statistics fd', async function () {
    this.timeout(120000);
    // the probe of "statistics on": a raw_tp/sys_enter program of our own, which runs for every syscall of the
    // machine; its run count moves between two reads (with syscalls in between) only while statistics are on
    execFileSync('make', ['-s', '-C', FIXTURES], { stdio: 'pipe' });
    const addon = loadAddon();
    const probe = addon.open(path.join(FIXTURES, 'build', 'native_fixture.bpf.o'));
    const W = 50;
    const P = 250;
    const child = spawn(process.execPath, ['--require', REGISTER, '-e', 'setTimeout(() => {}, 60000)'], {
      env: {
        ...process.env,
        OTEL_METRICS_EXPORTER: 'none',
        OTEL_NODE_EBPF_STRICT: 'true',
        OTEL_NODE_EBPF_KERNEL_STATS: 'sampled',
        OTEL_NODE_EBPF_KERNEL_STATS_WINDOW: String(W),
        OTEL_NODE_EBPF_KERNEL_STATS_PERIOD: String(P),
      },
      stdio: 'ignore',
    });
    try {
      probe.load();
      probe.attach('on_sys_enter');
      const runs = () => probe.programStats('on_sys_enter').runCount;
      // the child's SDK is up once it held the fd a first time (its first window opens at start)
      const up = Date.now() + 20000;
      while (!holdsStats(child.pid)) {
        assert.ok(Date.now() < up && child.exitCode === null, 'the SDK never opened a statistics window');
        await sleep(2);
      }
      const seen = { holds: 0, holdsOn: 0, gap: 0, gapOff: 0, transitions: 0 };
      let last = true;
      const t0 = Date.now();
      // 3 s of samples (12 periods); more, up to 30 s, if other processes kept statistics on meanwhile
      while (Date.now() - t0 < 3000 || (seen.gapOff < 10 && Date.now() - t0 < 30000)) {
        const before = runs();
        for (let i = 0; i < 5; i++) void process.ppid; // getppid(2)
        const on = runs() > before;
        const holds = holdsStats(child.pid);
        if (holds !== last) seen.transitions++;
        last = holds;
        if (holds) {
          seen.holds++;
          if (on) seen.holdsOn++;
        } else {
          seen.gap++;
          if (!on) seen.gapOff++;
        }
        await sleep(1);
      }
      const share = seen.holds / (seen.holds + seen.gap);
      const what = JSON.stringify({ ...seen, share });
      this.test.title += ` (${(share * 100).toFixed(0)} % of ${seen.holds + seen.gap} samples in a window, ${seen.transitions} transitions)`;
      // windows of 50 ms in every 250: the fd is held about 20 % of the time (timer delays stretch windows a little)
      assert.ok(share > 0.1 && share < 0.4, what);
      assert.ok(seen.transitions >= 2 * 8, what);
      // in a window the statistics are on (a sample that straddles an edge may disagree)
      assert.ok(seen.holdsOn >= 0.9 * seen.holds, what);
      // between windows they are off, unless another process holds them: then nothing can be seen, say who
      assert.ok(seen.gapOff >= 10, `statistics never went off between windows: ${what}; other holders: ${otherHolders(child.pid).join('; ') || 'none'}`);
    } finally {
      child.kill('SIGKILL');
      probe.close();
    }
  });

  describe('the estimate, on a workload of loopback connections in a loop', function () {
    this.timeout(120000);
    let server;
    let port;
    before(async () => {
      server = net.createServer(s => {
        s.resume();
        s.on('end', () => s.end());
      });
      await new Promise(r => server.listen(0, '127.0.0.1', r));
      port = server.address().port;
    });
    after(() => server.close());

    const connectOnce = () =>
      new Promise((resolve, reject) => {
        const c = net.connect(port, '127.0.0.1', () => c.end());
        c.resume();
        c.on('close', resolve);
        c.on('error', reject);
      });

    /** tcp.state's runs and kernel time as the SDK reports them (points with attributes), and the status. */
    function tcpState(telemetry) {
      const metrics = telemetry.collect();
      const point = name => metrics.find(m => m.name === name).points.find(p => p.attributes['otel_node_ebpf.probe'] === 'tcp.state');
      return { runs: point('otel_node_ebpf.probe.runs'), time: point('otel_node_ebpf.probe.kernel.time'), status: telemetry.status() };
    }

    function telemetry(kernelStats, extra = {}) {
      const t = new KernelTelemetry(
        resolveConfig({ strict: true, disabledProbes: ['dns', 'tls', 'nodejs'], overheadBudget: 0, kernelStats, ...extra }).config,
      );
      t.start();
      return t;
    }

    it('against `always`: runs per connection within 25 %, kernel time per run within a factor of 2; the figures say they are estimates', async function () {
      // JIT and socket paths warm, before anything is measured
      for (let i = 0; i < 300; i++) await connectOnce();

      // always: exact runs per connection (each connection's state changes, both ends), before and after the
      // sampled loop, so that the machine's drift during the test (this VM's host) moves both sides alike
      const N = 1000;
      const always = async () => {
        const exact = telemetry('always');
        try {
          for (let i = 0; i < N; i++) await connectOnce();
          return tcpState(exact);
        } finally {
          exact.shutdown();
        }
      };
      const a = await always();
      assert.strictEqual(a.status.kernelTime, 'on (BPF_ENABLE_STATS)');
      assert.strictEqual(a.status.kernelTimeSampling, undefined);
      assert.ok(!(SAMPLED in a.runs.attributes) && !(SAMPLED in a.time.attributes), JSON.stringify(a.runs.attributes));

      // sampled: 50 ms windows in every 250 ms over 5 s, so that 20 windows at random offsets average the loop's
      // jitter; the same loop, as fast as it goes
      const sampled = telemetry('sampled', { kernelStatsWindowMillis: 50, kernelStatsPeriodMillis: 250 });
      let b;
      let n = 0;
      try {
        const end = performance.now() + 5000;
        while (performance.now() < end) {
          await connectOnce();
          n++;
        }
        b = tcpState(sampled);
      } finally {
        sampled.shutdown();
      }
      assert.match(b.status.kernelTime, /^on \(sampled 20 %: BPF_ENABLE_STATS 50 ms in every 250 ms; kernel time and runs are estimates/);
      assert.deepStrictEqual(b.status.kernelTimeSampling, { windowMillis: 50, periodMillis: 250 });
      assert.strictEqual(b.runs.attributes[SAMPLED], 0.2);
      assert.strictEqual(b.time.attributes[SAMPLED], 0.2);
      const a2 = await always();
      const perConnection = (a.runs.value + a2.runs.value) / (2 * N);
      const nsPerRun = ((a.time.value + a2.time.value) * 1e9) / (a.runs.value + a2.runs.value);

      const ratio = b.runs.value / (n * perConnection);
      const nsRatio = (b.time.value * 1e9) / b.runs.value / nsPerRun;
      const nsBefore = (a.time.value * 1e9) / a.runs.value;
      const nsAfter = (a2.time.value * 1e9) / a2.runs.value;
      this.test.title += ` (runs ${(ratio * 100).toFixed(1)} % of ${n} x ${perConnection.toFixed(2)}; ns/run ${(nsRatio * 100).toFixed(0)} %, always ${nsBefore.toFixed(0)} then ${nsAfter.toFixed(0)} ns/run)`;
      // The estimate is unbiased but for one effect: the loop runs slower while statistics are on (every BPF program
      // on the machine reads the clock twice per run), so windows see fewer connections per second than the gaps (2-10 %
      // here). This test read 93-103 % of exact in 7 runs here; 10 s loops with 10 windows of 100 ms, 92-102 % in 3.
      // 25 % is more than twice that spread, and far from what a wrong scale gives (20 % unscaled, 500 % scaled twice).
      assert.ok(ratio > 0.75 && ratio < 1.25, `estimated ${b.runs.value} runs for ${n} connections of ${perConnection} runs`);
      // kernel time is scaled as runs are: per run it is what the windows measured (same programs, same work)
      assert.ok(nsRatio > 0.5 && nsRatio < 2, `${nsRatio}`);
    });

    it('as a cumulative counter: never decreases, read between every two connections across 40 windows', async function () {
      const t = telemetry('sampled', { kernelStatsWindowMillis: 20, kernelStatsPeriodMillis: 50 });
      let last = { runs: 0, time: 0 };
      let reads = 0;
      let grew = 0;
      try {
        const end = performance.now() + 2000;
        while (performance.now() < end) {
          await connectOnce();
          const { runs, time } = tcpState(t);
          const now = { runs: runs?.value ?? 0, time: time?.value ?? 0 };
          assert.ok(now.runs >= last.runs && now.time >= last.time, `after ${reads} reads: ${JSON.stringify(last)} -> ${JSON.stringify(now)}`);
          if (now.runs > last.runs) grew++;
          last = now;
          reads++;
        }
      } finally {
        t.shutdown();
      }
      this.test.title += ` (${reads} reads, ${grew} of them higher)`;
      assert.ok(reads > 200 && grew > reads / 4, `${reads} reads, ${grew} higher`);
    });
  });

  describe('the window timer never keeps the process alive', function () {
    this.timeout(60000);
    // a window 30 s long, in a period of 60 s: a timer that kept the process alive would hold it that long (a start
    // with the SDK takes about 2 s here)
    const env = { OTEL_NODE_EBPF_KERNEL_STATS: 'sampled', OTEL_NODE_EBPF_KERNEL_STATS_WINDOW: '30000', OTEL_NODE_EBPF_KERNEL_STATS_PERIOD: '60000' };

    it('exiting while a window is open', () => {
      const { ms, out } = runSdk(
        `const h = globalThis[Symbol.for('otel-node-ebpf')];
         console.log(JSON.stringify({ kernelTime: h.status().kernelTime }));`,
        env,
      );
      assert.match(out.kernelTime, /^on \(sampled 50 %/);
      assert.ok(ms < 15000, `the process took ${ms.toFixed(0)} ms to exit`);
    });

    it('exiting between two windows', () => {
      const { ms } = runSdk('setTimeout(() => {}, 300)', { ...env, OTEL_NODE_EBPF_KERNEL_STATS_WINDOW: '100' });
      assert.ok(ms < 15000, `the process took ${ms.toFixed(0)} ms to exit`);
    });
  });

  it('shutdown closes the statistics fd, and no window opens after it', function () {
    this.timeout(60000);
    const script = `
      const fs = require('fs');
      const holds = () => fs.readdirSync('/proc/self/fd').some(fd => { try { return fs.readlinkSync('/proc/self/fd/' + fd) === ${JSON.stringify(STATS_FD)}; } catch { return false; } });
      const h = globalThis[Symbol.for('otel-node-ebpf')];
      const before = holds();
      h.shutdown().then(() => {
        const after = holds();
        // windows of 20 ms in every 40 ms: within 400 ms ten would have opened
        const samples = [];
        const t = setInterval(() => samples.push(holds()), 2);
        setTimeout(() => { clearInterval(t); console.log(JSON.stringify({ before, after, reopened: samples.some(Boolean), samples: samples.length })); }, 400);
      });`;
    for (const [mode, extra] of [
      ['sampled', { OTEL_NODE_EBPF_KERNEL_STATS_WINDOW: '20', OTEL_NODE_EBPF_KERNEL_STATS_PERIOD: '40' }],
      ['always', {}],
    ]) {
      const { out } = runSdk(script, { OTEL_NODE_EBPF_KERNEL_STATS: mode, ...extra });
      // the first window opens at start and lasts 20 ms: the script's first line runs inside it
      assert.strictEqual(out.before, true, `${mode}: ${JSON.stringify(out)}`);
      assert.strictEqual(out.after, false, `${mode}: ${JSON.stringify(out)}`);
      assert.strictEqual(out.reopened, false, `${mode}: ${JSON.stringify(out)}`);
      assert.ok(out.samples > 50, JSON.stringify(out));
    }
  });
});
