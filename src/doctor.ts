/**
 * `otel-node-ebpf doctor`: what this kernel and this process allow, and for every measurement which hook would
 * attach here and why the others would not. Every hook is tried for real (loaded, attached, released).
 */
import { Capabilities, detectCapabilities, privilegeAdvice } from './capabilities';
import { resolveConfig } from './config';
import { BpfError, loadAddon } from './native';
import { Attempt, Hook, ProbeSet } from './probes';
import { FilesCollector } from './files';
import { RuntimeCollector } from './runtime';
import { ThreadpoolCollector } from './threadpool';
import { LIVE_MEASUREMENTS, SOCKET_MEASUREMENTS, SocketsCollector, SOCKETS_OBJECT } from './sockets';
import { calibrate, UprobeCost } from './budget';
import { DnsCollector } from './dns';
import { TlsCollector } from './tls';
import { SpanSlots } from './span-slots';

export interface DoctorReport {
  kernel: string;
  node: string;
  libbpf?: string;
  capabilities: Capabilities;
  advice?: string;
  addon: { ok: boolean; error?: string };
  measurements: Array<{ name: string; description: string; chosen?: Hook; attempts: Attempt[] }>;
  /** Measurements read from the kernel's per-connection counters (TCP_INFO): no hook, working wherever tcp.state does. */
  counters: Array<{ name: string; description: string; ok: boolean; reason?: string }>;
  /** The runtime and file measurements (raw tracepoints only: sched_switch, sys_enter/sys_exit), each tried for real. */
  runtime: Array<{ name: string; description: string; chosen?: Hook; optIn: boolean; attempts: Attempt[] }>;
  /** The uprobe measurements on this node binary (DNS, TLS, thread pool), each tried for real. */
  uprobes: Array<{ name: string; description: string; chosen?: Hook; optIn: boolean; attempts: Attempt[] }>;
  /**
   * Kernel-enriched spans: whether they can read TCP_INFO from the slots of bpf/spans.bpf.c here (raw tracepoints
   * sock_send_length and sock_recv_length, Linux 6.3+), tried for real; else each reading is a getsockopt.
   */
  spans?: { slots: boolean; reason?: string };
  /** The cost of a uprobe hit measured here, or why it could not be. */
  uprobeCost?: UprobeCost | { error: string };
  /** Whether at least one measurement can attach. */
  ok: boolean;
}

export function runDoctor(): DoctorReport {
  const caps = detectCapabilities();
  const addon = loadAddon();
  const report: DoctorReport = {
    kernel: caps.kernelRelease,
    node: process.version,
    capabilities: caps,
    advice: privilegeAdvice(caps),
    addon: addon instanceof BpfError ? { ok: false, error: addon.message } : { ok: true },
    measurements: [],
    counters: [],
    runtime: [],
    uprobes: [],
    ok: false,
  };
  if (addon instanceof BpfError) return report;
  report.libbpf = addon.libbpfVersion();
  const { config } = resolveConfig({}, {});
  // The collector's own configuration, so that the doctor verifies exactly what start() would load.
  const collector = new SocketsCollector(addon, config, caps);
  let probes: ProbeSet;
  try {
    probes = collector.createProbeSet();
  } catch (err) {
    report.addon = { ok: false, error: `cannot load ${SOCKETS_OBJECT}: ${(err as Error).message}` };
    return report;
  }
  try {
    for (const m of SOCKET_MEASUREMENTS) {
      const attempts = probes.probeAll(m);
      report.measurements.push({ name: m.name, description: m.description, chosen: attempts.find(a => a.ok)?.hook, attempts });
    }
  } finally {
    probes.close();
  }
  const state = report.measurements.find(m => m.name === 'tcp.state');
  for (const m of LIVE_MEASUREMENTS) {
    report.counters.push({ ...m, ok: !!state?.chosen, reason: state?.chosen ? undefined : 'needs tcp.state, which cannot attach' });
  }
  const tried = (set: ProbeSet) =>
    set.measurements.map(m => {
      const attempts = set.probeAll(m);
      return { name: m.name, description: m.description, chosen: attempts.find(a => a.ok)?.hook, optIn: m.optIn ?? false, attempts };
    });
  for (const c of [new RuntimeCollector(addon, config, caps), new FilesCollector(addon, config, caps)]) {
    try {
      const set = c.createProbeSet();
      try {
        report.runtime.push(...tried(set));
      } finally {
        set.close();
      }
    } catch (err) {
      report.runtime.push({ name: c.name, description: `cannot load: ${(err as Error).message}`, optIn: false, attempts: [] });
    }
  }
  for (const c of [new DnsCollector(addon, config, caps), new TlsCollector(addon, config, caps), new ThreadpoolCollector(addon, config, caps)]) {
    let set: ProbeSet;
    try {
      set = c.createProbeSet();
    } catch (err) {
      report.uprobes.push({ name: c.name, description: `cannot load: ${(err as Error).message}`, optIn: false, attempts: [] });
      continue;
    }
    try {
      report.uprobes.push(...tried(set));
    } finally {
      set.close();
    }
  }
  const slots = SpanSlots.open(addon, caps);
  if (typeof slots === 'string') report.spans = { slots: false, reason: slots };
  else {
    slots.close();
    report.spans = { slots: true };
  }
  if (report.uprobes.some(m => m.chosen)) {
    try {
      report.uprobeCost = calibrate(addon, caps);
    } catch (err) {
      report.uprobeCost = { error: (err as Error).message };
    }
  }
  report.ok = report.measurements.some(m => m.chosen);
  return report;
}

