// SPDX-License-Identifier: GPL-2.0 OR Apache-2.0
/*
 * TCP telemetry of one process: bytes, connections, handshake time, lifetime, RTT, retransmits and resets, per
 * server-side series (see sockets.h), aggregated here so that user space only reads small maps.
 *
 * Every measurement has three variants over one static handler: kprobe (most kernels), fentry/fexit (BTF kernels
 * where tracing programs are allowed), and raw tracepoints (no tracefs needed). User space loads and attaches them
 * in that order, one measurement at a time, and keeps the first that works (src/probes.ts).
 *
 * Measurements and their hooks:
 *   tcp.state        raw_tp/inet_sock_set_state + raw_tp/tcp_destroy_sock
 *                    | kprobe/tcp_set_state + kprobe/inet_csk_listen_start + kprobe/tcp_v4_destroy_sock
 *                    | fentry/tcp_set_state + fexit/inet_csk_listen_start + fentry/tcp_v4_destroy_sock
 *   tcp.bytes        raw_tp/sock_send_length + raw_tp/sock_recv_length | k(ret)probe/tcp_sendmsg + k(ret)probe/tcp_recvmsg
 *                    | fexit/tcp_sendmsg + fexit/tcp_recvmsg
 *   tcp.rtt          raw_tp/tcp_probe | kprobe/tcp_rcv_established | fentry/tcp_rcv_established
 *   tcp.retransmits  raw_tp/tcp_retransmit_skb | kprobe/tcp_retransmit_skb | fentry/tcp_retransmit_skb
 *   tcp.resets       raw_tp/tcp_send_reset + raw_tp/tcp_receive_reset
 *                    | kprobe/tcp_v4_send_reset + kprobe/tcp_v6_send_reset + kprobe/tcp_send_active_reset + kprobe/tcp_reset
 *                    | fentry/ (same functions)
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "sockets.h"
#include "bits.bpf.h"
#include "target.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define MSG_PEEK 2

/* Set by user space between open and load (target_tgid and the pid namespace: target.bpf.h). */
const volatile __u64 rtt_sample_interval_ns = 1000000000ULL;

struct sockets_health health = {};

/* Ring-buffer records are reached only through pointers, which leave no type in BTF; this keeps the type in the
 * object, for test/layout.test.js and for bpftool. */
const volatile struct conn_event conn_event_btf = {};

/*
 * Not LRU: an LRU map would evict the state of a long idle connection without a trace. When this one is full, new
 * connections are not tracked one by one (health.conns_untracked counts it) while their bytes still reach the right
 * series. Every entry is deleted when its socket is destroyed.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SOCKETS_DEFAULT_MAX_CONNS);
	__type(key, __u64); /* struct sock * */
	__type(value, struct conn_state);
} conns SEC(".maps");

/* Not LRU: evicting a series would lose counts. When it is full, updates go to the overflow series (key all zero),
 * which user space creates before attaching and reports with otel.metric.overflow=true. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SOCKETS_DEFAULT_MAX_SERIES + 1);
	__type(key, struct series_key);
	__type(value, struct series_stats);
} series SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, struct listener_key);
	__type(value, __u8);
} listeners SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} conn_events SEC(".maps");

/* kprobe variant of tcp.bytes only: the socket of an unfinished tcp_sendmsg/tcp_recvmsg, per thread. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64); /* pid_tgid */
	__type(value, __u64); /* struct sock * */
} inflight SEC(".maps");

static const struct series_stats zero_stats;


static __always_inline struct series_stats *series_of(const struct series_key *key)
{
	static const struct series_key overflow_key;
	struct series_stats *s;

	s = bpf_map_lookup_elem(&series, key);
	if (s)
		return s;
	/* Fails with EEXIST when another CPU created it first (fine), with E2BIG when the map is full. */
	bpf_map_update_elem(&series, key, &zero_stats, BPF_NOEXIST);
	s = bpf_map_lookup_elem(&series, key);
	if (s)
		return s;
	__sync_fetch_and_add(&health.series_overflow, 1);
	return bpf_map_lookup_elem(&series, &overflow_key);
}

