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
import { Budget, calibrate, isKernelTimedCollector, isUprobeCollector } from './budget';
import type { UprobeCost } from './budget';
import { DnsCollector } from './dns';
import { RuntimeCollector } from './runtime';
import { SocketsCollector } from './sockets';
import { TlsCollector } from './tls';
import { ThreadpoolCollector } from './threadpool';
import { FilesCollector } from './files';
import { KernelStats } from './kernel-stats';
import { runSteps, Steps } from './turns';

export interface EbpfStatus {
  /** Whether any probe is attached. */
  active: boolean;
  /** Why nothing is attached (disabled, no privileges, no addon, ...). */
  reason?: string;
  kernelRelease: string;
  probes: ProbeStatus[];
  /** Kernel time per probe: 'on (...)' with how it is measured or estimated, or 'off...' with why it is not. */
  kernelTime: string;
  /**
   * Present when kernel time and runs are estimates (OTEL_NODE_EBPF_KERNEL_STATS=sampled): BPF run-time statistics
   * are on for windowMillis of every periodMillis, and the figures are scaled from the windows.
   */
  kernelTimeSampling?: { windowMillis: number; periodMillis: number };
  /** The uprobe cost budget: the cost of one hit measured at start, the budget, what it detached. */
  overhead?: {
    /**
     * ns per uprobe hit measured on this machine, on a function whose first instruction the kernel emulates and on
     * one whose first instruction it single-steps; absent if no uprobe is attached or the measurement failed.
     */
    uprobeHitNs?: { emulated: number; stepped: number };
    /** Share of one CPU each uprobe measurement may cost over a window; 0: not enforced. */
    budget: number;
    windowMillis: number;
    /** Why the budget is not enforced, if it is not. */
    reason?: string;
    /** Measurement -> why it was detached. */
    detached: Record<string, string>;
  };
}

