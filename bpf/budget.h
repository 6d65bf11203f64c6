/*
 * What bpf/budget.bpf.c shares with user space (src/budget.ts): the calibration program's hit counter.
 */
#ifndef OTEL_NODE_EBPF_BUDGET_H
#define OTEL_NODE_EBPF_BUDGET_H

struct budget_calibration {
	__u64 hits; /* runs of calibrate_hit in this process: user space checks that every call trapped */
};

#endif
