// SPDX-License-Identifier: GPL-2.0 OR Apache-2.0
/*
 * The Node.js runtime of one process, seen from the kernel: the main thread's event loop (idle while it sleeps in an
 * epoll wait, active otherwise) and, opt-in, the time it spends inside every other syscall.
 *
 * The event loop (measurement nodejs.eventloop) comes from raw_tp/sched_switch alone. It fires per context switch,
 * far more rarely than syscalls, and for a switch between two other tasks it bails out after two compares (plus one
 * helper call until the main thread has switched out once and its task is known). The main thread switching out
 * voluntarily (not preempted, not runnable) while its current syscall is epoll_wait, epoll_pwait or epoll_pwait2
 * (libuv uses whichever its version and signal mask need) starts an idle stretch; it switching back in ends it.
 * Everything else is active: running, runnable, or blocked in any other syscall, which is exactly a blocked loop. An
 * active stretch runs from waking out of one epoll sleep to the next; epoll waits that return without sleeping (a
 * saturated loop) do not split it.
 *
 * The per-syscall times (measurement nodejs.syscalls, opt-in) need raw_tp/sys_enter and raw_tp/sys_exit, which run
 * for every syscall on the machine and put every syscall of every process on the kernel's slow path: off by default.
 * No uprobe runs per loop iteration (a uprobe hit costs about 14 us, the whole budget of a request).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "runtime.h"
#include "bits.bpf.h"
#include "target.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* x86_64 syscall numbers (arch/x86/entry/syscalls/syscall_64.tbl). */
#define NR_epoll_wait 232
#define NR_epoll_pwait 281
#define NR_epoll_pwait2 441

/* Kernels before 5.14 call the task state `state`. */
struct task_struct___pre514 {
	long state;
};

/* x86_64 THREAD_SIZE without KASAN: where pt_regs sits on kernels without bpf_task_pt_regs (before 5.15). */
#define RT_THREAD_SIZE (4096 << 2)

/* target_tgid and the pid namespace (target.bpf.h) are set between open and load; the main thread's id is the
 * process id. */

/*
 * The epoll fd of the main thread's event loop (uv_backend_fd), set between open and load; -1: not known, and any
 * epoll wait counts. Only a wait on it is the loop's idle time: child_process.execSync() and spawnSync() run a loop of
 * their own on the main thread, whose epoll waits are the application's loop blocked.
 */
const volatile __s32 loop_epfd = -1;

struct loop_state loop = {};

/* Time the main thread spent inside each syscall (but the epoll waits), by syscall number. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, RT_MAX_SYSCALLS);
	__type(key, __u32);
	__type(value, struct hist);
} syscalls SEC(".maps");

/* Whether the current task is the target's main thread. */
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

/*
 * Whether the current task sleeps in an epoll wait of the main loop: the syscall it is in is pt_regs->orig_ax at the
 * top of its kernel stack (-1, or an exception's error code, outside one), and an epoll wait's first argument (di)
 * is its epoll fd. bpf_task_pt_regs (5.15+) wants a trusted task pointer, which raw_tp arguments are not: it gets
 * current's, which is the same task.
 */
static __always_inline bool in_loop_wait(struct task_struct *task)
{
	struct pt_regs *regs;

	if (bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_task_pt_regs))
		regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	else
		regs = (struct pt_regs *)((unsigned long)BPF_CORE_READ(task, stack) + RT_THREAD_SIZE) - 1;
	if (!is_epoll_wait(BPF_CORE_READ(regs, orig_ax)))
		return false;
	return loop_epfd < 0 || (__s32)BPF_CORE_READ(regs, di) == loop_epfd;
}

static __always_inline long task_state(struct task_struct *task)
{
	if (bpf_core_field_exists(task->__state))
		return BPF_CORE_READ(task, __state);
	return BPF_CORE_READ((struct task_struct___pre514 *)task, state);
}

/*
 * `current` is prev here. The arguments are (preempt, prev, next) on every kernel; prev_state, added in 5.18, is read
 * from the task instead.
 */
SEC("raw_tp/sched_switch")
int BPF_PROG(loop_sched_switch, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	__u64 now, task = loop.task;

	/*
	 * Once the main thread's task is known (from its first switch-out), a switch of two other tasks costs two
	 * compares and no helper call.
	 */
	if ((__u64)prev != task) {
		if ((__u64)next == task && loop.in_wait) {
			/* the main thread wakes out of an epoll sleep: an active stretch starts */
			now = bpf_ktime_get_ns();
			loop.idle_ns += now - loop.wait_started_ns;
			loop.waits++;
			loop.wait_ended_ns = now;
			loop.in_wait = 0;
			return 0;
		}
		if (task || !is_main_thread())
			return 0;
		loop.task = (__u64)prev;
	}
	/* Preempted, or still runnable (the scheduler ran on the way back to user space): active. */
	if (preempt || task_state(prev) == 0 || !in_loop_wait(prev))
		return 0;
	now = bpf_ktime_get_ns();
	if (loop.wait_ended_ns) {
		__u64 active = now - loop.wait_ended_ns;

		loop.active_ns += active;
		hist_record_ns(&loop.active, active);
	}
	loop.wait_started_ns = now;
	loop.in_wait = 1;
	return 0;
}

SEC("raw_tp/sys_enter")
int BPF_PROG(loop_sys_enter, struct pt_regs *regs, long id)
{
	if (!is_main_thread())
		return 0;
	if (is_epoll_wait(id)) {
		loop.sys_started_ns = 0;
		return 0;
	}
	loop.sys_started_ns = bpf_ktime_get_ns();
	loop.sys_id = id;
	return 0;
}

SEC("raw_tp/sys_exit")
int BPF_PROG(loop_sys_exit, struct pt_regs *regs, long ret)
{
	__u32 id;
	struct hist *h;

	if (!is_main_thread() || !loop.sys_started_ns)
		return 0;
	id = loop.sys_id < RT_MAX_SYSCALLS ? loop.sys_id : RT_MAX_SYSCALLS - 1;
	h = bpf_map_lookup_elem(&syscalls, &id);
	if (h) {
		hist_record_ns(h, bpf_ktime_get_ns() - loop.sys_started_ns);
		loop.seen[(id / 64) & (RT_MAX_SYSCALLS / 64 - 1)] |= 1ULL << (id % 64);
	}
	loop.sys_started_ns = 0;
	return 0;
}
