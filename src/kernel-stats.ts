/**
 * BPF run-time statistics (BPF_ENABLE_STATS(BPF_STATS_RUN_TIME)) and the kernel time and runs the SDK reports from
 * them: otel_node_ebpf.probe.kernel.time and .runs, the budget of the kernel-timed measurements, status().
 *
 * The statistics are machine-wide: while they are on, every BPF program on the machine (the SDK's and anybody
 * else's) reads the clock twice per run. In the benchmark that cost the server about 9 % of its throughput
 * (docs/benchmark.md). So by default (`sampled`) they are on only in short windows, W ms at a random offset in every
 * period of P ms, and the kernel time and runs are estimates: what was measured in each window, scaled by how long
 * the period was against how long the window was. `always` keeps them on (exact figures); `off` never turns them on.
 *
 * The estimate of one measurement, at any moment t in period k (its window opened at o_k, closed at c_k):
 *   finalized (the sum over earlier periods) + measured since o_k            while the window is open
 *   finalized + measured in the window x (t - o_k) / (c_k - o_k)             after it closed
 * and the next window's opening finalizes period k at exactly that value. It is continuous and never decreases, so a
 * cumulative counter can carry it; between windows it extrapolates at the last window's rate.
 *
 * Another holder (kernel.bpf_stats_enabled=1 set by hand, or another process's BPF_ENABLE_STATS) keeps the counters
 * running between our windows. If the sysctl still reads 1 just after a window closes, that gap is counted as measured,
 * not extrapolated. (Should that other holder stop during the gap, the rest of the gap is missed: a low estimate.)
 */
import * as fs from 'fs';
import { performance } from 'perf_hooks';
import type { Capabilities } from './capabilities';
import type { Collector } from './collector';
import type { ResolvedConfig } from './config';
import type { NativeAddon } from './native';
import { ownIo } from './own-io';

export const BPF_STATS_SYSCTL = '/proc/sys/kernel/bpf_stats_enabled';

/** Kernel time and runs of one measurement's programs: measured, or estimated from windows (`sampled`). */
export interface RunEstimate {
  runTimeNs: number;
  runCount: number;
}

/** What the SDK's figures of kernel time are. */
export type KernelTimeSource =
  /** measured all the time (our fd, or somebody else's: the sysctl read 1 at start) */
  | 'measured'
  /** estimated from windows */
  | 'sampled'
  /** not measured: statistics off */
  | 'off';

interface Totals {
  t: number;
  n: number;
}

const ZERO: Totals = { t: 0, n: 0 };

function readSysctl(): boolean | undefined {
  try {
    return fs.readFileSync(BPF_STATS_SYSCTL, 'utf8').trim() === '1';
  } catch {
    return undefined;
  }
}

/**
 * Holds the statistics on (`always`), or opens and closes them in windows on an unref'd timer (`sampled`), and turns
 * the programs' cumulative counters into the figures the SDK reports. Never throws after start(): a window that
 * cannot open leaves the estimate extrapolating at the last window's rate, with one warning.
 */
export class KernelStats {
  /** Status text for status().kernelTime: starts with "on" when kernel time is measured or estimated. */
  text = 'not started';
  source: KernelTimeSource = 'off';
  private fd?: { close(): void };
  private timer?: NodeJS.Timeout;
  private stopped = false;

  // sampled: the period grid, the current period, and the per-measurement totals (see the file comment)
  private gridStart = 0;
  private openedAt = 0;
  private closedAt?: number;
  private gapMeasured = false;
  private finalized = new Map<string, Totals>();
  private atOpen = new Map<string, Totals>();
  private atClose = new Map<string, Totals>();

  constructor(
    private readonly addon: Pick<NativeAddon, 'enableStats'>,
    private readonly config: Pick<ResolvedConfig, 'kernelStats' | 'kernelStatsWindowMillis' | 'kernelStatsPeriodMillis'>,
    private readonly caps: Pick<Capabilities, 'bpfStatsEnabled'>,
    private readonly collectors: () => Collector[],
    private readonly warn: (message: string) => void,
  ) {}

  /** The share of time the statistics are on, when the figures are sampled. */
  get sampledShare(): number | undefined {
    return this.source === 'sampled' ? this.config.kernelStatsWindowMillis / this.config.kernelStatsPeriodMillis : undefined;
  }

