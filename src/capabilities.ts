/**
 * What this process may do with eBPF here, read from /proc and /sys. These are facts for messages and for `doctor`;
 * which hook works is decided by trying to load and attach it (src/probes.ts), never from a kernel version.
 */
import * as fs from 'fs';
import * as os from 'os';

/** Capability numbers from linux/capability.h. */
const CAP = { NET_ADMIN: 12, SYS_ADMIN: 21, PERFMON: 38, BPF: 39 } as const;

export interface Capabilities {
  kernelRelease: string;
  /** /sys/kernel/btf/vmlinux exists: CO-RE relocation and fentry are possible. */
  btf: boolean;
  capBpf: boolean;
  capPerfmon: boolean;
  capSysAdmin: boolean;
  /** Enough to load and attach tracing programs: CAP_BPF + CAP_PERFMON (5.8+), or CAP_SYS_ADMIN. */
  privileged: boolean;
  /** tracefs is mounted (classic tracepoints need it; raw tracepoints, kprobes and uprobes do not). */
  tracefs: boolean;
  /** The kprobe PMU exists: kprobes are built into this kernel (CONFIG_KPROBES). */
  kprobePmu: boolean;
  uprobePmu: boolean;
  /** kernel.bpf_stats_enabled: 1 if BPF run-time statistics are on for every program. */
  bpfStatsEnabled: boolean | undefined;
  /** The pid namespace of this process, when it is not the initial one (a container). */
  pidNamespace?: { dev: bigint; ino: bigint };
}

/** PROC_PID_INIT_INO from include/linux/proc_ns.h: the inode of the initial pid namespace. */
const INIT_PID_NS_INO = 0xeffffffcn;

function exists(p: string): boolean {
  try {
    fs.accessSync(p);
    return true;
  } catch {
    return false;
  }
}

function effectiveCaps(): bigint {
  try {
    const status = fs.readFileSync('/proc/self/status', 'utf8');
    const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(status);
    return m ? BigInt('0x' + m[1]) : 0n;
  } catch {
    return 0n;
  }
}

function readTrimmed(p: string): string | undefined {
  try {
    return fs.readFileSync(p, 'utf8').trim();
  } catch {
    return undefined;
  }
}

export function detectCapabilities(): Capabilities {
  const caps = effectiveCaps();
  const has = (n: number) => (caps & (1n << BigInt(n))) !== 0n;
  const capBpf = has(CAP.BPF);
  const capPerfmon = has(CAP.PERFMON);
  const capSysAdmin = has(CAP.SYS_ADMIN);
  let pidNamespace: Capabilities['pidNamespace'];
  try {
    const st = fs.statSync('/proc/self/ns/pid', { bigint: true });
    if (st.ino !== INIT_PID_NS_INO) pidNamespace = { dev: st.dev, ino: st.ino };
  } catch {
    // no /proc/self/ns: a very old kernel; the plain tgid check is used
  }
  const stats = readTrimmed('/proc/sys/kernel/bpf_stats_enabled');
  return {
    kernelRelease: os.release(),
    btf: exists('/sys/kernel/btf/vmlinux'),
    capBpf,
    capPerfmon,
    capSysAdmin,
    privileged: capSysAdmin || (capBpf && capPerfmon),
    tracefs: exists('/sys/kernel/tracing/events') || exists('/sys/kernel/debug/tracing/events'),
    kprobePmu: exists('/sys/bus/event_source/devices/kprobe/type'),
    uprobePmu: exists('/sys/bus/event_source/devices/uprobe/type'),
    bpfStatsEnabled: stats === undefined ? undefined : stats === '1',
    pidNamespace,
  };
}

/** What to tell a person whose process lacks the privileges; undefined if it has them. */
export function privilegeAdvice(c: Capabilities): string | undefined {
  if (c.privileged) return undefined;
  const missing = [!c.capBpf && 'CAP_BPF', !c.capPerfmon && 'CAP_PERFMON'].filter(Boolean).join(' and ');
  return (
    `kernel telemetry is off: this process lacks ${missing} (or CAP_SYS_ADMIN). Grant them to the node binary ` +
    `(setcap cap_bpf,cap_perfmon+ep "$(readlink -f "$(command -v node)")"), or to the container ` +
    `(docker run --cap-add BPF --cap-add PERFMON; Kubernetes securityContext.capabilities.add: [BPF, PERFMON]). ` +
    'The application runs unchanged.'
  );
}
