'use strict';
// What a user installs: the package as `npm pack` makes it, installed with npm into an empty project, then used
// the ways README.md shows. It fails when the tarball misses a file the SDK reads at run time (a BPF object, the
// addon, a module of dist/), or when a module the SDK loads is only a devDependency.
const assert = require('assert');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { execFileSync, spawn, spawnSync } = require('child_process');
const { ROOT, startReceiver, startPeer, total } = require('./support/harness');
const { NODE_VERSIONS, nodeBinary } = require('./support/uprobes');

const npm = (args, cwd) => execFileSync('npm', [...args, '--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error'], { cwd, encoding: 'utf8' });

// One connection the application opens: it sends SENT bytes, the peer (this test process, no SDK) answers RECEIVED.
const SENT = 3210;
const RECEIVED = 1234;
const APP = `
const net = require('net');
const [host, port] = process.argv.slice(2);
const s = net.connect(Number(port), host, () => s.end(Buffer.alloc(${SENT}, 7)));
let n = 0;
s.on('data', (d) => (n += d.length));
s.on('close', () => { if (n !== ${RECEIVED}) { console.error('received ' + n); process.exitCode = 1; } });
`;

describe('the installed package', function () {
  this.timeout(300_000);
  let dir, app, receiver, address, peer;

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'otel-node-ebpf-package-'));
    app = path.join(dir, 'app');
    fs.mkdirSync(app);
    const tarball = npm(['pack', '--pack-destination', dir], ROOT).trim().split('\n').pop();
    fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true }));
    npm(['install', path.join(dir, tarball)], app);
    fs.writeFileSync(path.join(app, 'client.js'), APP);
    fs.writeFileSync(path.join(app, 'client.mjs'), `import './client.js';\n`);
    ({ receiver, address } = await startReceiver());
    peer = await startPeer('127.0.0.1', RECEIVED);
  });

  after(async () => {
    await receiver?.stop();
    await peer?.close();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  /**
   * Runs `node <args> 127.0.0.1 <peer port>` in the application's directory (strict), with `node` (a binary);
   * resolves with its exit code and stderr.
   */
  function runApp(args, env = {}, node = process.execPath) {
    const child = spawn(node, [...args, '127.0.0.1', String(peer.port)], {
      cwd: app,
      env: {
        ...process.env,
        OTEL_SERVICE_NAME: 'installed',
        OTEL_EXPORTER_OTLP_ENDPOINT: address.httpEndpoint,
        OTEL_METRIC_EXPORT_INTERVAL: '60000',
        OTEL_NODE_EBPF_STRICT: 'true',
        ...env,
      },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    return new Promise((resolve) => child.on('close', (code) => resolve({ code, stderr, pid: child.pid })));
  }

  /** The bytes of the application's connection to the peer, as the receiver decoded them from process `pid`. */
  function bytesOf(pid) {
    const points = receiver.points().filter((p) => p.resource['process.pid'] === pid);
    const client = { 'tcp.connection.side': 'client', 'server.address': '127.0.0.1', 'server.port': peer.port };
    const io = (direction) => total(points, 'process.network.io', { ...client, 'network.io.direction': direction });
    return { transmit: io('transmit'), receive: io('receive'), service: points[0]?.resource['service.name'] };
  }

  const REQUIRE = ['--require', 'otel-node-ebpf/register', 'client.js'];
  // one build of the addon (N-API) for every node the package claims (engines: >= 20.6)
  for (const [how, args, major] of [
    ['node --require otel-node-ebpf/register', REQUIRE, 'system'],
    ['node --import otel-node-ebpf/register (ESM)', ['--import', 'otel-node-ebpf/register', 'client.mjs'], 'system'],
    ...NODE_VERSIONS.filter((v) => v.major !== 'system').map((v) => [`${v.label}, --require`, REQUIRE, v.major]),
  ]) {
    it(`${how}: the connection's exact bytes reach the OTLP receiver`, async () => {
      const { code, stderr, pid } = await runApp(args, {}, nodeBinary(major).binary);
      assert.strictEqual(code, 0, stderr);
      assert.strictEqual(stderr, '', 'no warning');
      assert.deepStrictEqual(bytesOf(pid), { transmit: SENT, receive: RECEIVED, service: 'installed' });
    });
  }

  it("import { start } from 'otel-node-ebpf' and require('otel-node-ebpf') give a working handle", async () => {
    const check = `
      const handle = start();
      const s = handle.status();
      const attached = s.probes.filter((p) => p.attached).map((p) => p.name);
      await handle.shutdown();
      if (!s.active || !attached.includes('tcp.state')) { console.error(JSON.stringify(s)); process.exit(1); }`;
    fs.writeFileSync(path.join(app, 'start.mjs'), `import { start } from 'otel-node-ebpf';\n${check}\n`);
    fs.writeFileSync(path.join(app, 'start.cjs'), `const { start } = require('otel-node-ebpf');\n(async () => {${check}\n})();\n`);
    for (const file of ['start.mjs', 'start.cjs']) {
      const { code, stderr } = await runApp([file]);
      assert.strictEqual(code, 0, `${file}: ${stderr}`);
    }
  });

  const doctor = () => spawnSync('npx', ['--no-install', 'otel-node-ebpf', 'doctor', '--json'], { cwd: app, encoding: 'utf8' });

  it('npx otel-node-ebpf doctor runs from the installed package', () => {
    const { status, stdout, stderr } = doctor();
    assert.strictEqual(status, 0, stderr);
    const report = JSON.parse(stdout);
    assert.strictEqual(report.ok, true);
    assert.strictEqual(report.addon.ok, true);
  });

  it('without libbpf on the machine (a slim image): the application runs, one warning names the library and the package to install', async () => {
    // The installed addon, made to need a library no machine has, in place of libbpf.so.1 (the same length): the
    // dynamic loader refuses it as it refuses a missing libbpf.
    const addon = path.join(app, 'node_modules', 'otel-node-ebpf', 'native', 'build', 'Release', 'otel_node_ebpf.node');
    const original = fs.readFileSync(addon);
    const at = original.indexOf('libbpf.so.1\0');
    assert.ok(at > 0, 'the addon links libbpf.so.1');
    const patched = Buffer.from(original);
    patched.write('libbpX.so.1', at, 'latin1');
    fs.writeFileSync(addon, patched);
    try {
      const { code, stderr, pid } = await runApp(REQUIRE, { OTEL_NODE_EBPF_STRICT: 'false' });
      assert.strictEqual(code, 0, stderr);
      const lines = stderr.trim().split('\n');
      assert.strictEqual(lines.length, 1, stderr);
      assert.match(lines[0], /libbpX\.so\.1 is missing: install libbpf, libelf and zlib \(Debian, Ubuntu: apt-get install libbpf1 libelf1 zlib1g/);
      assert.deepStrictEqual(bytesOf(pid), { transmit: undefined, receive: undefined, service: undefined }, 'nothing exported without the addon');
      const { status, stdout } = doctor();
      assert.strictEqual(status, 1, 'doctor: nothing can attach');
      assert.match(JSON.parse(stdout).addon.error, /libbpX\.so\.1 is missing/);
    } finally {
      fs.writeFileSync(addon, original);
    }
  });
});
