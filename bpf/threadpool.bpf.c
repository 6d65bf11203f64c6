// SPDX-License-Identifier: GPL-2.0 OR Apache-2.0
/*
 * libuv's thread pool in one process: how long work waits in the queue (submitted -> picked up by a worker) and how
 * long it runs, per kind of work (fs, dns, crypto, zlib, user). This is UV_THREADPOOL_SIZE saturation, which no
 * JavaScript API shows.
 *
 * Hooks (uprobes on the node binary, resolved from its symbol table, attached for this pid: they fire on every
 * thread of the process, the workers included):
 * - uv__work_submit(loop, w, kind, work, done) and uv_queue_work(loop, req, work_cb, after_work_cb) (which has
 *   uv__work_submit inlined), on the submitting thread: the submission time, and the kind of work
 *   from `work` (uv__fs_work, uv__getaddrinfo_work, uv__getnameinfo_work, uv__queue_work) and, for uv_queue_work,
 *   from the request's work_cb: Node's own jobs (crypto, zlib, N-API) all go through the lambda in
 *   node::ThreadPoolWork::ScheduleWork, whose object names its type ("crypto", "zlib", "node_api", ...);
 * - entry and return of the work function, on the worker thread: uv__fs_work, uv__getaddrinfo_work,
 *   uv__getnameinfo_work, and that lambda rather than uv__queue_work, whose first instruction is not a push and
 *   would be single-stepped at every hit (about 15 us instead of 1 here). Work queued with uv_queue_work directly (an
 *   addon that bypasses N-API) is therefore not measured, and not recorded at submission either.
 *
 * Every hit costs a trap (1-2 us here, src/budget.ts): about 3 per task, and 2 per synchronous fs call, which runs
 * uv__fs_work on the calling thread. Opt-in for that reason (measurement nodejs.threadpool).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "threadpool.h"
#include "bits.bpf.h"
#include "target.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Run-time addresses of the work functions and of Node's lambda, set by src/threadpool.ts between open and load
 * (0: not found; that kind is then not recorded). */
const volatile __u64 fs_work_addr = 0;
const volatile __u64 getaddrinfo_work_addr = 0;
const volatile __u64 getnameinfo_work_addr = 0;
const volatile __u64 queue_work_addr = 0;
const volatile __u64 node_job_cb_addr = 0;

struct tp_health health = {};

struct pending {
	__u64 submit_ns;
	__u32 kind;
	__u32 pad;
};

struct running {
	__u64 start_ns;
	__u32 kind;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, TP_MAX_PENDING);
	__type(key, __u64); /* struct uv__work * */
	__type(value, struct pending);
} pending SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, TP_MAX_RUNNING);
	__type(key, __u64); /* pid_tgid of the worker thread */
	__type(value, struct running);
} running SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, TP_KINDS);
	__type(key, __u32);
	__type(value, struct tp_stats);
} stats SEC(".maps");

/* The kind of one of Node's ThreadPoolWork jobs, from its type_ string. */
static __always_inline __u32 job_kind(__u64 req)
{
	__u64 type = 0;
	char s[8] = {};

	if (bpf_probe_read_user(&type, sizeof(type), (void *)(req + NODE_WORK_TYPE_OFF)) || !type)
		return TP_KIND_USER;
	if (bpf_probe_read_user_str(s, sizeof(s), (void *)type) < 0)
		return TP_KIND_USER;
	if (s[0] == 'c' && s[1] == 'r' && s[2] == 'y' && s[3] == 'p' && s[4] == 't' && s[5] == 'o' && s[6] == 0)
		return TP_KIND_CRYPTO;
	if (s[0] == 'z' && s[1] == 'l' && s[2] == 'i' && s[3] == 'b' && s[4] == 0)
		return TP_KIND_ZLIB;
	return TP_KIND_USER;
}

static __always_inline __u32 kind_of(__u64 w, __u64 work)
{
	__u64 req, cb = 0;

	if (!work)
		return TP_KIND_NONE;
	if (work == fs_work_addr)
		return TP_KIND_FS;
	if (work == getaddrinfo_work_addr || work == getnameinfo_work_addr)
		return TP_KIND_DNS;
	/* uv_queue_work's own submissions are seen by tp_queue; this is for a build that does not inline it */
	if (work != queue_work_addr || !node_job_cb_addr)
		return TP_KIND_NONE;
	req = w - UV_WORK_WORK_REQ_OFF;
	if (bpf_probe_read_user(&cb, sizeof(cb), (void *)(req + UV_WORK_WORK_CB_OFF)) || cb != node_job_cb_addr)
		return TP_KIND_NONE;
	return job_kind(req);
}