export function formatDoctor(r: DoctorReport): string {
  const yes = (b: boolean | undefined) => (b ? 'yes' : 'no');
  const c = r.capabilities;
  const lines = [
    `kernel        ${r.kernel}`,
    `node          ${r.node}`,
    `libbpf        ${r.libbpf ?? '-'}`,
    `BTF           ${yes(c.btf)} (/sys/kernel/btf/vmlinux)`,
    `privileges    CAP_BPF ${yes(c.capBpf)}, CAP_PERFMON ${yes(c.capPerfmon)}, CAP_SYS_ADMIN ${yes(c.capSysAdmin)}`,
    `kprobes       ${c.kprobePmu ? 'built in (kprobe PMU present)' : 'not built into this kernel (CONFIG_KPROBES)'}`,
    `uprobes       ${c.uprobePmu ? 'yes' : 'no (uprobe PMU missing)'}`,
    `tracefs       ${c.tracefs ? 'mounted' : 'not mounted (raw tracepoints, kprobes and uprobes do not need it)'}`,
    `pid namespace ${c.pidNamespace ? `own (ino ${c.pidNamespace.ino}): filtering by the namespace's pid` : 'initial'}`,
    `BPF stats     ${c.bpfStatsEnabled === undefined ? 'unknown' : c.bpfStatsEnabled ? 'on' : 'off (the SDK turns them on in windows, or always, with CAP_SYS_ADMIN: OTEL_NODE_EBPF_KERNEL_STATS)'}`,
    `addon         ${r.addon.ok ? 'loaded' : `not loaded: ${r.addon.error}`}`,
  ];
  if (r.advice) lines.push('', r.advice);
  if (r.measurements.length) lines.push('', 'measurement       hook        result');
  for (const m of r.measurements) {
    for (const a of m.attempts) {
      const mark = a.ok ? (a.hook === m.chosen ? 'attaches (chosen)' : 'attaches') : `no: ${a.reason}`;
      lines.push(`${m.name.padEnd(17)} ${a.hook.padEnd(11)} ${mark}`);
    }
  }
  for (const m of r.counters ?? []) {
    lines.push(`${m.name.padEnd(17)} ${'tcp_info'.padEnd(11)} ${m.ok ? 'reads the kernel\'s per-connection counters (TCP_INFO), no hook' : `no: ${m.reason}`}`);
  }
  for (const m of r.runtime ?? []) {
    const a = m.attempts[0];
    const result = !a ? m.description : a.ok ? (m.optIn ? 'attaches (opt-in: OTEL_NODE_EBPF_ENABLED_PROBES)' : 'attaches') : `no: ${a.reason}`;
    lines.push(`${m.name.padEnd(17)} ${(a?.hook ?? '-').padEnd(11)} ${result}`);
  }
  if (r.spans) {
    const how = r.spans.slots
      ? "attaches: kernel-enriched spans read TCP_INFO from its slots (OTEL_NODE_EBPF_SPANS_TCP_INFO=bpf, the default)"
      : `no: ${r.spans.reason}; kernel-enriched spans read TCP_INFO by getsockopt`;
    lines.push(`${'span slots'.padEnd(17)} ${'tracepoint'.padEnd(11)} ${how}`);
  }
  if (r.uprobes.length) lines.push('', `uprobes on ${process.execPath}`);
  for (const m of r.uprobes) {
    const a = m.attempts[0];
    const links = a?.uprobeLinks === 'uprobe_multi' ? ' as uprobe_multi links' : a?.uprobeLinks === 'perf_event' ? ' as uprobe perf events' : '';
    const result = !a ? m.description : a.ok ? `attaches${links}${m.optIn ? ' (opt-in: OTEL_NODE_EBPF_ENABLED_PROBES)' : ''}` : `no: ${a.reason}`;
    lines.push(`${m.name.padEnd(17)} uprobe      ${result}`);
  }
  const cost = r.uprobeCost;
  if (cost && 'error' in cost) lines.push('', `uprobe hit    cost not measured: ${cost.error}`);
  else if (cost)
    lines.push(
      '',
      `uprobe hit    ${(cost.emulatedNs / 1000).toFixed(1)} us (first instruction emulated, e.g. push %rbp), ` +
        `${(cost.steppedNs / 1000).toFixed(1)} us (single-stepped); the overhead budget detaches a uprobe measurement ` +
        'that costs more than OTEL_NODE_EBPF_OVERHEAD_BUDGET (default 1 % of one CPU)',
    );
  lines.push('', r.ok ? 'OK: kernel telemetry works here.' : 'FAIL: no measurement can attach here.');
  return lines.join('\n');
}
