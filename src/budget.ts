/**
 * The cost budget. A uprobe hit traps into the kernel: on the machines this project runs on it costs 1 to 15 us, far
 * more than the BPF program it runs, and BPF run-time statistics do not show it. So, for uprobe measurements:
 *
 * - at start, the cost of one uprobe hit and of one uretprobe hit is measured once on this machine (calibrate());
 * - every uprobe program counts its own hits (a counter in the program: BPF statistics need CAP_SYS_ADMIN);
 * - each measurement's estimated CPU time is hits x cost (otel_node_ebpf.probe.cpu.time);
 * - over each window, a measurement whose estimated CPU time exceeds the budget (a share of one CPU) is detached,
 *   with one warning saying which and why; status() and `doctor` show it.
 *
 * The opt-in raw-tracepoint measurements that run for every syscall of the machine (nodejs.syscalls, file.io) are held
 * to the same budget by their kernel time (BPF run-time statistics, on when the SDK has CAP_SYS_ADMIN: measured, or by
 * default estimated from sampled windows, src/kernel-stats.ts), which is what their programs cost; not counted is the
 * syscall slow path that attaching them switches on.
 */
import * as path from 'path';
import type { Capabilities } from './capabilities';
import type { Collector } from './collector';
import type { RunEstimate } from './kernel-stats';
import { ADDON_PATH, BPF_OBJECT_DIR, NativeAddon } from './native';
import { withUprobeLinks } from './probes';
import { resolveSymbols } from './symbols';
import type { ElfSymbol } from './symbols';
import { setTarget } from './target';

export const BUDGET_OBJECT = path.join(BPF_OBJECT_DIR, 'budget.bpf.o');
export const CALIBRATE_SYMBOL = 'otel_node_ebpf_calibrate';
export const CALIBRATE_STEPPED_SYMBOL = 'otel_node_ebpf_calibrate_stepped';

/**
 * Hits of one program on one kind of target. A hit's cost depends on the function's first instruction (`emulated`:
 * a push, which the kernel emulates at the breakpoint; anything else is single-stepped out of line, a second trap) and
 * on the probe: a uretprobe adds the return trap, and its entry breakpoint costs a hit of its own unless an entry
 * program on the same function shares it (`sharesEntry`).
 */
export interface UprobeHits {
  hits: number;
  emulated: boolean;
  retprobe?: boolean;
  sharesEntry?: boolean;
}

/** A collector whose measurements are uprobes: it counts their hits and can detach one. */
export interface UprobeCollector {
  /** Per measurement, the hits of its programs, counted by the programs themselves. */
  uprobeHits(): Map<string, UprobeHits[]>;
  detach(name: string, reason: string): boolean;
}

/**
 * A uprobe measurement's counts stop at its detach. The kernel tears its uprobes down in the background (see
 * ProbeSet.detach), so they may fire a few hundred milliseconds more: from the moment a measurement is reported
 * detached, its hits keep the value they had, and its collector drops the ring-buffer records that still arrive
 * (a histogram kept in the kernel may still take the few calls of the teardown).
 */
export class DetachedCounts {
  private readonly frozen = new Map<string, UprobeHits[]>();

  /** Call before detaching, with the measurement's hits then. */
  freeze(name: string, hits: UprobeHits[] | undefined): void {
    if (hits && !this.frozen.has(name)) this.frozen.set(name, hits.map(h => ({ ...h })));
  }

  has(name: string): boolean {
    return this.frozen.has(name);
  }

  /** The counted hits, with each detached measurement's at its detach. */
  apply(hits: Map<string, UprobeHits[]>): Map<string, UprobeHits[]> {
    for (const [name, h] of this.frozen) if (hits.has(name)) hits.set(name, h);
    return hits;
  }
}

export function isUprobeCollector(c: Collector): c is Collector & UprobeCollector {
  return typeof (c as Partial<UprobeCollector>).uprobeHits === 'function';
}

/** A collector with measurements held to the budget by their measured kernel time (Measurement.budgetedByKernelTime). */
export interface KernelTimedCollector {
  /** Its attached measurements that are budgeted by kernel time. */
  kernelTimed(): string[];
  detach(name: string, reason: string): boolean;
}

export function isKernelTimedCollector(c: Collector): c is Collector & KernelTimedCollector {
  return typeof (c as Partial<KernelTimedCollector>).kernelTimed === 'function';
}

