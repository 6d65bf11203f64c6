/**
 * The thread-pool collector: bpf/threadpool.bpf.c's per-kind histograms of queue wait and run time as
 * `nodejs.threadpool.wait.duration` and `nodejs.threadpool.run.duration`. Opt-in (measurement `nodejs.threadpool`):
 * about 3 uprobe hits per task, and 2 per synchronous fs call. Nothing is loaded unless it is turned on.
 */
import * as fs from 'fs';
import * as path from 'path';
import type { Capabilities } from './capabilities';
import type { Collector, KernelMetric, KernelPoint } from './collector';
import type { ResolvedConfig } from './config';
import { decodeTpHealth, decodeTpStats, TP_KINDS, TpHealth } from './bpf-layout';
import type { UprobeHits } from './budget';
import { UprobeCollectorBase } from './uprobe-collector';
import { count } from './histogram';
import { BPF_OBJECT_DIR, NativeAddon, NativeObject } from './native';
import { disabledReason, Measurement, ProbeSet, ProbeStatus, UprobeTarget } from './probes';
import { ATTRS, METRICS } from './semconv';
import { declareSymbols, ElfSymbol, isEmulatedFirstInstruction, resolveSymbols, runtimeAddress } from './symbols';
import { setTarget, u32, u64 } from './target';

export const THREADPOOL_OBJECT = path.join(BPF_OBJECT_DIR, 'threadpool.bpf.o');
export const THREADPOOL_MEASUREMENT = 'nodejs.threadpool';

const SUBMIT = 'uv__work_submit';
const QUEUE = 'uv_queue_work';
const FS_WORK = 'uv__fs_work';
const GETADDRINFO_WORK = 'uv__getaddrinfo_work';
const GETNAMEINFO_WORK = 'uv__getnameinfo_work';
const QUEUE_WORK = 'uv__queue_work';
/** node::ThreadPoolWork::ScheduleWork()::{lambda(uv_work_s*)#1}::_FUN: every crypto, zlib and N-API job runs in it. */
const NODE_JOB = '_ZZN4node14ThreadPoolWork12ScheduleWorkEvENUlP9uv_work_sE_4_FUNES2_';
const SYMBOLS = [SUBMIT, QUEUE, FS_WORK, GETADDRINFO_WORK, GETNAMEINFO_WORK, QUEUE_WORK, NODE_JOB];
declareSymbols(SYMBOLS);

/**
 * Node 24's uv_queue_work starts with `test %rdx,%rdx; je` (its work_cb argument check), which a uprobe would
 * single-step at every hit (about 15 us here, against 1 for a push): the probe goes on the push that follows, where
 * the arguments are still in their registers and only calls that pass the check arrive.
 */
function pastArgumentCheck(binary: string, s: ElfSymbol | undefined): ElfSymbol | undefined {
  if (!s || s.emulated) return s;
  const b = Buffer.alloc(11);
  const fd = fs.openSync(binary, 'r');
  try {
    fs.readSync(fd, b, 0, b.length, s.offset);
  } finally {
    fs.closeSync(fd);
  }
  const testJe = b[0] === 0x48 && b[1] === 0x85 && b[2] === 0xd2 && b[3] === 0x0f && b[4] === 0x84;
  if (!testJe || !isEmulatedFirstInstruction(b.subarray(9))) return s;
  return { ...s, offset: s.offset + 9, emulated: true };
}

function resolveAll(binary: string): Map<string, ElfSymbol> {
  const symbols = new Map(resolveSymbols(binary, SYMBOLS));
  const queue = pastArgumentCheck(binary, symbols.get(QUEUE));
  if (queue) symbols.set(QUEUE, queue);
  return symbols;
}

export function threadpoolMeasurements(binary: string = process.execPath, symbols = resolveAll(binary)): Measurement[] {
  const on = (program: string, symbol: string, retprobe = false): UprobeTarget => ({
    program,
    binary,
    symbol,
    retprobe,
    resolved: symbols.get(symbol) ?? null,
  });
  return [
    {
      name: THREADPOOL_MEASUREMENT,
      description:
        'libuv thread pool, queue wait and run time per kind of work: uprobes uv__work_submit, uv_queue_work, uv__fs_work, uv__getaddrinfo_work, ' +
        "uv__getnameinfo_work and node::ThreadPoolWork's job lambda, entry and return (about 3 hits per task, 2 per synchronous fs call; " +
        `opt-in: OTEL_NODE_EBPF_ENABLED_PROBES=${THREADPOOL_MEASUREMENT})`,
      optIn: true,
      variants: [
        {
          hook: 'uprobe',
          programs: ['tp_submit', 'tp_queue', 'tp_fs', 'tp_dns', 'tp_job', 'tp_return'],
          uprobes: [
            on('tp_submit', SUBMIT),
            on('tp_queue', QUEUE),
            on('tp_fs', FS_WORK),
            on('tp_dns', GETADDRINFO_WORK),
            on('tp_dns', GETNAMEINFO_WORK),
            on('tp_job', NODE_JOB),
            on('tp_return', FS_WORK, true),
            on('tp_return', GETADDRINFO_WORK, true),
            on('tp_return', GETNAMEINFO_WORK, true),
            on('tp_return', NODE_JOB, true),
          ],
        },
      ],
    },
  ];
}

