/*
 * The log2 histogram every program shares, as it crosses into user space. Fixed-width types only:
 * src/bpf-layout.ts mirrors this file and test/layout.test.js checks sizes and offsets.
 */
#ifndef OTEL_NODE_EBPF_HISTOGRAM_H
#define OTEL_NODE_EBPF_HISTOGRAM_H

/* Slot 0: <= 2^-20 s; slot k: (2^(k-21), 2^(k-20)] s; the top slot (47) holds everything above 2^26 s (two years). */
#define HIST_MAX_SLOTS 48
#define HIST_MIN_EXP (-20)

struct hist {
	__u64 sum_ns;
	__u64 slots[HIST_MAX_SLOTS];
};

#endif
