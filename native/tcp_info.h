// TCP_INFO of one socket as doubles. Its own translation unit: the kernel's <linux/tcp.h> (which has the byte
// counters) cannot be included next to glibc's <netinet/tcp.h>, which libuv's headers pull in.
#pragma once

#ifdef __cplusplus
extern "C" {
#endif

// Slots of the Float64Array filled by tcpInfoReader() and in each record that tcpSocketReader()'s function returns
// (src/tcpinfo.ts names them).
enum {
  OTEL_TCP_STATE,
  OTEL_TCP_BYTES_SENT,      // tcpi_bytes_sent: payload transmitted, retransmissions included (4.19+)
  OTEL_TCP_BYTES_RETRANS,   // tcpi_bytes_retrans (4.19+)
  OTEL_TCP_BYTES_RECEIVED,  // tcpi_bytes_received: payload received in order; a received FIN adds 1 (4.1+)
  OTEL_TCP_NOTSENT_BYTES,   // tcpi_notsent_bytes: written by the application, not yet transmitted
  OTEL_TCP_SRTT_US,         // tcpi_rtt: smoothed RTT
  OTEL_TCP_TOTAL_RETRANS,   // tcpi_total_retrans: segments
  OTEL_TCP_SEGS_OUT,
  OTEL_TCP_SEGS_IN,
  OTEL_TCP_INFO_SLOTS,
};

// Fills out[OTEL_TCP_INFO_SLOTS]; returns 0 or -errno (-EOPNOTSUPP or -ENOPROTOOPT: not TCP; -ENOTSOCK;
// -EPROTONOSUPPORT: a kernel older than 4.19, without the byte counters).
int otel_read_tcp_info(int fd, double* out);

#ifdef __cplusplus
}
#endif
