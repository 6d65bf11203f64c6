/*
 * What bpf/sockets.bpf.c shares with user space (src/sockets.ts through src/bpf-layout.ts): map keys, map values,
 * ring-buffer records and constants. Fixed-width types only; test/layout.test.js checks sizes and offsets against
 * the object's BTF.
 */
#ifndef OTEL_NODE_EBPF_SOCKETS_H
#define OTEL_NODE_EBPF_SOCKETS_H

#include "histogram.h"

/* Our own codes, not AF_*: a v4-mapped IPv6 socket (::ffff:a.b.c.d) is reported as IPv4, as it is on the wire. */
#define NET_IPV4 4
#define NET_IPV6 6

/* Which side of the connection this process is. SIDE_NONE marks the overflow series (the series map was full). */
#define SIDE_NONE 0
#define SIDE_CLIENT 1 /* the process connected */
#define SIDE_SERVER 2 /* the process accepted */

/*
 * One series of every socket metric: the server side of the connection. For a connection the process opened, that
 * is the peer's address and port; for one it accepted, only the process's own listening port (addr is all zero), so
 * that client addresses never multiply series. err is the errno of a failed connect (0 otherwise): failures get
 * series of their own.
 */
struct series_key {
	__u8 addr[16]; /* IPv4 in the first 4 bytes, network order */
	__u16 port;    /* host order */
	__u8 family;   /* NET_IPV4 | NET_IPV6 */
	__u8 side;     /* SIDE_* */
	__u32 err;
};

/* Bytes and live RTT samples are not here: user space reads them from the kernel's own per-connection counters
 * (TCP_INFO, src/tcpinfo.ts), and from conn_event for connections that end between two reads. */
struct series_stats {
	__u64 opened;      /* reached ESTABLISHED */
	__u64 failed;      /* connect never reached ESTABLISHED (key.err says why) */
	__u64 closed;
	__u64 retransmits; /* segments, from tcp_sock.total_retrans */
	__u64 resets_sent;
	__u64 resets_received;
	struct hist connect;  /* handshake: SYN_SENT -> ESTABLISHED (client); SYN-ACK RTT (server) */
	struct hist lifetime; /* ESTABLISHED -> CLOSE */
	struct hist rtt;      /* smoothed RTT at close (user space adds the samples of live connections) */
};

/*
 * Per-connection state, keyed by the kernel's struct sock address. It lives until the socket is destroyed, not just
 * until TCP_CLOSE: a connection closed by the peer (TIME_WAIT, CLOSE after FIN) may still hold data the application
 * has not read yet, and those bytes belong to it.
 */
struct conn_state {
	struct series_key key;
	__u64 start_ns;        /* connect() for clients, ESTABLISHED for accepted connections */
	__u64 established_ns;  /* 0 while connecting, or if the connection predates the probes */
	__u64 closed_ns;       /* when it reached TCP_CLOSE; 0 before */
	__u32 retrans_seen;    /* tcp_sock.total_retrans already added to the series */
	__u32 resets;
	__u16 local_port;
	/* At TCP_CLOSE, for the destroy's record: tcp_disconnect() (SO_LINGER 0: socket.resetAndDestroy()) moves the socket
	 * to TCP_CLOSE first, then zeroes its byte counters, its peer port and its local address and moves write_seq on. */
	__u16 peer_port;
	__u8 final;            /* the three below hold the values at TCP_CLOSE */
	__u8 closed_here;      /* the process closed it (close(), shutdown(), SO_LINGER 0), in its own context */
	__u8 handed_over;      /* another process holds and closed it: nothing more counts here (kept until destroyed) */
	__u8 shared_port;      /* accepted on a port where other processes listen too (SO_REUSEPORT, another address) */
	__u64 tx_bytes;
	__u64 rx_bytes;
	__u8 local_addr[16];
	/* shared_port: what the process that holds it counts, once it is known to be this one (claim()) */
	__u32 handshake_us;    /* srtt at the handshake */
	__u16 resets_sent_held;
	__u16 resets_received_held;
};

/* Listening sockets of the process: accepted connections are recognised by their local port and network namespace. */
struct listener_key {
	__u32 netns; /* net namespace inode */
	__u16 port;  /* host order */
	__u16 pad;
};

/* Counters of everything the kernel side could not record, so that nothing is lost silently. */
struct sockets_health {
	__u64 series_overflow;  /* updates that went to the overflow series because the series map was full */
	__u64 conns_tracked;    /* conn_state entries created */
	__u64 conns_untracked;  /* conn_state entries that could not be created: the connection map was full */
	__u64 conns_adopted;    /* connections first seen when the process closed them (they predate the probes) */
	__u64 events_dropped;   /* ring-buffer records lost because the buffer was full */
	__u64 listeners_untracked; /* listening sockets not recorded because the listener maps were full: the connections
				    * they accept are not recognised as the process's own until they close */
	__u64 conns_handed_over; /* connections this process accepted and another one closed: a cluster's primary hands
				  * them to a worker (SCM_RIGHTS), whose own instance counts their bytes and close */
};

/* One of the process's listening sockets by port and local address (all zero: any; IPv4, and IPv4-mapped IPv6, in the
 * first four bytes). */
struct listener_addr_key {
	__u32 netns;
	__u16 port;
	__u16 pad;
	__u8 addr[16];
};

/* A listening socket in the process's network namespace, of this process or of another one (listening_socks). */
struct listening_sock {
	struct listener_key key;
	__u32 flags; /* LISTENING_OURS, LISTENING_IN_NETNS, LISTENING_ADDR (bpf/sockets.bpf.c) */
};

/*
 * Ring-buffer record: a connection ended (its socket is destroyed), or a connect failed. Rare by nature; everything
 * else stays in the maps. It carries the connection's final byte counts, derived from the kernel's counters as
 * src/tcpinfo.ts derives them from TCP_INFO, and its addresses, by which user space matches it with the readings it
 * took while the connection lived.
 */
#define CONN_EVENT_CLOSED 1
#define CONN_EVENT_FAILED 2
#define CONN_EVENT_HANDED_OVER 3 /* another process closed it: see conns_handed_over */

struct conn_event {
	struct series_key key;
	__u64 ts_ns;          /* CLOCK_MONOTONIC */
	__u64 duration_ns;    /* lifetime (closed) or connect attempt (failed) */
	__u64 tx_bytes;       /* written by the application: transmitted once, or still queued */
	__u64 rx_bytes;       /* arrived in order, the peer's FIN not counted */
	__u32 srtt_us;
	__u32 retransmits;
	__u16 local_port;
	__u8 kind;            /* CONN_EVENT_* */
	__u8 family;          /* NET_IPV4 | NET_IPV6 of the addresses below (IPv4 in the first 4 bytes) */
	__u16 peer_port;
	__u8 pad[2];
	__u8 local_addr[16];
	__u8 peer_addr[16];
};

#define SOCKETS_DEFAULT_MAX_CONNS 16384
#define SOCKETS_DEFAULT_MAX_SERIES 1024

#endif
