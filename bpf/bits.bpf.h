/* Helpers shared by every program: log2 histogram slots. */
#ifndef OTEL_NODE_EBPF_BITS_BPF_H
#define OTEL_NODE_EBPF_BITS_BPF_H

#include "histogram.h"

/* floor(log2(v)) for v > 0, branch-free enough for the verifier. */
static __always_inline __u32 log2_u64(__u64 v)
{
	__u32 r = 0, shift;

	shift = (v > 0xFFFFFFFFULL) << 5; v >>= shift; r |= shift;
	shift = (v > 0xFFFF) << 4; v >>= shift; r |= shift;
	shift = (v > 0xFF) << 3; v >>= shift; r |= shift;
	shift = (v > 0xF) << 2; v >>= shift; r |= shift;
	shift = (v > 0x3) << 1; v >>= shift; r |= shift;
	r |= (v >> 1);
	return r;
}

/*
 * The histogram slot of a duration in nanoseconds. Slot k >= 1 holds (2^(k-21), 2^(k-20)] seconds and slot 0 holds
 * everything up to 2^-20 s (about 0.95 us), so slots are exactly the buckets of an OpenTelemetry base-2 exponential
 * histogram at scale 0 (upper bound inclusive, index k - 21) and of an explicit-bucket histogram whose boundaries
 * are powers of two in seconds. User space converts them without loss.
 *
 * x = ns * 2^20 / 1e9 is the duration in units of 2^-20 s; 1e9 = 2^9 * 1953125, so x = ns * 2^11 / 1953125, and
 * the slot is the k with x in (2^(k-1), 2^k], i.e. floor(log2(ceil(x) - 1)) + 1 = floor(log2((ns*2^11 - 1) / 1953125)) + 1.
 */
static __always_inline __u32 hist_slot_ns(__u64 ns)
{
	__u64 q;
	__u32 slot;

	if (ns == 0)
		return 0;
	if (ns >= (1ULL << 52)) {
		/* ns << 11 would overflow. 2^52 ns (52.1 days) lies in slot 43, (2^22, 2^23] s: compare with the upper
		 * edges of slots 43 .. MAX-2 in ns, 1e9 * 2^(k + HIST_MIN_EXP), which fit in 64 bits */
#pragma unroll
		for (slot = 43; slot < HIST_MAX_SLOTS - 1; slot++)
			if (ns <= 1000000000ULL << (slot + HIST_MIN_EXP))
				return slot;
		return HIST_MAX_SLOTS - 1;
	}
	q = ((ns << 11) - 1) / 1953125;
	if (q == 0)
		return 0;
	slot = log2_u64(q) + 1;
	return slot < HIST_MAX_SLOTS ? slot : HIST_MAX_SLOTS - 1;
}

static __always_inline void hist_record_ns(struct hist *h, __u64 ns)
{
	__u32 slot = hist_slot_ns(ns);

	if (slot >= HIST_MAX_SLOTS) /* for the verifier */
		return;
	__sync_fetch_and_add(&h->slots[slot], 1);
	__sync_fetch_and_add(&h->sum_ns, ns);
}

#endif
