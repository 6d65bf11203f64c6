/**
 * The file collector: bytes the process reads and writes per file (bpf/files.bpf.c), as `process.file.io` with
 * `file.path`, `file.directory` and `disk.io.direction`. Opt-in (measurement `file.io`): its raw tracepoint
 * (sys_exit) runs for every syscall on the machine. Nothing is loaded unless it is turned on.
 *
 * The kernel keeps, per open fd, the path it was opened by and its bytes; a closed file's totals arrive through a
 * ring buffer. Here they are summed per path. Cardinality: the first `fileMaxPaths` paths keep a series of their
 * own; later files count under their directory only (`file.directory`, no `file.path`), and directories beyond as
 * many under `_OTHER`.
 */
import * as fs from 'fs';
import * as path from 'path';
import type { Attributes } from '@opentelemetry/api';
import type { Capabilities } from './capabilities';
import type { Collector, KernelMetric, KernelPoint } from './collector';
import type { ResolvedConfig } from './config';
import { decodeFileEntry, decodeFileHealth, encodeFileEntry, FileEntry, FileHealth } from './bpf-layout';
import { BPF_OBJECT_DIR, NativeAddon, NativeObject, NativeRingBuffer } from './native';
import { disabledReason, Measurement, ProbeRunStats, ProbeSet, ProbeStatus } from './probes';
import { ATTRS, METRICS, VALUES } from './semconv';
import { followOwnIo } from './own-io';
import { setTarget, u32 } from './target';

export const FILES_OBJECT = path.join(BPF_OBJECT_DIR, 'files.bpf.o');
export const FILES_MEASUREMENT = 'file.io';

export const FILES_MEASUREMENTS: Measurement[] = [
  {
    name: FILES_MEASUREMENT,
    description:
      'bytes read and written per file: raw tracepoint sys_exit (open*, read*, write*, close of this process; it runs for every syscall on the machine; ' +
      `opt-in: OTEL_NODE_EBPF_ENABLED_PROBES=${FILES_MEASUREMENT})`,
    optIn: true,
    budgetedByKernelTime: true,
    variants: [{ hook: 'tracepoint', programs: ['files_sys_exit'] }],
  },
];

interface Bytes {
  read: number;
  written: number;
}

export class FilesCollector implements Collector {
  readonly name = 'files';
  private probes?: ProbeSet;
  private ring?: NativeRingBuffer;
  private off?: ProbeStatus;
  private unfollowOwnIo?: () => void;
  /** Series: a path of its own, or a directory (folded), by attribute key. */
  private readonly series = new Map<string, { attributes: Attributes; bytes: Bytes }>();
  private paths = 0;
  private dirs = 0;
  /** What was already added of each open file (`fd:gen`), so that a file read at collection and again at close counts once. */
  private readonly accounted = new Map<string, Bytes>();

  constructor(
    private readonly addon: NativeAddon,
    private readonly config: ResolvedConfig,
    private readonly caps: Capabilities,
    private readonly objectPath: string = FILES_OBJECT,
  ) {}

  private readonly configure = (obj: NativeObject): void => setTarget(obj, this.caps);

  /** The object's maps, loaded and configured, with no program attached yet (also used by `doctor`). */
  createProbeSet(): ProbeSet {
    return new ProbeSet(this.addon, this.objectPath, FILES_MEASUREMENTS, this.configure, this.caps);
  }

  start(): void {
    const off = disabledReason(this.config, FILES_MEASUREMENT, true);
    if (off) {
      this.off = { name: FILES_MEASUREMENT, attached: false, reason: off, attempts: [] };
      return;
    }
    const probes = this.createProbeSet();
    this.probes = probes;
    try {
      this.ring = probes.baseObject().ringBuffer('closed_files', records => {
        for (const r of records) this.closed(decodeFileEntry(r));
      });
      // the SDK's own opens on the main thread are not the application's (src/own-io.ts)
      this.unfollowOwnIo = followOwnIo(new Uint32Array(probes.map('sdk_busy').memory(), 0, 1));
      this.seed();
      probes.attach(this.config.attachMode, name => disabledReason(this.config, name, true));
    } catch (err) {
      this.stop();
      throw err;
    }
  }

