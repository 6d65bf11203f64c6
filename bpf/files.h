/*
 * What bpf/files.bpf.c shares with user space (src/files.ts through src/bpf-layout.ts).
 * Fixed-width types only; test/layout.test.js checks sizes and offsets against the object's BTF.
 */
#ifndef OTEL_NODE_EBPF_FILES_H
#define OTEL_NODE_EBPF_FILES_H

/* Paths as the process passed them to open (longer ones are cut; PATH_MAX is 4096, but a metric attribute that long
 * is of no use). */
#define FILE_PATH_LEN 256
/* Files open at once that are tracked (a hash map by fd); beyond, a file's bytes are not counted and
 * health.untracked says so. */
#define FILE_MAX_OPEN 4096

/* One file opened by path: the map value by fd while it is open, and the ring-buffer record when it is closed. */
struct file_entry {
	__u64 gen;           /* when it was opened (ns): tells two files apart that had the same fd */
	__u64 read_bytes;
	__u64 written_bytes;
	__u32 fd;
	__u32 sent;          /* claimed by the program run that sends this entry to user space (once); kernel-only */
	__u64 file;          /* the kernel's struct file at the fd when it was opened (0: unknown); kernel-only */
	char path[FILE_PATH_LEN]; /* NUL-terminated, as passed to open/openat/creat/openat2 */
};

/* The program's own counters (.bss). */
struct file_health {
	__u64 opens;          /* successful opens by path */
	__u64 closes;         /* closes of a tracked fd */
	__u64 untracked;      /* opens not tracked: the fd map was full */
	__u64 events_dropped; /* closed files whose bytes were lost: the ring buffer was full */
	__u64 own_opens;      /* opens by the SDK's own code on the main thread, not tracked (sdk_busy) */
};

#endif
