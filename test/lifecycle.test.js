'use strict';
// Privileges, forced attach modes, bad configuration and process exit: the host application always keeps running
// as it would without the SDK, and what was counted reaches the backend.
const assert = require('assert');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { ROOT, startReceiver, startFront, runWorkload, startPeer, total } = require('./support/harness');
const { selfSignedCert } = require('./support/uprobes');
const { OtlpReceiver } = require('../dist/otlp/receiver');
const { DEFAULTS } = require('../dist/config');

const SENT = 1_234_567;
const RECEIVED = 7_654_321;

/** The unprivileged user must reach the checkout: make every ancestor traversable (o+x), as a normal install is. */
function ensureTraversable(dir) {
  for (let d = dir; d !== path.dirname(d); d = path.dirname(d)) {
    const mode = fs.statSync(d).mode;
    if (!(mode & 0o001)) fs.chmodSync(d, mode | 0o001);
  }
}

const NOBODY = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'];
const NO_CAPS = ['setpriv', '--inh-caps=-all', '--bounding-set=-all'];
const BPF_CAPS = [...NOBODY, '--inh-caps=+bpf,+perfmon', '--ambient-caps=+bpf,+perfmon'];

/** What the SDK wrote on stderr (its warnings, through the diag console logger that register installs). */
const sdkLines = stderr =>
  stderr
    .split('\n')
    .filter(l => /^otel-node-ebpf:? /.test(l))
    .map(l => l.replace(/^otel-node-ebpf:? /, ''));

/** A collector that accepts connections and never answers: its `endpoint`, the `sockets` it accepted, `close()`. */
async function startSilentCollector() {
  const net = require('net');
  const sockets = [];
  const server = net.createServer(s => sockets.push(s));
  await new Promise(resolve => server.listen(0, '127.0.0.1', resolve));
  const close = () => {
    for (const s of sockets) s.destroy();
    server.close();
  };
  return { endpoint: `http://127.0.0.1:${server.address().port}`, sockets, close };
}

