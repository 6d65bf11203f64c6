/*
 * What bpf/dns.bpf.c shares with user space (src/dns.ts through src/bpf-layout.ts).
 * Fixed-width types only; test/layout.test.js checks sizes and offsets against the object's BTF.
 */
#ifndef OTEL_NODE_EBPF_DNS_H
#define OTEL_NODE_EBPF_DNS_H

/* Host names are at most 253 characters (RFC 1035); longer arguments are cut. */
#define DNS_NAME_LEN 256
/* Lookups in flight at once (an LRU map: a request libuv never completes, e.g. one that failed its own argument
 * checks, is evicted rather than kept). */
#define DNS_MAX_INFLIGHT 1024

/*
 * libuv's public struct uv_getaddrinfo_s (uv.h, unix): UV_REQ_FIELDS (data, type, reserved[6]: 64 bytes), loop,
 * then struct uv__work work_req (40 bytes), cb, hints, hostname, service, addrinfo, retcode. The layout of public
 * request structs is part of libuv's ABI, stable across 1.x (Node 20: 1.46, 22: 1.51, 24: 1.52), because
 * applications allocate them.
 */
#define UV_GETADDRINFO_WORK_REQ_OFF 72
#define UV_GETADDRINFO_RETCODE_OFF 152
#define UV_ECANCELED (-125)
#define UV_EAI_CANCELED (-3003)

/* One completed lookup, sent through the ring buffer: lookups are rare and the name is a string. */
struct dns_event {
	__u64 duration_ns;
	__s32 status;           /* 0, or libuv's UV_EAI_* code */
	__u32 pad;
	char name[DNS_NAME_LEN]; /* NUL-terminated, as the application passed it */
};

/* The program's own counters (.bss): uprobe hits per program, for the cost budget, and what was lost. */
struct dns_health {
	__u64 lookup_hits;      /* uv_getaddrinfo entries, this process's only */
	__u64 done_hits;        /* uv__getaddrinfo_done entries */
	__u64 unmatched;        /* a completion whose start was not seen (started before attach, or evicted) */
	__u64 events_dropped;   /* ring buffer full */
};

#endif