  /** Files the process had open before start: their paths from /proc/self/fd, their bytes from now on. */
  private seed(): void {
    const map = this.probes!.map('files');
    let fds: string[];
    try {
      fds = fs.readdirSync('/proc/self/fd');
    } catch {
      return;
    }
    for (const name of fds) {
      const fd = Number(name);
      let target: string;
      try {
        target = fs.readlinkSync(`/proc/self/fd/${name}`);
        if (!target.startsWith('/') || !fs.fstatSync(fd).isFile()) continue;
      } catch {
        continue; // closed meanwhile (the readdir's own fd)
      }
      map.update(u32(fd), encodeFileEntry({ gen: 0n, readBytes: 0, writtenBytes: 0, fd, path: target }));
    }
  }

  private add(e: FileEntry, read: number, written: number): void {
    if (read === 0 && written === 0) return;
    const file = path.resolve(e.path); // relative to the working directory at collection
    const dir = path.dirname(file);
    let s = this.series.get(file);
    if (!s && this.paths < this.config.fileMaxPaths) {
      this.paths++;
      this.series.set(file, (s = { attributes: { [ATTRS.FILE_PATH]: file, [ATTRS.FILE_DIRECTORY]: dir }, bytes: { read: 0, written: 0 } }));
    }
    if (!s) {
      // the long tail: its directory, while directories are within the same bound
      const folded = this.series.has(`dir:${dir}`) || this.dirs < this.config.fileMaxPaths ? dir : VALUES.OTHER;
      s = this.series.get(`dir:${folded}`);
      if (!s) {
        if (folded !== VALUES.OTHER) this.dirs++;
        this.series.set(`dir:${folded}`, (s = { attributes: { [ATTRS.FILE_DIRECTORY]: folded }, bytes: { read: 0, written: 0 } }));
      }
    }
    s.bytes.read += read;
    s.bytes.written += written;
  }

  /** A closed file: what was not yet added of its totals. */
  private closed(e: FileEntry): void {
    const key = `${e.fd}:${e.gen}`;
    const seen = this.accounted.get(key) ?? { read: 0, written: 0 };
    this.accounted.delete(key);
    this.add(e, e.readBytes - seen.read, e.writtenBytes - seen.written);
  }

  status(): ProbeStatus[] {
    return this.probes?.status() ?? (this.off ? [this.off] : []);
  }

  runStats(): Map<string, ProbeRunStats> {
    return this.probes?.runStats() ?? new Map();
  }

  /** The attached measurements the budget holds to their measured kernel time (src/budget.ts). */
  kernelTimed(): string[] {
    const attached = new Set(this.status().filter(p => p.attached).map(p => p.name));
    return FILES_MEASUREMENTS.filter(m => m.budgetedByKernelTime && attached.has(m.name)).map(m => m.name);
  }

  detach(name: string, reason: string): boolean {
    return this.probes?.detach(name, reason) ?? false;
  }

  health(): FileHealth | undefined {
    const v = this.probes?.bss();
    return v ? decodeFileHealth(v) : undefined;
  }

  dropped(): [string, number][] {
    const h = this.health();
    return h ? [
      ['file_map_full', h.untracked],
      ['file_ring_buffer_full', h.eventsDropped],
    ] : [];
  }

  collect(): KernelMetric[] {
    if (!this.probes) return [];
    // closed files first: a file closed after this consume is gone from the map and arrives next time
    this.ring?.consume();
    for (const [, v] of this.probes.map('files').entries()) {
      const e = decodeFileEntry(v);
      const key = `${e.fd}:${e.gen}`;
      const seen = this.accounted.get(key) ?? { read: 0, written: 0 };
      this.add(e, e.readBytes - seen.read, e.writtenBytes - seen.written);
      // A file that moved no byte yet is not remembered: the kernel sends no close record for one that never does,
      // which would leave its entry here for good (directories, files opened for fstat, lock files).
      if (e.readBytes > 0 || e.writtenBytes > 0) this.accounted.set(key, { read: e.readBytes, written: e.writtenBytes });
    }
    const points: KernelPoint[] = [];
    for (const { attributes, bytes } of this.series.values()) {
      if (bytes.read > 0) points.push({ attributes: { ...attributes, [ATTRS.DISK_IO_DIRECTION]: VALUES.DISK_READ }, value: bytes.read });
      if (bytes.written > 0) points.push({ attributes: { ...attributes, [ATTRS.DISK_IO_DIRECTION]: VALUES.DISK_WRITE }, value: bytes.written });
    }
    return [{ name: METRICS.PROCESS_FILE_IO, unit: 'By', description: 'Bytes the process read from and wrote to each file (its own read and write syscalls).', kind: 'counter', points }];
  }

  stop(): void {
    this.unfollowOwnIo?.();
    this.unfollowOwnIo = undefined;
    this.ring?.close();
    this.ring = undefined;
    this.probes?.close();
    this.probes = undefined;
  }
}
