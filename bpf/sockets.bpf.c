// SPDX-License-Identifier: GPL-2.0 OR Apache-2.0
/*
 * TCP telemetry of one process: connections, handshake time, lifetime, retransmits and resets, per server-side series
 * (see sockets.h), aggregated here so that user space only reads small maps.
 *
 * No program runs per send, receive or segment. Bytes and the RTT of live connections come from the kernel's own
 * per-connection counters, which user space reads on the process's own sockets (TCP_INFO, src/tcpinfo.ts); a
 * connection that ends between two readings reports its final counters here, when its socket is destroyed.
 *
 * Every measurement has three variants over one static handler: kprobe (most kernels), fentry/fexit (BTF kernels
 * where tracing programs are allowed), and raw tracepoints (no tracefs needed). User space loads and attaches them
 * in that order, one measurement at a time, and keeps the first that works (src/probes.ts).
 *
 * Measurements and their hooks:
 *   tcp.state        raw_tp/inet_sock_set_state + raw_tp/tcp_destroy_sock
 *                    | kprobe/tcp_set_state + kprobe/inet_csk_listen_start + kprobe/tcp_v4_destroy_sock
 *                    | fentry/tcp_set_state + fexit/inet_csk_listen_start + fentry/tcp_v4_destroy_sock
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
#include "ringbuf.bpf.h"

#define SOCKETS_RING_SIZE (256 * 1024)

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define SHUTDOWN_MASK 3 /* RCV_SHUTDOWN | SEND_SHUTDOWN */

/* target_tgid and the pid namespace (target.bpf.h) are set by user space between open and load. */

struct sockets_health health = {};

/* Ring-buffer records are reached only through pointers, which leave no type in BTF; this keeps the type in the
 * object, for test/layout.test.js and for bpftool. */
const volatile struct conn_event conn_event_btf = {};

/*
 * Not LRU: an LRU map would evict the state of a long idle connection without a trace. When this one is full, new
 * connections are not tracked one by one (health.conns_untracked counts it); their bytes still count while user space
 * reads them live. Every entry is deleted when its socket is destroyed.
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

/* The process's listening sockets per port: how many (two listen on one port through two addresses, or with
 * SO_REUSEPORT), so that closing one does not forget the port for the others. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, struct listener_key);
	__type(value, __u32);
} listeners SEC(".maps");

/* The same by local address, for a port other processes listen on too, at other addresses (listener_of_ours()). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, struct listener_addr_key);
	__type(value, __u32);
} listener_addrs SEC(".maps");

/*
 * Every listening port of the process's network namespace, whichever process listens (and how many sockets): a
 * connection the process holds on such a port was accepted, by it or by another process that handed it over (a
 * cluster's primary). It is the server side of that connection, never a client of each peer's port. User space seeds
 * it with the listeners of before the probes (a sock_diag dump) and reads it for the connections it reads live.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct listener_key);
	__type(value, __u32);
} netns_listeners SEC(".maps");

/* Each listening socket seen to listen and what it was counted under: when it closes, its port may be gone already
 * (inet_put_port() zeroes it before the move to TCP_CLOSE for a socket that no bind() gave a port of its own). */
#define LISTENING_OURS 1     /* counted in listeners */
#define LISTENING_IN_NETNS 2 /* counted in netns_listeners */
#define LISTENING_ADDR 4     /* counted in listener_addrs */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1280);
	__type(key, __u64);
	__type(value, struct listening_sock);
} listening_socks SEC(".maps");

/* The process's network namespace (inode), set by user space between open and load. */
const volatile __u32 target_netns = 0;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, SOCKETS_RING_SIZE);
} conn_events SEC(".maps");

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

/* ::ffff:a.b.c.d, an IPv4 address reached through a dual-stack socket, becomes a.b.c.d in the first 4 bytes. */
static __always_inline bool unmap_v4(__u8 *addr)
{
	__u32 *w = (__u32 *)addr;

	if (w[0] != 0 || w[1] != 0 || w[2] != bpf_htonl(0xffff))
		return false;
	w[0] = w[3];
	w[2] = 0;
	w[3] = 0;
	return true;
}

/*
 * The socket's local port. Moving to TCP_CLOSE releases an automatically bound port (tcp_set_state() calls
 * inet_put_port() before the state is stored and the raw tracepoint runs), which zeroes skc_num; inet_sport, set once
 * the port is known (connect, accept, listen), stays.
 */