/* sk_protocol was a bitfield until 5.6 (commit bf9765145b85, "sock: Make sk_protocol a 16-bit value"):
 * the _PROBED bitfield read works for both layouts. */
static __always_inline bool is_tcp(const struct sock *sk)
{
	return BPF_CORE_READ_BITFIELD_PROBED(sk, sk_protocol) == IPPROTO_TCP;
}

static __always_inline __u32 netns_of(const struct sock *sk)
{
	return BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
}

/* The peer (for connections we opened) or nothing but our port (for accepted ones): the series key of a socket. */
static __always_inline bool fill_key(const struct sock *sk, __u8 side, struct series_key *key)
{
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);

	__builtin_memset(key, 0, sizeof(*key));
	key->side = side;
	if (family == AF_INET) {
		key->family = NET_IPV4;
		if (side == SIDE_CLIENT)
			BPF_CORE_READ_INTO((__u32 *)key->addr, sk, __sk_common.skc_daddr);
	} else if (family == AF_INET6) {
		key->family = NET_IPV6;
		if (side == SIDE_CLIENT) {
			BPF_CORE_READ_INTO(&key->addr, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
			/* ::ffff:a.b.c.d: an IPv4 peer reached through a dual-stack socket */
			__u32 *w = (__u32 *)key->addr;
			if (w[0] == 0 && w[1] == 0 && w[2] == bpf_htonl(0xffff)) {
				w[0] = w[3];
				w[2] = 0;
				w[3] = 0;
				key->family = NET_IPV4;
			}
		}
	} else {
		return false;
	}
	if (side == SIDE_CLIENT)
		key->port = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	else
		key->port = BPF_CORE_READ(sk, __sk_common.skc_num);
	return true;
}

static __always_inline struct listener_key listener_key_of(const struct sock *sk)
{
	struct listener_key lk = {
		.netns = netns_of(sk),
		.port = BPF_CORE_READ(sk, __sk_common.skc_num),
	};

	return lk;
}

static __always_inline bool is_listener_port(const struct sock *sk)
{
	struct listener_key lk = listener_key_of(sk);

	return bpf_map_lookup_elem(&listeners, &lk) != NULL;
}

static __always_inline __u32 srtt_us_of(const struct sock *sk)
{
	/* tcp_sock.srtt_us holds 8 times the smoothed RTT in microseconds */
	return BPF_CORE_READ((struct tcp_sock *)sk, srtt_us) >> 3;
}

static __always_inline struct conn_state *track(const struct sock *sk, __u8 side, __u64 now)
{
	__u64 skp = (__u64)sk;
	struct conn_state c = {};

	if (!fill_key(sk, side, &c.key))
		return NULL;
	c.start_ns = now;
	/* the sampling interval runs from here: bpf_ktime_get_ns() counts from boot, so 0 would sample at once */
	c.last_rtt_ns = now;
	c.local_port = BPF_CORE_READ(sk, __sk_common.skc_num);
	if (bpf_map_update_elem(&conns, &skp, &c, BPF_NOEXIST)) {
		__sync_fetch_and_add(&health.conns_untracked, 1);
		return NULL;
	}
	__sync_fetch_and_add(&health.conns_tracked, 1);
	return bpf_map_lookup_elem(&conns, &skp);
}

/*
 * A connection of this process that we first see in the middle of its life: it was established before the probes
 * were attached, or its state was evicted. Its bytes count from now on; its lifetime and handshake are unknown.
 */
static __always_inline struct conn_state *adopt(const struct sock *sk)
{
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	struct conn_state *c;

	if (!is_tcp(sk) || (family != AF_INET && family != AF_INET6))
		return NULL;
	c = track(sk, is_listener_port(sk) ? SIDE_SERVER : SIDE_CLIENT, bpf_ktime_get_ns());
	if (c) {
		c->retrans_seen = BPF_CORE_READ((struct tcp_sock *)sk, total_retrans);
		__sync_fetch_and_add(&health.conns_adopted, 1);
	}
	return c;
}

/* Folds the kernel's own retransmit count into the series. Callers hold the socket lock (state change, ACK
 * processing, retransmit timer), so two of them never race on retrans_seen. */
