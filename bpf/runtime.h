/*
 * What bpf/runtime.bpf.c shares with user space (src/runtime.ts through src/bpf-layout.ts).
 * Fixed-width types only; test/layout.test.js checks sizes and offsets against the object's BTF.
 */
#ifndef OTEL_NODE_EBPF_RUNTIME_H
#define OTEL_NODE_EBPF_RUNTIME_H

#include "histogram.h"

/* Syscall numbers above this are counted in the last slot of the per-syscall array. */
#define RT_MAX_SYSCALLS 512

/*
 * The main thread's event loop, from its context switches: asleep inside an epoll wait is idle, everything else is
 * active (JavaScript, callbacks, synchronous calls, being runnable). Written only at the main thread's own switches
 * (and, opt-in, its own syscalls), which never run concurrently, so plain stores suffice.
 */
struct loop_state {
	__u64 idle_ns;          /* completed epoll sleeps */
	__u64 active_ns;        /* completed active stretches */
	__u64 waits;            /* completed epoll sleeps */
	__u64 wait_started_ns;  /* the current epoll sleep's start, while in one */
	__u64 wait_ended_ns;    /* the last epoll sleep's end: the current active stretch started then */
	__u64 task;             /* the main thread's task_struct, learned at its first switch-out (0 before) */
	__u64 sys_started_ns;   /* nodejs.syscalls: the current (non-wait) syscall's start */
	__u32 sys_id;           /* nodejs.syscalls: the current syscall */
	__u32 in_wait;          /* 1 while asleep inside an epoll wait */
	struct hist active;     /* active stretches: long ones are a blocked loop */
	__u64 seen[RT_MAX_SYSCALLS / 64]; /* bit n: the syscalls array has samples for syscall n (user space reads only those) */
};

#endif