static __always_inline __u16 local_port_of(const struct sock *sk)
{
	__u16 port = BPF_CORE_READ(sk, __sk_common.skc_num);

	return port ? port : bpf_ntohs(BPF_CORE_READ((const struct inet_sock *)sk, inet_sport));
}

/*
 * The current task holds the socket's lock (lock_sock()): it is in a system call on the socket (close(), shutdown(),
 * connect() and setsockopt() move it between states), or, in release_sock(), running what softirq and the timers left
 * for it because it held the lock. Softirq and timers change the state of a socket nobody holds, in any task's
 * context (loopback delivers in the sender's). So a transition with the lock held is the holder's doing, in its own
 * context, and its process holds the socket (or did until this close()).
 */
static __always_inline bool in_holder_context(const struct sock *sk)
{
	return BPF_CORE_READ(sk, sk_lock.owned) != 0;
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
		/* an IPv4 peer of a dual-stack socket is IPv4 on both sides; the server side keeps no address */
		BPF_CORE_READ_INTO(&key->addr, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
		if (unmap_v4(key->addr))
			key->family = NET_IPV4;
		if (side != SIDE_CLIENT)
			__builtin_memset(key->addr, 0, sizeof(key->addr));
	} else {
		return false;
	}
	if (side == SIDE_CLIENT)
		key->port = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	else
		key->port = local_port_of(sk);
	return true;
}

static __always_inline struct listener_key listener_key_of(const struct sock *sk)
{
	struct listener_key lk = {
		.netns = netns_of(sk),
		.port = local_port_of(sk),
	};

	return lk;
}

/* A local port that some process listens on in the socket's network namespace (ours among them). */
static __always_inline bool is_listener_port(const struct sock *sk)
{
	struct listener_key lk = listener_key_of(sk);

	return bpf_map_lookup_elem(&listeners, &lk) || bpf_map_lookup_elem(&netns_listeners, &lk);
}

/* The process listens on the socket's local port itself: it accepts the connections that complete a handshake there. */
/* The socket's local port and address: a listener's, or the one an accepted connection was addressed to. */
static __always_inline void listener_addr_key_of(const struct sock *sk, __u16 port, struct listener_addr_key *ak)
{
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);

	__builtin_memset(ak, 0, sizeof(*ak));
	ak->netns = netns_of(sk);
	ak->port = port;
	if (family == AF_INET) {
		BPF_CORE_READ_INTO((__u32 *)ak->addr, sk, __sk_common.skc_rcv_saddr);
	} else if (family == AF_INET6) {
		BPF_CORE_READ_INTO(&ak->addr, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
		unmap_v4(ak->addr);
	}
}

/* Whose a connection is whose handshake just completed (accepted_by()). */
enum accepted {
	ACCEPTED_ELSEWHERE, /* not through a listening socket of the process */
	ACCEPTED_HERE,
	ACCEPTED_SHARED, /* maybe through another process's socket: SO_REUSEPORT */
};

/*
 * A connection whose handshake completed (in softirq, where the current task is anyone) came through one of the
 * process's listening sockets if its port is one of theirs and, where other processes listen on that port too, its
 * local address is one of theirs (or theirs listen on any). On such a port, SO_REUSEPORT (Node's reusePort, which the
 * accepted socket inherits from its listener) lets another process's socket listen on the same address, and the
 * handshake does not say whose socket queued the connection: the process that turns out to hold it counts it
 * (claim()). A cluster's primary listens alone, on a socket its workers share.
 */
static __always_inline enum accepted accepted_by(const struct sock *sk)
{
	struct listener_key lk = listener_key_of(sk);
	__u32 *ours = bpf_map_lookup_elem(&listeners, &lk), *all;
	struct listener_addr_key ak;

	if (!ours)
		return ACCEPTED_ELSEWHERE;
	all = bpf_map_lookup_elem(&netns_listeners, &lk);
	if (!all || *all <= *ours)
		return ACCEPTED_HERE;
	listener_addr_key_of(sk, lk.port, &ak);
	if (!bpf_map_lookup_elem(&listener_addrs, &ak)) {
		__builtin_memset(ak.addr, 0, sizeof(ak.addr));
		if (!bpf_map_lookup_elem(&listener_addrs, &ak))
			return ACCEPTED_ELSEWHERE;
	}
	return BPF_CORE_READ_BITFIELD_PROBED(sk, __sk_common.skc_reuseport) ? ACCEPTED_SHARED : ACCEPTED_HERE;
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
	c.local_port = local_port_of(sk);
	if (bpf_map_update_elem(&conns, &skp, &c, BPF_NOEXIST)) {
		__sync_fetch_and_add(&health.conns_untracked, 1);
		return NULL;
	}
	__sync_fetch_and_add(&health.conns_tracked, 1);
	return bpf_map_lookup_elem(&conns, &skp);
}

