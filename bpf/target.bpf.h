/*
 * Which process every program watches: the same read-only globals in every object, set by
 * src/target.ts between open and load.
 */
#ifndef OTEL_NODE_EBPF_TARGET_BPF_H
#define OTEL_NODE_EBPF_TARGET_BPF_H

const volatile __u32 target_tgid = 0;
/* Non-zero when the process runs in a pid namespace other than the initial one: target_tgid is then the pid inside
 * it, and the check uses bpf_get_ns_current_pid_tgid (5.7+). */
const volatile __u64 pidns_dev = 0;
const volatile __u64 pidns_ino = 0;

static __always_inline bool is_target(void)
{
	if (pidns_ino) {
		struct bpf_pidns_info ns = {};

		if (bpf_get_ns_current_pid_tgid(pidns_dev, pidns_ino, &ns, sizeof(ns)))
			return false;
		return ns.tgid == target_tgid;
	}
	return (bpf_get_current_pid_tgid() >> 32) == target_tgid;
}

#endif
