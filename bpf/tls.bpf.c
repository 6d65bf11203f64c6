// SPDX-License-Identifier: GPL-2.0 OR Apache-2.0
/*
 * TLS handshakes of one process, from uprobes on the OpenSSL that is statically linked into the node binary.
 *
 * Node does not call SSL_do_handshake: its TLSWrap drives the handshake through SSL_read/SSL_write, which call
 * OpenSSL's handshake state machine, ossl_statem_connect (client) or ossl_statem_accept (server), until it returns 1.
 * Measured per connection on Node 20, 22 and 24 (OpenSSL 3.0 and 3.5): client 4 calls (2 of them for TLS 1.3
 * session tickets after the handshake), server 2 calls; SSL_do_handshake 0. So:
 *
 *   tls.handshake  uprobe + uretprobe ossl_statem_connect and ossl_statem_accept: the first call on an SSL object
 *                  starts the handshake, the call that returns 1 ends it; later calls (tickets) are ignored.
 *                  uprobe ossl_statem_fatal(s, alert, reason): OpenSSL failed the handshake, with this alert (sent,
 *                  or received: reason = SSL_AD_REASON_OFFSET + alert); it is rare, so free.
 *                  uprobe SSL_free: forgets the SSL object (its address is reused by the next one), and a handshake
 *                  still unfinished then was aborted (the connection closed without a TLS error).
 *   tls.bytes      uretprobes SSL_read and SSL_write: plaintext bytes. Opt-in: a hit per call, several per request.
 *
 * A hit of a uprobe whose first instruction the kernel single-steps (ossl_statem_*, SSL_free) costs about 13 us on
 * the machines this project runs on; every program counts its hits for the cost budget (src/budget.ts). Handshakes
 * are aggregated here, by side and outcome, into log2 histograms; each one also goes to user space through a ring
 * buffer, for the span of the request whose connection did it (src/spans.ts).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "tls.h"
#include "bits.bpf.h"
#include "target.bpf.h"
#include "ringbuf.bpf.h"

#define TLS_RING_SIZE (64 * 1024)

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct tls_health health = {};

/* Ring-buffer records leave no type in BTF; this keeps it for test/layout.test.js. */
const volatile struct tls_event tls_event_btf = {};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, TLS_RING_SIZE);
} tls_events SEC(".maps");

struct hs_state {
	__u64 start_ns;
	__u32 side;
	__u32 done; /* recorded (finished, failed): later calls on this SSL object are post-handshake messages */
};

/*
 * LRU: SSL_free deletes every entry, but an object freed while the probes were not attached (or a missed SSL_free)
 * must not hold a slot forever. An eviction of a live connection's entry can only make a post-handshake message
 * look like a new handshake if 16384 newer handshakes came between the two.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, TLS_MAX_HANDSHAKES);
	__type(key, __u64); /* SSL * (an SSL_CONNECTION * in OpenSSL 3.2+ starts with it: same address) */
	__type(value, struct hs_state);
} handshakes SEC(".maps");

/* The SSL object of the state-machine call in progress, per thread, from entry to return. A JavaScript callback run
 * inside the state machine (SNI, OCSP) that starts another handshake on the same thread loses the outer sample. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64);   /* pid_tgid */
	__type(value, __u64); /* SSL * */
} calls SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, TLS_MAX_SERIES);
	__type(key, struct tls_series_key);
	__type(value, struct hist);
} series SEC(".maps");

static const struct hist zero_hist;

static __always_inline void record(struct hs_state *st, __u32 err)
{
	struct tls_series_key key = { .side = st->side, .err = err };
	__u64 duration_ns = bpf_ktime_get_ns() - st->start_ns;
	struct tls_event *e;
	struct hist *h;

	st->done = 1;
	e = bpf_ringbuf_reserve(&tls_events, sizeof(*e), 0);
	if (e) {
		e->duration_ns = duration_ns;
		e->side = st->side;
		e->err = err;
		RINGBUF_SUBMIT(&tls_events, TLS_RING_SIZE, e);
	} else {
		__sync_fetch_and_add(&health.events_dropped, 1);
	}
	h = bpf_map_lookup_elem(&series, &key);
	if (!h) {
		bpf_map_update_elem(&series, &key, &zero_hist, BPF_NOEXIST);
		h = bpf_map_lookup_elem(&series, &key);
	}
	if (!h) {
		__sync_fetch_and_add(&health.series_overflow, 1);
		return;
	}
	hist_record_ns(h, duration_ns);
}

