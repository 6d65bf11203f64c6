'use strict';
// bench/server.js as a child process, for the overhead benchmark (bench/run.js) and the memory breakdown
// (bench/memory.js): the same SDK settings in both, so that their figures are of the same process. Also the
// machine's CPU times, which the drivers read around their rounds.

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const REGISTER = path.join(__dirname, '..', 'dist', 'register.js');
const SERVER = path.join(__dirname, 'server.js');

/** The whole number in environment variable `name` (at least `min`), `dflt` when unset; exits with a message otherwise. */
function intEnv(name, dflt, min = 0) {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return dflt;
  const v = Number(raw);
  if (!Number.isInteger(v) || v < min) {
    console.error(`${path.basename(process.argv[1] || 'bench')}: ${name}=${raw}: expected an integer >= ${min}`);
    process.exit(1);
  }
  return v;
}

/** `cmd args` on one CPU (taskset), or as it is when `cpu` is undefined: [cmd, args]. */
function pinnedTo(cpu, cmd, args) {
  return cpu === undefined ? [cmd, args] : ['taskset', ['-c', String(cpu), cmd, ...args]];
}

/**
 * Starts bench/server.js with an IPC channel, with or without the SDK preloaded (`--require dist/register.js`).
 * With the SDK: OTLP http/protobuf to `endpoint` every `exportIntervalMs`, strict unless OTEL_NODE_EBPF_STRICT says
 * otherwise; the SDK's other variables pass through. Without: no OTEL_* variable at all. `cpu`: pin with taskset.
 * `setpriv`: run as nobody with only CAP_BPF + CAP_PERFMON (what a least-privileged deployment has). `env`: more
 * variables for the SDK (a mode's own, e.g. OTEL_NODE_EBPF_KERNEL_STATS). `nodeArgs`: node's own options (V8 flags),
 * SDK or not.
 */
function startServer({ withSdk, endpoint, exportIntervalMs, cpu, setpriv = false, env: sdkEnv = {}, nodeArgs = [] }) {
  const env = { ...process.env };
  if (!withSdk) {
    for (const k of Object.keys(env)) if (k.startsWith('OTEL_')) delete env[k];
  } else {
    Object.assign(env, {
      OTEL_SERVICE_NAME: 'bench-server',
      OTEL_EXPORTER_OTLP_ENDPOINT: endpoint,
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf',
      OTEL_METRIC_EXPORT_INTERVAL: String(exportIntervalMs),
      OTEL_NODE_EBPF_STRICT: env.OTEL_NODE_EBPF_STRICT ?? 'true',
    });
    delete env.OTEL_EXPORTER_OTLP_METRICS_ENDPOINT;
    delete env.OTEL_EXPORTER_OTLP_METRICS_PROTOCOL;
    delete env.OTEL_SDK_DISABLED;
    // spans only where a mode asks for them (bench/run.js tracing modes): to the same receiver, /v1/traces
    for (const k of ['OTEL_TRACES_EXPORTER', 'OTEL_NODE_EBPF_SPANS', 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT', 'OTEL_EXPORTER_OTLP_TRACES_PROTOCOL']) delete env[k];
    Object.assign(env, sdkEnv);
  }
  let cmd = process.execPath;
  let args = [...nodeArgs, ...(withSdk ? ['--require', REGISTER, SERVER] : [SERVER])];
  if (withSdk && setpriv) {
    // The SDK cannot turn BPF run-time statistics on, and the uprobe measurements (DNS, TLS: they never run in the
    // benchmark) need CAP_SYS_ADMIN here, which strict mode would not forgive.
    env.OTEL_NODE_EBPF_STRICT = 'false';
    args = ['--reuid=nobody', '--regid=nogroup', '--clear-groups', '--inh-caps', '+bpf,+perfmon', '--ambient-caps', '+bpf,+perfmon', cmd, ...args];
    cmd = 'setpriv';
  }
  [cmd, args] = pinnedTo(cpu, cmd, args);
  const child = spawn(cmd, args, { env, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  child.exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  return child;
}

/** The server's next message of this type; rejects on an error message, an exit, or after timeoutMs. */
function nextMessage(child, type, timeoutMs) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => finish(new Error(`server sent no "${type}" within ${timeoutMs} ms`)), timeoutMs);
    const onMessage = (msg) => {
      if (msg && msg.type === 'error') finish(new Error(`server: ${msg.message}`));
      else if (msg && msg.type === type) finish(null, msg);
    };
    const onExit = (code, signal) => finish(new Error(`server exited (${signal || `code ${code}`})`));
    function finish(err, msg) {
      clearTimeout(timer);
      child.off('message', onMessage);
      child.off('exit', onExit);
      if (err) reject(err);
      else resolve(msg);
    }
    child.on('message', onMessage);
    child.on('exit', onExit);
  });
}

/** SIGTERM (the SDK exports a last time), SIGKILL after 10 s; resolves to { code, signal }. */
async function stopServer(child) {
  if (child.exitCode !== null || child.signalCode !== null) return child.exited;
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  const result = await child.exited;
  clearTimeout(timer);
  return result;
}

/** Per-CPU jiffies from /proc/stat: busy (all but idle, iowait and steal) and steal. */
function cpuTimes() {
  const out = {};
  for (const line of fs.readFileSync('/proc/stat', 'utf8').split('\n')) {
    const m = line.match(/^cpu(\d+)\s+(.*)$/);
    if (!m) continue;
    const [user, nice, system, idle, iowait, irq, softirq, steal] = m[2].split(/\s+/).map(Number);
    out[m[1]] = { busy: user + nice + system + irq + softirq, total: user + nice + system + idle + iowait + irq + softirq + steal, steal };
  }
  return out;
}

module.exports = { REGISTER, intEnv, pinnedTo, startServer, nextMessage, stopServer, cpuTimes };
