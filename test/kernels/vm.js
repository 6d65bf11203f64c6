#!/usr/bin/env node
'use strict';
// Runs a command on a second kernel: Debian's 6.1 kernel (the `linux-image-amd64` metapackage's kernel of this
// Debian release, or OTEL_NODE_EBPF_VM_KERNEL=linux-image-6.1.0-NN-amd64) under qemu's software emulation (TCG).
//
//   runInVm('npx mocha test/doctor.test.js', { timeoutMs, env, cwd }) → { code, stdout, stderr, console, timings }
//   node test/kernels/vm.js [--timeout SECONDS] [--prepare] -- <command ...>
//
// The kernel is prepared once and cached under .cache/kernels/<release>/ (idempotent; a half-made cache is never
// used): `apt-get download` of the kernel package, `dpkg -x`, the uncompressed vmlinux extracted from the vmlinuz
// (qemu boots it through its PVH ELF note, which is much faster than the bzImage path), and the few modules the guest
// needs with their dependencies (virtio PCI, 9p, overlayfs).
//
// Each run builds a small busybox initramfs (Debian's busybox-static) whose /init loads those modules, mounts the
// host's root read-only over 9p with a tmpfs overlay on top (every write lands in the tmpfs), mounts /proc, /sys,
// /sys/fs/bpf and /dev, brings up lo and runs the command chrooted into it: the checkout (wherever it is, /tmp
// included), node and node_modules are the host's, at the same paths. The command's stdout, stderr and exit code
// come back through a second, writable 9p share of a host temp directory; the serial console is kept for
// diagnostics. The guest has no tracefs (like the host at boot): the SDK must not need it. A hard time limit kills
// qemu.
//
// /dev/kvm on the project's machines is a software nested-virtualisation module under which stock kernels crash;
// TCG (`-accel tcg,thread=multi -cpu max`) is slower but works (see /work/shared/KERNEL-FACTS.md, "another kernel").
const { spawn, spawnSync } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');
const zlib = require('zlib');

const ROOT = path.resolve(__dirname, '../..');
const CACHE = path.join(ROOT, '.cache', 'kernels');
const QEMU = 'qemu-system-x86_64';
const BUSYBOX = '/bin/busybox';
const METAPACKAGE = 'linux-image-amd64';
/** What the guest loads before it can mount the host: virtio PCI, 9p over virtio, overlayfs (dependencies follow). */
const MODULES = ['virtio_pci', '9pnet_virtio', '9p', 'overlay'];
const DEFAULT_TIMEOUT_MS = 10 * 60_000;

const log = (...a) => process.env.OTEL_NODE_EBPF_VM_QUIET !== '1' && console.error('[vm]', ...a);

