/*
 * What bpf/spans.bpf.c shares with user space (src/span-slots.ts through src/bpf-layout.ts). Fixed-width types
 * only; test/layout.test.js checks sizes and offsets against the object's BTF.
 */
#ifndef OTEL_NODE_EBPF_SPANS_H
#define OTEL_NODE_EBPF_SPANS_H

/* Slots in span_slots unless user space sets another power of two (and slot_shift with it). */
#define SPANS_DEFAULT_SLOTS 4096

/*
 * A socket's slot is a hash of its cookie: the top bits of cookie * SPAN_SLOT_HASH mod 2^64 (Fibonacci hashing).
 * The kernel hands out cookies in sequence, as sockets are first asked for one, and this hash spreads a sequence
 * evenly: of 4096 slots, two sockets whose cookies differ by less than 2584 never share one. src/span-slots.ts
 * computes the same.
 */
#define SPAN_SLOT_HASH 0x9E3779B97F4A7C15ULL

/* When a followed socket's slot is written (span_slot.after): after its sends, after its receives, or both. */
#define SPAN_AFTER_SEND 1
#define SPAN_AFTER_RECV 2

/*
 * One slot of span_slots, 64 bytes, so that a slot never shares a cache line with another.
 *
 * key and after are user space's, written through its mapping of the array: the cookie (SO_COOKIE) of the socket
 * that follows this slot (0: none) and which of its calls write it. The rest is the program's: the fields of struct
 * tcp_info that src/tcpinfo.ts uses, read from the same tcp_sock fields that tcp_get_info() reads, as of the
 * socket's last such call, and the cookie of the socket they are of (user space checks it at every reading: the
 * counters of a slot's previous socket stay until its next one is written).
 *
 * The program writes a slot only from the socket's own send and receive system calls: in Node, on the thread whose
 * event loop owns the socket, which is also the thread that reads the slot. A reading therefore never sees a slot
 * half written, and needs no lock.
 */
struct span_slot {
	__u64 key;            /* user space: the cookie of the socket followed here; 0: free */
	__u32 after;          /* user space: SPAN_AFTER_* */
	__u32 state;          /* tcpi_state */
	__u64 cookie;         /* the socket the counters are of */
	__u64 bytes_sent;     /* tcpi_bytes_sent */
	__u64 bytes_retrans;  /* tcpi_bytes_retrans */
	__u64 bytes_received; /* tcpi_bytes_received */
	__u32 notsent_bytes;  /* tcpi_notsent_bytes: write_seq - snd_nxt */
	__u32 srtt_us;        /* tcpi_rtt: srtt_us >> 3 */
	__u32 total_retrans;  /* tcpi_total_retrans */
	__u32 pad;
};

#endif