static __always_inline void handshake_call(__u64 ssl, __u32 side)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct hs_state *st;

	if (!ssl || !is_target())
		return;
	st = bpf_map_lookup_elem(&handshakes, &ssl);
	if (!st) {
		struct hs_state fresh = { .start_ns = bpf_ktime_get_ns(), .side = side };

		bpf_map_update_elem(&handshakes, &ssl, &fresh, BPF_ANY);
		st = bpf_map_lookup_elem(&handshakes, &ssl);
	}
	if (!st || st->done)
		return;
	bpf_map_update_elem(&calls, &id, &ssl, BPF_ANY);
}

/* int ossl_statem_connect(SSL *s) */
SEC("uprobe")
int BPF_KPROBE(hs_connect, void *ssl)
{
	__sync_fetch_and_add(&health.connect_hits, 1);
	handshake_call((__u64)ssl, TLS_SIDE_CLIENT);
	return 0;
}

/* int ossl_statem_accept(SSL *s) */
SEC("uprobe")
int BPF_KPROBE(hs_accept, void *ssl)
{
	__sync_fetch_and_add(&health.accept_hits, 1);
	handshake_call((__u64)ssl, TLS_SIDE_SERVER);
	return 0;
}

/* Return of either: 1 is a finished handshake; <= 0 is "wants more data" or a failure (ossl_statem_fatal saw it). */
SEC("uretprobe")
int BPF_KRETPROBE(hs_return, int ret)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct hs_state *st;
	__u64 *ssl, key;

	__sync_fetch_and_add(&health.return_hits, 1);
	ssl = bpf_map_lookup_elem(&calls, &id);
	if (!ssl)
		return 0;
	key = *ssl;
	bpf_map_delete_elem(&calls, &id);
	if (ret != 1)
		return 0;
	st = bpf_map_lookup_elem(&handshakes, &key);
	if (st && !st->done)
		record(st, TLS_ERR_NONE);
	return 0;
}

/* void ossl_statem_fatal(SSL_CONNECTION *s, int al, int reason, const char *fmt, ...): OpenSSL 3.x */
SEC("uprobe")
int BPF_KPROBE(hs_fatal, void *ssl, int al, int reason)
{
	__u64 key = (__u64)ssl;
	struct hs_state *st;
	__u32 err = TLS_ERR_NO_ALERT;

	__sync_fetch_and_add(&health.fatal_hits, 1);
	if (!is_target())
		return 0;
	st = bpf_map_lookup_elem(&handshakes, &key);
	if (!st || st->done)
		return 0;
	if (reason >= SSL_AD_REASON_OFFSET && reason < SSL_AD_REASON_OFFSET + 256)
		err = TLS_ERR_ALERT + (reason - SSL_AD_REASON_OFFSET); /* received */
	else if (al >= 0 && al < 256)
		err = TLS_ERR_ALERT + al; /* sent; SSL_AD_NO_ALERT is -1 */
	record(st, err);
	return 0;
}

/* void SSL_free(SSL *s) */
SEC("uprobe")
int BPF_KPROBE(hs_free, void *ssl)
{
	__u64 key = (__u64)ssl;
	struct hs_state *st;

	__sync_fetch_and_add(&health.free_hits, 1);
	if (!is_target())
		return 0;
	st = bpf_map_lookup_elem(&handshakes, &key);
	if (!st)
		return 0;
	if (!st->done)
		record(st, TLS_ERR_ABORTED);
	bpf_map_delete_elem(&handshakes, &key);
	return 0;
}

/* int SSL_read(SSL *s, void *buf, int num): bytes read, or <= 0 */
SEC("uretprobe")
int BPF_KRETPROBE(tls_read_return, int ret)
{
	__sync_fetch_and_add(&health.read_hits, 1);
	if (ret > 0 && is_target())
		__sync_fetch_and_add(&health.rx_bytes, ret);
	return 0;
}

/* int SSL_write(SSL *s, const void *buf, int num): bytes written, or <= 0 */
SEC("uretprobe")
int BPF_KRETPROBE(tls_write_return, int ret)
{
	__sync_fetch_and_add(&health.write_hits, 1);
	if (ret > 0 && is_target())
		__sync_fetch_and_add(&health.tx_bytes, ret);
	return 0;
}