function onPath(cmd) {
  return (process.env.PATH || '').split(':').some(d => {
    try {
      fs.accessSync(path.join(d, cmd), fs.constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 << 20, ...opts });
  if (r.error) throw new Error(`${cmd}: ${r.error.message}`);
  return r;
}

function installed(pkg) {
  const r = spawnSync('dpkg-query', ['-W', '-f=${Status}', pkg], { encoding: 'utf8' });
  return r.status === 0 && /install ok installed/.test(r.stdout);
}

/** Clear errors for what the VM needs from the host, before anything is downloaded. */
function checkHost() {
  const missing = [];
  if (!onPath(QEMU)) missing.push(`${QEMU} (Debian package qemu-system-x86)`);
  if (!installed('busybox-static') || !fs.existsSync(BUSYBOX)) missing.push(`a static ${BUSYBOX} (Debian package busybox-static)`);
  if (!onPath('cpio')) missing.push('cpio (Debian package cpio)');
  if (!onPath('dpkg') || !onPath('apt-get')) missing.push('dpkg and apt-get (a Debian host)');
  if (missing.length)
    throw new Error(`the kernel VM needs ${missing.join(', ')}; bash scripts/setup.sh installs them (as root)`);
}

/** The kernel package: OTEL_NODE_EBPF_VM_KERNEL, or the one Debian's linux-image-amd64 metapackage depends on. */
function kernelPackage() {
  const forced = process.env.OTEL_NODE_EBPF_VM_KERNEL;
  if (forced) return forced;
  const deps = () => run('apt-cache', ['depends', METAPACKAGE]).stdout;
  let out = deps();
  if (!/Depends: linux-image-\S+/.test(out)) {
    log(`apt-cache knows no ${METAPACKAGE}: apt-get update`);
    run('apt-get', ['update', '-qq']);
    out = deps();
  }
  const m = /Depends: (linux-image-[0-9]\S*)/.exec(out);
  if (!m)
    throw new Error(`cannot find the kernel package: apt-cache depends ${METAPACKAGE} names no linux-image-<release> package ` +
      `(is this a Debian host with deb.debian.org reachable? set OTEL_NODE_EBPF_VM_KERNEL=linux-image-6.1.0-NN-amd64)\n${out}`);
  return m[1];
}

/** The vmlinux inside a bzImage: its payload (x86 boot protocol header) decompressed; checked against its size. */
function extractVmlinux(bz) {
  if (bz.readUInt32LE(0x202) !== 0x53726448) throw new Error('not a bzImage (no HdrS boot header)');
  const setupSects = bz[0x1f1] || 4;
  const start = (setupSects + 1) * 512 + bz.readUInt32LE(0x248);
  const payload = bz.subarray(start, start + bz.readUInt32LE(0x24c));
  // the build appends the uncompressed size (32-bit little endian) to the compressed stream
  const size = payload.readUInt32LE(payload.length - 4);
  const stream = payload.subarray(0, payload.length - 4);
  const magic = payload.subarray(0, 6).toString('hex');
  let elf;
  if (magic === 'fd377a585a00') elf = run('xz', ['-dc', '--single-stream'], { input: stream, encoding: 'buffer', maxBuffer: 1 << 30 });
  else if (magic.startsWith('28b52ffd')) elf = run('zstd', ['-dcq'], { input: stream, encoding: 'buffer', maxBuffer: 1 << 30 });
  else if (magic.startsWith('1f8b')) elf = { status: 0, stdout: zlib.gunzipSync(stream) };
  else throw new Error(`unknown compression of the kernel payload (magic ${magic}); xz, zstd and gzip are handled`);
  if (elf.status !== 0) throw new Error(`decompressing the kernel failed: ${elf.stderr}`);
  const out = elf.stdout;
  if (out.readUInt32BE(0) !== 0x7f454c46) throw new Error('the decompressed kernel is not an ELF file');
  if (out.length !== size) throw new Error(`the decompressed kernel has ${out.length} bytes, its header says ${size}`);
  return out;
}

/** `depends=` of a module, from its .modinfo section (the package has no modules.dep: depmod runs at install). */
function moduleDepends(file) {
  const elf = fs.readFileSync(file);
  const shoff = Number(elf.readBigUInt64LE(0x28));
  const shentsize = elf.readUInt16LE(0x3a);
  const shnum = elf.readUInt16LE(0x3c);
  const shstr = shoff + elf.readUInt16LE(0x3e) * shentsize;
  const strtab = Number(elf.readBigUInt64LE(shstr + 0x18));
  for (let i = 0; i < shnum; i++) {
    const sh = shoff + i * shentsize;
    const nameAt = strtab + elf.readUInt32LE(sh);
    if (elf.toString('latin1', nameAt, elf.indexOf(0, nameAt)) !== '.modinfo') continue;
    const off = Number(elf.readBigUInt64LE(sh + 0x18));
    const info = elf.toString('latin1', off, off + Number(elf.readBigUInt64LE(sh + 0x20))).split('\0');
    const dep = info.find(s => s.startsWith('depends='));
    return dep ? dep.slice(8).split(',').filter(Boolean) : [];
  }
  throw new Error(`${file}: no .modinfo section`);
}

/** The modules to load, dependencies first, as [name, file]. */
function moduleLoadOrder(modulesDir) {
  const files = new Map();
  for (const rel of fs.readFileSync(path.join(modulesDir, 'modules.order'), 'utf8').split('\n').filter(Boolean)) {
    files.set(path.basename(rel).replace(/\.ko(\..*)?$/, '').replace(/-/g, '_'), path.join(modulesDir, rel));
  }
  const order = [];
  const visit = name => {
    name = name.replace(/-/g, '_');
    if (order.some(([n]) => n === name)) return;
    const file = files.get(name);
    if (!file) throw new Error(`module ${name} is not in the kernel package (is it built in? check the config)`);
    if (!file.endsWith('.ko')) throw new Error(`module ${name} is compressed (${file}): busybox insmod needs plain .ko files`);
    for (const d of moduleDepends(file)) visit(d);
    order.push([name, file]);
  };
  for (const m of MODULES) visit(m);
  return order;
}

/**
 * Prepares the kernel once: .cache/kernels/<release>/ holds vmlinux, config, modules/ (with load-order) and
 * kernel.json. Made in a temporary directory and renamed, so an interrupted preparation leaves nothing half-made.
 */
function prepareKernel() {
  checkHost();
  const pkg = kernelPackage();
  const release = pkg.replace(/^linux-image-/, '').replace(/-unsigned$/, '');
  const dir = path.join(CACHE, release);
  const stamp = path.join(dir, 'kernel.json');
  if (fs.existsSync(stamp)) return { dir, ...JSON.parse(fs.readFileSync(stamp, 'utf8')), prepareMs: 0 };

  const t0 = Date.now();
  fs.mkdirSync(CACHE, { recursive: true });
  const tmp = fs.mkdtempSync(path.join(CACHE, `.${release}.`));
  try {
    log(`preparing ${pkg} in ${path.relative(ROOT, dir)} (once)`);
    const download = () => run('apt-get', ['download', pkg], { cwd: tmp });
    let r = download();
    if (r.status !== 0) {
      log(`apt-get download ${pkg} failed; apt-get update, then once more`);
      run('apt-get', ['update', '-qq']);
      r = download();
    }
    const deb = fs.readdirSync(tmp).find(f => f.endsWith('.deb'));
    if (r.status !== 0 || !deb)
      throw new Error(`the kernel package ${pkg} cannot be downloaded (apt-get download: ${r.stderr.trim() || r.status}); ` +
        `is deb.debian.org reachable, and does this Debian release have it? (apt-cache policy ${pkg})`);
    const version = run('dpkg-deb', ['-f', path.join(tmp, deb), 'Version']).stdout.trim();
    const unpacked = path.join(tmp, 'root');
    r = run('dpkg', ['-x', path.join(tmp, deb), unpacked]);
    if (r.status !== 0) throw new Error(`dpkg -x ${deb}: ${r.stderr}`);
    const uname = fs.readdirSync(path.join(unpacked, 'lib/modules'))[0];
    fs.writeFileSync(path.join(tmp, 'vmlinux'), extractVmlinux(fs.readFileSync(path.join(unpacked, 'boot', `vmlinuz-${uname}`))));
    fs.copyFileSync(path.join(unpacked, 'boot', `config-${uname}`), path.join(tmp, 'config'));
    const modules = path.join(tmp, 'modules');
    fs.mkdirSync(modules);
    const order = moduleLoadOrder(path.join(unpacked, 'lib/modules', uname));
    for (const [name, file] of order) fs.copyFileSync(file, path.join(modules, `${name}.ko`));
    fs.writeFileSync(path.join(modules, 'load-order'), order.map(([n]) => n).join('\n') + '\n');
    fs.rmSync(unpacked, { recursive: true, force: true });
    fs.rmSync(path.join(tmp, deb));
    const info = { package: pkg, version, release: uname, modules: order.map(([n]) => n), preparedAt: new Date().toISOString() };
    fs.writeFileSync(path.join(tmp, 'kernel.json'), JSON.stringify(info, null, 2) + '\n');
    try {
      fs.renameSync(tmp, dir);
    } catch (err) {
      // another run prepared it meanwhile
      if (!fs.existsSync(stamp)) throw err;
      fs.rmSync(tmp, { recursive: true, force: true });
    }
    const prepareMs = Date.now() - t0;
    log(`prepared ${pkg} ${version} in ${(prepareMs / 1000).toFixed(1)} s`);
    return { dir, ...info, prepareMs };
  } catch (err) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw err;
  }
}

// The guest's /init (busybox sh). It reports its own failures on the console and in /out/init-error.
const INIT = String.raw`#!/bin/busybox sh
/bin/busybox mkdir -p /bin /proc /sys /dev /out /lower /rw /newroot
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
fail() { echo "vm-init: $*" > /dev/console; [ -d /out/run ] && echo "$*" > /out/init-error; sync; reboot -f; }
while read -r m; do insmod "/modules/$m.ko" || fail "insmod $m failed"; done < /modules/load-order
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 out /out || fail "cannot mount the output share"
mkdir -p /out/run
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,cache=loose,ro hostroot /lower || fail "cannot mount the host root over 9p"
mount -t tmpfs -o mode=0755 tmpfs /rw && mkdir /rw/upper /rw/work
mount -t overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work overlay /newroot || fail "cannot mount the overlay"
R=/newroot
mount -t proc proc $R/proc
mount -t sysfs sysfs $R/sys
mount -t bpf bpf $R/sys/fs/bpf
mount -t devtmpfs devtmpfs $R/dev
mkdir -p $R/dev/pts $R/dev/shm
mount -t devpts devpts $R/dev/pts
mount -t tmpfs tmpfs $R/dev/shm
# /tmp and /run stay the host's, seen through the overlay (writes go to its tmpfs): a checkout may live there
mkdir -p $R/run/vm
cp /out/env.sh /out/cmd.sh $R/run/vm/
ip link set lo up || fail "cannot bring up lo"
hostname vm
cut -d' ' -f1 /proc/uptime > /out/run/started
env -i /bin/chroot $R /bin/sh -c '. /run/vm/env.sh && cd "$VM_CWD" && exec /bin/sh /run/vm/cmd.sh' > /out/run/stdout 2> /out/run/stderr < /dev/null
echo $? > /out/run/code.tmp
cut -d' ' -f1 /proc/uptime > /out/run/ended
mv /out/run/code.tmp /out/run/code
sync
reboot -f
`;

const shellQuote = s => `'${String(s).replace(/'/g, `'\\''`)}'`;

function buildInitramfs(kernel, workDir) {
  const root = path.join(workDir, 'initramfs');
  fs.mkdirSync(path.join(root, 'bin'), { recursive: true });
  fs.copyFileSync(BUSYBOX, path.join(root, 'bin', 'busybox'));
  fs.chmodSync(path.join(root, 'bin', 'busybox'), 0o755);
  fs.cpSync(path.join(kernel.dir, 'modules'), path.join(root, 'modules'), { recursive: true });
  fs.writeFileSync(path.join(root, 'init'), INIT, { mode: 0o755 });
  const image = path.join(workDir, 'initramfs.cpio');
  const r = spawnSync('sh', ['-c', `find . | cpio -o -H newc --quiet > ${shellQuote(image)}`], { cwd: root, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`cpio: ${r.stderr}`);
  fs.rmSync(root, { recursive: true, force: true });
  return image;
}

/**
 * Boots the kernel and runs `command` (a shell command line, or an argv array) as root, in `cwd` (default: this
 * process's) with PATH and HOME of this process plus `env`. Resolves with { code, stdout, stderr, console, timedOut,
 * kernel, timings }; code is null if the guest never finished the command (console says why).
 */
async function runInVm(command, { timeoutMs = DEFAULT_TIMEOUT_MS, env = {}, cwd = process.cwd(), memoryMb = 2048, cpus = 2 } = {}) {
  const t0 = Date.now();
  const kernel = prepareKernel();
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'otel-node-ebpf-vm-'));
  try {
    const out = path.join(work, 'out');
    fs.mkdirSync(out);
    const cmd = Array.isArray(command) ? command.map(shellQuote).join(' ') : command;
    fs.writeFileSync(path.join(out, 'cmd.sh'), cmd + '\n');
    const vars = { PATH: process.env.PATH, HOME: '/root', LANG: 'C.UTF-8', VM_CWD: cwd, ...env };
    fs.writeFileSync(path.join(out, 'env.sh'), Object.entries(vars).map(([k, v]) => `export ${k}=${shellQuote(v)}`).join('\n') + '\n');
    const initrd = buildInitramfs(kernel, work);
    const args = [
      '-nodefaults', '-no-user-config', '-display', 'none', '-no-reboot',
      '-accel', 'tcg,thread=multi', '-cpu', 'max', '-smp', String(cpus), '-m', String(memoryMb),
      '-kernel', path.join(kernel.dir, 'vmlinux'), '-initrd', initrd,
      '-append', 'console=ttyS0 quiet loglevel=4 panic=-1 rdinit=/init',
      '-serial', 'stdio',
      '-virtfs', 'local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap',
      '-virtfs', `local,path=${out},mount_tag=out,security_model=none,multidevs=remap`,
    ];
    const tBoot = Date.now();
    const qemu = spawn(QEMU, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let consoleText = '';
    const keep = d => (consoleText = (consoleText + d).slice(-200_000));
    qemu.stdout.on('data', keep);
    qemu.stderr.on('data', keep);
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      qemu.kill('SIGKILL');
    }, timeoutMs);
    const exit = await new Promise(resolve => {
      qemu.on('error', err => resolve({ error: err }));
      qemu.on('close', (code, signal) => resolve({ code, signal }));
    });
    clearTimeout(timer);
    if (exit.error) throw new Error(`${QEMU} did not start: ${exit.error.message}`);
    const tEnd = Date.now();
    const read = f => (fs.existsSync(path.join(out, 'run', f)) ? fs.readFileSync(path.join(out, 'run', f), 'utf8') : undefined);
    const code = read('code');
    const started = Number(read('started'));
    const ended = Number(read('ended'));
    const result = {
      code: code === undefined ? null : Number(code),
      stdout: read('stdout') ?? '',
      stderr: read('stderr') ?? '',
      console: consoleText,
      timedOut,
      error: timedOut
        ? `the VM was killed after ${timeoutMs} ms`
        : code === undefined
          ? `the guest did not finish the command (qemu exit ${exit.code ?? exit.signal}${read('init-error') ? `; init: ${read('init-error').trim()}` : ''}); console:\n${consoleText.slice(-4000)}`
          : undefined,
      kernel: { package: kernel.package, version: kernel.version, release: kernel.release },
      timings: {
        prepareMs: kernel.prepareMs,
        // guest uptime when the command started: kernel boot, modules, mounts
        bootMs: Number.isFinite(started) ? Math.round(started * 1000) : undefined,
        commandMs: Number.isFinite(ended) && Number.isFinite(started) ? Math.round((ended - started) * 1000) : undefined,
        vmMs: tEnd - tBoot,
        totalMs: tEnd - t0,
      },
    };
    return result;
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

module.exports = { runInVm, prepareKernel, extractVmlinux, moduleDepends };

if (require.main === module) {
  const argv = process.argv.slice(2);
  const sep = argv.indexOf('--');
  const opts = sep < 0 ? argv : argv.slice(0, sep);
  const command = sep < 0 ? [] : argv.slice(sep + 1);
  const usage = 'usage: node test/kernels/vm.js [--timeout SECONDS] [--prepare] -- <command ...>';
  let timeoutMs = DEFAULT_TIMEOUT_MS;
  for (let i = 0; i < opts.length; i++) {
    if (opts[i] === '--timeout') timeoutMs = Number(opts[++i]) * 1000;
    else if (opts[i] === '--prepare') {
      const k = prepareKernel();
      console.log(JSON.stringify({ dir: k.dir, package: k.package, version: k.version, release: k.release, prepareMs: k.prepareMs }));
      process.exit(0);
    } else {
      console.error(usage);
      process.exit(2);
    }
  }
  if (command.length === 0 || !(timeoutMs > 0)) {
    console.error(usage);
    process.exit(2);
  }
  runInVm(command.length === 1 ? command[0] : command, { timeoutMs }).then(
    r => {
      process.stdout.write(r.stdout);
      process.stderr.write(r.stderr);
      const t = r.timings;
      log(`${r.kernel.package} ${r.kernel.version}: boot ${t.bootMs} ms, command ${t.commandMs} ms, VM ${t.vmMs} ms, total ${t.totalMs} ms`);
      if (r.error) log(r.error);
      process.exit(r.code ?? 124);
    },
    err => {
      console.error(`[vm] ${err.message}`);
      process.exit(125);
    },
  );
}
