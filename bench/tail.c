// The tail benchmark's load generator (bench/tail.js and bench/run.js build and run it): CONNS keep-alive
// connections to 127.0.0.1:PORT for SECONDS, each with at most one GET / in flight. OUT gets one record per response,
// two native-endian u64: the CLOCK_MONOTONIC time the request was due (ns) and its latency from then (ns). Prints
// "<responses> <seconds>" at the end. It reads responses with a Content-Length (bench/server.js sends one), not
// chunked ones.
//
//   tail PORT CONNS SECONDS OUT          closed loop, as `wrk -t1 -cCONNS`: every connection sends its next request
//                                        as soon as the last is answered; due = written
//   tail PORT CONNS SECONDS OUT RATE     open loop, at a fixed rate: request i is due at start + i / RATE, whatever
//                                        the server does, and is written then on an idle connection (or, when all
//                                        CONNS wait, as soon as one is answered). Its latency runs from when it was
//                                        due, so a stall of the server counts for every request due during it, as a
//                                        user's clients would see it (what wrk2 calls correcting for coordinated
//                                        omission, done by sending on schedule instead of by estimate afterwards).
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static const char REQUEST[] = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

struct conn {
	int fd;
	uint64_t due; /* when the request in flight was due (closed loop: written) */
	int len;       /* bytes of response in buf */
	char buf[16384];
};

static uint64_t now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static int send_request(struct conn *c, uint64_t due)
{
	c->due = due;
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
	if (argc != 5 && argc != 6) {
		fprintf(stderr, "usage: %s PORT CONNS SECONDS OUT [RATE]\n", argv[0]);
		return 2;
	}
	int port = atoi(argv[1]), nconns = atoi(argv[2]);
	double seconds = atof(argv[3]), rate = argc == 6 ? atof(argv[5]) : 0;
	if (nconns < 1 || seconds <= 0 || (argc == 6 && rate <= 0)) {
		fprintf(stderr, "tail: CONNS, SECONDS and RATE must be positive\n");
		return 2;
	}
	FILE *out = fopen(argv[4], "wb");
	if (!out) {
		perror(argv[4]);
		return 1;
	}
	/* the open loop sleeps until the next request is due: to the nanosecond, not the default 50 us of slack */
	prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
	struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons(port) };
	inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
	int ep = epoll_create1(0);
	struct conn *conns = calloc(nconns, sizeof(*conns));
	int *idle = calloc(nconns, sizeof(*idle)), nidle = 0; /* connections with no request in flight */
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
		idle[nidle++] = i;
	}

	uint64_t start = now_ns(), end = start + (uint64_t)(seconds * 1e9), responses = 0, scheduled = 0;
	double period_ns = rate > 0 ? 1e9 / rate : 0;
	struct epoll_event events[64];
	uint64_t t = start;
	for (;;) {
		/* write what is due: closed loop, one request on every idle connection; open loop, the requests whose
		 * time has come, as long as a connection is idle (the others wait for one, their clock running) */
		while (nidle > 0) {
			uint64_t due;
			if (rate > 0) {
				/* every request due before the end is written, late or not */
				if ((due = start + (uint64_t)(scheduled * period_ns)) > t || due >= end)
					break;
			} else {
				if (t >= end)
					break;
				due = now_ns();
			}
			if (send_request(&conns[idle[--nidle]], due)) {
				perror("write");
				return 1;
			}
			scheduled++;
		}
		/* then the answers in flight are waited for (5 s at most) */
		int more = rate > 0 ? start + (uint64_t)(scheduled * period_ns) < end : t < end;
		if (!more && (nidle == nconns || t >= end + 5000000000u))
			break;
		/* sleep until a response comes, or (open loop, a connection idle) until the next request is due */
		struct timespec timeout = { .tv_sec = 0, .tv_nsec = 100000000 };
		if (rate > 0 && nidle > 0 && more) {
			uint64_t due = start + (uint64_t)(scheduled * period_ns), wait = due > t ? due - t : 0;
			timeout.tv_nsec = (long)(wait < 100000000 ? wait : 100000000);
		}
		int n = epoll_pwait2(ep, events, 64, &timeout, NULL);
		if (n < 0 && errno != EINTR) {
			perror("epoll_pwait2");
			return 1;
		}
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
				uint64_t done = now_ns(), rec[2] = { c->due, done - c->due };
				fwrite(rec, sizeof(rec), 1, out);
				responses++;
				memmove(c->buf, c->buf + len, c->len - len);
				c->len -= len;
				idle[nidle++] = events[j].data.u32;
			}
			if (c->len == sizeof(c->buf)) {
				fprintf(stderr, "tail: a response larger than %zu bytes\n", sizeof(c->buf));
				return 1;
			}
		}
		t = now_ns();
	}
	if (fclose(out)) {
		perror(argv[4]);
		return 1;
	}
	printf("%llu %.3f\n", (unsigned long long)responses, ((t < end ? t : end) - start) / 1e9);
	return 0;
}
