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

/* The current thread's id and its process's, inside the process's pid namespace if it has one; false if unknown. */
static __always_inline bool current_ids(__u32 *tid, __u32 *tgid)
{
	if (pidns_ino) {
		struct bpf_pidns_info ns = {};

		if (bpf_get_ns_current_pid_tgid(pidns_dev, pidns_ino, &ns, sizeof(ns)))
			return false;
		*tid = ns.pid;
		*tgid = ns.tgid;
		return true;
	}
	__u64 id = bpf_get_current_pid_tgid();

	*tid = (__u32)id;
	*tgid = id >> 32;
	return true;
}

static __always_inline bool is_target(void)
{
	__u32 tid, tgid;

	return current_ids(&tid, &tgid) && tgid == target_tgid;
}

#endif
