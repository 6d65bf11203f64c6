// SPDX-License-Identifier: GPL-2.0 OR Apache-2.0
/*
 * The TCP_INFO counters of the sockets that kernel-enriched spans follow (src/spans.ts), kept where user space reads
 * them without a system call: after the process's sends and/or receives on such a socket (span_slot.after), its slot
 * of span_slots, an array user space maps into its memory (BPF_F_MMAPABLE), holds the counters that
 * getsockopt(TCP_INFO) returns then.
 *
 * Hooks: raw_tp/sock_send_length and raw_tp/sock_recv_length (Linux 6.3+), which run after every sendmsg and
 * recvmsg of every process on the machine, and return at once for other processes. Unlike bpf/sockets.bpf.c, which
 * runs nothing per send or receive, this object is loaded only with kernel-enriched spans on; on a kernel without the
 * tracepoints the span processor reads TCP_INFO with getsockopt instead.
 *
 * User space chooses the sockets: it asks for a socket's cookie (SO_COOKIE, which also makes the kernel give the
 * socket one) and, if the socket's slot (a hash of the cookie) is free, writes the cookie and `after` into it
 * through its own mapping of span_slots; it clears the key when the socket closes. A socket whose slot another one
 * holds keeps getsockopt. `after` says which calls write the slot: a span's window ends after a send on an HTTP
 * server's connection (its response) and after a receive on a client's (the response read), so each connection pays
 * for one copy per request.
 *
 * The slot is found by arithmetic, not by a hash map: under load a hash map look-up here cost about 330 ns per
 * request, more than the copy itself (docs/benchmark.md).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "spans.h"
#include "target.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* 64 - log2(max_entries of span_slots): a slot index is the top bits of the cookie's hash. Set by user space. */
const volatile __u32 slot_shift = 64 - 12;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, SPANS_DEFAULT_SLOTS);
	__type(key, __u32);
	__type(value, struct span_slot);
} span_slots SEC(".maps");

static __always_inline void snapshot(struct sock *sk, __u32 op)
{
	struct tcp_sock *tp = (struct tcp_sock *)sk;
	struct span_slot *s;
	__u32 write_seq, snd_nxt, index;
	__u64 cookie;

	if (!is_target())
		return;
	/* Zero until someone asks for it: only sockets user space asked about have one. */
	cookie = BPF_CORE_READ(sk, __sk_common.skc_cookie.counter);
	if (!cookie)
		return;
	index = (cookie * SPAN_SLOT_HASH) >> slot_shift;
	s = bpf_map_lookup_elem(&span_slots, &index);
	if (!s || s->key != cookie || !(s->after & op))
		return;
	s->cookie = cookie;
	s->state = BPF_CORE_READ(sk, __sk_common.skc_state);
	s->bytes_sent = BPF_CORE_READ(tp, bytes_sent);
	s->bytes_retrans = BPF_CORE_READ(tp, bytes_retrans);
	s->bytes_received = BPF_CORE_READ(tp, bytes_received);
	write_seq = BPF_CORE_READ(tp, write_seq);
	snd_nxt = BPF_CORE_READ(tp, snd_nxt);
	/* tcp_get_info(): max_t(int, 0, write_seq - snd_nxt) */
	s->notsent_bytes = (int)(write_seq - snd_nxt) > 0 ? write_seq - snd_nxt : 0;
	s->srtt_us = BPF_CORE_READ(tp, srtt_us) >> 3;
	s->total_retrans = BPF_CORE_READ(tp, total_retrans);
}

SEC("raw_tp/sock_send_length")
int BPF_PROG(span_send, struct sock *sk, int ret, int flags)
{
	snapshot(sk, SPAN_AFTER_SEND);
	return 0;
}

SEC("raw_tp/sock_recv_length")
int BPF_PROG(span_recv, struct sock *sk, int ret, int flags)
{
	snapshot(sk, SPAN_AFTER_RECV);
	return 0;
}