static __always_inline void sync_retransmits(const struct sock *sk, struct conn_state *c, struct series_stats *s)
{
	__u32 total = BPF_CORE_READ((struct tcp_sock *)sk, total_retrans);

	if (total > c->retrans_seen) {
		__sync_fetch_and_add(&s->retransmits, total - c->retrans_seen);
		c->retrans_seen = total;
	}
}

static __always_inline void emit(const struct conn_state *c, __u8 kind, __u64 now, __u64 duration, __u32 srtt_us)
{
	struct conn_event *e = bpf_ringbuf_reserve(&conn_events, sizeof(*e), 0);

	if (!e) {
		__sync_fetch_and_add(&health.events_dropped, 1);
		return;
	}
	e->key = c->key;
	e->ts_ns = now;
	e->duration_ns = duration;
	e->tx_bytes = c->tx_bytes;
	e->rx_bytes = c->rx_bytes;
	e->srtt_us = srtt_us;
	e->retransmits = c->retrans_seen;
	e->local_port = c->local_port;
	e->kind = kind;
	__builtin_memset(e->pad, 0, sizeof(e->pad));
	bpf_ringbuf_submit(e, 0);
}

/* ---- tcp.state: connects, accepts, closes, listeners ---- */

static __always_inline void on_listen(const struct sock *sk)
{
	struct listener_key lk = listener_key_of(sk);
	__u8 one = 1;

	if (is_target() && lk.port)
		bpf_map_update_elem(&listeners, &lk, &one, BPF_ANY);
}

static __always_inline void handle_set_state(const struct sock *sk, int oldstate, int newstate)
{
	__u64 skp = (__u64)sk, now;
	struct conn_state *c;
	struct series_stats *s;

	if (newstate == TCP_LISTEN) {
		on_listen(sk);
		return;
	}
	if (oldstate == TCP_LISTEN && newstate == TCP_CLOSE) {
		struct listener_key lk = listener_key_of(sk);

		if (is_target())
			bpf_map_delete_elem(&listeners, &lk);
		return;
	}

	now = bpf_ktime_get_ns();
	/* connect(): runs in the process's own context, so the tgid check is meaningful here */
	if (newstate == TCP_SYN_SENT) {
		if (is_target())
			track(sk, SIDE_CLIENT, now);
		return;
	}

	c = bpf_map_lookup_elem(&conns, &skp);
	if (newstate == TCP_ESTABLISHED) {
		if (oldstate == TCP_SYN_RECV && !c) {
			/* The handshake of an accepted connection completes in softirq context, where the current task
			 * is anyone: recognise ours by the listening port. The SYN-ACK's RTT sample is taken just before
			 * this transition (tcp_rcv_state_process), so srtt is the server's view of the handshake. */
			if (!is_listener_port(sk))
				return;
			c = track(sk, SIDE_SERVER, now);
			if (!c)
				return;
			c->established_ns = now;
			s = series_of(&c->key);
			if (s) {
				__sync_fetch_and_add(&s->opened, 1);
				hist_record_ns(&s->connect, (__u64)srtt_us_of(sk) * 1000);
			}
			return;
		}
		if (c && oldstate == TCP_SYN_SENT) {
			c->established_ns = now;
			/* the source port is chosen after SYN_SENT is set (inet_hash_connect) */
			c->local_port = BPF_CORE_READ(sk, __sk_common.skc_num);
			s = series_of(&c->key);
			if (s) {
				__sync_fetch_and_add(&s->opened, 1);
				hist_record_ns(&s->connect, now - c->start_ns);
			}
		}
		return;
	}

	if (newstate != TCP_CLOSE || !c || c->closed_ns)
		return;

	/* Closed: account for it now; the entry stays until the socket is destroyed (handle_destroy). */
	c->closed_ns = now;
	if (oldstate == TCP_SYN_SENT) {
		/* Connect failed. tcp_reset() and tcp_write_err() set sk_err before tcp_done() closes the socket;
		 * 0 means the application gave up first. */
		__u32 err = BPF_CORE_READ(sk, sk_err);

		c->key.err = err ? err : 103 /* ECONNABORTED */;
		s = series_of(&c->key);
		if (s)
			__sync_fetch_and_add(&s->failed, 1);
		return;
	}
	s = series_of(&c->key);
	if (s) {
		__u32 srtt = srtt_us_of(sk);

		sync_retransmits(sk, c, s);
		__sync_fetch_and_add(&s->closed, 1);
		if (c->established_ns)
			hist_record_ns(&s->lifetime, now - c->established_ns);
		if (srtt)
			hist_record_ns(&s->rtt, (__u64)srtt * 1000);
	}
}