  /** Turns the statistics on (always) or opens the first window (sampled). Never throws. */
  start(): void {
    const mode = this.config.kernelStats;
    if (mode === 'sampled' && this.caps.bpfStatsEnabled) {
      // on all the time already, set by hand: measured exactly, nothing to sample
      this.source = 'measured';
      this.text = 'on (kernel.bpf_stats_enabled=1)';
      return;
    }
    if (mode === 'off') {
      this.text = 'off (OTEL_NODE_EBPF_KERNEL_STATS=false)';
    } else {
      try {
        const before = performance.now();
        const counters = mode === 'sampled' ? this.readCounters() : undefined;
        this.fd = this.addon.enableStats();
        if (mode === 'always') {
          this.source = 'measured';
          this.text = 'on (BPF_ENABLE_STATS)';
        } else {
          this.source = 'sampled';
          const { kernelStatsWindowMillis: w, kernelStatsPeriodMillis: p } = this.config;
          this.text =
            `on (sampled ${pct(w / p)}: BPF_ENABLE_STATS ${w} ms in every ${p} ms; kernel time and runs are ` +
            'estimates, measured in the windows and scaled to the whole time)';
          this.gridStart = before;
          this.beginWindow(before, counters!);
        }
        return;
      } catch (err) {
        this.fd = undefined;
        this.text = `off: BPF run-time statistics need CAP_SYS_ADMIN or sysctl kernel.bpf_stats_enabled=1 (${(err as Error).message})`;
      }
    }
    if (this.caps.bpfStatsEnabled) {
      this.source = 'measured';
      this.text = 'on (kernel.bpf_stats_enabled=1)';
    }
  }

  /** Whether kernel time is measured or estimated: the budget can hold the kernel-timed measurements. */
  get on(): boolean {
    return this.source !== 'off';
  }

  /** The collector's run statistics as the SDK reports them: the counters, or (sampled) their estimate now. */
  runStats(c: Collector): Map<string, RunEstimate> {
    const out = new Map<string, RunEstimate>();
    const now = performance.now();
    for (const [name, s] of c.runStats()) {
      const raw = { t: Number(s.runTimeNs), n: Number(s.runCount) };
      const e = this.source === 'sampled' ? this.estimate(name, raw, now) : raw;
      out.set(name, { runTimeNs: e.t, runCount: e.n });
    }
    return out;
  }

  /** Closes the statistics fd and stops the windows. Idempotent. */
  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.fd?.close();
    this.fd = undefined;
  }

  private estimate(name: string, raw: Totals, now: number): Totals {
    const base = this.finalized.get(name) ?? ZERO;
    const o = this.atOpen.get(name) ?? ZERO;
    let live: Totals;
    if (this.closedAt === undefined || this.gapMeasured || this.closedAt <= this.openedAt) {
      live = { t: raw.t - o.t, n: raw.n - o.n };
    } else {
      const c = this.atClose.get(name) ?? o;
      const scale = (now - this.openedAt) / (this.closedAt - this.openedAt);
      live = { t: (c.t - o.t) * scale, n: (c.n - o.n) * scale };
    }
    // a counter below its value at the window's opening: the program was replaced; count nothing for it
    return { t: base.t + Math.max(0, live.t), n: base.n + Math.max(0, live.n) };
  }

  /** Every measurement's cumulative counters now. */
  private readCounters(): Map<string, Totals> {
    const out = new Map<string, Totals>();
    for (const c of this.collectors()) {
      for (const [name, s] of c.runStats()) out.set(name, { t: Number(s.runTimeNs), n: Number(s.runCount) });
    }
    return out;
  }

  private schedule(fn: () => void, delayMs: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      try {
        ownIo(fn);
      } catch (err) {
        this.warn(`BPF run-time statistics: ${(err as Error).message}`);
      }
    }, Math.max(0, delayMs));
    // the windows must never keep the application alive
    this.timer.unref();
  }

  /** Ends the window: statistics off, and the counters as the window left them. */
  private close(): void {
    const before = performance.now();
    this.fd?.close();
    this.fd = undefined;
    const now = performance.now();
    this.closedAt = (before + now) / 2;
    // still on without us: somebody else holds them; the gap is measured, not extrapolated
    this.gapMeasured = readSysctl() === true;
    this.atClose = this.readCounters();
    // the next window, at a random offset in the next period: a window at a fixed phase would always see the same
    // part of anything periodic in the application (an export every 10 s, a timer)
    const { kernelStatsWindowMillis: w, kernelStatsPeriodMillis: p } = this.config;
    const next = this.gridStart + (Math.floor((now - this.gridStart) / p) + 1) * p + Math.random() * (p - w);
    this.schedule(() => this.open(), next - now);
  }

  /** Finalizes the period that ends now and opens the next window. */
  private open(): void {
    const before = performance.now();
    const counters = this.readCounters();
    try {
      this.fd = this.addon.enableStats();
    } catch (err) {
      // no window this period: the estimate goes on extrapolating from the last one
      this.warn(`BPF run-time statistics: a window could not open (${(err as Error).message}); kernel time keeps the last window's rate`);
      this.schedule(() => this.open(), this.config.kernelStatsPeriodMillis);
      return;
    }
    for (const [name, raw] of counters) this.finalized.set(name, this.estimate(name, raw, before));
    this.beginWindow(before, counters);
  }

  /** The statistics were turned on during [before, now]: call it the middle. */
  private beginWindow(before: number, counters: Map<string, Totals>): void {
    this.openedAt = (before + performance.now()) / 2;
    this.closedAt = undefined;
    this.gapMeasured = false;
    this.atOpen = counters;
    this.schedule(() => this.close(), this.config.kernelStatsWindowMillis);
  }
}

const pct = (share: number) => `${+(share * 100).toFixed(1)} %`;