/* void uv__work_submit(uv_loop_t *loop, struct uv__work *w, enum uv__work_kind kind,
 *                      void (*work)(struct uv__work *w), void (*done)(struct uv__work *w, int status)) */
SEC("uprobe")
int BPF_KPROBE(tp_submit, void *loop, void *w, int uv_kind, void *work)
{
	struct pending v = {};
	__u64 key = (__u64)w;

	__sync_fetch_and_add(&health.submit_hits, 1);
	if (!is_target() || !w)
		return 0;
	v.kind = kind_of(key, (__u64)work);
	if (v.kind >= TP_KINDS)
		return 0;
	v.submit_ns = bpf_ktime_get_ns();
	bpf_map_update_elem(&pending, &key, &v, BPF_ANY);
	return 0;
}

/* int uv_queue_work(uv_loop_t *loop, uv_work_t *req, uv_work_cb work_cb, uv_after_work_cb after_work_cb): it
 * submits inline (the compiler inlined uv__work_submit into it), so it is a submission hook of its own. */
SEC("uprobe")
int BPF_KPROBE(tp_queue, void *loop, void *req, void *work_cb)
{
	struct pending v = {};
	__u64 key = (__u64)req + UV_WORK_WORK_REQ_OFF;

	__sync_fetch_and_add(&health.queue_hits, 1);
	if (!is_target() || !req || !node_job_cb_addr || (__u64)work_cb != node_job_cb_addr)
		return 0;
	v.kind = job_kind((__u64)req);
	v.submit_ns = bpf_ktime_get_ns();
	bpf_map_update_elem(&pending, &key, &v, BPF_ANY);
	return 0;
}

/* A worker picked w up and is about to run it. */
static __always_inline void picked_up(__u64 w)
{
	struct running r = {};
	struct pending *p;
	struct tp_stats *s;
	__u64 tid, now;

	if (!is_target())
		return;
	p = bpf_map_lookup_elem(&pending, &w);
	if (!p) {
		__sync_fetch_and_add(&health.unmatched, 1);
		return;
	}
	now = bpf_ktime_get_ns();
	r.kind = p->kind;
	r.start_ns = now;
	s = bpf_map_lookup_elem(&stats, &r.kind);
	if (s)
		hist_record_ns(&s->wait, now - p->submit_ns);
	bpf_map_delete_elem(&pending, &w);
	tid = bpf_get_current_pid_tgid();
	if (bpf_map_update_elem(&running, &tid, &r, BPF_ANY))
		__sync_fetch_and_add(&health.running_full, 1);
}

/* static void uv__fs_work(struct uv__work *w) */
SEC("uprobe")
int BPF_KPROBE(tp_fs, void *w)
{
	__sync_fetch_and_add(&health.fs_hits, 1);
	picked_up((__u64)w);
	return 0;
}

/* static void uv__getaddrinfo_work(struct uv__work *w), uv__getnameinfo_work(struct uv__work *w) */
SEC("uprobe")
int BPF_KPROBE(tp_dns, void *w)
{
	__sync_fetch_and_add(&health.dns_hits, 1);
	picked_up((__u64)w);
	return 0;
}

/* node::ThreadPoolWork::ScheduleWork()::{lambda(uv_work_t *req)}: req's work_req is what was submitted. */
SEC("uprobe")
int BPF_KPROBE(tp_job, void *req)
{
	__sync_fetch_and_add(&health.job_hits, 1);
	picked_up((__u64)req + UV_WORK_WORK_REQ_OFF);
	return 0;
}

/* The return of any of the four: the work ran from its pick-up until now, on this thread. */
SEC("uretprobe")
int BPF_KRETPROBE(tp_return)
{
	struct running *r;
	struct tp_stats *s;
	__u64 tid;

	__sync_fetch_and_add(&health.return_hits, 1);
	if (!is_target())
		return 0;
	tid = bpf_get_current_pid_tgid();
	r = bpf_map_lookup_elem(&running, &tid);
	if (!r)
		return 0;
	s = bpf_map_lookup_elem(&stats, &r->kind);
	if (s)
		hist_record_ns(&s->run, bpf_ktime_get_ns() - r->start_ns);
	bpf_map_delete_elem(&running, &tid);
	return 0;
}