/* The socket is freed: report the connection (with every byte the application read after TCP_CLOSE) and forget it. */
static __always_inline void handle_destroy(const struct sock *sk)
{
	__u64 skp = (__u64)sk;
	struct conn_state *c = bpf_map_lookup_elem(&conns, &skp);

	if (!c)
		return;
	if (c->key.err)
		emit(c, CONN_EVENT_FAILED, c->closed_ns, c->closed_ns - c->start_ns, 0);
	else
		emit(c, CONN_EVENT_CLOSED, c->closed_ns ? c->closed_ns : bpf_ktime_get_ns(),
		     c->established_ns && c->closed_ns ? c->closed_ns - c->established_ns : 0, srtt_us_of(sk));
	bpf_map_delete_elem(&conns, &skp);
}

SEC("raw_tp/inet_sock_set_state")
int BPF_PROG(state_raw_tp, const struct sock *sk, int oldstate, int newstate)
{
	if (!is_tcp(sk))
		return 0;
	handle_set_state(sk, oldstate, newstate);
	return 0;
}

/* tcp_set_state() sees every TCP transition but LISTEN, which inet_csk_listen_start() sets. */
SEC("kprobe/tcp_set_state")
int BPF_KPROBE(state_kprobe, struct sock *sk, int state)
{
	handle_set_state(sk, BPF_CORE_READ(sk, __sk_common.skc_state), state);
	return 0;
}

SEC("kprobe/inet_csk_listen_start")
int BPF_KPROBE(listen_kprobe, struct sock *sk)
{
	on_listen(sk);
	return 0;
}

SEC("raw_tp/tcp_destroy_sock")
int BPF_PROG(destroy_raw_tp, const struct sock *sk)
{
	handle_destroy(sk);
	return 0;
}

/* IPv6 sockets too: where tcp_v6_destroy_sock() exists, it calls this one */
SEC("kprobe/tcp_v4_destroy_sock")
int BPF_KPROBE(destroy_kprobe, struct sock *sk)
{
	handle_destroy(sk);
	return 0;
}

SEC("fentry/tcp_v4_destroy_sock")
int BPF_PROG(destroy_fentry, struct sock *sk)
{
	handle_destroy(sk);
	return 0;
}

SEC("fentry/tcp_set_state")
int BPF_PROG(state_fentry, struct sock *sk, int state)
{
	handle_set_state(sk, BPF_CORE_READ(sk, __sk_common.skc_state), state);
	return 0;
}

SEC("fexit/inet_csk_listen_start")
int BPF_PROG(listen_fexit, struct sock *sk)
{
	on_listen(sk);
	return 0;
}

/* ---- tcp.bytes: payload bytes at the socket layer, as the application wrote and read them ---- */

static __always_inline void handle_bytes(const struct sock *sk, long bytes, bool tx)
{
	__u64 skp = (__u64)sk;
	struct conn_state *c;
	struct series_stats *s;

	if (bytes <= 0) /* callers have checked is_target() */
		return;
	c = bpf_map_lookup_elem(&conns, &skp);
	if (!c)
		c = adopt(sk);
	if (c) {
		__sync_fetch_and_add(tx ? &c->tx_bytes : &c->rx_bytes, bytes);
		s = series_of(&c->key);
	} else {
		/* The connection map is full: the bytes still count, in the series the socket itself names. */
		struct series_key key;

		if (!fill_key(sk, is_listener_port(sk) ? SIDE_SERVER : SIDE_CLIENT, &key))
			return;
		s = series_of(&key);
	}
	if (s)
		__sync_fetch_and_add(tx ? &s->tx_bytes : &s->rx_bytes, bytes);
}


