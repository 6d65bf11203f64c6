/**
 * The runtime collector: bpf/runtime.bpf.c's event-loop state (from sched_switch) and, opt-in, the main thread's
 * per-syscall histograms (from sys_enter/sys_exit) as Node.js runtime metrics.
 */
import * as path from 'path';
import type { Capabilities } from './capabilities';
import type { Collector, KernelMetric, KernelPoint } from './collector';
import type { ResolvedConfig } from './config';
import { decodeHist, decodeLoopState, LoopState, RT_MAX_SYSCALLS } from './bpf-layout';
import { BPF_OBJECT_DIR, NativeAddon, NativeObject } from './native';
import { disabledReason, Measurement, ProbeRunStats, ProbeSet, ProbeStatus } from './probes';
import { ATTRS, METRICS, VALUES } from './semconv';
import { SYSCALL_NAMES } from './syscalls';
import { setTarget, u32 } from './target';

export const RUNTIME_OBJECT = path.join(BPF_OBJECT_DIR, 'runtime.bpf.o');

export const RUNTIME_MEASUREMENTS: Measurement[] = [
  {
    name: 'nodejs.eventloop',
    description: "the main thread's context switches: asleep in an epoll wait is idle, everything else active",
    variants: [{ hook: 'tracepoint', programs: ['loop_sched_switch'] }],
  },
  {
    name: 'nodejs.syscalls',
    description:
      "the main thread's time in each syscall: sys_enter/sys_exit run for every syscall on the machine " +
      '(opt-in: OTEL_NODE_EBPF_ENABLED_PROBES=nodejs.syscalls)',
    // Syscall entry and exit have no kprobe or fentry equivalent as cheap as the raw tracepoints.
    variants: [{ hook: 'tracepoint', programs: ['loop_sys_enter', 'loop_sys_exit'] }],
    optIn: true,
    budgetedByKernelTime: true,
  },
];

/** The loop's state with the stretch in progress counted up to now. */
export type LoopNow = LoopState & { activeNowNs: bigint; idleNowNs: bigint };

export class RuntimeCollector implements Collector {
  readonly name = 'runtime';
  private probes?: ProbeSet;
  private bss?: string;
  private previous?: { active: bigint; idle: bigint };

  constructor(
    private readonly addon: NativeAddon,
    private readonly config: ResolvedConfig,
    private readonly caps: Capabilities,
    private readonly objectPath: string = RUNTIME_OBJECT,
  ) {}

  private readonly configure = (obj: NativeObject): void => {
    setTarget(obj, this.caps);
    // the main loop's epoll fd: only its waits are idle (bpf/runtime.bpf.c); start() runs on the main thread
    const epfd = this.addon.loopBackendFd();
    if (epfd >= 0) obj.setGlobal('loop_epfd', u32(epfd));
  };

  createProbeSet(): ProbeSet {
    return new ProbeSet(this.addon, this.objectPath, RUNTIME_MEASUREMENTS, this.configure, this.caps);
  }

  start(): void {
    const probes = this.createProbeSet();
    this.probes = probes;
    try {
      this.bss = probes.baseObject().maps().find(m => m.name.endsWith('.bss'))?.name;
      probes.attach(this.config.attachMode, name => disabledReason(this.config, name, RUNTIME_MEASUREMENTS.find(m => m.name === name)?.optIn));
    } catch (err) {
      this.stop();
      throw err;
    }
  }

  status(): ProbeStatus[] {
    return this.probes?.status() ?? [];
  }

  runStats(): Map<string, ProbeRunStats> {
    return this.probes?.runStats() ?? new Map();
  }

  /** The attached measurements the budget holds to their measured kernel time (src/budget.ts). */
  kernelTimed(): string[] {
    const attached = new Set(this.status().filter(p => p.attached).map(p => p.name));
    return RUNTIME_MEASUREMENTS.filter(m => m.budgetedByKernelTime && attached.has(m.name)).map(m => m.name);
  }

