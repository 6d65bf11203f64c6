/**
 * The kernel's log2 histograms (bpf/histogram.h) as OpenTelemetry histograms, without loss: the slots are exactly
 * the buckets of an explicit-bucket histogram with power-of-two boundaries (in seconds), and exactly the buckets of
 * a base-2 exponential histogram at scale 0, but for the lowest slot (toExponential).
 */
import type { ExponentialHistogram, Histogram } from '@opentelemetry/sdk-metrics';
import { HIST_MAX_SLOTS, HIST_MIN_EXP, Log2Histogram } from './bpf-layout';

/** Upper bounds of slots 0 .. MAX-2 in seconds: 2^-20 ... 2^26; the last slot is (2^26, +inf). */
export const EXPLICIT_BOUNDARIES: readonly number[] = Object.freeze(
  Array.from({ length: HIST_MAX_SLOTS - 1 }, (_, i) => Math.pow(2, i + HIST_MIN_EXP)),
);

export function count(h: Log2Histogram): number {
  let n = 0;
  for (const c of h.slots) n += c;
  return n;
}

export function toExplicit(h: Log2Histogram): Histogram {
  return {
    // one frozen array for every point: the OTLP encoder keeps its encoding with it (src/otlp/metrics-encoder.ts)
    buckets: { boundaries: EXPLICIT_BOUNDARIES as number[], counts: h.slots.slice() },
    sum: Number(h.sumNs) / 1e9,
    count: count(h),
  };
}

/**
 * Scale 0: bucket index i holds (2^i, 2^(i+1)]. Slot k >= 1 holds (2^(k-21), 2^(k-20)], index k - 21, exactly. Slot
 * 0 holds everything up to 2^-20 s (about a microsecond) and goes to index -21 too, which is exact only for its
 * samples above 2^-21 s: holding the rest would take a zero threshold of 2^-20 s, which OpenTelemetry JS's
 * ExponentialHistogram cannot carry (README.md says so). The explicit histogram is exact there.
 */
export function toExponential(h: Log2Histogram): ExponentialHistogram {
  let first = -1;
  let last = -1;
  h.slots.forEach((c, i) => {
    if (c === 0) return;
    if (first < 0) first = i;
    last = i;
  });
  const offset = (first < 0 ? 0 : first) + HIST_MIN_EXP - 1;
  return {
    count: count(h),
    sum: Number(h.sumNs) / 1e9,
    scale: 0,
    zeroCount: 0,
    positive: { offset, bucketCounts: first < 0 ? [] : h.slots.slice(first, last + 1) },
    negative: { offset: 0, bucketCounts: [] },
  };
}

export function subtract(now: Log2Histogram, before: Log2Histogram | undefined): Log2Histogram {
  if (!before) return now;
  return { sumNs: now.sumNs - before.sumNs, slots: now.slots.map((c, i) => c - before.slots[i]) };
}

export function addHist(a: Log2Histogram, b: Log2Histogram): Log2Histogram {
  return { sumNs: a.sumNs + b.sumNs, slots: a.slots.map((c, i) => c + b.slots[i]) };
}

/** bits.bpf.h's hist_slot_ns in user space, for histograms aggregated here (e.g. DNS lookups from a ring buffer). */
export function slotOfNs(ns: bigint): number {
  if (ns <= 0n) return 0;
  const q = ((ns << 11n) - 1n) / 1953125n;
  if (q === 0n) return 0;
  return Math.min(q.toString(2).length, HIST_MAX_SLOTS - 1); // floor(log2(q)) + 1
}

export function emptyHist(): Log2Histogram {
  return { sumNs: 0n, slots: new Array<number>(HIST_MAX_SLOTS).fill(0) };
}

export function recordNs(h: Log2Histogram, ns: bigint): void {
  h.slots[slotOfNs(ns)]++;
  h.sumNs += ns;
}