/* sock_sendmsg_nosec()/sock_recvmsg_nosec() report every socket's result: keep TCP, and skip peeks, which do not
 * consume data. */
SEC("raw_tp/sock_send_length")
int BPF_PROG(send_raw_tp, struct sock *sk, int ret, int flags)
{
	/* is_target() first: most sockets on the machine are other processes', and it reads no kernel memory */
	if (ret > 0 && is_target() && is_tcp(sk))
		handle_bytes(sk, ret, true);
	return 0;
}

SEC("raw_tp/sock_recv_length")
int BPF_PROG(recv_raw_tp, struct sock *sk, int ret, int flags)
{
	if (ret > 0 && !(flags & MSG_PEEK) && is_target() && is_tcp(sk))
		handle_bytes(sk, ret, false);
	return 0;
}

static __always_inline void stash_sock(struct sock *sk)
{
	__u64 id = bpf_get_current_pid_tgid(), skp = (__u64)sk;

	if (is_target())
		bpf_map_update_elem(&inflight, &id, &skp, BPF_ANY);
}

static __always_inline void pop_sock(long ret, bool tx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u64 *skp = bpf_map_lookup_elem(&inflight, &id);

	if (!skp)
		return;
	handle_bytes((const struct sock *)*skp, ret, tx);
	bpf_map_delete_elem(&inflight, &id);
}

SEC("kprobe/tcp_sendmsg")
int BPF_KPROBE(send_kprobe, struct sock *sk)
{
	stash_sock(sk);
	return 0;
}

SEC("kretprobe/tcp_sendmsg")
int BPF_KRETPROBE(send_kretprobe, int ret)
{
	pop_sock(ret, true);
	return 0;
}

/* flags is the 4th argument since 5.19 (commit ec095263a965 dropped `nonblock`); before, the 4th is nonblock (0/1),
 * which never has MSG_PEEK set, so peeks are counted there. Node never peeks on TCP. */
SEC("kprobe/tcp_recvmsg")
int BPF_KPROBE(recv_kprobe, struct sock *sk, void *msg, __u64 len, int flags)
{
	if (!(flags & MSG_PEEK))
		stash_sock(sk);
	return 0;
}

SEC("kretprobe/tcp_recvmsg")
int BPF_KRETPROBE(recv_kretprobe, int ret)
{
	pop_sock(ret, false);
	return 0;
}

SEC("fexit/tcp_sendmsg")
int BPF_PROG(send_fexit, struct sock *sk)
{
	__u64 ret = 0;

	/* bpf_get_func_ret (5.17) reads the return value whatever the argument count */
	if (!is_target())
		return 0;
	bpf_get_func_ret(ctx, &ret);
	handle_bytes(sk, (int)ret, true);
	return 0;
}

SEC("fexit/tcp_recvmsg")
int BPF_PROG(recv_fexit, struct sock *sk, void *msg, __u64 len, int flags)
{
	__u64 ret = 0;

	if ((flags & MSG_PEEK) || !is_target())
		return 0;
	bpf_get_func_ret(ctx, &ret);
	handle_bytes(sk, (int)ret, false);
	return 0;
}

/* ---- tcp.rtt (and retransmits, kept current on every ACK) ---- */

/* An incoming segment on an established connection: cheap for sockets that are not ours (one lookup). */
static __always_inline void handle_established_rx(const struct sock *sk)
{
	__u64 skp = (__u64)sk, now;
	struct conn_state *c = bpf_map_lookup_elem(&conns, &skp);
	struct series_stats *s;
	__u32 srtt;

	if (!c)
		return;
	s = series_of(&c->key);
	if (!s)
		return;
	sync_retransmits(sk, c, s);
	now = bpf_ktime_get_ns();
	if (now - c->last_rtt_ns < rtt_sample_interval_ns)
		return;
	srtt = srtt_us_of(sk);
	if (!srtt)
		return;
	c->last_rtt_ns = now;
	hist_record_ns(&s->rtt, (__u64)srtt * 1000);
}

