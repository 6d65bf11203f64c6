// See tcp_info.h.
#include "tcp_info.h"

#include <errno.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <stddef.h>
#include <sys/socket.h>

int otel_read_tcp_info(int fd, double* out) {
  struct tcp_info info = {0};
  socklen_t len = sizeof(info);
  if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) != 0) return -errno;
  if (len < offsetof(struct tcp_info, tcpi_bytes_retrans) + sizeof(info.tcpi_bytes_retrans)) return -EPROTONOSUPPORT;
  out[OTEL_TCP_STATE] = info.tcpi_state;
  out[OTEL_TCP_BYTES_SENT] = (double)info.tcpi_bytes_sent;
  out[OTEL_TCP_BYTES_RETRANS] = (double)info.tcpi_bytes_retrans;
  out[OTEL_TCP_BYTES_RECEIVED] = (double)info.tcpi_bytes_received;
  out[OTEL_TCP_NOTSENT_BYTES] = info.tcpi_notsent_bytes;
  out[OTEL_TCP_SRTT_US] = info.tcpi_rtt;
  out[OTEL_TCP_TOTAL_RETRANS] = info.tcpi_total_retrans;
  out[OTEL_TCP_SEGS_OUT] = info.tcpi_segs_out;
  out[OTEL_TCP_SEGS_IN] = info.tcpi_segs_in;
  return 0;
}
