/**
 * Everything kernel-side of one process: the collectors, BPF run-time statistics, self-telemetry and status.
 * Shared by start() (a complete pipeline) and createMetricProducer() (for an existing pipeline).
 */
import { Capabilities, detectCapabilities, privilegeAdvice } from './capabilities';
import type { Collector, KernelMetric, KernelPoint } from './collector';
import type { ResolvedConfig } from './config';
import { warnOnce } from './diag';
import { BpfError, loadAddon } from './native';
import type { ProbeStatus } from './probes';
import { ATTRS, METRICS } from './semconv';
import { RuntimeCollector } from './runtime';
import { SocketsCollector } from './sockets';

export interface EbpfStatus {
  /** Whether any probe is attached. */
  active: boolean;
  /** Why nothing is attached (disabled, no privileges, no addon, ...). */
  reason?: string;
  kernelRelease: string;
  probes: ProbeStatus[];
  /** Kernel time per probe: 'on', or why it is not measured. */
  kernelTime: string;
}

export class KernelTelemetry {
  readonly caps: Capabilities = detectCapabilities();
  private collectors: Collector[] = [];
  private stats?: { close(): void };
  private reason?: string;
  private kernelTime = 'not started';
  private stopped = false;

  constructor(private readonly config: ResolvedConfig) {}

  /** Never throws, except in strict mode, where anything that does not attach is an error. */
  start(): void {
    try {
      this.startCollectors();
    } catch (err) {
      this.stopCollectors();
      this.reason = err instanceof Error ? err.message : String(err);
      if (this.config.strict) throw err;
      warnOnce(this.reason);
      return;
    }
    const failed = this.status().probes.filter(p => !p.attached && !p.reason?.startsWith('disabled'));
    if (failed.length === 0) return;
    const text = failed.map(p => `${p.name} (${p.reason})`).join('; ');
    if (this.config.strict) {
      this.stopCollectors();
      throw new Error(`otel-node-ebpf (strict): probes failed to attach: ${text}`);
    }
    warnOnce(`some probes are not attached: ${text}`);
  }

  private startCollectors(): void {
    if (this.caps.privileged === false) {
      // Still try: a kernel with unprivileged BPF would allow it. If the load fails, this is the message to give.
      const advice = privilegeAdvice(this.caps)!;
      const addon = loadAddon();
      if (addon instanceof BpfError) throw new Error(advice);
      try {
        this.startWith(addon);
      } catch {
        throw new Error(advice);
      }
      return;
    }
    const addon = loadAddon();
    if (addon instanceof BpfError) throw addon;
    this.startWith(addon);
  }

  /** Each collector starts on its own: one that cannot load does not stop the others (in strict mode it does). */
  private startWith(addon: Exclude<ReturnType<typeof loadAddon>, BpfError>): void {
    const failures: string[] = [];
    for (const collector of [new SocketsCollector(addon, this.config, this.caps), new RuntimeCollector(addon, this.config, this.caps)]) {
      try {
        collector.start();
        this.collectors.push(collector);
      } catch (err) {
        if (this.config.strict) throw err;
        failures.push(`${collector.name}: ${(err as Error).message}`);
      }
    }
    if (this.collectors.length === 0) throw new Error(failures.join('; '));
    for (const f of failures) warnOnce(`collector ${f}`);
    try {
      this.stats = addon.enableStats();
      this.kernelTime = 'on (BPF_ENABLE_STATS)';
    } catch (err) {
      this.kernelTime = this.caps.bpfStatsEnabled
        ? 'on (kernel.bpf_stats_enabled=1)'
        : `off: BPF run-time statistics need CAP_SYS_ADMIN or sysctl kernel.bpf_stats_enabled=1 (${(err as Error).message})`;
    }
  }

  collectorsByName(): Map<string, Collector> {
    return new Map(this.collectors.map(c => [c.name, c]));
  }

  status(): EbpfStatus {
    const probes = this.collectors.flatMap(c => c.status());
    const active = probes.some(p => p.attached);
    return {
      active,
      reason: active ? undefined : (this.reason ?? (this.config.disabled ? 'disabled (OTEL_SDK_DISABLED)' : 'no probe attached')),
      kernelRelease: this.caps.kernelRelease,
      probes,
      kernelTime: this.kernelTime,
    };
  }

  /** Every collector's metrics, plus the SDK's own: which probe is attached, its kernel time, what the kernel dropped. */
  collect(): KernelMetric[] {
    if (this.stopped) return [];
    const out: KernelMetric[] = [];
    const attached: KernelPoint[] = [];
    const time: KernelPoint[] = [];
    const runs: KernelPoint[] = [];
    for (const c of this.collectors) {
      out.push(...c.collect());
      const stats = c.runStats();
      for (const p of c.status()) {
        const attrs = { [ATTRS.SELF_PROBE]: p.name, [ATTRS.SELF_HOOK]: p.hook ?? 'none' };
        attached.push({ attributes: attrs, value: p.attached ? 1 : 0 });
        const s = stats.get(p.name);
        if (s && s.runCount > 0n) {
          time.push({ attributes: attrs, value: Number(s.runTimeNs) / 1e9 });
          runs.push({ attributes: attrs, value: Number(s.runCount) });
        }
      }
    }
    const dropped: KernelPoint[] = [];
    const sockets = this.collectorsByName().get('sockets') as SocketsCollector | undefined;
    const h = sockets?.health();
    if (h) {
      for (const [reason, value] of [
        ['series_map_full', h.seriesOverflow],
        ['connection_map_full', h.connsUntracked],
        ['ring_buffer_full', h.eventsDropped],
      ] as const) {
        if (value > 0) dropped.push({ attributes: { [ATTRS.SELF_DROP_REASON]: reason }, value });
      }
    }
    out.push(
      { name: METRICS.SELF_PROBE_ATTACHED, unit: '1', description: 'Whether the probe is attached (1) or not (0), and with which hook.', kind: 'gauge', points: attached },
      { name: METRICS.SELF_PROBE_KERNEL_TIME, unit: 's', description: 'Kernel time spent in the probe\'s BPF programs.', kind: 'counter', points: time },
      { name: METRICS.SELF_PROBE_RUNS, unit: '{run}', description: 'Runs of the probe\'s BPF programs.', kind: 'counter', points: runs },
      { name: METRICS.SELF_DROPPED, unit: '{event}', description: 'Updates the kernel side could not record as such.', kind: 'counter', points: dropped },
    );
    return out;
  }

  private stopCollectors(): void {
    for (const c of this.collectors) c.stop();
    this.collectors = [];
    this.stats?.close();
    this.stats = undefined;
  }

  /** Detaches everything. Idempotent; collect() returns nothing afterwards. */
  shutdown(): void {
    this.stopped = true;
    this.stopCollectors();
  }
}