SEC("raw_tp/tcp_probe")
int BPF_PROG(rtt_raw_tp, const struct sock *sk)
{
	handle_established_rx(sk);
	return 0;
}

SEC("kprobe/tcp_rcv_established")
int BPF_KPROBE(rtt_kprobe, struct sock *sk)
{
	handle_established_rx(sk);
	return 0;
}

SEC("fentry/tcp_rcv_established")
int BPF_PROG(rtt_fentry, struct sock *sk)
{
	handle_established_rx(sk);
	return 0;
}

/* ---- tcp.retransmits ---- */

static __always_inline void handle_retransmit(const struct sock *sk)
{
	__u64 skp = (__u64)sk;
	struct conn_state *c = bpf_map_lookup_elem(&conns, &skp);
	struct series_stats *s;

	if (!c)
		return;
	s = series_of(&c->key);
	if (s)
		sync_retransmits(sk, c, s);
}

SEC("raw_tp/tcp_retransmit_skb")
int BPF_PROG(retransmit_raw_tp, const struct sock *sk)
{
	handle_retransmit(sk);
	return 0;
}

/* At entry the segment is not yet counted in total_retrans: it is folded in at the next ACK or at close. */
SEC("kprobe/tcp_retransmit_skb")
int BPF_KPROBE(retransmit_kprobe, struct sock *sk)
{
	handle_retransmit(sk);
	return 0;
}

SEC("fentry/tcp_retransmit_skb")
int BPF_PROG(retransmit_fentry, struct sock *sk)
{
	handle_retransmit(sk);
	return 0;
}

/* ---- tcp.resets ---- */

static __always_inline void handle_reset(const struct sock *sk, bool sent)
{
	__u64 skp = (__u64)sk;
	struct conn_state *c;
	struct series_stats *s;

	if (!sk)
		return;
	c = bpf_map_lookup_elem(&conns, &skp);
	if (!c)
		return;
	s = series_of(&c->key);
	if (!s)
		return;
	c->resets++;
	if (sent)
		__sync_fetch_and_add(&s->resets_sent, 1);
	else
		__sync_fetch_and_add(&s->resets_received, 1);
}

/* sk is NULL for a reset answering a segment that matched no socket; we only count resets on our connections. */
SEC("raw_tp/tcp_send_reset")
int BPF_PROG(reset_send_raw_tp, const struct sock *sk)
{
	handle_reset(sk, true);
	return 0;
}

SEC("raw_tp/tcp_receive_reset")
int BPF_PROG(reset_recv_raw_tp, const struct sock *sk)
{
	handle_reset(sk, false);
	return 0;
}

SEC("kprobe/tcp_v4_send_reset")
int BPF_KPROBE(reset_v4_kprobe, const struct sock *sk)
{
	handle_reset(sk, true);
	return 0;
}

SEC("kprobe/tcp_v6_send_reset")
int BPF_KPROBE(reset_v6_kprobe, const struct sock *sk)
{
	handle_reset(sk, true);
	return 0;
}

SEC("kprobe/tcp_send_active_reset")
int BPF_KPROBE(reset_active_kprobe, struct sock *sk)
{
	handle_reset(sk, true);
	return 0;
}

SEC("kprobe/tcp_reset")
int BPF_KPROBE(reset_recv_kprobe, struct sock *sk)
{
	handle_reset(sk, false);
	return 0;
}

SEC("fentry/tcp_v4_send_reset")
int BPF_PROG(reset_v4_fentry, const struct sock *sk)
{
	handle_reset(sk, true);
	return 0;
}

SEC("fentry/tcp_v6_send_reset")
int BPF_PROG(reset_v6_fentry, const struct sock *sk)
{
	handle_reset(sk, true);
	return 0;
}

SEC("fentry/tcp_send_active_reset")
int BPF_PROG(reset_active_fentry, struct sock *sk)
{
	handle_reset(sk, true);
	return 0;
}

SEC("fentry/tcp_reset")
int BPF_PROG(reset_recv_fentry, struct sock *sk)
{
	handle_reset(sk, false);
	return 0;
}