export class KernelTelemetry {
  readonly caps: Capabilities = detectCapabilities();
  private collectors: Collector[] = [];
  private stats?: KernelStats;
  private reason?: string;
  private budget?: Budget;
  private budgetReason?: string = 'no uprobe measurement attached';
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
    for (const collector of [
      new SocketsCollector(addon, this.config, this.caps),
      new RuntimeCollector(addon, this.config, this.caps),
      new DnsCollector(addon, this.config, this.caps),
      new TlsCollector(addon, this.config, this.caps),
      new ThreadpoolCollector(addon, this.config, this.caps),
      new FilesCollector(addon, this.config, this.caps),
    ]) {
      try {
        collector.start();
        this.collectors.push(collector);
      } catch (err) {
        if (this.config.strict) throw err;
        failures.push(`${collector.name}: ${(err as Error).message}`);
      }
    }
    // opt-in collectors that are off start without loading anything: they do not make a failed start a success
    if (failures.length > 0 && this.collectors.every(c => c.status().every(p => !p.attached))) throw new Error(failures.join('; '));
    for (const f of failures) warnOnce(`collector ${f}`);
    this.stats = new KernelStats(addon, this.config, this.caps, () => this.collectors, m => warnOnce(m));
    this.stats.start();
    this.startBudget(addon, this.stats);
    // libbpf parsed the kernel's BTF for every object it loaded (calibration's included); give back what free() kept.
    addon.trimMemory();
  }

  /**
   * Starts enforcing the budget over the uprobe measurements (measuring the cost of a uprobe hit once) and over the
   * kernel-timed ones (their measured run time: only with BPF run-time statistics on).
   */
  private startBudget(addon: Exclude<ReturnType<typeof loadAddon>, BpfError>, stats: KernelStats): void {
    const statsOn = stats.on;
    const uprobes = this.collectors.filter(isUprobeCollector);
    const anyUprobe = uprobes.some(c => c.status().some(p => p.attached && p.hook === 'uprobe'));
    const timed = this.collectors.filter(isKernelTimedCollector).filter(c => c.kernelTimed().length > 0);
    if (timed.length > 0 && !statsOn) {
      const names = timed.flatMap(c => c.kernelTimed()).join(', ');
      warnOnce(`overhead budget does not hold ${names}: BPF run-time statistics are off (they need CAP_SYS_ADMIN or sysctl kernel.bpf_stats_enabled=1)`);
    }
    const kernelTimed = statsOn ? timed : [];
    if (!anyUprobe && kernelTimed.length === 0) return;
    let calibration: UprobeCost = { emulatedNs: 0, steppedNs: 0, iterations: 0 };
    if (anyUprobe) {
      try {
        calibration = calibrate(addon, this.caps);
      } catch (err) {
        this.budgetReason = `the cost of a uprobe hit could not be measured (${(err as Error).message}): not enforced`;
        warnOnce(`overhead budget ${this.budgetReason}`);
        return;
      }
    }
    this.budgetReason = this.config.overheadBudget > 0 ? undefined : 'not enforced (OTEL_NODE_EBPF_OVERHEAD_BUDGET=0)';
    this.budget = new Budget(
      calibration,
      this.config.overheadBudget,
      this.config.overheadWindowMillis,
      () => this.collectors.filter(isUprobeCollector),
      m => warnOnce(m),
      () => kernelTimed,
      c => stats.runStats(c),
      stats.sampledShare,
    );
    this.budget.start();
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
      kernelTime: this.stats?.text ?? 'not started',
      kernelTimeSampling: this.stats?.sampledShare !== undefined
        ? { windowMillis: this.config.kernelStatsWindowMillis, periodMillis: this.config.kernelStatsPeriodMillis }
        : undefined,
      overhead: {
        uprobeHitNs: this.budget?.cost.iterations
          ? { emulated: Math.round(this.budget.cost.emulatedNs), stepped: Math.round(this.budget.cost.steppedNs) }
          : undefined,
        budget: this.config.overheadBudget,
        windowMillis: this.config.overheadWindowMillis,
        reason: this.budgetReason,
        detached: Object.fromEntries(this.budget?.detached ?? []),
      },
    };
  }

  /** Every collector's metrics, plus the SDK's own: which probe is attached, its kernel time, what the kernel dropped. */
  collect(): KernelMetric[] {
    return runSteps(this.collectSteps());
  }

  /** collect() in steps (src/turns.ts): at least one per collector. */
  *collectSteps(): Steps<KernelMetric[]> {
    if (this.stopped) return [];
    this.budget?.maybeCheck();
    const out: KernelMetric[] = [];
    const attached: KernelPoint[] = [];
    const time: KernelPoint[] = [];
    const runs: KernelPoint[] = [];
    const cpu: KernelPoint[] = [];
    const costs = this.budget?.costs();
    // estimates (sampled windows) say so, with the share of the time they were measured in
    const share = this.stats?.sampledShare;
    const sampled = share === undefined ? {} : { [ATTRS.SELF_KERNEL_STATS_SAMPLED]: share };
    for (const c of this.collectors) {
      out.push(...(c.collectSteps ? yield* c.collectSteps() : c.collect()));
      const stats = this.stats?.runStats(c);
      const hits = isUprobeCollector(c) ? c.uprobeHits() : undefined;
      for (const p of c.status()) {
        const attrs = { [ATTRS.SELF_PROBE]: p.name, [ATTRS.SELF_HOOK]: p.hook ?? 'none' };
        attached.push({ attributes: attrs, value: p.attached ? 1 : 0 });
        const s = stats?.get(p.name);
        if (s && s.runCount > 0) time.push({ attributes: { ...attrs, ...sampled }, value: s.runTimeNs / 1e9 });
        // Uprobe programs count their own hits (BPF statistics need CAP_SYS_ADMIN, and stop at a detach).
        const h = hits?.get(p.name);
        const n = h ? h.reduce((a, x) => a + x.hits, 0) : Math.round(s?.runCount ?? 0);
        if (n > 0) runs.push({ attributes: h ? attrs : { ...attrs, ...sampled }, value: n });
        const cost = costs?.get(p.name);
        if (cost && n > 0) cpu.push({ attributes: attrs, value: cost.cpuSeconds });
      }
      yield;
      if (this.stopped) return []; // shutdown() stopped the collectors between two steps
    }
    const dropped: KernelPoint[] = [];
    for (const c of this.collectors) {
      for (const [reason, value] of c.dropped?.() ?? []) if (value > 0) dropped.push({ attributes: { [ATTRS.SELF_DROP_REASON]: reason }, value });
    }
    out.push(
      { name: METRICS.SELF_PROBE_ATTACHED, unit: '1', description: 'Whether the probe is attached (1) or not (0), and with which hook.', kind: 'gauge', points: attached },
      { name: METRICS.SELF_PROBE_KERNEL_TIME, unit: 's', description: 'Kernel time spent in the probe\'s BPF programs (an estimate from sampled windows when otel_node_ebpf.kernel_stats.sampled is set).', kind: 'counter', points: time },
      { name: METRICS.SELF_PROBE_RUNS, unit: '{run}', description: 'Runs of the probe\'s BPF programs (an estimate from sampled windows when otel_node_ebpf.kernel_stats.sampled is set).', kind: 'counter', points: runs },
      { name: METRICS.SELF_PROBE_CPU_TIME, unit: 's', description: 'Estimated CPU time of the probe\'s uprobe hits: hits times the cost of one hit measured at start.', kind: 'counter', points: cpu },
      { name: METRICS.SELF_DROPPED, unit: '{event}', description: 'Updates the kernel side could not record as such.', kind: 'counter', points: dropped },
    );
    return out;
  }

  private stopCollectors(): void {
    this.budget?.stop();
    for (const c of this.collectors) c.stop();
    this.collectors = [];
    this.stats?.stop();
  }

  /** Detaches everything. Idempotent; collect() returns nothing afterwards. */
  shutdown(): void {
    this.stopped = true;
    this.stopCollectors();
  }
}
