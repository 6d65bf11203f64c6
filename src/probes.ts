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
import type { ElfSymbol } from './symbols';

/** 'tcp_info': no BPF program, the kernel's per-connection counters read from user space (src/connections.ts). */
export type Hook = 'kprobe' | 'fentry' | 'tracepoint' | 'uprobe' | 'tcp_info';

/** A program attached as a uprobe (or uretprobe) on a symbol of an ELF file, filtered to this process. */
export interface UprobeTarget {
  program: string;
  /** The ELF file: `process.execPath` for Node's own functions (libuv, OpenSSL). */
  binary: string;
  symbol: string;
  retprobe?: boolean;
  /** Resolved beforehand (src/symbols.ts): null if the binary lacks the symbol; undefined: libbpf resolves it. */
  resolved?: ElfSymbol | null;
}

export interface Variant {
  hook: Hook;
  /** Program names (C function names) in the object. */
  programs: string[];
  /** For uprobe variants: where each program attaches (a program may attach to several symbols). */
  uprobes?: UprobeTarget[];
}

export interface Measurement {
  /** e.g. `tcp.bytes`; the group is the part before the first dot. */
  name: string;
  description: string;
  /** In order of preference. */
  variants: Variant[];
  /** Off unless named in OTEL_NODE_EBPF_ENABLED_PROBES (a costly measurement). */
  optIn?: boolean;
  /**
   * Held to the overhead budget by its measured kernel time (BPF run-time statistics): raw-tracepoint measurements
   * that run for every syscall of the machine. Uprobe measurements are held to it by their counted hits instead.
   */
  budgetedByKernelTime?: boolean;
}

/** How a uprobe measurement's programs are attached: uprobe_multi links (linux 6.6), or uprobe perf events. */
export type UprobeLinks = 'uprobe_multi' | 'perf_event';

export interface Attempt {
  hook: Hook;
  ok: boolean;
  /** A uprobe variant that attached: the kind of its links. */
  uprobeLinks?: UprobeLinks;
  /** Why it failed, for a person. */
  reason?: string;
  error?: { step: string; code: string; message: string };
}

export interface ProbeStatus {
  name: string;
  attached: boolean;
  hook?: Hook;
  /** An attached uprobe measurement: the kind of its links (uprobe_multi detach concurrently, at exit too). */
  uprobeLinks?: UprobeLinks;
  /** Why it is not attached (disabled, or every variant failed). */
  reason?: string;
  attempts: Attempt[];
}

export interface ProbeRunStats {
  runTimeNs: bigint;
  runCount: bigint;
}

/**
 * Whether a measurement stays off, and why (the reason starts with "disabled", as start() expects): turned off by
 * OTEL_NODE_EBPF_DISABLED_PROBES (by name, group or `all`), or opt-in and not named in OTEL_NODE_EBPF_ENABLED_PROBES.
 */
export function disabledReason(
  config: { disabledProbes: string[]; enabledProbes: string[] },
  name: string,
  optIn = false,
): string | false {
  const group = name.split('.')[0];
  const named = (list: string[]) => list.some(d => d === name || d === group || d === 'all');
  if (named(config.disabledProbes)) return 'disabled by OTEL_NODE_EBPF_DISABLED_PROBES';
  if (optIn && !config.enabledProbes.some(d => d === name)) return `disabled: opt-in, turn on with OTEL_NODE_EBPF_ENABLED_PROBES=${name}`;
  return false;
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
  if (hook === 'uprobe' && err.step === 'attach' && (err.code === 'EACCES' || err.code === 'EPERM') && !caps.capSysAdmin)
    return 'uprobes need CAP_SYS_ADMIN on this kernel (the uprobe PMU refuses CAP_BPF + CAP_PERFMON with EACCES)';
  // tryVariant words it already: which symbol is missing from which binary.
  if (hook === 'uprobe' && err.step === 'attach') return err.message;
  if (err.step === 'attach' && err.code === 'ENOENT') return `a hooked kernel function or tracepoint does not exist here (${err.message})`;
  if (err.step === 'load' && err.log) return `rejected by the verifier or libbpf: ${err.message}`;
  return `${err.step} failed: ${err.message}`;
}

