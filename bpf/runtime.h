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
 * The main thread's event loop, from its epoll waits: time inside a wait is idle, time between two waits is active
 * (JavaScript, callbacks, synchronous calls). Written only by the main thread, so plain stores suffice.
 */
struct loop_state {
	__u64 idle_ns;          /* completed waits */
	__u64 active_ns;        /* completed active stretches */
	__u64 waits;            /* completed waits */
	__u64 wait_started_ns;  /* the current wait's start, while in one */
	__u64 wait_ended_ns;    /* the last wait's end: the current active stretch started then */
	__u64 sys_started_ns;   /* the current (non-wait) syscall's start */
	__u32 sys_id;           /* the current syscall */
	__u32 in_wait;          /* 1 while inside an epoll wait */
	struct hist active;     /* active stretches: long ones are a blocked loop */
	__u64 seen[RT_MAX_SYSCALLS / 64]; /* bit n: the syscalls array has samples for syscall n (user space reads only those) */
};

#endif
