/*
 * What bpf/spans.bpf.c shares with user space (src/span-slots.ts through src/bpf-layout.ts). Fixed-width types
 * only; test/layout.test.js checks sizes and offsets against the object's BTF.
 */
#ifndef OTEL_NODE_EBPF_SPANS_H
#define OTEL_NODE_EBPF_SPANS_H

/* Slots in span_slots unless user space sets another size (OTEL_NODE_EBPF_MAX_CONNECTIONS). */
#define SPANS_DEFAULT_SLOTS 4096

/* When a followed socket's slot is written (span_sock.after): after its sends, after its receives, or both. */
#define SPAN_AFTER_SEND 1
#define SPAN_AFTER_RECV 2

/* The value of span_socks: which slot, and when to write it. */
struct span_sock {
	__u32 slot;
	__u32 after; /* SPAN_AFTER_* */
};

/*
 * One followed socket's TCP_INFO counters as of its last send or receive by the process: the fields of struct
 * tcp_info that src/tcpinfo.ts uses, read from the same tcp_sock fields that tcp_get_info() reads. 64 bytes, so that
 * a slot never shares a cache line with another.
 *
 * Written only from the send and receive system calls of the process on the socket: in Node, by the thread whose
 * event loop owns the socket, which is also the thread that reads the slot. A reading therefore never sees a slot
 * half written, and needs no lock. cookie is the socket's cookie (SO_COOKIE): a slot belongs to a socket only while
 * its cookie is there, and user space checks it at every reading.
 */
struct span_slot {
	__u32 state;          /* tcpi_state */
	__u32 pad0;
	__u64 cookie;
	__u64 bytes_sent;     /* tcpi_bytes_sent */
	__u64 bytes_retrans;  /* tcpi_bytes_retrans */
	__u64 bytes_received; /* tcpi_bytes_received */
	__u32 notsent_bytes;  /* tcpi_notsent_bytes: write_seq - snd_nxt */
	__u32 srtt_us;        /* tcpi_rtt: srtt_us >> 3 */
	__u32 total_retrans;  /* tcpi_total_retrans */
	__u32 pad[3];
};

#endif
