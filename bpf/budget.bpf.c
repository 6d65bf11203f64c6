// SPDX-License-Identifier: GPL-2.0 OR Apache-2.0
/*
 * The cost of one uprobe hit on this machine, measured by the SDK at start (src/budget.ts): this program is attached
 * as a uprobe, then as a uretprobe, to the native addon's exported no-op otel_node_ebpf_calibrate(), which user space
 * calls N times with and without it. The program does what every uprobe program of the SDK does first (count the
 * hit, check the process), so the difference is the trap, the kernel's uprobe handling and a minimal program: the
 * part of a probe's cost that its own run time (BPF statistics) does not show.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "budget.h"
#include "target.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct budget_calibration calibration = {};

SEC("uprobe")
int calibrate_hit(struct pt_regs *ctx)
{
	if (!is_target())
		return 0;
	__sync_fetch_and_add(&calibration.hits, 1);
	return 0;
}