export class ThreadpoolCollector extends UprobeCollectorBase implements Collector {
  readonly name = 'threadpool';
  private off?: ProbeStatus;
  private readonly measurements: Measurement[];
  private readonly symbols: Map<string, ElfSymbol>;

  constructor(
    private readonly addon: NativeAddon,
    private readonly config: ResolvedConfig,
    private readonly caps: Capabilities,
    private readonly objectPath: string = THREADPOOL_OBJECT,
    private readonly binary: string = process.execPath,
  ) {
    super();
    this.symbols = resolveAll(binary);
    this.measurements = threadpoolMeasurements(binary, this.symbols);
  }

  /** The process id, and where the work functions are in memory: `work` and `work_cb` are compared with them. */
  private readonly configure = (obj: NativeObject): void => {
    setTarget(obj, this.caps);
    const at = (symbol: string) => {
      const s = this.symbols.get(symbol);
      return u64((s && runtimeAddress(this.binary, s)) ?? 0n);
    };
    obj.setGlobal('fs_work_addr', at(FS_WORK));
    obj.setGlobal('getaddrinfo_work_addr', at(GETADDRINFO_WORK));
    obj.setGlobal('getnameinfo_work_addr', at(GETNAMEINFO_WORK));
    obj.setGlobal('queue_work_addr', at(QUEUE_WORK));
    obj.setGlobal('node_job_cb_addr', at(NODE_JOB));
  };

  createProbeSet(): ProbeSet {
    return new ProbeSet(this.addon, this.objectPath, this.measurements, this.configure, this.caps);
  }

  start(): void {
    // Opt-in: when off, load nothing (no object, no maps, no symbol work beyond the look-up).
    const off = disabledReason(this.config, THREADPOOL_MEASUREMENT, true);
    if (off) {
      this.off = { name: THREADPOOL_MEASUREMENT, attached: false, reason: off, attempts: [] };
      return;
    }
    const probes = this.createProbeSet();
    this.probes = probes;
    try {
      probes.attach(this.config.attachMode, name => disabledReason(this.config, name, true));
    } catch (err) {
      this.stop();
      throw err;
    }
  }

  override status(): ProbeStatus[] {
    return this.probes?.status() ?? (this.off ? [this.off] : []);
  }

  health(): TpHealth | undefined {
    const v = this.probes?.bss();
    return v ? decodeTpHealth(v) : undefined;
  }

  dropped(): [string, number][] {
    const h = this.health();
    return h ? [
      ['threadpool_unmatched', h.unmatched],
      ['threadpool_running_map_full', h.runningFull],
    ] : [];
  }

  protected countedHits(): Map<string, UprobeHits[]> {
    const h = this.health();
    if (!h) return new Map();
    const emulated = (symbol: string) => this.symbols.get(symbol)?.emulated ?? false;
    return new Map([
      [
        THREADPOOL_MEASUREMENT,
        [
          { hits: h.submitHits, emulated: emulated(SUBMIT) },
          { hits: h.queueHits, emulated: emulated(QUEUE) },
          { hits: h.fsHits, emulated: emulated(FS_WORK) },
          { hits: h.dnsHits, emulated: emulated(GETADDRINFO_WORK) },
          { hits: h.jobHits, emulated: emulated(NODE_JOB) },
          // the four functions' returns; their entry breakpoints are the three above
          { hits: h.returnHits, emulated: emulated(FS_WORK), retprobe: true, sharesEntry: true },
        ],
      ],
    ]);
  }

  collect(): KernelMetric[] {
    if (!this.probes) return [];
    const wait: KernelPoint[] = [];
    const run: KernelPoint[] = [];
    const stats = this.probes.map('stats');
    TP_KINDS.forEach((kind, i) => {
      const v = stats.lookup(u32(i));
      if (!v) return;
      const s = decodeTpStats(v);
      const attributes = { [ATTRS.NODEJS_THREADPOOL_WORK_KIND]: kind };
      if (count(s.wait) > 0) wait.push({ attributes, hist: s.wait });
      if (count(s.run) > 0) run.push({ attributes, hist: s.run });
    });
    return [
      { name: METRICS.NODEJS_THREADPOOL_WAIT_DURATION, unit: 's', description: 'Time libuv thread-pool work waited in the queue, from submission to a worker picking it up, by kind of work.', kind: 'histogram', points: wait },
      { name: METRICS.NODEJS_THREADPOOL_RUN_DURATION, unit: 's', description: 'Time libuv thread-pool work ran on a worker thread, by kind of work.', kind: 'histogram', points: run },
    ];
  }
}
