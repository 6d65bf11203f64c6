// SPDX-License-Identifier: GPL-2.0 OR Apache-2.0
/*
 * Bytes one process reads and writes per file, from its own syscalls: the classic eBPF example, on our own process.
 *
 * Hook: raw_tp/sys_exit alone, which has the syscall's arguments (the saved user registers) and its result. The
 * cheapest hook that gives exact bytes on every path: a uprobe on libuv's uv__fs_work would miss synchronous fs
 * calls and cost a trap per call; kprobes and fentry are not available everywhere (not here). The price: sys_exit
 * runs for every syscall on the machine, and its mere presence sends every syscall through the kernel's slow exit
 * path. Opt-in for that reason (measurement file.io).
 *
 * open/openat/creat/openat2 record the path by fd (read from the user's argument, which the kernel has just read);
 * read/write and their p- and v- variants add their result to that fd's entry; close forgets the entry and then
 * sends it to user space (a ring buffer, a record per file closed that had bytes). Sockets and pipes never opened by path
 * are not in the map: their reads and writes cost a failed look-up.
 *
 * close(2) frees the fd number before sys_exit runs: in between, another thread's open can take the number, and its
 * own sys_exit can come first and enter the new file under that fd. The close's sys_exit then finds the new file's
 * entry. Each entry keeps the struct file that the fd held at its open, and a close leaves alone an entry whose file
 * is at the fd again (the old entry was sent by the open that replaced it).
 *
 * The two can also run side by side on two CPUs, the close's sys_exit and the open's, and both find the old entry
 * before either has removed it: each would send it, and its bytes would count twice (seen once, on Node 24, whose
 * V8 reads /sys/devices/system/cpu/online on a thread of its own at any moment). The first to claim the entry (an
 * atomic flag in it) sends it; the close removes it only while it is still the entry at the fd, so that it does not
 * remove the entry the open has put in its place.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "files.h"
#include "target.bpf.h"
#include "ringbuf.bpf.h"

#define FILES_RING_SIZE (256 * 1024)

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* x86_64 syscall numbers (arch/x86/entry/syscalls/syscall_64.tbl). */
#define NR_read 0
#define NR_write 1
#define NR_open 2
#define NR_close 3
#define NR_pread64 17
#define NR_pwrite64 18
#define NR_readv 19
#define NR_writev 20
#define NR_creat 85
#define NR_openat 257
#define NR_preadv 295
#define NR_pwritev 296
#define NR_preadv2 327
#define NR_pwritev2 328
#define NR_openat2 437

struct file_health health = {};

/* Ring-buffer records leave no type in BTF; this keeps it for test/layout.test.js. */
const volatile struct file_entry file_entry_btf = {};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, FILE_MAX_OPEN);
	__type(key, __u32); /* fd */
	__type(value, struct file_entry);
} files SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, FILES_RING_SIZE);
} closed_files SEC(".maps");

/*
 * Non-zero while the SDK's own code runs on the main thread (start, a collection step, an export's serialisation,
 * src/own-io.ts): user space writes it in its own memory (BPF_F_MMAPABLE), at no cost. The files the SDK opens then
 * (BTF, its modules and objects, sysctls) are not the application's and are not tracked.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
	__uint(map_flags, BPF_F_MMAPABLE);
} sdk_busy SEC(".maps");

/* The addon's own threads (native/http.cc: the export's sender and its host name's resolver) are named "otel-ebpf-...". */
static __always_inline bool sdk_thread(void)
{
	static const char prefix[] = "otel-ebpf-";
	char comm[16];

	if (bpf_get_current_comm(comm, sizeof(comm)))
		return false;
	for (int i = 0; i < sizeof(prefix) - 1; i++)
		if (comm[i] != prefix[i])
			return false;
	return true;
}

static __always_inline bool sdk_own_open(void)
{
	__u32 zero = 0, *busy = bpf_map_lookup_elem(&sdk_busy, &zero), tid, tgid;

	/* the main thread's own: its thread id is the process id */
	if (busy && *busy && current_ids(&tid, &tgid) && tid == tgid)
		return true;
	return sdk_thread();
}

/* Too big for the stack; one per CPU, and a raw tracepoint program does not nest with itself on a CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct file_entry);
} scratch SEC(".maps");

/*
 * A file's totals for user space, if it had any bytes: reserved and filled here, submitted by submit_closed() once
 * the entry is gone from `files`. User space adds a close record less what it already read of the entry at a
 * collection, and a collection reads the ring, then the map. Were the record submitted first, a collection could
 * take it from the ring and then find the entry still in the map (its thread preempted between the two, or its vCPU
 * by the host), and count the file twice.
 */
