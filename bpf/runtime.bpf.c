// SPDX-License-Identifier: GPL-2.0 OR Apache-2.0
/*
 * The Node.js runtime of one process, seen from the kernel: the main thread's event loop (idle inside epoll waits,
 * active between them) and the time it spends blocked in every other syscall.
 *
 * Hooks: raw_tp/sys_enter and raw_tp/sys_exit. They run for every syscall on the machine, so they bail out after one
 * helper call and one compare for every thread but ours; no uprobe runs per loop iteration (a uprobe hit costs about
 * 14 us, the whole budget of a request). libuv waits with epoll_wait, epoll_pwait or epoll_pwait2 depending on its
 * version and on whether a signal mask is needed: all three count.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "runtime.h"
#include "bits.bpf.h"
#include "target.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* x86_64 syscall numbers (arch/x86/entry/syscalls/syscall_64.tbl). */
#define NR_epoll_wait 232
#define NR_epoll_pwait 281
#define NR_epoll_pwait2 441

/* target_tgid and the pid namespace (target.bpf.h) are set between open and load; the main thread's id is the
 * process id. */

struct loop_state loop = {};

/* Time the main thread spent inside each syscall (but the epoll waits), by syscall number. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, RT_MAX_SYSCALLS);
	__type(key, __u32);
	__type(value, struct hist);
} syscalls SEC(".maps");

static __always_inline bool is_main_thread(void)
{
	if (pidns_ino) {
		struct bpf_pidns_info ns = {};

		if (bpf_get_ns_current_pid_tgid(pidns_dev, pidns_ino, &ns, sizeof(ns)))
			return false;
		return ns.tgid == target_tgid && ns.pid == target_tgid;
	}
	return bpf_get_current_pid_tgid() == (((__u64)target_tgid << 32) | target_tgid);
}

static __always_inline bool is_epoll_wait(long id)
{
	return id == NR_epoll_wait || id == NR_epoll_pwait || id == NR_epoll_pwait2;
}

SEC("raw_tp/sys_enter")
int BPF_PROG(loop_sys_enter, struct pt_regs *regs, long id)
{
	__u64 now;

	if (!is_main_thread())
		return 0;
	now = bpf_ktime_get_ns();
	if (is_epoll_wait(id)) {
		if (loop.wait_ended_ns) {
			__u64 active = now - loop.wait_ended_ns;

			loop.active_ns += active;
			hist_record_ns(&loop.active, active);
		}
		loop.wait_started_ns = now;
		loop.in_wait = 1;
	} else {
		loop.sys_started_ns = now;
		loop.sys_id = id;
	}
	return 0;
}

SEC("raw_tp/sys_exit")
int BPF_PROG(loop_sys_exit, struct pt_regs *regs, long ret)
{
	__u64 now;

	if (!is_main_thread())
		return 0;
	now = bpf_ktime_get_ns();
	if (loop.in_wait) {
		loop.idle_ns += now - loop.wait_started_ns;
		loop.waits++;
		loop.wait_ended_ns = now;
		loop.in_wait = 0;
	} else if (loop.sys_started_ns) {
		__u32 id = loop.sys_id < RT_MAX_SYSCALLS ? loop.sys_id : RT_MAX_SYSCALLS - 1;
		struct hist *h = bpf_map_lookup_elem(&syscalls, &id);

		if (h) {
			hist_record_ns(h, now - loop.sys_started_ns);
			loop.seen[(id / 64) & (RT_MAX_SYSCALLS / 64 - 1)] |= 1ULL << (id % 64);
		}
		loop.sys_started_ns = 0;
	}
	return 0;
}