  detach(name: string, reason: string): boolean {
    return this.probes?.detach(name, reason) ?? false;
  }

  /** The loop's state now, with the stretch in progress counted (collect() runs on the main thread: it is active). */
  loopState(): LoopNow | undefined {
    if (!this.probes || !this.bss) return undefined;
    const v = this.probes.baseObject().map(this.bss).lookup(Buffer.alloc(4));
    if (!v) return undefined;
    const s = decodeLoopState(v);
    const now = process.hrtime.bigint(); // CLOCK_MONOTONIC, as bpf_ktime_get_ns
    return {
      ...s,
      activeNowNs: s.activeNs + (!s.inWait && s.waitEndedNs > 0n ? now - s.waitEndedNs : 0n),
      idleNowNs: s.idleNs + (s.inWait ? now - s.waitStartedNs : 0n),
    };
  }

  collect(): KernelMetric[] {
    const s = this.loopState();
    if (!s || !this.probes) return [];
    const out: KernelMetric[] = [];
    if (this.probes.isAttached('nodejs.eventloop')) out.push(...this.loopMetrics(s));
    if (this.probes.isAttached('nodejs.syscalls')) out.push(this.syscallMetric(s.seen));
    return out;
  }

  private loopMetrics(s: LoopNow): KernelMetric[] {
    const state = (v: string) => ({ [ATTRS.NODEJS_EVENTLOOP_STATE]: v });
    const time: KernelPoint[] = [
      { attributes: state(VALUES.EVENTLOOP_ACTIVE), value: Number(s.activeNowNs) / 1e9 },
      { attributes: state(VALUES.EVENTLOOP_IDLE), value: Number(s.idleNowNs) / 1e9 },
    ];
    // Utilization over the interval since the previous collection (the whole run, the first time).
    const prev = this.previous ?? { active: 0n, idle: 0n };
    const dActive = s.activeNowNs - prev.active;
    const dTotal = dActive + (s.idleNowNs - prev.idle);
    this.previous = { active: s.activeNowNs, idle: s.idleNowNs };
    const utilization: KernelPoint[] = dTotal > 0n ? [{ attributes: {}, value: Number(dActive) / Number(dTotal) }] : [];
    const stretches: KernelPoint[] = s.active.slots.some(c => c > 0) ? [{ attributes: {}, hist: s.active }] : [];

    return [
      { name: METRICS.NODEJS_EVENTLOOP_TIME, unit: 's', description: 'Time the event loop spent active and idle (the main thread asleep in an epoll wait), from the kernel.', kind: 'counter', points: time },
      { name: METRICS.NODEJS_EVENTLOOP_UTILIZATION, unit: '1', description: 'Share of time the event loop was active since the previous export.', kind: 'gauge', points: utilization },
      { name: METRICS.NODEJS_EVENTLOOP_ACTIVE_DURATION, unit: 's', description: 'Active stretches of the event loop: from waking out of one epoll sleep to the next.', kind: 'histogram', points: stretches },
    ];
  }

  private syscallMetric(seen: number[]): KernelMetric {
    const syscalls: KernelPoint[] = [];
    const array = this.probes!.map('syscalls');
    for (const id of seen) {
      const v = array.lookup(Buffer.from(Uint32Array.of(id).buffer));
      if (!v) continue;
      const hist = decodeHist(v, 0);
      const name = id === RT_MAX_SYSCALLS - 1 ? 'other' : (SYSCALL_NAMES[id] ?? `syscall_${id}`);
      syscalls.push({ attributes: { [ATTRS.SYSCALL_NAME]: name }, hist });
    }
    return { name: METRICS.NODEJS_MAINTHREAD_SYSCALL_DURATION, unit: 's', description: 'Time the main thread spent inside each syscall other than the epoll waits (opt-in: nodejs.syscalls).', kind: 'histogram', points: syscalls };
  }

  stop(): void {
    this.probes?.close();
    this.probes = undefined;
  }
}
