// SPDX-License-Identifier: GPL-2.0 OR Apache-2.0
/*
 * DNS lookups of one process: dns.lookup() (and every connect to a host name) goes through libuv's
 * uv_getaddrinfo(), which runs getaddrinfo(3) on the thread pool and completes on the loop thread in the static
 * uv__getaddrinfo_done(). Both are uprobes on the node binary, resolved from its symbol table; both run on the loop
 * thread, the only thread a pid-filtered uprobe fires for.
 *
 * Why these two: uv_getaddrinfo() has the name as an argument; uv__getaddrinfo_done() runs exactly once per
 * asynchronous request, on the loop thread, with req->retcode already set. A uretprobe of the thread-pool function
 * would cost more (a uretprobe is dearer than a uprobe) and fire on another thread.
 *
 * A uprobe hit costs about 14 us on the machines this project runs on: two per lookup, counted in health for the
 * cost budget (src/budget.ts). Completed lookups go to user space through a ring buffer, name included, because the
 * name is a string and lookups are rare; user space bounds the names' cardinality.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "dns.h"
#include "target.bpf.h"
#include "ringbuf.bpf.h"

#define DNS_RING_SIZE (64 * 1024)

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct dns_health health = {};

/* Ring-buffer records leave no type in BTF; this keeps it for test/layout.test.js. */
const volatile struct dns_event dns_event_btf = {};

struct dns_inflight {
	__u64 start_ns;
	char name[DNS_NAME_LEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, DNS_MAX_INFLIGHT);
	__type(key, __u64); /* uv_getaddrinfo_t * */
	__type(value, struct dns_inflight);
} inflight SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, DNS_RING_SIZE);
} dns_events SEC(".maps");

/* Too big for the stack next to the rest; one per CPU, and uprobe programs do not nest on a CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct dns_inflight);
} scratch SEC(".maps");

/* BPF_KPROBE reads the arguments of user-space functions too (libbpf 1.1 has no BPF_UPROBE). */

/* int uv_getaddrinfo(uv_loop_t *loop, uv_getaddrinfo_t *req, uv_getaddrinfo_cb cb, const char *node, ...) */
SEC("uprobe")
int BPF_KPROBE(dns_lookup, void *loop, void *req, void *cb, const char *node)
{
	__u32 zero = 0;
	__u64 key = (__u64)req;
	struct dns_inflight *v;

	__sync_fetch_and_add(&health.lookup_hits, 1);
	/* Without a callback the lookup is synchronous and never reaches uv__getaddrinfo_done (Node always passes one). */
	if (!is_target() || !cb || !req)
		return 0;
	v = bpf_map_lookup_elem(&scratch, &zero);
	if (!v)
		return 0;
	v->start_ns = bpf_ktime_get_ns();
	v->name[0] = 0;
	if (node)
		bpf_probe_read_user_str(v->name, sizeof(v->name), node);
	bpf_map_update_elem(&inflight, &key, v, BPF_ANY);
	return 0;
}

/* static void uv__getaddrinfo_done(struct uv__work *w, int status): w is &req->work_req. */
SEC("uprobe")
int BPF_KPROBE(dns_done, void *w, int status)
{
	__u64 key = (__u64)w - UV_GETADDRINFO_WORK_REQ_OFF;
	struct dns_inflight *v;
	struct dns_event *e;
	__s32 retcode = 0;

	__sync_fetch_and_add(&health.done_hits, 1);
	if (!is_target())
		return 0;
	v = bpf_map_lookup_elem(&inflight, &key);
	if (!v) {
		__sync_fetch_and_add(&health.unmatched, 1);
		return 0;
	}
	e = bpf_ringbuf_reserve(&dns_events, sizeof(*e), 0);
	if (!e) {
		__sync_fetch_and_add(&health.events_dropped, 1);
		bpf_map_delete_elem(&inflight, &key);
		return 0;
	}
	bpf_probe_read_user(&retcode, sizeof(retcode), (void *)(key + UV_GETADDRINFO_RETCODE_OFF));
	/* Cancelled requests (uv_cancel) get UV_EAI_CANCELED right after this point, in the same function. */
	if (status == UV_ECANCELED)
		retcode = UV_EAI_CANCELED;
	e->duration_ns = bpf_ktime_get_ns() - v->start_ns;
	e->status = retcode;
	e->pad = 0;
	__builtin_memcpy(e->name, v->name, sizeof(e->name));
	RINGBUF_SUBMIT(&dns_events, DNS_RING_SIZE, e);
	bpf_map_delete_elem(&inflight, &key);
	return 0;
}
