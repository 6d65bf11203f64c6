/*
 * What bpf/threadpool.bpf.c shares with user space (src/threadpool.ts through src/bpf-layout.ts).
 * Fixed-width types only; test/layout.test.js checks sizes and offsets against the object's BTF.
 */
#ifndef OTEL_NODE_EBPF_THREADPOOL_H
#define OTEL_NODE_EBPF_THREADPOOL_H

#include "histogram.h"

/* Kinds of work, the index of the stats map: which function the work was submitted with (and, for Node's own
 * ThreadPoolWork jobs, their type string). */
#define TP_KIND_FS 0     /* uv_fs_* with a callback: uv__fs_work */
#define TP_KIND_DNS 1    /* uv_getaddrinfo, uv_getnameinfo */
#define TP_KIND_CRYPTO 2 /* node::ThreadPoolWork "crypto" (pbkdf2, scrypt, randomBytes, keygen, ...) */
#define TP_KIND_ZLIB 3   /* node::ThreadPoolWork "zlib" (zlib and brotli streams, one task per chunk) */
#define TP_KIND_USER 4   /* every other ThreadPoolWork: N-API async work ("node_api"), ... */
#define TP_KINDS 5
#define TP_KIND_NONE 0xff /* not measured: uv_queue_work called directly (not through Node), uv_random */

/* Work submitted and not yet picked up by a worker (an LRU map: work cancelled with uv_cancel never runs). */
#define TP_MAX_PENDING 4096
/* Work running at once: one per worker thread (UV_THREADPOOL_SIZE is at most 1024). */
#define TP_MAX_RUNNING 1024

/*
 * libuv's public uv_work_t (uv.h, unix): UV_REQ_FIELDS (64 bytes), loop, work_cb, after_work_cb, then struct
 * uv__work work_req: the pointer uv__work_submit() and the work function get. Public request layouts are libuv's
 * ABI, stable across 1.x.
 */
#define UV_WORK_WORK_REQ_OFF 88
#define UV_WORK_WORK_CB_OFF 72
/*
 * node::ThreadPoolWork (src/node_internals.h): vptr, env_, uv_work_t work_req_, const char *type_. So type_ is the
 * 128 bytes of the uv_work_t past it. Read only when work_cb is ThreadPoolWork::ScheduleWork's lambda; the same
 * offset (0x90 from the object) in Node 20, 22 and 24 (its disassembly reads it there for trace events).
 */
#define NODE_WORK_TYPE_OFF 128

/* Per kind: time from submission to a worker picking the work up, and the time the work function ran. */
struct tp_stats {
	struct hist wait;
	struct hist run;
};

/* The program's own counters (.bss): uprobe hits per program, for the cost budget, and what was lost. */
struct tp_health {
	__u64 submit_hits;  /* uv__work_submit entries (this process's only: the uprobes are attached for its pid) */
	__u64 queue_hits;   /* uv_queue_work entries */
	__u64 fs_hits;      /* uv__fs_work entries, synchronous fs calls included (they run it on the caller's thread) */
	__u64 dns_hits;     /* uv__getaddrinfo_work and uv__getnameinfo_work entries */
	__u64 job_hits;     /* node::ThreadPoolWork lambda entries */
	__u64 return_hits;  /* returns of all four (uretprobes) */
	__u64 unmatched;    /* a work function entered without a submission seen (synchronous fs calls mostly) */
	__u64 running_full; /* a pick-up not recorded: the running map was full */
};

#endif