/**
 * What a failed attempt says of the hook type itself, whatever the program, or undefined: tracing programs
 * (fentry/fexit) that the kernel refuses to load although the process is privileged and libbpf's trial load passed
 * (refusedUpfront). Every later variant of that hook would fail the same way, after a load of its own (BTF parsing,
 * verification): tens of ms of the application's start each.
 */
function refusedHook(hook: Hook, err: unknown, caps: Capabilities): string | undefined {
  if (!(err instanceof BpfError) || !caps.privileged) return undefined;
  if (hook === 'fentry' && err.step === 'load' && err.code === 'EPERM') return 'this kernel refuses fentry/fexit programs (EPERM)';
  return undefined;
}

/**
 * A hook type this kernel refuses, known before any variant of it is loaded (auto mode): kprobes when there is no
 * way to attach one (libbpf attaches through the kprobe PMU, or the legacy kprobe_events of tracefs: neither is here,
 * so CONFIG_KPROBES is not set); tracing programs (fentry/fexit) without kernel BTF, or when libbpf's own trial load
 * of a two-instruction one is refused (libbpf_probe_bpf_prog_type: it expects the verifier's EINVAL for
 * attach_btf_id 1; a kernel that refuses the type answers EPERM). Either spares the application's start a load of
 * the variant (the kernel's BTF parsed, the programs verified), about 40 ms each here. Undefined for a process
 * without the privileges: its attempts say what is missing.
 */
function refusedUpfront(hook: Hook, caps: Capabilities, addon: NativeAddon): string | undefined {
  if (!caps.privileged) return undefined;
  if (hook === 'kprobe' && !caps.kprobePmu && !caps.tracefs)
    return 'kprobes are not built into this kernel (no kprobe PMU, no tracefs: CONFIG_KPROBES is not set)';
  if (hook === 'fentry' && !caps.btf) return 'fentry/fexit programs need kernel BTF (/sys/kernel/btf/vmlinux is missing)';
  if (hook === 'fentry' && !addon.probeProgramType('tracing'))
    return "this kernel refuses fentry/fexit programs (libbpf's trial load of a tracing program failed)";
  return undefined;
}

/**
 * Attaches a uprobe for this process only. libbpf resolves the symbol from `.symtab` and `.dynsym` (static functions
 * included); a missing one fails with ENOENT, which is worded here for a person.
 */
function attachUprobe(obj: NativeObject, u: UprobeTarget): NativeLink {
  const missing = () => new BpfError(`symbol ${u.symbol} not found in ${u.binary} (stripped build?)`, 'attach', 2, 'ENOENT');
  if (u.resolved === null) throw missing();
  try {
    return obj.attachUprobe(u.program, {
      binary: u.binary,
      symbol: u.symbol,
      retprobe: u.retprobe ?? false,
      pid: process.pid,
      offset: u.resolved?.offset,
    });
  } catch (err) {
    if (err instanceof BpfError && err.code === 'ENOENT' && !u.resolved) throw missing();
    throw err;
  }
}

/**
 * Whether this kernel makes uprobe_multi links (linux 6.6): unknown until a uprobe variant tries one. Their teardown
 * overlaps its waits for RCU grace periods across links, where uprobe perf events wait one after the other under the
 * kernel's trace-event mutex: eight uprobes detach in 68 ms instead of 730-900 ms here, at shutdown and at exit.
 */
let uprobeMulti: boolean | undefined;

/** A uprobe_multi link refused as such (an older kernel does not know the attach type): EINVAL at attach. */
function multiRefused(err: unknown): boolean {
  return err instanceof BpfError && err.step === 'attach' && err.code === 'EINVAL' && err.message.includes('uprobe_multi');
}

/**
 * `attempt(multi)` loads and attaches uprobes in an object of its own (closed when it throws): with uprobe_multi links
 * where the kernel makes them (it is asked once per process, by the first attempt), else with uprobe perf events.
 */
export function withUprobeLinks<T>(attempt: (multi: boolean) => T, multiPossible = true): T {
  if (uprobeMulti === false || !multiPossible) return attempt(false);
  try {
    const result = attempt(true);
    uprobeMulti = true;
    return result;
  } catch (err) {
    if (!multiRefused(err) || uprobeMulti === true) throw err;
    uprobeMulti = false;
    return attempt(false);
  }
}

