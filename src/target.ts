/**
 * Which process the BPF programs watch: every object has the same `target_tgid`, `pidns_dev` and `pidns_ino`
 * read-only globals, set here between open and load.
 */
import type { Capabilities } from './capabilities';
import type { NativeObject } from './native';

export function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
}

export function u64(n: bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(n);
  return b;
}

/** In a pid namespace other than the initial one, the programs compare the namespace's pid (bpf_get_ns_current_pid_tgid). */
export function setTarget(obj: NativeObject, caps: Capabilities): void {
  obj.setGlobal('target_tgid', u32(process.pid));
  if (caps.pidNamespace) {
    obj.setGlobal('pidns_dev', u64(caps.pidNamespace.dev));
    obj.setGlobal('pidns_ino', u64(caps.pidNamespace.ino));
  }
}
