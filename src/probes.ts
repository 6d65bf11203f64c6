/**
 * Probe selection. A measurement (tcp.bytes, tcp.state, ...) has hook variants in order of preference: kprobe,
 * fentry, tracepoint. Each variant is a set of programs of one BPF object. The first variant that loads and attaches
 * wins; nothing is decided from kernel versions.
 *
 * Mechanics: one "base" instance of the object is loaded with no programs: it owns the maps and the read-only
 * configuration. Every attempt opens another instance of the same object, reuses the base's maps, loads only the
 * variant's programs and attaches them. The winner stays loaded; a failed attempt is closed, and why it failed is
 * kept for status() and `doctor`.
 */
import type { AttachMode } from './config';
import type { Capabilities } from './capabilities';
import { BpfError, NativeAddon, NativeLink, NativeMap, NativeObject } from './native';

export type Hook = 'kprobe' | 'fentry' | 'tracepoint';

export interface Variant {
  hook: Hook;
  /** Program names (C function names) in the object. */
  programs: string[];
}

export interface Measurement {
  /** e.g. `tcp.bytes`; the group is the part before the first dot. */
  name: string;
  description: string;
  /** In order of preference. */
  variants: Variant[];
}

export interface Attempt {
  hook: Hook;
  ok: boolean;
  /** Why it failed, for a person. */
  reason?: string;
  error?: { step: string; code: string; message: string };
}

export interface ProbeStatus {
  name: string;
  attached: boolean;
  hook?: Hook;
  /** Why it is not attached (disabled, or every variant failed). */
  reason?: string;
  attempts: Attempt[];
}

export interface ProbeRunStats {
  runTimeNs: bigint;
  runCount: bigint;
}

/** A person-readable reason for a failed attempt. */
export function explain(hook: Hook, err: unknown, caps: Capabilities): string {
  if (!(err instanceof BpfError)) return String(err);
  if (!caps.privileged && (err.code === 'EPERM' || err.code === 'EACCES'))
    return 'missing CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN)';
  if (hook === 'kprobe' && err.step === 'attach' && !caps.kprobePmu)
    return 'passes the verifier, but kprobes are not built into this kernel (CONFIG_KPROBES is not set)';
  if (hook === 'fentry' && err.step === 'load' && !caps.btf)
    return 'fentry needs kernel BTF (/sys/kernel/btf/vmlinux is missing)';
  if (hook === 'fentry' && err.step === 'load' && err.code === 'EPERM')
    return 'fentry/fexit programs are refused by this kernel (BPF_PROG_TYPE_TRACING load fails with EPERM)';
  if (err.step === 'attach' && err.code === 'ENOENT') return `a hooked kernel function or tracepoint does not exist here (${err.message})`;
  if (err.step === 'load' && err.log) return `rejected by the verifier or libbpf: ${err.message}`;
  return `${err.step} failed: ${err.message}`;
}

export class ProbeSet {
  private readonly base: NativeObject;
  private readonly winners = new Map<string, { hook: Hook; object: NativeObject; links: NativeLink[]; programs: string[] }>();
  private readonly statuses: ProbeStatus[] = [];
  private closed = false;

  /**
   * Loads the base instance (maps and configuration). `configure` is applied to every instance before load:
   * globals and map sizes must be identical for map reuse to work.
   */
  constructor(
    private readonly addon: NativeAddon,
    private readonly objectPath: string,
    readonly measurements: Measurement[],
    private readonly configure: (obj: NativeObject) => void,
    private readonly caps: Capabilities,
  ) {
    this.base = this.open();
    try {
      for (const p of this.base.programs()) this.base.setAutoload(p.name, false);
      this.base.load();
    } catch (err) {
      this.base.close();
      throw err;
    }
  }

  private open(): NativeObject {
    const obj = this.addon.open(this.objectPath);
    try {
      this.configure(obj);
    } catch (err) {
      obj.close();
      throw err;
    }
    return obj;
  }

  /** Loads and attaches one variant in an instance of its own; the caller owns the result. */
  tryVariant(variant: Variant): { object: NativeObject; links: NativeLink[] } {
    const obj = this.open();
    try {
      const wanted = new Set(variant.programs);
      for (const p of obj.programs()) obj.setAutoload(p.name, wanted.has(p.name));
      obj.reuseMapsFrom(this.base);
      obj.load();
      const links = variant.programs.map(p => obj.attach(p));
      return { object: obj, links };
    } catch (err) {
      obj.close();
      throw err;
    }
  }

  /** Every variant of a measurement, each tried and released: for `doctor`. */
  probeAll(m: Measurement): Attempt[] {
    return m.variants.map(v => {
      try {
        this.tryVariant(v).object.close();
        return { hook: v.hook, ok: true };
      } catch (err) {
        return this.failedAttempt(v.hook, err);
      }
    });
  }

  private failedAttempt(hook: Hook, err: unknown): Attempt {
    const e = err instanceof BpfError ? err : undefined;
    return {
      hook,
      ok: false,
      reason: explain(hook, err, this.caps),
      error: e ? { step: e.step, code: e.code, message: e.message } : { step: 'unknown', code: 'EUNKNOWN', message: String(err) },
    };
  }

  /** Attaches every enabled measurement with the first variant that works. Never throws for a single failure. */
  attach(mode: AttachMode, isDisabled: (name: string) => boolean): ProbeStatus[] {
    for (const m of this.measurements) {
      if (isDisabled(m.name)) {
        this.statuses.push({ name: m.name, attached: false, reason: 'disabled by OTEL_NODE_EBPF_DISABLED_PROBES', attempts: [] });
        continue;
      }
      // A forced hook applies to the measurements that have such a variant; the others keep their own order.
      const forced = m.variants.filter(v => v.hook === mode);
      const variants = mode === 'auto' || forced.length === 0 ? m.variants : forced;
      const attempts: Attempt[] = [];
      for (const v of variants) {
        try {
          const { object, links } = this.tryVariant(v);
          this.winners.set(m.name, { hook: v.hook, object, links, programs: v.programs });
          attempts.push({ hook: v.hook, ok: true });
          break;
        } catch (err) {
          attempts.push(this.failedAttempt(v.hook, err));
        }
      }
      const winner = this.winners.get(m.name);
      this.statuses.push({
        name: m.name,
        attached: winner !== undefined,
        hook: winner?.hook,
        reason: winner
          ? undefined
          : attempts.map(a => `${a.hook}: ${a.reason}`).join('; '),
        attempts,
      });
    }
    return this.statuses;
  }

  status(): ProbeStatus[] {
    return this.statuses;
  }

  map(name: string): NativeMap {
    return this.base.map(name);
  }

  /** Reads a global variable of the base instance (`.bss`/`.data`), e.g. health counters. */
  baseObject(): NativeObject {
    return this.base;
  }

  /** Sum of the BPF run-time statistics of each attached measurement's programs. */
  runStats(): Map<string, ProbeRunStats> {
    const out = new Map<string, ProbeRunStats>();
    for (const [name, w] of this.winners) {
      let runTimeNs = 0n;
      let runCount = 0n;
      for (const p of w.programs) {
        const s = w.object.programStats(p);
        runTimeNs += s.runTimeNs;
        runCount += s.runCount;
      }
      out.set(name, { runTimeNs, runCount });
    }
    return out;
  }

  /** Detaches everything. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const w of this.winners.values()) w.object.close();
    this.winners.clear();
    this.base.close();
  }
}