static __always_inline struct file_entry *closed_record(struct file_entry *v)
{
	struct file_entry *e;

	if (!v->read_bytes && !v->written_bytes)
		return NULL;
	e = bpf_ringbuf_reserve(&closed_files, sizeof(*e), 0);
	if (!e) {
		__sync_fetch_and_add(&health.events_dropped, 1);
		return NULL;
	}
	__builtin_memcpy(e, v, sizeof(*e));
	return e;
}

static __always_inline void submit_closed(struct file_entry *e)
{
	if (e)
		RINGBUF_SUBMIT(&closed_files, FILES_RING_SIZE, e);
}

/* Whether this run is the one to send `v` (see the file's comment): true once per entry. */
static __always_inline bool claim(struct file_entry *v)
{
	return __sync_val_compare_and_swap(&v->sent, 0, 1) == 0;
}

/* The struct file at `fd` in the current task's table now, 0 if none. */
static __always_inline __u64 file_at(__u32 fd)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	struct file **fds;
	struct file *f = NULL;

	if (!fdt || fd >= BPF_CORE_READ(fdt, max_fds))
		return 0;
	fds = BPF_CORE_READ(fdt, fd);
	if (bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]))
		return 0;
	return (__u64)f;
}

static __always_inline void opened(long fd, const char *pathname)
{
	struct file_entry *v, *old, *gone;
	__u32 key = fd, zero = 0;

	if (fd < 0 || !pathname)
		return;
	/*
	 * An fd closed behind our back (dup2 onto it, close_range) and reused: its entry goes before its record. One that
	 * a close claimed is that close's to send; the update below replaces it.
	 */
	old = bpf_map_lookup_elem(&files, &key);
	if (old && claim(old)) {
		gone = closed_record(old);
		bpf_map_delete_elem(&files, &key);
		submit_closed(gone);
	}
	if (sdk_own_open()) {
		__sync_fetch_and_add(&health.own_opens, 1);
		return;
	}
	v = bpf_map_lookup_elem(&scratch, &zero);
	if (!v)
		return;
	v->gen = bpf_ktime_get_ns();
	v->read_bytes = 0;
	v->written_bytes = 0;
	v->fd = key;
	v->sent = 0;
	v->file = file_at(key);
	if (bpf_probe_read_user_str(v->path, sizeof(v->path), pathname) < 0)
		v->path[0] = 0;
	if (bpf_map_update_elem(&files, &key, v, BPF_ANY))
		__sync_fetch_and_add(&health.untracked, 1);
	else
		__sync_fetch_and_add(&health.opens, 1);
}

SEC("raw_tp/sys_exit")
int BPF_PROG(files_sys_exit, struct pt_regs *regs, long ret)
{
	struct file_entry *v, *gone;
	__u64 gen;
	__u32 fd;
	long nr;

	if (!is_target())
		return 0;
	nr = BPF_CORE_READ(regs, orig_ax);
	switch (nr) {
	case NR_read:
	case NR_pread64:
	case NR_readv:
	case NR_preadv:
	case NR_preadv2:
		if (ret <= 0)
			return 0;
		fd = BPF_CORE_READ(regs, di);
		v = bpf_map_lookup_elem(&files, &fd);
		if (v)
			__sync_fetch_and_add(&v->read_bytes, ret);
		return 0;
	case NR_write:
	case NR_pwrite64:
	case NR_writev:
	case NR_pwritev:
	case NR_pwritev2:
		if (ret <= 0)
			return 0;
		fd = BPF_CORE_READ(regs, di);
		v = bpf_map_lookup_elem(&files, &fd);
		if (v)
			__sync_fetch_and_add(&v->written_bytes, ret);
		return 0;
	case NR_open:
	case NR_creat:
		opened(ret, (const char *)BPF_CORE_READ(regs, di));
		return 0;
	case NR_openat:
	case NR_openat2:
		opened(ret, (const char *)BPF_CORE_READ(regs, si));
		return 0;
	case NR_close:
		if (ret != 0)
			return 0;
		fd = BPF_CORE_READ(regs, di);
		v = bpf_map_lookup_elem(&files, &fd);
		if (!v)
			return 0;
		__sync_fetch_and_add(&health.closes, 1);
		/* another thread's open took the fd since, and its entry is this one (see the file's comment) */
		if (v->file && v->file == file_at(fd))
			return 0;
		/* an open on another thread that took the fd has sent it, and puts its own entry in its place */
		if (!claim(v))
			return 0;
		gen = v->gen;
		gone = closed_record(v);
		v = bpf_map_lookup_elem(&files, &fd);
		if (v && v->gen == gen)
			bpf_map_delete_elem(&files, &fd);
		submit_closed(gone);
		return 0;
	}
	return 0;
}
