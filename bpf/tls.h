/*
 * What bpf/tls.bpf.c shares with user space (src/tls.ts through src/bpf-layout.ts).
 * Fixed-width types only; test/layout.test.js checks sizes and offsets against the object's BTF.
 */
#ifndef OTEL_NODE_EBPF_TLS_H
#define OTEL_NODE_EBPF_TLS_H

#include "histogram.h"

/* Handshakes tracked at once, by SSL object (an LRU map: see tls.bpf.c). */
#define TLS_MAX_HANDSHAKES 16384
/* Series: side x outcome; a few dozen at most. */
#define TLS_MAX_SERIES 256

#define TLS_SIDE_CLIENT 1
#define TLS_SIDE_SERVER 2

/* Outcome of a handshake (tls_series_key.err). */
#define TLS_ERR_NONE 0
/* The SSL object was freed (the connection closed) before the handshake finished, without a TLS error. */
#define TLS_ERR_ABORTED 1
/* OpenSSL failed the handshake without an alert to name it. */
#define TLS_ERR_NO_ALERT 2
/* OpenSSL failed the handshake with this TLS alert (RFC 8446 6.2), sent or received: TLS_ERR_ALERT + description. */
#define TLS_ERR_ALERT 0x100

/* OpenSSL's reason code for a received alert: SSL_AD_REASON_OFFSET + the alert's description (ssl.h). */
#define SSL_AD_REASON_OFFSET 1000

struct tls_series_key {
	__u32 side; /* TLS_SIDE_* */
	__u32 err;  /* TLS_ERR_* */
};

/* The programs' own counters (.bss): uprobe hits per program, for the cost budget, the bytes of the opt-in
 * tls.bytes measurement, and what could not be recorded. */
struct tls_health {
	__u64 connect_hits;   /* ossl_statem_connect entries */
	__u64 accept_hits;    /* ossl_statem_accept entries */
	__u64 return_hits;    /* their returns */
	__u64 fatal_hits;     /* ossl_statem_fatal entries */
	__u64 free_hits;      /* SSL_free entries */
	__u64 read_hits;      /* SSL_read returns (tls.bytes) */
	__u64 write_hits;     /* SSL_write returns (tls.bytes) */
	__u64 rx_bytes;       /* plaintext bytes SSL_read returned */
	__u64 tx_bytes;       /* plaintext bytes SSL_write wrote */
	__u64 series_overflow;
	__u64 events_dropped; /* tls_events ring buffer full */
};

/*
 * One finished handshake (done or failed), through the ring buffer tls_events, in the order the thread finished
 * them: the span processor (src/spans.ts) gives a client span the handshake its own connection did. Rare: one per
 * connection.
 */
struct tls_event {
	__u64 duration_ns;
	__u32 side; /* TLS_SIDE_* */
	__u32 err;  /* TLS_ERR_* */
};

#endif