/**
 * The probe sets with uprobes attached. When the process exits, their uprobes detach on the addon's threads, all at
 * once, while the 'exit' event's last export runs: left to the kernel, which closes the process's fds one after the
 * other as it exits, they would hold the exit for the sum of their teardowns (eight uprobe_multi links: about 400 ms
 * here; as uprobe perf events, 730-900 ms wherever they are closed).
 */
const withUprobes = new Set<ProbeSet>();
const detachUprobesAtExit = () => {
  for (const set of withUprobes) set.detachUprobes();
};

/** A variant loaded and attached: its instance of the object, its links, and for uprobes their kind. */
interface Attached {
  object: NativeObject;
  links: NativeLink[];
  uprobeLinks?: UprobeLinks;
}

export class ProbeSet {
  private readonly base: NativeObject;
  private readonly winners = new Map<string, { hook: Hook; object: NativeObject; links: NativeLink[]; programs: string[]; uprobeLinks?: UprobeLinks }>();
  private readonly statuses: ProbeStatus[] = [];
  private closed = false;
  /**
   * Hook types this kernel refuses (refusedUpfront; or refusedHook, with the measurement whose attempt showed it):
   * not tried by attach() in auto mode. null: checked upfront, not refused.
   */
  private readonly refused = new Map<Hook, string | null>();

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
    // The base loads no program, so it needs no kernel BTF: relocating against the object's own BTF (relocations of
    // programs that are not loaded are skipped) spares libbpf parsing the kernel's, 5 MB, for each object.
    this.base = this.open(objectPath);
    try {
      for (const p of this.base.programs()) this.base.setAutoload(p.name, false);
      this.base.load();
    } catch (err) {
      this.base.close();
      throw err;
    }
  }

  private open(btfCustomPath?: string): NativeObject {
    const obj = this.addon.open(this.objectPath, btfCustomPath ? { btfCustomPath } : undefined);
    try {
      this.configure(obj);
    } catch (err) {
      obj.close();
      throw err;
    }
    return obj;
  }

  /**
   * Loads and attaches one variant in an instance of its own; the caller owns the result. Uprobes are uprobe_multi
   * links where the kernel makes them and every symbol's offset is known; otherwise, and on a kernel that refuses the
   * first one, uprobe perf events.
   */
  tryVariant(variant: Variant): Attached {
    const uprobes = variant.uprobes;
    if (!uprobes) return this.load(variant, false);
    return withUprobeLinks(multi => this.load(variant, multi), uprobes.every(u => u.resolved));
  }

  private load(variant: Variant, multi: boolean): Attached {
    const obj = this.open();
    try {
      const wanted = new Set(variant.programs);
      for (const p of obj.programs()) obj.setAutoload(p.name, wanted.has(p.name));
      if (multi) for (const p of variant.programs) obj.setUprobeMulti(p);
      obj.reuseMapsFrom(this.base);
      obj.load();
      if (!variant.uprobes) return { object: obj, links: variant.programs.map(p => obj.attach(p)) };
      return { object: obj, links: variant.uprobes.map(u => attachUprobe(obj, u)), uprobeLinks: multi ? 'uprobe_multi' : 'perf_event' };
    } catch (err) {
      obj.close();
      throw err;
    }
  }

  /** Every variant of a measurement, each tried and released (uprobes in the background): for `doctor`. */
  probeAll(m: Measurement): Attempt[] {
    return m.variants.map(v => {
      try {
        const { object, uprobeLinks } = this.tryVariant(v);
        if (uprobeLinks) {
          object.closeInBackground();
          return { hook: v.hook, ok: true, uprobeLinks };
        }
        object.close();
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

  /**
   * Attaches every enabled measurement with the first variant that works. Never throws for a single failure.
   * `isDisabled` returns true (disabled by OTEL_NODE_EBPF_DISABLED_PROBES) or the reason, starting with "disabled".
   */
  attach(mode: AttachMode, isDisabled: (name: string) => boolean | string): ProbeStatus[] {
    for (const m of this.measurements) {
      const disabled = isDisabled(m.name);
      if (disabled) {
        const reason = typeof disabled === 'string' ? disabled : 'disabled by OTEL_NODE_EBPF_DISABLED_PROBES';
        this.statuses.push({ name: m.name, attached: false, reason, attempts: [] });
        continue;
      }
      // A forced hook applies to the measurements that have such a variant; the others keep their own order.
      const forced = m.variants.filter(v => v.hook === mode);
      const variants = mode === 'auto' || forced.length === 0 ? m.variants : forced;
      const attempts: Attempt[] = [];
      for (const v of variants) {
        // a forced hook is always tried; `doctor` (probeAll) tries every variant
        const refused = mode === 'auto' ? this.refusal(v.hook) : undefined;
        if (refused) {
          attempts.push({ hook: v.hook, ok: false, reason: `not tried: ${refused}` });
          continue;
        }
        try {
          const { object, links, uprobeLinks } = this.tryVariant(v);
          this.winners.set(m.name, { hook: v.hook, object, links, programs: v.programs, uprobeLinks });
          if (v.hook === 'uprobe') this.followUprobes();
          attempts.push({ hook: v.hook, ok: true });
          break;
        } catch (err) {
          attempts.push(this.failedAttempt(v.hook, err));
          const why = refusedHook(v.hook, err, this.caps);
          if (why) this.refused.set(v.hook, `${why}, as ${m.name}'s attempt showed`);
        }
      }
      const winner = this.winners.get(m.name);
      this.statuses.push({
        name: m.name,
        attached: winner !== undefined,
        hook: winner?.hook,
        ...(winner?.uprobeLinks && { uprobeLinks: winner.uprobeLinks }),
        reason: winner
          ? undefined
          : attempts.map(a => `${a.hook}: ${a.reason}`).join('; '),
        attempts,
      });
    }
    return this.statuses;
  }

  /** Why this kernel refuses hooks of this type (refusedUpfront, or refusedHook after an attempt), or undefined. */
  private refusal(hook: Hook): string | undefined {
    if (!this.refused.has(hook)) this.refused.set(hook, refusedUpfront(hook, this.caps, this.addon) ?? null);
    return this.refused.get(hook) ?? undefined;
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

  /** The base instance's `.bss` (its zero-initialised globals, e.g. health counters) as one value, or undefined. */
  bss(): Buffer | undefined {
    const name = this.base.maps().find(m => m.name.endsWith('.bss'))?.name;
    return name ? this.base.map(name).lookup(Buffer.alloc(4)) : undefined;
  }

  /** Sum of the BPF run-time statistics of each attached measurement's programs. */
  runStats(): Map<string, ProbeRunStats> {
    const out = new Map<string, ProbeRunStats>();
    for (const [name, w] of this.winners) {
      let runTimeNs = 0n;
      let runCount = 0n;
      for (const p of new Set(w.programs)) {
        const s = w.object.programStats(p);
        runTimeNs += s.runTimeNs;
        runCount += s.runCount;
      }
      out.set(name, { runTimeNs, runCount });
    }
    return out;
  }

  /**
   * Detaches one measurement: its instance of the object is closed (programs unloaded, links destroyed); the maps
   * stay with the base. status() says why. Returns false if it was not attached.
   */
  detach(name: string, reason: string): boolean {
    const w = this.winners.get(name);
    if (!w) return false;
    w.object.closeInBackground(); // the application keeps running: no RCU wait on its event loop
    this.winners.delete(name);
    const s = this.statuses.find(p => p.name === name);
    if (s) {
      s.attached = false;
      s.reason = reason;
    }
    return true;
  }

  private followUprobes(): void {
    if (withUprobes.size === 0) process.once('exit', detachUprobesAtExit);
    withUprobes.add(this);
  }

  /**
   * Every uprobe measurement detaches on the addon's threads: at close(), and when the process exits (see
   * withUprobes), while the other measurements and the maps stay for the last export.
   */
  detachUprobes(): void {
    for (const [name, w] of this.winners) {
      if (w.hook !== 'uprobe') continue;
      w.object.closeInBackground();
      this.winners.delete(name);
    }
    withUprobes.delete(this);
  }

  /** Whether a measurement is attached now. */
  isAttached(name: string): boolean {
    return this.winners.has(name);
  }

  /**
   * Detaches everything. Idempotent. Uprobes detach on a thread of the addon: each waits for RCU grace periods
   * (about 100 ms here), which would hold the application's event loop for a second at shutdown. The others are gone
   * when this returns.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.detachUprobes();
    if (withUprobes.size === 0) process.removeListener('exit', detachUprobesAtExit);
    for (const w of this.winners.values()) w.object.close();
    this.winners.clear();
    this.base.close();
  }
}