/*
 * A connection of this process that we first see when the process closes it: it was established before the probes
 * were attached, or when the connection map was full, or another process accepted it and handed it over (a cluster's
 * primary). Its close, resets and final bytes count; its handshake and lifetime are unknown here (the process that
 * saw it established records them: handed_over_closed()). On a port that some
 * process of the namespace listens on, it was accepted: the server side.
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

/* The addresses of a connection, IPv4 (also through a dual-stack socket) in the first 4 bytes. */
static __always_inline void read_addresses(const struct sock *sk, struct conn_event *e)
{
	__builtin_memset(e->local_addr, 0, sizeof(e->local_addr));
	__builtin_memset(e->peer_addr, 0, sizeof(e->peer_addr));
	/* e->local_port comes from conn_state: by destroy time, releasing the port has zeroed skc_num */
	e->peer_port = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	if (BPF_CORE_READ(sk, __sk_common.skc_family) == AF_INET) {
		e->family = NET_IPV4;
		BPF_CORE_READ_INTO((__u32 *)e->local_addr, sk, __sk_common.skc_rcv_saddr);
		BPF_CORE_READ_INTO((__u32 *)e->peer_addr, sk, __sk_common.skc_daddr);
		return;
	}
	e->family = NET_IPV6;
	BPF_CORE_READ_INTO(&e->local_addr, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
	BPF_CORE_READ_INTO(&e->peer_addr, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
	if (unmap_v4(e->peer_addr)) {
		unmap_v4(e->local_addr);
		e->family = NET_IPV4;
	}
}

/*
 * The connection's final byte counts, from the same kernel counters as TCP_INFO (src/tcpinfo.ts countersOf()):
 * written = transmitted (bytes_sent) less retransmitted, plus what is still queued (write_seq - snd_nxt) less our
 * FIN while it waits there (it takes a sequence number); received = bytes_received, less the one the kernel counts
 * for the peer's FIN (SOCK_DONE: tcp_fin() ran).
 */
static __always_inline void read_counters(const struct sock *sk, struct conn_event *e)
{
	const struct tcp_sock *tp = (const struct tcp_sock *)sk;
	__s32 queued = BPF_CORE_READ(tp, write_seq) - BPF_CORE_READ(tp, snd_nxt);
	__u64 received = BPF_CORE_READ(tp, bytes_received);
	unsigned long flags = BPF_CORE_READ(sk, __sk_common.skc_flags);
	__u8 state = BPF_CORE_READ(sk, __sk_common.skc_state);

	if (queued > 0 && (state == TCP_FIN_WAIT1 || state == TCP_CLOSING || state == TCP_LAST_ACK))
		queued--;

	e->tx_bytes = BPF_CORE_READ(tp, bytes_sent) - BPF_CORE_READ(tp, bytes_retrans) + (queued > 0 ? queued : 0);
	if (received && (flags & (1UL << bpf_core_enum_value(enum sock_flags, SOCK_DONE))))
		received--;
	e->rx_bytes = received;
}

/* The connection's final counts and addresses, kept at TCP_CLOSE (see conn_state). */
static __always_inline void keep_final(const struct sock *sk, struct conn_state *c)
{
	struct conn_event e;

	read_addresses(sk, &e);
	read_counters(sk, &e);
	c->tx_bytes = e.tx_bytes;
	c->rx_bytes = e.rx_bytes;
	c->peer_port = e.peer_port;
	__builtin_memcpy(c->local_addr, e.local_addr, sizeof(c->local_addr));
	c->final = 1;
}

static __always_inline void emit(const struct sock *sk, const struct conn_state *c, __u8 kind, __u64 now, __u64 duration)
{
	struct conn_event *e = bpf_ringbuf_reserve(&conn_events, sizeof(*e), 0);

	if (!e) {
		__sync_fetch_and_add(&health.events_dropped, 1);
		return;
	}
	e->key = c->key;
	e->ts_ns = now;
	e->duration_ns = duration;
	e->srtt_us = kind == CONN_EVENT_CLOSED ? srtt_us_of(sk) : 0;
	e->retransmits = c->retrans_seen;
	e->local_port = c->local_port;
	e->kind = kind;
	__builtin_memset(e->pad, 0, sizeof(e->pad));
	read_addresses(sk, e);
	if (c->final) {
		e->tx_bytes = c->tx_bytes;
		e->rx_bytes = c->rx_bytes;
		e->peer_port = c->peer_port;
		__builtin_memcpy(e->local_addr, c->local_addr, sizeof(e->local_addr));
	} else {
		read_counters(sk, e);
	}
	RINGBUF_SUBMIT(&conn_events, SOCKETS_RING_SIZE, e);
}

/*
 * The process frees a connection it was not following: it reached TCP_CLOSE in softirq (the peer reset it, a
 * timeout) and had been established before the probes, or handed over by another process (a cluster's primary). Its
 * bytes since the last live reading count; its close and lifetime are unknown here.
 */
static __always_inline void report_untracked(const struct sock *sk)
{
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	struct conn_state c = {};
	struct conn_event e;

	if (family != AF_INET && family != AF_INET6)
		return;
	/* tcp_disconnect() (connect(AF_UNSPEC)) clears the peer and leaves write_seq ahead of snd_una */
	if (!BPF_CORE_READ(sk, __sk_common.skc_dport))
		return;
	read_counters(sk, &e);
	if (!e.tx_bytes && !e.rx_bytes) /* never connected, or nothing carried */
		return;
	if (!fill_key(sk, is_listener_port(sk) ? SIDE_SERVER : SIDE_CLIENT, &c.key))
		return;
	c.local_port = local_port_of(sk);
	c.retrans_seen = BPF_CORE_READ((struct tcp_sock *)sk, total_retrans);
	emit(sk, &c, CONN_EVENT_CLOSED, bpf_ktime_get_ns(), 0);
	__sync_fetch_and_add(&health.conns_adopted, 1);
}

/* ---- tcp.state: connects, accepts, closes, listeners ---- */

static __always_inline bool count_port(void *map, const void *lk)
{
	__u32 one = 1, *n = bpf_map_lookup_elem(map, lk);

	if (!n && !bpf_map_update_elem(map, lk, &one, BPF_NOEXIST))
		return true;
	if (!n) /* another CPU created it first, or the map is full */
		n = bpf_map_lookup_elem(map, lk);
	if (!n)
		return false;
	__sync_fetch_and_add(n, 1);
	return true;
}

static __always_inline void uncount_port(void *map, const void *lk)
{
	__u32 *n = bpf_map_lookup_elem(map, lk);

	if (n && __sync_fetch_and_add(n, -1) <= 1)
		bpf_map_delete_elem(map, lk);
}

/* A listening socket is gone: what on_listen() counted it under. */
static __always_inline void uncount_listener(const struct sock *sk, const struct listening_sock *ls)
{
	struct listener_addr_key ak;

	if (ls->flags & LISTENING_IN_NETNS)
		uncount_port(&netns_listeners, &ls->key);
	if (ls->flags & LISTENING_OURS)
		uncount_port(&listeners, &ls->key);
	if (ls->flags & LISTENING_ADDR) {
		listener_addr_key_of(sk, ls->key.port, &ak);
		uncount_port(&listener_addrs, &ak);
	}
}

/* listen(): always in the listening process's context. Ours count in both maps, another process's in the namespace's. */
static __always_inline void on_listen(const struct sock *sk)
{
	struct listening_sock ls = { .key = listener_key_of(sk) };
	bool ours = is_target();
	__u64 skp = (__u64)sk;

	if (!ls.key.port || (!ours && ls.key.netns != target_netns))
		return;
	if (ours) {
		struct listener_addr_key ak;

		if (!count_port(&listeners, &ls.key)) {
			__sync_fetch_and_add(&health.listeners_untracked, 1);
			return;
		}
		ls.flags |= LISTENING_OURS;
		listener_addr_key_of(sk, ls.key.port, &ak);
		if (count_port(&listener_addrs, &ak))
			ls.flags |= LISTENING_ADDR;
		else
			__sync_fetch_and_add(&health.listeners_untracked, 1);
	}
	if (ls.key.netns == target_netns) {
		if (count_port(&netns_listeners, &ls.key))
			ls.flags |= LISTENING_IN_NETNS;
		else
			__sync_fetch_and_add(&health.listeners_untracked, 1);
	}
	if (bpf_map_update_elem(&listening_socks, &skp, &ls, BPF_NOEXIST)) {
		__sync_fetch_and_add(&health.listeners_untracked, 1);
		uncount_listener(sk, &ls);
	}
}

/* A listening socket closes: one fewer on its port, which is forgotten with the last. A listener of before the probes
 * (user space recorded its port, not the socket) is forgotten by its port, if it still has one. */
static __always_inline void on_listener_close(const struct sock *sk)
{
	__u64 skp = (__u64)sk;
	struct listening_sock *known = bpf_map_lookup_elem(&listening_socks, &skp);
	struct listening_sock ls = {};

	if (known) {
		ls = *known;
		bpf_map_delete_elem(&listening_socks, &skp);
	} else {
		ls.key = listener_key_of(sk);
		if (!ls.key.port)
			return;
		if (ls.key.netns == target_netns)
			uncount_port(&netns_listeners, &ls.key);
		/* user space counted our listeners of before the probes once per port, and once per port and address */
		if (is_target()) {
			struct listener_addr_key ak;

			bpf_map_delete_elem(&listeners, &ls.key);
			listener_addr_key_of(sk, ls.key.port, &ak);
			bpf_map_delete_elem(&listener_addrs, &ak);
		}
		return;
	}
	uncount_listener(sk, &ls);
}

/*
 * The connection is another process's now: its bytes and close are that process's to count; user space forgets what
 * it read of it. The entry stays, inert, until the socket is freed, which may be by this process's close() of its
 * last reference (a cluster's primary closes the handle it passed on once the worker has taken it), so that the
 * free is not taken for one of a connection this process never followed.
 */
static __always_inline void hand_over(const struct sock *sk, struct conn_state *c, __u64 now)
{
	emit(sk, c, CONN_EVENT_HANDED_OVER, now, 0);
	c->handed_over = 1;
	__sync_fetch_and_add(&health.conns_handed_over, 1);
}

/* An accepted connection's opening: the handshake's RTT sample is the server's view of its duration. */
static __always_inline void count_opening(const struct conn_state *c, struct series_stats *s)
{
	if (!s)
		return;
	__sync_fetch_and_add(&s->opened, 1);
	if (c->handshake_us)
		hist_record_ns(&s->connect, (__u64)c->handshake_us * 1000);
}

/*
 * A connection accepted on a shared port turns out to be this process's: it closes it, or frees it holding it. What
 * was left for its holder to count (the opening, the resets until now) counts here.
 */
static __always_inline void claim(struct conn_state *c)
{
	struct series_stats *s = series_of(&c->key);

	c->shared_port = 0;
	count_opening(c, s);
	if (!s)
		return;
	if (c->resets_sent_held)
		__sync_fetch_and_add(&s->resets_sent, c->resets_sent_held);
	if (c->resets_received_held)
		__sync_fetch_and_add(&s->resets_received, c->resets_received_held);
}

/* A connection reached TCP_CLOSE (at c->closed_ns): its close, lifetime, last RTT and retransmits. */
static __always_inline void count_close(const struct sock *sk, struct conn_state *c)
{
	struct series_stats *s = series_of(&c->key);
	__u32 srtt;

	if (!s)
		return;
	srtt = srtt_us_of(sk);
	sync_retransmits(sk, c, s);
	__sync_fetch_and_add(&s->closed, 1);
	if (c->established_ns)
		hist_record_ns(&s->lifetime, c->closed_ns - c->established_ns);
	if (srtt)
		hist_record_ns(&s->rtt, (__u64)srtt * 1000);
}

/*
 * A connection handed over ends. The holder counts its bytes and its close but never saw it established: its lifetime
 * is ours to record, as its opening was, so that it has one tcp.connection.duration however many processes it passed.
 */
static __always_inline void handed_over_closed(struct conn_state *c, __u64 now)
{
	struct series_stats *s;

	/* on a shared port, the holder may be a process that accepted it on its own listening socket, and records it */
	if (c->closed_ns || !c->established_ns || c->shared_port)
		return;
	c->closed_ns = now;
	s = series_of(&c->key);
	if (s)
		hist_record_ns(&s->lifetime, now - c->established_ns);
}

static __always_inline void handle_set_state(const struct sock *sk, int oldstate, int newstate)
{
	__u64 skp = (__u64)sk, now;
	struct conn_state *c;
	struct series_stats *s;
	bool closing;

	if (newstate == TCP_LISTEN) {
		on_listen(sk);
		return;
	}
	if (oldstate == TCP_LISTEN && newstate == TCP_CLOSE) {
		on_listener_close(sk);
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
	if (c && c->handed_over) {
		if (newstate == TCP_CLOSE)
			handed_over_closed(c, now);
		return;
	}
	/* close() and shutdown() move a connection to FIN_WAIT1 or LAST_ACK, always in the holder's context. close()
	 * with unread data or SO_LINGER 0 (socket.resetAndDestroy()) moves it to TCP_CLOSE, with the lock held and
	 * sk_shutdown already SHUTDOWN_MASK (__tcp_close() sets it first). Other tasks move a connection to TCP_CLOSE
	 * with the lock held too, but through tcp_done(), which sets sk_shutdown after: tcp_abort() (ss -K, a
	 * SOCK_DESTROY program) and a reset queued while a diagnostics reader held the lock (tcp_get_info()). */
	closing = newstate == TCP_FIN_WAIT1 || newstate == TCP_LAST_ACK ||
		  (newstate == TCP_CLOSE && oldstate != TCP_SYN_SENT && in_holder_context(sk) &&
		   BPF_CORE_READ_BITFIELD_PROBED(sk, sk_shutdown) == SHUTDOWN_MASK);
	if (c && closing && !c->closed_here && !is_target()) {
		/* Another process closes it, in its own context: we accepted it and handed it over (a cluster's primary
		 * passes accepted connections to its workers), or a child inherited it. Its bytes and close are the
		 * holder's, who adopts it now; user space forgets what it read of it. */
		hand_over(sk, c, now);
		if (newstate == TCP_CLOSE) /* its close() reset it */
			handed_over_closed(c, now);
		return;
	}
	/* The process closes a connection that predates the probes, or that another process handed over to it. */
	if (!c && closing && is_target())
		c = adopt(sk);
	if (c && closing) {
		c->closed_here = 1;
		if (c->shared_port)
			claim(c);
	}
	if (newstate == TCP_ESTABLISHED) {
		if (oldstate == TCP_SYN_RECV && !c) {
			/* An accepted connection: the SYN-ACK's RTT sample is taken just before this transition
			 * (tcp_rcv_state_process), so srtt is the server's view of the handshake. */
			enum accepted by = accepted_by(sk);

			if (by == ACCEPTED_ELSEWHERE)
				return;
			c = track(sk, SIDE_SERVER, now);
			if (!c)
				return;
			c->established_ns = now;
			/* none when the kernel took no sample: a SYN-ACK sent again, without timestamps (Karn) */
			c->handshake_us = srtt_us_of(sk);
			if (by == ACCEPTED_SHARED)
				c->shared_port = 1; /* counted by the process that turns out to hold it: claim() */
			else
				count_opening(c, series_of(&c->key));
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
	keep_final(sk, c);
	if (c->shared_port) /* in softirq, on a shared port: the free tells whose it was (handle_destroy) */
		return;
	if (oldstate == TCP_SYN_SENT) {
		/* Connect failed. tcp_reset() and tcp_write_err() set sk_err before tcp_done() closes the socket.
		 * Without it: no local port was free (connect() moves to SYN_SENT before it picks one, and closes the
		 * socket when it finds none), or the application gave up first. */
		__u32 err = BPF_CORE_READ(sk, sk_err);

		if (!err)
			err = local_port_of(sk) ? 103 /* ECONNABORTED */ : 99 /* EADDRNOTAVAIL */;
		c->key.err = err;
		s = series_of(&c->key);
		if (s)
			__sync_fetch_and_add(&s->failed, 1);
		return;
	}
	count_close(sk, c);
}

/*
 * The socket is freed: report the connection (with every byte the application read after TCP_CLOSE) and forget it.
 * A socket that reached TCP_CLOSE while a process held it (the peer reset it, a timeout) is freed by that process's
 * close(), in its context and with the lock held; one that its holder closed first is freed later, by softirq or a
 * timer, in any task's context.
 */
static __always_inline void handle_destroy(const struct sock *sk)
{
	__u64 skp = (__u64)sk;
	struct conn_state *c = bpf_map_lookup_elem(&conns, &skp);

	if (!c) {
		if (in_holder_context(sk) && is_target())
			report_untracked(sk);
		return;
	}
	if (c->handed_over) {
		bpf_map_delete_elem(&conns, &skp);
		return;
	}
	if (c->shared_port) {
		/* accepted on a shared port, closed in softirq (a reset, a timeout), and nobody's yet: ours if we free it
		 * holding it, and then what its TCP_CLOSE left uncounted counts now */
		if (!in_holder_context(sk) || !is_target()) {
			bpf_map_delete_elem(&conns, &skp);
			__sync_fetch_and_add(&health.conns_handed_over, 1);
			return;
		}
		claim(c);
		if (c->closed_ns)
			count_close(sk, c);
	}
	if (!c->closed_here && in_holder_context(sk) && !is_target()) {
		/* Nobody closed it, it reached TCP_CLOSE in softirq (its close counted here), and another process frees
		 * it: that process held it, we handed it over. */
		emit(sk, c, CONN_EVENT_HANDED_OVER, bpf_ktime_get_ns(), 0);
		bpf_map_delete_elem(&conns, &skp);
		__sync_fetch_and_add(&health.conns_handed_over, 1);
		return;
	}
	if (c->key.err)
		emit(sk, c, CONN_EVENT_FAILED, c->closed_ns, c->closed_ns - c->start_ns);
	else
		emit(sk, c, CONN_EVENT_CLOSED, c->closed_ns ? c->closed_ns : bpf_ktime_get_ns(),
		     c->established_ns && c->closed_ns ? c->closed_ns - c->established_ns : 0);
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

/*
 * listen() through kprobes: inet_csk_listen_start() stores TCP_LISTEN before it takes the port, and a listen that
 * finds the port taken (EADDRINUSE after a bind that SO_REUSEADDR let through) goes back to TCP_CLOSE by
 * inet_sk_set_state(), which tcp_set_state()'s kprobe does not see. So the listener is counted on return, and only if
 * it listens: the entry keeps the socket for the return probe, per thread. (The raw tracepoint sees both transitions.)
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH); /* a return that never came (kretprobe instances exhausted) ages out */
	__uint(max_entries, 1024);
	__type(key, __u64); /* pid_tgid */
	__type(value, __u64);
} listen_calls SEC(".maps");

SEC("kprobe/inet_csk_listen_start")
int BPF_KPROBE(listen_kprobe, struct sock *sk)
{
	__u64 id = bpf_get_current_pid_tgid(), skp = (__u64)sk;

	bpf_map_update_elem(&listen_calls, &id, &skp, BPF_ANY);
	return 0;
}

SEC("kretprobe/inet_csk_listen_start")
int BPF_KRETPROBE(listen_kretprobe, int ret)
{
	__u64 id = bpf_get_current_pid_tgid(), *skp = bpf_map_lookup_elem(&listen_calls, &id);
	const struct sock *sk;

	if (!skp)
		return 0;
	sk = (const struct sock *)*skp;
	bpf_map_delete_elem(&listen_calls, &id);
	if (ret == 0)
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

/* on return, whatever the function's arity (a backlog argument before 5.19): a failed listen is back in TCP_CLOSE */
SEC("fexit/inet_csk_listen_start")
int BPF_PROG(listen_fexit, struct sock *sk)
{
	if (BPF_CORE_READ(sk, __sk_common.skc_state) == TCP_LISTEN)
		on_listen(sk);
	return 0;
}

/* ---- tcp.retransmits ---- */

static __always_inline void handle_retransmit(const struct sock *sk)
{
	__u64 skp = (__u64)sk;
	struct conn_state *c = bpf_map_lookup_elem(&conns, &skp);
	struct series_stats *s;

	/* shared_port: its holder adds them all when it claims and closes it (sync_retransmits() in count_close()) */
	if (!c || c->handed_over || c->shared_port)
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

/* At entry the segment is not yet counted in total_retrans: it is folded in at the next retransmit or at close. */
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
	if (!c || c->handed_over)
		return;
	c->resets++;
	if (c->shared_port) { /* for whichever process holds it: claim() */
		if (sent)
			c->resets_sent_held++;
		else
			c->resets_received_held++;
		return;
	}
	s = series_of(&c->key);
	if (!s)
		return;
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
