// The tail benchmark's load generator (bench/tail.js builds and runs it): CONNS keep-alive connections to
// 127.0.0.1:PORT, each with one GET / in flight (closed loop, as `wrk -t1 -cCONNS`), for SECONDS. Unlike wrk it
// writes every request down, so that the analysis can leave out the first seconds after connecting and can see when
// the slow requests happened: OUT gets one record per response, two native-endian u64, the CLOCK_MONOTONIC time the
// request was written (ns) and its latency (ns). Prints "<responses> <seconds>" at the end. It reads responses with
// a Content-Length (bench/server.js sends one), not chunked ones.
//
//   tail PORT CONNS SECONDS OUT
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static const char REQUEST[] = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

struct conn {
	int fd;
	uint64_t sent; /* when the request in flight was written */
	int len;       /* bytes of response in buf */
	char buf[16384];
};

static uint64_t now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static int send_request(struct conn *c)
{
	c->sent = now_ns();
	return write(c->fd, REQUEST, sizeof(REQUEST) - 1) == sizeof(REQUEST) - 1 ? 0 : -1;
}

/* Length of the first complete response in buf (headers and Content-Length body), or 0 while incomplete. */
static int response_length(const struct conn *c)
{
	const char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
	if (!end)
		return 0;
	int head = (int)(end - c->buf) + 4, body = 0;
	for (const char *p = c->buf; p < end; p++) {
		if (*p == '\n' && strncasecmp(p + 1, "content-length:", 15) == 0) {
			body = atoi(p + 1 + 15);
			break;
		}
	}
	return c->len >= head + body ? head + body : 0;
}

int main(int argc, char **argv)
{
	if (argc != 5) {
		fprintf(stderr, "usage: %s PORT CONNS SECONDS OUT\n", argv[0]);
		return 2;
	}
	int port = atoi(argv[1]), nconns = atoi(argv[2]);
	double seconds = atof(argv[3]);
	FILE *out = fopen(argv[4], "wb");
	if (!out) {
		perror(argv[4]);
		return 1;
	}
	struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons(port) };
	inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
	int ep = epoll_create1(0);
	struct conn *conns = calloc(nconns, sizeof(*conns));
	for (int i = 0; i < nconns; i++) {
		int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (connect(fd, (struct sockaddr *)&addr, sizeof(addr))) {
			perror("connect");
			return 1;
		}
		conns[i].fd = fd;
		struct epoll_event e = { .events = EPOLLIN, .data.u32 = i };
		epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e);
	}

	uint64_t start = now_ns(), end = start + (uint64_t)(seconds * 1e9), responses = 0;
	for (int i = 0; i < nconns; i++)
		if (send_request(&conns[i])) {
			perror("write");
			return 1;
		}
	struct epoll_event events[64];
	uint64_t t;
	while ((t = now_ns()) < end) {
		int n = epoll_wait(ep, events, 64, 100);
		for (int j = 0; j < n; j++) {
			struct conn *c = &conns[events[j].data.u32];
			ssize_t r = read(c->fd, c->buf + c->len, sizeof(c->buf) - c->len);
			if (r <= 0) {
				fprintf(stderr, "tail: connection %u: %s\n", events[j].data.u32, r ? strerror(errno) : "closed by the server");
				return 1;
			}
			c->len += (int)r;
			int len;
			while ((len = response_length(c)) > 0) {
				uint64_t done = now_ns(), rec[2] = { c->sent, done - c->sent };
				fwrite(rec, sizeof(rec), 1, out);
				responses++;
				memmove(c->buf, c->buf + len, c->len - len);
				c->len -= len;
				if (send_request(c)) {
					perror("write");
					return 1;
				}
			}
			if (c->len == sizeof(c->buf)) {
				fprintf(stderr, "tail: a response larger than %zu bytes\n", sizeof(c->buf));
				return 1;
			}
		}
	}
	if (fclose(out)) {
		perror(argv[4]);
		return 1;
	}
	printf("%llu %.3f\n", (unsigned long long)responses, (t - start) / 1e9);
	return 0;
}