/**
 * The measured cost of one uprobe hit, in nanoseconds, on this machine: on a function whose first instruction the
 * kernel emulates at the breakpoint (`push %rbp`, how most functions start) and on one whose first instruction it
 * must single-step out of line (a second trap: OpenSSL's ossl_statem_connect and SSL_free start so). A uretprobe's
 * return trap is handled like an emulated hit and counted as one.
 */
export interface UprobeCost {
  emulatedNs: number;
  steppedNs: number;
  /** Calls measured per round. */
  iterations: number;
}

/** Estimated CPU nanoseconds of these hits. */
export function costNs(hits: UprobeHits[], cost: UprobeCost): number {
  let ns = 0;
  for (const h of hits) {
    const entry = h.emulated ? cost.emulatedNs : cost.steppedNs;
    ns += h.hits * (h.retprobe ? cost.emulatedNs + (h.sharesEntry ? 0 : entry) : entry);
  }
  return ns;
}

/**
 * Measures the cost of a uprobe hit: `iterations` calls of the addon's two no-ops (one starting with push %rbp, one
 * with an instruction that is stepped), without and with a uprobe; the difference per call. The best of three rounds
 * each, so that a preempted round does not count: about 30 ms here. The uprobes are of the kind the measurements
 * use (uprobe_multi links where the kernel has them), and are detached on a thread of the addon: detaching a uprobe
 * waits for the kernel's RCU grace periods (tens of ms), which neither the application's start nor its exit should
 * wait for.
 */
export function calibrate(
  addon: NativeAddon,
  caps: Capabilities,
  iterations = 300,
  objectPath = BUDGET_OBJECT,
): UprobeCost {
  const symbols = resolveSymbols(ADDON_PATH, [CALIBRATE_SYMBOL, CALIBRATE_STEPPED_SYMBOL]);
  // the same kind of uprobe links as the measurements (src/probes.ts): what their hits cost
  return withUprobeLinks(multi => calibrateWith(addon, caps, iterations, objectPath, symbols, multi), symbols.size === 2);
}

function calibrateWith(
  addon: NativeAddon,
  caps: Capabilities,
  iterations: number,
  objectPath: string,
  symbols: Map<string, ElfSymbol>,
  multi: boolean,
): UprobeCost {
  const obj = addon.open(objectPath);
  try {
    setTarget(obj, caps);
    if (multi) obj.setUprobeMulti('calibrate_hit');
    obj.load();
    const best = (stepped: boolean) => {
      let min = Infinity;
      for (let i = 0; i < 3; i++) min = Math.min(min, addon.calibrate(iterations, stepped));
      return min;
    };
    best(false); // warm up
    const perHit = (stepped: boolean) => {
      const base = best(stepped);
      const symbol = stepped ? CALIBRATE_STEPPED_SYMBOL : CALIBRATE_SYMBOL;
      obj.attachUprobe('calibrate_hit', { binary: ADDON_PATH, symbol, pid: process.pid, offset: symbols.get(symbol)?.offset });
      return Math.max(0, (best(stepped) - base) / iterations);
    };
    const emulatedNs = perHit(false);
    const steppedNs = Math.max(emulatedNs, perHit(true));
    return { emulatedNs, steppedNs, iterations };
  } finally {
    obj.closeInBackground();
  }
}

export interface ProbeCost {
  /** Uprobe hits, or program runs of a kernel-timed measurement. */
  hits: number;
  /**
   * CPU seconds since start: for uprobes estimated, entry hits x entry cost + return hits x return cost; for
   * kernel-timed measurements their programs' run time (measured, or estimated from sampled windows).
   */
  cpuSeconds: number;
  kernelTimed?: boolean;
}

/** A measurement the budget watches, with the collector that can detach it. */
interface Watched {
  name: string;
  collector: { detach(name: string, reason: string): boolean };
}

/** Estimates and enforces. `check()` runs on an unref'd timer every window, and at collection once a window passed. */
export class Budget {
  private previous = new Map<string, { cpuSeconds: number; hits: number }>();
  private windowStart = Date.now();
  private timer?: NodeJS.Timeout;
  /** measurement -> why it was detached. */
  readonly detached = new Map<string, string>();

