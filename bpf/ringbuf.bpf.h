/*
 * Ring-buffer submission without a wakeup per record. A wakeup is kernel irq_work, raised on x86 with a self-IPI:
 * inside a VM each one is an exit to the hypervisor, measured at tens of microseconds of CPU per record here (a DNS
 * lookup cost +60 us of CPU with a wakeup per record). User space consumes the buffers when it collects and when it
 * needs a record at once (ring_buffer__consume reads the shared pages: no syscall), so records need no wakeup; only
 * a buffer filling up wakes the reader, before anything has to be dropped.
 */
#ifndef OTEL_NODE_EBPF_RINGBUF_BPF_H
#define OTEL_NODE_EBPF_RINGBUF_BPF_H

#define RINGBUF_SUBMIT(ring, size, record) \
	bpf_ringbuf_submit((record), bpf_ringbuf_query((ring), BPF_RB_AVAIL_DATA) > (size) / 2 ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP)

#endif