describe('privileges and failure', function () {
  let receiver, address, peer;
  before(async () => {
    ({ receiver, address } = await startReceiver());
    peer = await startPeer('127.0.0.1', RECEIVED);
    ensureTraversable(ROOT);
  });
  after(async () => {
    await peer.close();
    await receiver.stop();
  });
  const work = () => [{ connect: ['127.0.0.1', peer.port], send: SENT, recv: RECEIVED }];
  const lenient = { OTEL_NODE_EBPF_STRICT: 'false' };

  for (const [who, wrap] of [
    ['root without capabilities', NO_CAPS],
    ['nobody', NOBODY],
  ]) {
    it(`as ${who}: one warning that says what to grant, and the application runs unchanged`, async () => {
      const r = await runWorkload(work(), { address, env: lenient, wrap });
      assert.strictEqual(r.code, 0, r.stderr);
      assert.ok(r.lines.find(l => l.connected), 'the workload did its work');
      const warnings = sdkLines(r.stderr);
      assert.strictEqual(warnings.length, 1, r.stderr);
      assert.match(warnings[0], /lacks CAP_BPF and CAP_PERFMON/);
      assert.match(warnings[0], /setcap cap_bpf,cap_perfmon\+ep/);
      const status = r.lines.find(l => l.done).status;
      assert.strictEqual(status.active, false);
      assert.match(status.reason, /CAP_BPF/);
    });
  }

  it('as nobody, with exports every 300 ms and an exit: no request is sent, as there is nothing in it', async () => {
    const name = `nobody-${process.hrtime.bigint()}`;
    const env = { ...lenient, OTEL_SERVICE_NAME: name, OTEL_METRIC_EXPORT_INTERVAL: '300' };
    const r = await runWorkload([...work(), { sleep: 1200 }], { address, env, wrap: NOBODY });
    assert.strictEqual(r.code, 0, r.stderr);
    assert.strictEqual(r.lines.find(l => l.done).status.active, false);
    const json = q => JSON.stringify(q.body, (k, v) => (typeof v === 'bigint' ? String(v) : v));
    const mine = receiver.receivedRequests().filter(q => json(q).includes(name));
    assert.deepStrictEqual(mine.map(q => q.signal), []);
  });

  it('as nobody with only CAP_BPF and CAP_PERFMON (ambient): every probe attaches and counts exactly', async () => {
    // uprobes (dns, tls) need CAP_SYS_ADMIN on this kernel: test/budget.test.js says so; here everything else
    const r = await runWorkload(work(), { address, wrap: BPF_CAPS, env: { OTEL_NODE_EBPF_DISABLED_PROBES: 'dns,tls' } });
    assert.strictEqual(r.code, 0, r.stderr);
    const status = r.lines.find(l => l.done).status;
    const enabled = status.probes.filter(p => !p.reason?.startsWith('disabled'));
    assert.ok(enabled.length > 0 && enabled.every(p => p.attached), JSON.stringify(status.probes));
    // run-time statistics need CAP_SYS_ADMIN: said in status, not an error
    assert.match(status.kernelTime, /^(off|on \(kernel.bpf_stats_enabled)/);
    const points = receiver.points().filter(p => p.resource['process.pid'] === r.child.pid);
    assert.strictEqual(total(points, 'process.network.io', { 'server.port': peer.port, 'network.io.direction': 'transmit' }), SENT);
    assert.strictEqual(total(points, 'process.network.io', { 'server.port': peer.port, 'network.io.direction': 'receive' }), RECEIVED);
  });

  it('under a sampling profiler (node --cpu-prof: SIGPROF every 50 µs) every probe loads, attaches and counts exactly', async () => {
    // A pending signal makes the verifier give up (EAGAIN); the addon defers them while the kernel verifies.
    const dir = fs.mkdtempSync(path.join(require('os').tmpdir(), 'cpu-prof-'));
    try {
      const nodeArgs = ['--cpu-prof', '--cpu-prof-interval=50', `--cpu-prof-dir=${dir}`];
      const r = await runWorkload(work(), { address, nodeArgs, env: lenient });
      assert.strictEqual(r.code, 0, r.stderr);
      assert.strictEqual(fs.readdirSync(dir).filter(f => f.endsWith('.cpuprofile')).length, 1, 'the profiler ran');
      const probes = r.lines.find(l => l.done).status.probes.filter(p => !p.reason?.startsWith('disabled'));
      assert.ok(probes.length > 0, JSON.stringify(probes));
      assert.deepStrictEqual(probes.filter(p => !p.attached).map(p => `${p.name}: ${p.reason}`), []);
      assert.strictEqual(sdkLines(r.stderr).length, 0, r.stderr);
      const points = receiver.points().filter(p => p.resource['process.pid'] === r.child.pid);
      assert.strictEqual(total(points, 'process.network.io', { 'server.port': peer.port, 'network.io.direction': 'transmit' }), SENT);
      assert.strictEqual(total(points, 'process.network.io', { 'server.port': peer.port, 'network.io.direction': 'receive' }), RECEIVED);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('OTEL_NODE_EBPF_ATTACH_MODE=tracepoint attaches every measurement with tracepoints', async () => {
    const r = await runWorkload(work(), { address, env: { OTEL_NODE_EBPF_ATTACH_MODE: 'tracepoint' } });
    assert.strictEqual(r.code, 0, r.stderr);
    // uprobe measurements (dns, tls) have no tracepoint variant: they keep their own
    const probes = r.lines.find(l => l.done).status.probes.filter(p => p.hook !== 'uprobe' && !p.reason?.startsWith('disabled'));
    assert.ok(probes.length > 0 && probes.every(p => p.attached && p.hook === (p.name === 'tcp.bytes' || p.name === 'tcp.rtt' ? 'tcp_info' : 'tracepoint')), JSON.stringify(probes));
  });

  /** For tests of a kernel without kprobes (this one): skipped by name where the kernel has them. */
  function skipWhereKprobes() {
    if (fs.existsSync('/sys/bus/event_source/devices/kprobe/type')) {
      for (const t of this.test.parent.tests) t.title += ' — skipped: this kernel has kprobes';
      this.skip();
    }
  }

  describe('auto mode on a kernel without kprobes (this one: fentry refused too)', function () {
    before(skipWhereKprobes);

    it('kprobe and fentry variants are not loaded (no kprobe PMU nor tracefs; libbpf\'s trial tracing program refused): each measurement says why, and attaches with tracepoints', async () => {
      const r = await runWorkload(work(), { address });
      assert.strictEqual(r.code, 0, r.stderr);
      assert.strictEqual(sdkLines(r.stderr).length, 0, r.stderr);
      const hooked = r.lines.find(l => l.done).status.probes.filter(p => p.attempts.some(a => a.hook === 'kprobe'));
      assert.ok(hooked.length >= 3, JSON.stringify(hooked));
      for (const p of hooked) {
        assert.strictEqual(p.hook, 'tracepoint', `${p.name}: ${p.reason}`);
        // no error: nothing was loaded for them
        assert.deepStrictEqual(p.attempts.map(a => [a.hook, a.ok, a.error]), [['kprobe', false, undefined], ['fentry', false, undefined], ['tracepoint', true, undefined]]);
        assert.match(p.attempts[0].reason, /^not tried: kprobes are not built into this kernel \(no kprobe PMU, no tracefs: CONFIG_KPROBES is not set\)$/);
        assert.match(p.attempts[1].reason, /^not tried: this kernel refuses fentry\/fexit programs \(libbpf's trial load of a tracing program failed\)$/);
      }
    });
  });

  describe('a forced hook this kernel lacks', function () {
    before(skipWhereKprobes);

    it('OTEL_NODE_EBPF_ATTACH_MODE=kprobe: one warning with the reason, the application runs', async () => {
      const r = await runWorkload(work(), { address, env: { ...lenient, OTEL_NODE_EBPF_ATTACH_MODE: 'kprobe' } });
      assert.strictEqual(r.code, 0, r.stderr);
      assert.ok(r.lines.find(l => l.connected));
      const warnings = sdkLines(r.stderr);
      assert.strictEqual(warnings.length, 1, r.stderr);
      assert.match(warnings[0], /CONFIG_KPROBES/);
      const { probes } = r.lines.find(l => l.done).status;
      for (const p of probes.filter(p => p.name.startsWith('tcp.'))) {
        assert.strictEqual(p.attached, false);
        if (p.name === 'tcp.bytes' || p.name === 'tcp.rtt') assert.match(p.reason, /^needs tcp\.state/);
        else assert.deepStrictEqual(p.attempts.map(a => [a.hook, a.error.step]), [['kprobe', 'attach']]);
      }
    });

    it('with OTEL_NODE_EBPF_STRICT=true the same start fails loudly', async () => {
      const r = await runWorkload(work(), { address, env: { OTEL_NODE_EBPF_ATTACH_MODE: 'kprobe', OTEL_NODE_EBPF_STRICT: 'true' } });
      assert.notStrictEqual(r.code, 0);
      assert.match(r.stderr, /strict.*CONFIG_KPROBES/s);
      assert.ok(!r.lines.find(l => l.connected), 'the application must not have started');
    });
  });

  it('a bad environment value: one warning naming the variable and the value used instead', async () => {
    const r = await runWorkload(work(), {
      address,
      env: { OTEL_NODE_EBPF_MAX_SERIES: 'lots', OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE: 'sometimes', OTEL_NODE_EBPF_KERNEL_STATS: 'mostly', OTEL_NODE_EBPF_SPANS_TCP_INFO: 'kernel' },
    });
    assert.strictEqual(r.code, 0, r.stderr);
    const warnings = sdkLines(r.stderr);
    assert.deepStrictEqual(warnings.sort(), [
      'OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE="sometimes" is not one of cumulative, delta, lowmemory; using cumulative',
      'OTEL_NODE_EBPF_KERNEL_STATS="mostly" is not one of sampled, always, false, true; using sampled',
      'OTEL_NODE_EBPF_MAX_SERIES="lots" is not an integer in [1, 1048576]; using 1024',
      'OTEL_NODE_EBPF_SPANS_TCP_INFO="kernel" is not one of bpf, getsockopt; using bpf',
    ]);
    const { kernelStatsWindowMillis: w, kernelStatsPeriodMillis: p } = DEFAULTS;
    const { kernelTime } = r.lines.find(l => l.done).status;
    assert.ok(kernelTime.startsWith(`on (sampled 10 %: BPF_ENABLE_STATS ${w} ms in every ${p} ms;`), kernelTime);
  });

  it("the resource: unknown_service:<argv0> without OTEL_SERVICE_NAME, OpenTelemetry's telemetry.sdk.*, this SDK as telemetry.distro.*, OTEL_RESOURCE_ATTRIBUTES", async () => {
    const env = { OTEL_SERVICE_NAME: undefined, OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment.name=ci,team=a%2Cb', OTEL_LOG_LEVEL: ' info ' };
    const r = await runWorkload(work(), { address, env });
    assert.strictEqual(r.code, 0, r.stderr);
    assert.strictEqual(r.lines.find(l => l.done).diagLogger, true);
    const [point] = receiver.points().filter(p => p.resource['process.pid'] === r.child.pid);
    const { SDK_INFO } = require('@opentelemetry/core');
    const { version } = require('../package.json');
    const want = {
      'service.name': `unknown_service:${process.execPath}`, // the child's argv0
      'telemetry.sdk.language': 'nodejs',
      'telemetry.sdk.name': 'opentelemetry',
      'telemetry.sdk.version': SDK_INFO['telemetry.sdk.version'],
      'telemetry.distro.name': 'otel-node-ebpf',
      'telemetry.distro.version': version,
      'deployment.environment.name': 'ci',
      team: 'a,b',
      // what OpenTelemetry's host detector gives, its machine id read at start (src/sdk.ts hostDetector)
      'host.name': os.hostname(),
      'host.arch': { arm: 'arm32', ppc: 'ppc32', x64: 'amd64' }[os.arch()] ?? os.arch(),
      'host.id': fs.readFileSync('/etc/machine-id', 'utf8').trim(),
    };
    assert.deepStrictEqual(Object.fromEntries(Object.keys(want).map(k => [k, point.resource[k]])), want);
  });

  it('a malformed OTEL_RESOURCE_ATTRIBUTES and an unknown OTEL_LOG_LEVEL: one warning each; OTEL_SERVICE_NAME still names the service', async () => {
    const r = await runWorkload(work(), { address, env: { OTEL_RESOURCE_ATTRIBUTES: 'team=a,b', OTEL_LOG_LEVEL: 'chatty' } });
    assert.strictEqual(r.code, 0, r.stderr);
    assert.deepStrictEqual(sdkLines(r.stderr).sort(), [
      'OTEL_LOG_LEVEL="chatty" is not one of NONE, ERROR, WARN, INFO, DEBUG, VERBOSE, ALL; using WARN',
      'OTEL_RESOURCE_ATTRIBUTES="team=a,b" has "b", not key=value (a comma or "=" in a value is written %2C or %3D); none of its attributes are used',
    ]);
    const [point] = receiver.points().filter(p => p.resource['process.pid'] === r.child.pid);
    assert.strictEqual(point.resource['service.name'], 'workload');
    assert.strictEqual(point.resource.team, undefined);
  });

  it('start(), createMetricProducer() and a KernelSpanProcessor in a worker thread: one warning each, nothing started, and the process outlives the worker', async () => {
    // Node unloads an addon with the worker that loaded it: the addon's thread of an export still in flight then ran
    // code that was gone (SIGSEGV after the worker ended)
    const r = await runWorkload([], { address, script: path.join(__dirname, 'support', 'worker-start.js'), preload: false });
    assert.strictEqual(r.signal, null, r.stderr);
    assert.strictEqual(r.code, 0, r.stderr);
    const { worker } = r.lines.find(l => l.worker);
    assert.strictEqual(worker.start.active, false);
    assert.strictEqual(worker.producer.active, false);
    assert.match(worker.start.reason, /^in a worker thread/);
    assert.match(worker.spans.reason, /^in a worker thread/);
    assert.ok(r.lines.find(l => l.alive));
    assert.deepStrictEqual(sdkLines(r.stderr), [
      ...['start()', 'createMetricProducer()'].map(api =>
        `${api} was called in a worker thread: kernel telemetry watches the whole process from its main thread; nothing is started: call it in the main thread, or preload otel-node-ebpf/register`,
      ),
      'kernel-enriched spans are off in a worker thread: kernel telemetry watches the whole process from its main thread; the spans are exported unchanged',
    ]);
  });

  it('OTEL_NODE_EBPF_KERNEL_STATS=false: BPF run-time statistics stay off, everything else runs', async () => {
    const r = await runWorkload(work(), { address, env: { OTEL_NODE_EBPF_KERNEL_STATS: 'false' } });
    assert.strictEqual(r.code, 0, r.stderr);
    const { status } = r.lines.find(l => l.done);
    assert.ok(status.probes.filter(p => p.name.startsWith('tcp.')).every(p => p.attached), JSON.stringify(status.probes));
    // the SDK did not turn them on (another process may have, machine-wide: then the sysctl shows it)
    assert.match(status.kernelTime, /^off \(OTEL_NODE_EBPF_KERNEL_STATS=false\)$|^on \(kernel\.bpf_stats_enabled=1\)$/);
    const points = receiver.points().filter(p => p.resource['process.pid'] === r.child.pid);
    assert.strictEqual(total(points, 'process.network.io', { 'network.io.direction': 'transmit', 'tcp.connection.side': 'client', 'server.port': peer.port }), SENT);
  });

  for (const thread of ['native', 'main']) {
    it(`an endpoint that refuses exports (${thread} thread): one warning that names it and what to check, one when it works again, exact values after`, async () => {
      // the first two exports get 400 (not retried), the others pass
      const front = await startFront(address, n => (n <= 2 ? { status: 400 } : undefined));
      try {
        const env = { OTEL_EXPORTER_OTLP_ENDPOINT: front.endpoint, OTEL_METRIC_EXPORT_INTERVAL: '300', OTEL_NODE_EBPF_EXPORT_THREAD: thread };
        const r = await runWorkload([...work(), { sleep: 1500 }], { address, env });
        assert.strictEqual(r.code, 0, r.stderr);
        assert.ok(front.bodies.length >= 4, `${front.bodies.length} exports`);
        const lines = sdkLines(r.stderr);
        assert.strictEqual(lines.length, 2, r.stderr);
        assert.match(lines[0], new RegExp(`^metrics export to ${front.endpoint}/v1/metrics failed: .*400.*Check that the collector runs there`));
        assert.strictEqual(lines[1], `metrics export to ${front.endpoint}/v1/metrics works again (2 exports failed)`);
        assert.ok(!/"stack"/.test(r.stderr), r.stderr);
        const points = receiver.points().filter(p => p.resource['process.pid'] === r.child.pid);
        assert.strictEqual(total(points, 'process.network.io', { 'server.port': peer.port, 'network.io.direction': 'transmit' }), SENT);
      } finally {
        front.close();
      }
    });
  }

  it('OTEL_METRICS_EXPORTER=none: the probes run, no metric is exported', async () => {
    const r = await runWorkload(work(), { address, env: { OTEL_METRICS_EXPORTER: 'none' } });
    assert.strictEqual(r.code, 0, r.stderr);
    const { status } = r.lines.find(l => l.done);
    assert.strictEqual(status.active, true);
    assert.deepStrictEqual(status.exporter, { protocol: 'none' });
    assert.strictEqual(receiver.points().filter(p => p.resource['process.pid'] === r.child.pid).length, 0);
    assert.strictEqual(sdkLines(r.stderr).length, 0, r.stderr);
    // no exporter, and no tracing: neither their packages nor the span processor's instrumentation are loaded
    const { packages } = r.lines.find(l => l.done);
    assert.ok(packages.includes('@opentelemetry/sdk-metrics'), packages.join(' '));
    assert.deepStrictEqual(packages.filter(p => /exporter|transformer|instrumentation|sdk-trace/.test(p)), []);
  });

  it('OTEL_SDK_DISABLED=true: nothing is loaded and nothing exported', async () => {
    const r = await runWorkload(work(), { address, env: { OTEL_SDK_DISABLED: 'true' } });
    assert.strictEqual(r.code, 0, r.stderr);
    const { status, packages } = r.lines.find(l => l.done);
    assert.strictEqual(status.active, false);
    assert.strictEqual(receiver.points().filter(p => p.resource['process.pid'] === r.child.pid).length, 0);
    // only the API, for the diag logger that says what is wrong with the configuration
    assert.deepStrictEqual(packages, ['@opentelemetry/api']);
    // and no global of OpenTelemetry's taken: register installs no diag logger
    assert.strictEqual(r.lines.find(l => l.done).diagLogger, false);
  });

  it('the package\'s entry loads its classes when first used: start() with OTEL_SDK_DISABLED=true loads only the API', () => {
    const { execFileSync } = require('child_process');
    const packagesOf = `Object.keys(require.cache).map(f => f.match(/node_modules\\/((?:@[^/]+\\/)?[^/]+)\\//)?.[1]).filter(Boolean)`;
    // the directory with a slash: the package's main, even beside a file of the same name plus .js or .json
    const script = `const sdk = require(${JSON.stringify(`${ROOT}/`)}); const h = sdk.start();
      const before = [...new Set(${packagesOf})];
      const classes = [typeof sdk.KernelSpanProcessor, typeof sdk.KernelMetricProducer];
      console.log(JSON.stringify({ active: h.status().active, before, classes, after: [...new Set(${packagesOf})] }));`;
    const out = JSON.parse(execFileSync(process.execPath, ['-e', script], { env: { ...process.env, OTEL_SDK_DISABLED: 'true' }, encoding: 'utf8' }));
    assert.strictEqual(out.active, false);
    assert.deepStrictEqual(out.before, ['@opentelemetry/api']);
    assert.deepStrictEqual(out.classes, ['function', 'function']);
    assert.ok(out.after.includes('@opentelemetry/sdk-metrics') && out.after.includes('@opentelemetry/instrumentation'), out.after.join(' '));
    // ES modules see the same names (Node reads a CommonJS module's named exports from its source)
    const esm = `import { start, createMetricProducer, KernelSpanProcessor, KernelMetricProducer, BpfError, METRICS } from ${JSON.stringify(path.join(ROOT, 'dist', 'index.js'))};
      console.log([start, createMetricProducer, KernelSpanProcessor, KernelMetricProducer, BpfError].map(f => typeof f).join() + ' ' + typeof METRICS);`;
    const names = execFileSync(process.execPath, ['--input-type=module', '-e', esm], { env: { ...process.env, OTEL_SDK_DISABLED: 'true' }, encoding: 'utf8' });
    assert.strictEqual(names.trim(), 'function,function,function,function,function object');
  });
});

describe('exit and signals', function () {
  let receiver, address, peer;
  before(async () => {
    ({ receiver, address } = await startReceiver());
    peer = await startPeer('127.0.0.1', RECEIVED);
  });
  after(async () => {
    await peer.close();
    await receiver.stop();
  });

  const sent = pid =>
    total(
      receiver.points().filter(p => p.resource['process.pid'] === pid),
      'process.network.io',
      { 'server.port': peer.port, 'network.io.direction': 'transmit' },
    );

  for (const signal of ['SIGTERM', 'SIGINT']) {
    it(`${signal} without a handler of the application: flushes, then the process dies by ${signal} as it would`, async () => {
      const r = await runWorkload([{ connect: ['127.0.0.1', peer.port], send: SENT, recv: RECEIVED }, { wait: 'line' }], {
        address,
        onLine: (o, child) => o.waiting && child.kill(signal),
      });
      assert.strictEqual(r.signal, signal, `exit code ${r.code}, stderr ${r.stderr}`);
      assert.strictEqual(sent(r.child.pid), SENT);
    });
  }

  /** runWorkload, and the child killed with SIGKILL if it is still there after `ms` (a process that never ends). */
  const runBounded = (steps, options, ms = 15000) => {
    let child;
    const onLine = (o, c) => ((child = c), options.onLine?.(o, c));
    const timer = setTimeout(() => child?.kill('SIGKILL'), ms);
    return runWorkload(steps, { ...options, onLine }).finally(() => clearTimeout(timer));
  };

  it('SIGTERM with a library\'s passive listener (signal-exit, which ends the process only when it hears the signal alone): flushed, and the process dies by SIGTERM as it would without the SDK', async () => {
    const r = await runBounded([{ signalExit: true }, { connect: ['127.0.0.1', peer.port], send: SENT, recv: RECEIVED }, { wait: 'line' }], {
      address,
      onLine: (o, child) => o.waiting && child.kill('SIGTERM'),
    });
    assert.strictEqual(r.signal, 'SIGTERM', `exit code ${r.code}, signal ${r.signal}, stderr ${r.stderr}`);
    assert.ok(r.lines.find(l => l.onExit === 'SIGTERM'), JSON.stringify(r.lines));
    assert.strictEqual(sent(r.child.pid), SENT);
  });

  it('SIGINT twice while the shutdown waits for a collector that never answers: the second ends the process at once', async () => {
    const silent = await startSilentCollector();
    try {
      let first;
      const r = await runBounded([{ wait: 'line' }], {
        address,
        env: { OTEL_EXPORTER_OTLP_ENDPOINT: silent.endpoint },
        onLine: (o, child) => {
          if (!o.waiting) return;
          first = Date.now();
          child.kill('SIGINT');
          setTimeout(() => child.kill('SIGINT'), 300);
        },
      });
      const after = Date.now() - first;
      assert.strictEqual(r.signal, 'SIGINT', `exit code ${r.code}, signal ${r.signal}, stderr ${r.stderr}`);
      // the shutdown alone waits 5 s for the export (FINAL_EXPORT_MAX_MS)
      assert.ok(after < 3000, `ended ${after} ms after the first SIGINT`);
    } finally {
      silent.close();
    }
  });

  it('SIGINT during the shutdown for a SIGTERM, with the application\'s own SIGINT handler: the handler hears it once, and decides', async () => {
    const silent = await startSilentCollector();
    try {
      const r = await runBounded([{ trap: 'SIGINT' }, { wait: 'line' }], {
        address,
        env: { OTEL_EXPORTER_OTLP_ENDPOINT: silent.endpoint },
        onLine: (o, child) => {
          if (!o.waiting) return;
          child.kill('SIGTERM');
          setTimeout(() => child.kill('SIGINT'), 300);
        },
      });
      assert.strictEqual(r.code, 0, `exit code ${r.code}, signal ${r.signal}, stderr ${r.stderr}`);
      assert.deepStrictEqual(r.lines.filter(l => l.trapped).map(l => l.trapped), ['SIGINT']);
    } finally {
      silent.close();
    }
  });

  it("SIGTERM with the application's own handler: the handler decides (exit 0), and the values were flushed", async () => {
    const r = await runWorkload(
      [{ trap: 'SIGTERM' }, { connect: ['127.0.0.1', peer.port], send: SENT, recv: RECEIVED }, { wait: 'line' }],
      { address, onLine: (o, child) => o.waiting && child.kill('SIGTERM') },
    );
    assert.strictEqual(r.code, 0, r.stderr);
    assert.ok(r.lines.find(l => l.trapped === 'SIGTERM'));
    assert.strictEqual(sent(r.child.pid), SENT);
  });

  it('an endpoint whose name the resolver never answers: a normal exit waits for the export\'s timeout, not the resolver\'s', async () => {
    // The child's /etc/resolv.conf (a mount namespace of its own) names a UDP socket of this test that never answers,
    // with a 20 s timeout; the export's timeout is 1 s.
    const dgram = require('dgram');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'oneb-resolv-'));
    // port 53 of the first loopback address that has it free
    let hole, nameserver;
    for (let i = 2; !hole && i < 10; i++) {
      const socket = dgram.createSocket('udp4');
      const bound = await new Promise(resolve => socket.once('error', () => resolve(false)).bind(53, `127.0.0.${i}`, () => resolve(true)));
      if (bound) [hole, nameserver] = [socket, `127.0.0.${i}`];
      else socket.close();
    }
    try {
      assert.ok(hole, 'port 53 is taken on 127.0.0.2-9');
      let asked = 0;
      hole.on('message', () => asked++);
      const resolvConf = path.join(dir, 'resolv.conf');
      fs.writeFileSync(resolvConf, `nameserver ${nameserver}\noptions timeout:20 attempts:1\n`);
      let doneAt;
      const r = await runWorkload([{ sleep: 100 }], {
        address,
        env: { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://otlp.blackhole.test:4318', OTEL_EXPORTER_OTLP_TIMEOUT: '1000' },
        wrap: ['unshare', '--mount', 'sh', '-c', `mount --bind ${resolvConf} /etc/resolv.conf && exec "$0" "$@"`],
        onLine: o => o.done && (doneAt = Date.now()),
      });
      const lingered = Date.now() - doneAt;
      assert.strictEqual(r.code, 0, r.stderr);
      assert.ok(asked > 0, 'the child asked the test\'s resolver');
      assert.match(r.stderr, /http resolve otlp\.blackhole\.test:4318: .*\(ETIMEDOUT\)/);
      assert.ok(lingered < 8000, `the process lived ${lingered} ms after its work ended`);
    } finally {
      hole?.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  for (const thread of ['native', 'main']) {
    it(`process.exit() right after the work (${thread} thread): the last values leave synchronously from the exit event, the exit code kept`, async () => {
      // the harness's export interval is 60 s: no periodic export has run, this one is the only one
      const r = await runWorkload([{ connect: ['127.0.0.1', peer.port], send: SENT, recv: RECEIVED }, { exit: 3 }], {
        address,
        env: { OTEL_NODE_EBPF_EXPORT_THREAD: thread },
      });
      assert.strictEqual(r.code, 3, r.stderr);
      assert.strictEqual(sent(r.child.pid), SENT);
      assert.strictEqual(sdkLines(r.stderr).length, 0, r.stderr);
    });
  }

  describe('process.exit() where the addon cannot send (it speaks plain HTTP only): a worker thread sends the last values', function () {
    let tlsReceiver, tlsAddress, dir, certificate;
    before(async () => {
      dir = fs.mkdtempSync(path.join(require('os').tmpdir(), 'oneb-exit-tls-'));
      const { key, cert } = selfSignedCert(dir);
      certificate = cert;
      tlsReceiver = new OtlpReceiver();
      tlsAddress = await tlsReceiver.start({ tls: { key: fs.readFileSync(key), cert: fs.readFileSync(cert) } });
    });
    after(async () => {
      await tlsReceiver.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    });

    const cases = [
      { name: 'gRPC', thread: 'main', options: () => ({ address, protocol: 'grpc' }), to: () => receiver },
      { name: 'https://', thread: 'main', options: () => ({ address: tlsAddress, env: { OTEL_EXPORTER_OTLP_CERTIFICATE: certificate } }), to: () => tlsReceiver },
      { name: 'gRPC over TLS', thread: 'main', options: () => ({ address: tlsAddress, protocol: 'grpc', env: { OTEL_EXPORTER_OTLP_CERTIFICATE: certificate } }), to: () => tlsReceiver },
      { name: 'the worker export thread', thread: 'worker', options: () => ({ address, env: { OTEL_NODE_EBPF_EXPORT_THREAD: 'worker' } }), to: () => receiver },
    ];
    for (const c of cases) {
      it(`${c.name}: the values leave from the exit event, the exit code kept`, async () => {
        // the harness's export interval is 60 s: no periodic export has run, this one is the only one
        const options = c.options();
        const r = await runWorkload([{ connect: ['127.0.0.1', peer.port], send: SENT, recv: RECEIVED }, { exit: 3 }], options);
        assert.strictEqual(r.code, 3, r.stderr);
        const exporter = r.lines.find(l => l.exiting).exporter;
        assert.deepStrictEqual([exporter.thread, exporter.protocol, new URL(exporter.endpoint).protocol], [c.thread, options.protocol ?? 'http/protobuf', options.address === tlsAddress ? 'https:' : 'http:']);
        const points = c.to().points().filter(p => p.resource['process.pid'] === r.child.pid);
        assert.strictEqual(total(points, 'process.network.io', { 'server.port': peer.port, 'network.io.direction': 'transmit' }), SENT);
        assert.strictEqual(total(points, 'process.network.io', { 'server.port': peer.port, 'network.io.direction': 'receive' }), RECEIVED);
        assert.strictEqual(sdkLines(r.stderr).length, 0, r.stderr);
      });
    }

    it("gRPC with the collector down: one warning, the exit code kept, the process gone within the exit export's 2 s bound (and 1 s for the rest of its exit)", async () => {
      let exitingAt;
      const r = await runWorkload([{ exit: 4 }], {
        address,
        protocol: 'grpc',
        // without the uprobes, whose teardown at exit takes about 0.9 s here: the time is the export's
        env: { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:9', OTEL_NODE_EBPF_DISABLED_PROBES: 'dns,tls' },
        onLine: o => o.exiting !== undefined && (exitingAt = Date.now()),
      });
      const lingered = Date.now() - exitingAt;
      assert.strictEqual(r.code, 4, r.stderr);
      const lines = sdkLines(r.stderr);
      assert.strictEqual(lines.length, 1, r.stderr);
      assert.match(lines[0], /^the last metrics export to http:\/\/127\.0\.0\.1:9 failed: 14 UNAVAILABLE: .*ECONNREFUSED/);
      assert.ok(lingered < 3000, `the process lived ${lingered} ms after process.exit()`);
    });
  });

  it('a normal exit with the collector down: one warning that names the endpoint used, and no wait for retries', async () => {
    // an endpoint variable that does not parse: OpenTelemetry says so and uses its default, which status() and the
    // warning name too (nothing listens there: connection refused, which the final export does not retry; it did
    // for the shutdown's 5 s)
    let doneAt;
    const r = await runWorkload([{ connect: ['127.0.0.1', peer.port], send: SENT, recv: RECEIVED }], {
      address,
      env: { OTEL_EXPORTER_OTLP_ENDPOINT: 'not-a-url', OTEL_EXPORTER_OTLP_METRICS_ENDPOINT: '' },
      onLine: o => o.done && (doneAt = Date.now()),
    });
    const lingered = Date.now() - doneAt;
    assert.strictEqual(r.code, 0, r.stderr);
    assert.strictEqual(r.lines.find(l => l.done).status.exporter.endpoint, 'http://localhost:4318/v1/metrics');
    const lines = sdkLines(r.stderr);
    assert.strictEqual(lines.length, 1, r.stderr);
    assert.match(lines[0], /metrics export to http:\/\/localhost:4318\/v1\/metrics failed: http connect localhost:4318: .*\(ECONNREFUSED\)/);
    assert.ok(lingered < 3000, `the process lived ${lingered} ms after its work ended`);
  });

  for (const [name, env] of [
    ['native thread', {}],
    ['main thread', { OTEL_NODE_EBPF_EXPORT_THREAD: 'main' }],
    ['gRPC', { OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' }],
  ]) {
    it(`a normal exit with a collector that accepts and never answers (${name}): gone within the exit export's 2 s bound, not the exporter's 10 s timeout`, async () => {
      const silent = await startSilentCollector();
      try {
        let doneAt;
        const r = await runWorkload([{ connect: ['127.0.0.1', peer.port], send: SENT, recv: RECEIVED }], {
          address,
          // without the uprobes, whose teardown at exit takes about 0.9 s here: the time is the export's
          env: { OTEL_EXPORTER_OTLP_ENDPOINT: silent.endpoint, OTEL_NODE_EBPF_DISABLED_PROBES: 'dns,tls', ...env },
          onLine: o => o.done && (doneAt = Date.now()),
        });
        const lingered = Date.now() - doneAt;
        assert.strictEqual(r.code, 0, r.stderr);
        assert.ok(silent.sockets.length > 0, 'the export reached the silent collector');
        const lines = sdkLines(r.stderr);
        assert.strictEqual(lines.length, 1, r.stderr);
        assert.match(lines[0], /^the last metrics export to http:\/\/127\.0\.0\.1:\d+(\/v1\/metrics)? failed: /);
        assert.ok(lingered < 3000, `the process lived ${lingered} ms after its work ended`);
      } finally {
        silent.close();
      }
    });
  }

  it("the application's 'beforeExit' listener runs once when it starts nothing, as without the SDK", async () => {
    const r = await runWorkload([{ beforeExit: true }, { connect: ['127.0.0.1', peer.port], send: SENT, recv: RECEIVED }], { address });
    assert.strictEqual(r.code, 0, r.stderr);
    assert.deepStrictEqual(r.lines.filter(l => l.beforeExit).map(l => l.beforeExit), [1]);
    assert.strictEqual(sent(r.child.pid), SENT);
  });

  it("work that the application starts from 'beforeExit' (a job runner's next job) is measured and exported", async () => {
    const r = await runWorkload([{ beforeExit: { connect: ['127.0.0.1', peer.port], send: SENT, recv: RECEIVED } }], { address });
    assert.strictEqual(r.code, 0, r.stderr);
    assert.ok(r.lines.find(l => l.connected), JSON.stringify(r.lines));
    assert.strictEqual(sent(r.child.pid), SENT);
  });

  it('process.exit() with the collector down: one warning, the exit code kept', async () => {
    const r = await runWorkload([{ connect: ['127.0.0.1', peer.port], send: SENT, recv: RECEIVED }, { exit: 4 }], {
      address,
      env: { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:9' },
    });
    assert.strictEqual(r.code, 4, r.stderr);
    const lines = sdkLines(r.stderr);
    assert.strictEqual(lines.length, 1, r.stderr);
    assert.match(lines[0], /^the last metrics export to http:\/\/127\.0\.0\.1:9\/v1\/metrics failed: http connect 127\.0\.0\.1:9: .*\(ECONNREFUSED\)/);
  });

  it("SIGTERM with the application's own handler calling process.exit(0) at once: the values were flushed", async () => {
    const r = await runWorkload(
      [{ trap: 'SIGTERM', exitNow: true }, { connect: ['127.0.0.1', peer.port], send: SENT, recv: RECEIVED }, { wait: 'line' }],
      { address, onLine: (o, child) => o.waiting && child.kill('SIGTERM') },
    );
    assert.strictEqual(r.code, 0, r.stderr);
    assert.ok(r.lines.find(l => l.trapped === 'SIGTERM'));
    assert.strictEqual(sent(r.child.pid), SENT);
  });

  it('a normal exit flushes the last values', async () => {
    const r = await runWorkload([{ connect: ['127.0.0.1', peer.port], send: SENT, recv: RECEIVED }], { address });
    assert.strictEqual(r.code, 0, r.stderr);
    assert.strictEqual(sent(r.child.pid), SENT);
  });
});