  constructor(
    readonly cost: UprobeCost,
    /** Share of one CPU (0.01 = 1 %); 0: not enforced. */
    readonly budget: number,
    readonly windowMillis: number,
    private readonly collectors: () => Array<Collector & UprobeCollector>,
    private readonly warn: (message: string) => void,
    /** Collectors with kernel-timed measurements, when BPF run-time statistics are on; none otherwise. */
    private readonly kernelTimed: () => Array<Collector & KernelTimedCollector> = () => [],
    /** Their kernel time and runs, as the SDK reports them (src/kernel-stats.ts). */
    private readonly runStats: (c: Collector) => Map<string, RunEstimate> = () => new Map(),
    /** The share of the time the statistics are on, when kernel time is estimated from sampled windows. */
    private readonly sampledShare?: number,
  ) {
    this.snapshot(Date.now());
  }

  start(): void {
    if (this.budget <= 0 || this.timer) return;
    this.timer = setInterval(() => this.check(), this.windowMillis);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Every watched measurement's hits (runs) and CPU time since start. */
  costs(): Map<string, ProbeCost> {
    const out = new Map<string, ProbeCost>();
    for (const c of this.collectors()) {
      for (const [name, hits] of c.uprobeHits()) {
        out.set(name, { hits: hits.reduce((a, h) => a + h.hits, 0), cpuSeconds: costNs(hits, this.cost) / 1e9 });
      }
    }
    for (const c of this.kernelTimed()) {
      const stats = this.runStats(c);
      for (const name of c.kernelTimed()) {
        const s = stats.get(name);
        if (s) out.set(name, { hits: s.runCount, cpuSeconds: s.runTimeNs / 1e9, kernelTimed: true });
      }
    }
    return out;
  }

  private watched(): Watched[] {
    return [
      ...this.collectors().flatMap(c => [...c.uprobeHits().keys()].map(name => ({ name, collector: c }))),
      ...this.kernelTimed().flatMap(c => c.kernelTimed().map(name => ({ name, collector: c }))),
    ];
  }

  private snapshot(now: number): void {
    this.windowStart = now;
    this.previous = new Map([...this.costs()].map(([name, c]) => [name, { cpuSeconds: c.cpuSeconds, hits: c.hits }]));
  }

  /** At collection: checks only once a whole window has passed since the last check. */
  maybeCheck(): void {
    if (this.budget > 0 && Date.now() - this.windowStart >= this.windowMillis) this.check();
  }

  /** Detaches every measurement whose estimated CPU time over the window since the last check exceeds the budget. */
  check(): void {
    const now = Date.now();
    const seconds = (now - this.windowStart) / 1000;
    if (this.budget <= 0 || seconds <= 0) return;
    const costs = this.costs();
    for (const { name, collector } of this.watched()) {
      const cost = costs.get(name);
      if (!cost || this.detached.has(name)) continue;
      const before = this.previous.get(name) ?? { cpuSeconds: 0, hits: 0 };
      const share = (cost.cpuSeconds - before.cpuSeconds) / seconds;
      if (share <= this.budget) continue;
      const rate = (cost.hits - before.hits) / seconds;
      const how = cost.kernelTimed
        ? `${this.sampledShare === undefined ? 'a measured' : 'an estimated'} ${pct(share)} of one CPU in its programs ` +
          `over ${seconds.toFixed(1)} s (${Math.round(rate)} runs/s, BPF run-time statistics` +
          `${this.sampledShare === undefined ? '' : ` sampled ${pct(this.sampledShare)} of the time`})`
        : `an estimated ${pct(share)} of one CPU over ${seconds.toFixed(1)} s (${Math.round(rate)} uprobe hits/s; a hit ` +
          `costs ${fmt(this.cost.emulatedNs / 1000)} to ${fmt(this.cost.steppedNs / 1000)} us here)`;
      const reason = `detached: over the overhead budget (OTEL_NODE_EBPF_OVERHEAD_BUDGET=${this.budget}): ${how}`;
      if (collector.detach(name, reason)) {
        this.detached.set(name, reason);
        this.warn(`probe ${name} ${reason}`);
      }
    }
    this.snapshot(now);
  }
}

const fmt = (n: number) => (n >= 10 ? n.toFixed(0) : n.toFixed(1));
const pct = (share: number) => `${fmt(share * 100)} %`;
