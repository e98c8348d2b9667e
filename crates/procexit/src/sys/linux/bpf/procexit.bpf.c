// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * procexit's in-kernel half: one record per ended process, taken on the
 * exiting task itself when its process's last thread leaves, and sent to
 * user space through a BPF ring buffer.
 *
 * Rebuild with scripts/build-bpf.sh (clang); the object next to this file
 * is committed so that building procexit needs only Rust. The record layout
 * below is mirrored in ../ebpf.rs (RawExit); change both together.
 *
 * Hooks (all BTF-typed raw tracepoints: no tracefs mount, no kprobes):
 * - sched_process_exit: the record, when the thread group is dead;
 * - signal_generate: who sent a signal to whom (kept until the target ends);
 * - mark_victim: the OOM killer chose this process;
 * - sys_enter (exit, exit_group) and signal_deliver (a fatal signal): the
 *   peak RSS while the address space is still there, for kernels that free
 *   it before the exit hook (user space detaches both once an exit hook
 *   finds it still there);
 * - sched_process_exec: argv copy, from the start until an exit hook
 *   finds the address space still there (kept on where the kernel frees it
 *   before the exit hook).
 *
 * The record also carries the process's cgroup path, written here from the
 * task's css_set (its kernfs directory names up to the hierarchy root), so
 * that it is right even for a process that exited at once in a cgroup that
 * is removed just after.
 */
#include "kernel_types.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#define COMM_LEN 16
/* Command-line bytes kept per process (a power of two: used as a mask). */
#define ARGS_MAX 2048
/* Cgroup path: a component starts only below CGROUP_PATH_MAX (a power of
 * two: used as a mask) and a kernfs name is at most NAME_MAX (255) bytes,
 * so the field has room for the last one's full length. */
#define CGROUP_PATH_MAX 512
#define CGROUP_NAME_MAX 256
#define CGROUP_FIELD (CGROUP_PATH_MAX + CGROUP_NAME_MAX)
/* Directory levels below the hierarchy root that are followed. */
#define CGROUP_DEPTH_MAX 16

#define PF_KTHREAD 0x00200000
#define SIGNAL_GROUP_EXIT 0x00000004
/* si_code > 0 means the kernel generated the signal (SI_KERNEL, faults,
 * SIGCHLD); <= 0 means a process sent it (kill, tkill, sigqueue). */
#define SEND_SIG_PRIV ((struct kernel_siginfo *)1)

/* ExitRecord.flags */
#define EXIT_ARGS_TRUNCATED 1u
#define EXIT_ARGS_UNKNOWN 2u
#define EXIT_KILLER 4u
#define EXIT_OOM_KILLED 8u
#define EXIT_ARGS_FROM_EXEC 16u
#define EXIT_CGROUP_UNKNOWN 32u

/* config.args_at_exec */
#define ARGS_AT_EXEC_OFF 0
/* Until an exit hook finds the address space still there: kernels that
 * free it first (before about 6.16) need every exec's copy, from the
 * start, so that the first exits after the start have their argv too. */
#define ARGS_AT_EXEC_UNTIL_MM 1
#define ARGS_AT_EXEC_ALWAYS 2

/* Per-CPU counters (index). */
#define COUNT_RINGBUF_FULL 0
#define COUNT_FILTERED 1
#define COUNT_EXIT_WITHOUT_MM 2
#define COUNT_EXIT_WITH_MM 3
#define COUNT_SLOTS 4

struct exit_record {
	__u64 start_boottime_ns;
	__u64 exit_boottime_ns;
	__u64 utime_ns;
	__u64 stime_ns;
	__u64 maxrss_pages;
	__u32 pid;
	__u32 ppid;
	__u32 uid;
	__u32 wait_status;
	__u32 flags;
	__u32 killer_pid;
	__u32 killer_signal;
	__u32 args_len;
	char comm[COMM_LEN];
	char killer_comm[COMM_LEN];
	__u32 cgroup_len;
	char cgroup[CGROUP_FIELD];
	/* Last: only args_len bytes of it are sent (see handle_exit). */
	char args[ARGS_MAX];
};

struct config {
	__u32 failed_only;
	__u32 filter_pids;
	__u32 filter_ppids;
	/* Copy argv at exec: ARGS_AT_EXEC_* (user space starts with
	 * UNTIL_MM, or ALWAYS when asked; the exit hook turns UNTIL_MM off
	 * once it finds the address space still there). */
	__u32 args_at_exec;
	/* Wake the reader only once this many bytes wait (0: every record). */
	__u64 wakeup_bytes;
};

struct sender {
	__u32 pid;
	__u32 signal;
	char comm[COMM_LEN];
};

struct exec_args {
	__u32 len;
	__u32 truncated;
	char args[ARGS_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20);
} EXITS SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, COUNT_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} COUNTERS SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct config);
} CONFIG SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u8);
} PIDS SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u8);
} PPIDS SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct sender);
} SENDERS SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u8);
} OOM_VICTIMS SEC(".maps");

/* Processes alive at once whose argv waits for their exit (where the exec
 * copies are on); the least recently used is dropped beyond that. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct exec_args);
} EXEC_ARGS SEC(".maps");

/* Peak RSS in pages, taken as the process starts to exit (see
 * handle_sys_enter), where the exit hook cannot read it. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u64);
} PEAK_RSS SEC(".maps");

/* subsys[] slot + 1 of the memory (index SSID_MEMORY) and pids
 * (SSID_PIDS) controllers once found; SSID_ABSENT when the kernel has none. */
#define SSID_MEMORY 0
#define SSID_PIDS 1
#define SSID_ABSENT 0xffffffffu
/* Controller names as the 8 bytes a string read of them gives. */
#define NAME_MEMORY 0x79726f6d656dull /* "memory" */
#define NAME_PIDS 0x73646970ull	      /* "pids" */
/* Slots looked at (kernels define 16 controllers so far). */
#define SUBSYS_SLOTS_MAX 16

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u32);
} CGROUP_SSIDS SEC(".maps");

/* Where the exit record is built (too big for the BPF stack); only its
 * used part is copied to the ring buffer. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct exit_record);
} EXIT_SCRATCH SEC(".maps");

/* Scratch space for the exec copy (too big for the BPF stack). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct exec_args);
} EXEC_SCRATCH SEC(".maps");

static __always_inline void count(__u32 slot)
{
	__u64 *value = bpf_map_lookup_elem(&COUNTERS, &slot);
	if (value)
		*value += 1;
}

/* The status wait() reports: the group's when a group exit (exit_group, a
 * fatal signal) ended it, else the leader's own exit code. */
static __always_inline __u32 wait_status(struct task_struct *task)
{
	struct signal_struct *signal = BPF_CORE_READ(task, signal);
	if (BPF_CORE_READ(signal, flags) & SIGNAL_GROUP_EXIT)
		return BPF_CORE_READ(signal, group_exit_code);
	return BPF_CORE_READ(task, group_leader, exit_code);
}

/* The high-water RSS of the address space, in pages, as the kernel's
 * get_mm_hiwater_rss() computes it: the recorded mark or, if higher, the
 * current file + anon + shmem pages (MM_SWAPENTS, index 2, is not RSS).
 * signal->maxrss is not used: after fork+exec it holds the parent's size. */
static __always_inline __u64 peak_rss_pages(struct mm_struct *mm, __s64 unsynced)
{
	struct mm_struct___pre62 *old = (void *)mm;
	__u64 hiwater = BPF_CORE_READ(mm, hiwater_rss);
	__s64 rss;

	if (bpf_core_field_exists(old->rss_stat))
		rss = BPF_CORE_READ(old, rss_stat.count[0].counter) +
		      BPF_CORE_READ(old, rss_stat.count[1].counter) +
		      BPF_CORE_READ(old, rss_stat.count[3].counter);
	else
		rss = BPF_CORE_READ(mm, rss_stat[0].count) + BPF_CORE_READ(mm, rss_stat[1].count) +
		      BPF_CORE_READ(mm, rss_stat[3].count);
	rss += unsynced;
	if (rss > 0 && (__u64)rss > hiwater)
		return rss;
	return hiwater;
}

/* len in [1, ARGS_MAX] in a form the verifier can follow (clang may test
 * a copy of the register, leaving the one passed as size unbounded). */
static __always_inline __u32 bounded(__u32 len)
{
	return ((len - 1) & (ARGS_MAX - 1)) + 1;
}

/* Copies [start, end) of user memory into dst; returns the length kept and
 * sets *truncated when the range was longer than ARGS_MAX. */
static __always_inline __u32 copy_args(char *dst, unsigned long start, unsigned long end,
				       __u32 *truncated)
{
	unsigned long len;
	if (!start || end <= start)
		return 0;
	len = end - start;
	if (len > ARGS_MAX) {
		len = ARGS_MAX;
		*truncated = 1;
	}
	if (bpf_probe_read_user(dst, bounded(len), (const void *)start))
		return 0;
	return len;
}

/* The cgroup a css_set has in the hierarchy of the controller in subsys[]
 * slot ssid, or NULL when that controller sits on the unified hierarchy. */
static __always_inline struct cgroup *v1_cgroup(struct css_set *cset, __u32 ssid,
						struct cgroup_root *unified)
{
	struct cgroup_subsys_state *css = NULL;
	struct cgroup *cgrp;
	void *slot = (void *)cset + bpf_core_field_offset(struct css_set, subsys) +
		     (__u64)ssid * sizeof(css);

	if (bpf_probe_read_kernel(&css, sizeof(css), slot) || !css)
		return NULL;
	cgrp = BPF_CORE_READ(css, cgroup);
	if (!cgrp || BPF_CORE_READ(cgrp, root) == unified)
		return NULL;
	return cgrp;
}

/* The subsys[] slot of a controller (its enum cgroup_subsys_id, fixed for
 * the kernel's life), found once by name and then kept in CGROUP_SSIDS;
 * -1 when the kernel has no such controller. */
static __always_inline int controller_ssid(struct css_set *cset, __u32 which, __u64 name)
{
	__u32 *kept = bpf_map_lookup_elem(&CGROUP_SSIDS, &which);
	__u32 slots = bpf_core_field_size(struct css_set, subsys) / sizeof(void *);
	int i;

	if (!kept || *kept == SSID_ABSENT)
		return -1;
	if (*kept)
		return *kept - 1;
#pragma unroll
	for (i = 0; i < SUBSYS_SLOTS_MAX; i++) {
		struct cgroup_subsys_state *css = NULL;
		__u64 found = 0;
		if (i >= slots)
			break;
		bpf_probe_read_kernel(&css, sizeof(css),
				      (void *)cset + bpf_core_field_offset(struct css_set, subsys) +
					      i * sizeof(css));
		if (!css)
			continue;
		bpf_probe_read_kernel_str(&found, sizeof(found), BPF_CORE_READ(css, ss, name));
		if (found == name) {
			*kept = i + 1;
			return i;
		}
	}
	*kept = SSID_ABSENT;
	return -1;
}

/* The cgroup whose path /proc/PID/cgroup shows and procexit reports (the
 * choice of decode/cgroup.rs): the unified (v2) one unless it is the root
 * while the memory controller, else the pids controller, is bound to a v1
 * hierarchy; then that one. */
static __always_inline struct cgroup *reported_cgroup(struct task_struct *task)
{
	struct css_set *cset = BPF_CORE_READ(task, cgroups);
	struct cgroup *unified, *v1 = NULL;
	struct cgroup_root *unified_root;
	int ssid;

	if (!cset)
		return NULL;
	unified = BPF_CORE_READ(cset, dfl_cgrp);
	if (!unified || BPF_CORE_READ(unified, self.parent))
		return unified;
	unified_root = BPF_CORE_READ(unified, root);
	ssid = controller_ssid(cset, SSID_MEMORY, NAME_MEMORY);
	if (ssid >= 0)
		v1 = v1_cgroup(cset, ssid, unified_root);
	if (!v1) {
		ssid = controller_ssid(cset, SSID_PIDS, NAME_PIDS);
		if (ssid >= 0)
			v1 = v1_cgroup(cset, ssid, unified_root);
	}
	return v1 ? v1 : unified;
}

/* Writes the path of cgrp ("/", "/a/b") into record->cgroup; returns its
 * length, or 0 when it is deeper or longer than kept, or unreadable. */
static __always_inline __u32 write_cgroup_path(struct exit_record *record, struct cgroup *cgrp)
{
	struct kernfs_node *nodes[CGROUP_DEPTH_MAX];
	__u32 depth = 0, len = 0;
	int i;

	/* Leaf to root: the root's own name is not part of the path. */
#pragma unroll
	for (i = 0; i < CGROUP_DEPTH_MAX; i++) {
		struct cgroup_subsys_state *parent = BPF_CORE_READ(cgrp, self.parent);
		if (!parent)
			break;
		nodes[i] = BPF_CORE_READ(cgrp, kn);
		depth = i + 1;
		cgrp = BPF_CORE_READ(parent, cgroup);
		if (!cgrp)
			return 0;
	}
	if (depth == CGROUP_DEPTH_MAX && BPF_CORE_READ(cgrp, self.parent))
		return 0;
	if (depth == 0) {
		record->cgroup[0] = '/';
		return 1;
	}
	/* Root to leaf, each name after a '/'. */
#pragma unroll
	for (i = CGROUP_DEPTH_MAX - 1; i >= 0; i--) {
		long copied;
		__u32 at;
		if (i >= depth)
			continue;
		if (len >= CGROUP_PATH_MAX - 1)
			return 0;
		/* The masks are no-ops after the test above, but clang would drop
		 * them and the verifier could not bound the offset: the barrier
		 * keeps them. */
		at = len;
		barrier_var(at);
		record->cgroup[at & (CGROUP_PATH_MAX - 1)] = '/';
		at = len + 1;
		barrier_var(at);
		copied = bpf_probe_read_kernel_str(&record->cgroup[at & (CGROUP_PATH_MAX - 1)],
						   CGROUP_NAME_MAX, BPF_CORE_READ(nodes[i], name));
		len++;
		/* copied counts the NUL; an empty or unreadable name is not a path. */
		if (copied <= 1)
			return 0;
		len += copied - 1;
	}
	return len;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(handle_exit, struct task_struct *task)
{
	__u32 zero = 0;
	struct config *cfg = bpf_map_lookup_elem(&CONFIG, &zero);
	struct exit_record *record;
	struct signal_struct *signal;
	struct mm_struct *mm;
	struct sender *sender;
	__u32 tgid, ppid, status, truncated = 0;
	__u64 wakeup, size, wake = 0;

	if (!cfg)
		return 0;
	signal = BPF_CORE_READ(task, signal);
	/* signal->live reaches 0 when the last thread of the group exits,
	 * before this hook runs (whatever the hook's own arguments are). */
	if (BPF_CORE_READ(signal, live.counter) != 0)
		return 0;
	if (BPF_CORE_READ(task, flags) & PF_KTHREAD)
		return 0;
	tgid = BPF_CORE_READ(task, tgid);
	ppid = BPF_CORE_READ(task, real_parent, tgid);
	status = wait_status(task);

	if ((cfg->failed_only && status == 0) ||
	    (cfg->filter_pids && !bpf_map_lookup_elem(&PIDS, &tgid)) ||
	    (cfg->filter_ppids && !bpf_map_lookup_elem(&PPIDS, &ppid))) {
		count(COUNT_FILTERED);
		goto forget;
	}

	record = bpf_map_lookup_elem(&EXIT_SCRATCH, &zero);
	if (!record)
		goto forget;
	record->pid = tgid;
	record->ppid = ppid;
	record->wait_status = status;
	record->uid = BPF_CORE_READ(task, real_cred, uid.val);
	record->start_boottime_ns = BPF_CORE_READ(task, group_leader, start_boottime);
	record->exit_boottime_ns = bpf_ktime_get_boot_ns();
	/* Threads that already ended added their times to the signal struct;
	 * this last one still holds its own. */
	record->utime_ns = BPF_CORE_READ(signal, utime) + BPF_CORE_READ(task, utime);
	record->stime_ns = BPF_CORE_READ(signal, stime) + BPF_CORE_READ(task, stime);
	BPF_CORE_READ_STR_INTO(&record->comm, task, comm);
	record->flags = 0;
	record->killer_pid = 0;
	record->killer_signal = 0;
	record->killer_comm[0] = 0;
	record->args_len = 0;
	{
		struct cgroup *cgrp = reported_cgroup(task);
		record->cgroup_len = cgrp ? write_cgroup_path(record, cgrp) : 0;
		if (!record->cgroup_len)
			record->flags |= EXIT_CGROUP_UNKNOWN;
	}

	mm = BPF_CORE_READ(task, mm);
	if (mm) {
		record->maxrss_pages = peak_rss_pages(mm, 0);
		count(COUNT_EXIT_WITH_MM);
	} else {
		__u64 *peak = bpf_map_lookup_elem(&PEAK_RSS, &tgid);
		record->maxrss_pages = peak ? *peak : 0;
	}
	if (mm && cfg->args_at_exec != ARGS_AT_EXEC_ALWAYS) {
		record->args_len = copy_args(record->args, BPF_CORE_READ(mm, arg_start),
					     BPF_CORE_READ(mm, arg_end), &truncated);
		if (truncated)
			record->flags |= EXIT_ARGS_TRUNCATED;
		/* This kernel keeps the address space up to this hook: the
		 * copies at exec are not needed. */
		if (cfg->args_at_exec == ARGS_AT_EXEC_UNTIL_MM)
			cfg->args_at_exec = ARGS_AT_EXEC_OFF;
	} else {
		struct exec_args *saved = bpf_map_lookup_elem(&EXEC_ARGS, &tgid);
		if (!mm) {
			count(COUNT_EXIT_WITHOUT_MM);
			if (cfg->args_at_exec == ARGS_AT_EXEC_OFF)
				cfg->args_at_exec = ARGS_AT_EXEC_UNTIL_MM;
		}
		if (saved) {
			__u32 len = saved->len;
			if (len > 0 && len <= ARGS_MAX &&
			    !bpf_probe_read_kernel(record->args, bounded(len), saved->args))
				record->args_len = len;
			if (saved->truncated)
				record->flags |= EXIT_ARGS_TRUNCATED;
			record->flags |= EXIT_ARGS_FROM_EXEC;
		} else {
			record->flags |= EXIT_ARGS_UNKNOWN;
		}
	}

	sender = bpf_map_lookup_elem(&SENDERS, &tgid);
	if (sender) {
		record->flags |= EXIT_KILLER;
		record->killer_pid = sender->pid;
		record->killer_signal = sender->signal;
		__builtin_memcpy(record->killer_comm, sender->comm, COMM_LEN);
	}
	if (bpf_map_lookup_elem(&OOM_VICTIMS, &tgid))
		record->flags |= EXIT_OOM_KILLED;

	/* Only the used part of the command line goes into the ring: most
	 * records are a third of the full size, so the ring holds three times
	 * as many and user space copies less. */
	size = offsetof(struct exit_record, args) + record->args_len;
	if (size > sizeof(*record))
		size = sizeof(*record);
	wakeup = cfg->wakeup_bytes;
	if (wakeup && bpf_ringbuf_query(&EXITS, BPF_RB_AVAIL_DATA) < wakeup)
		wake = BPF_RB_NO_WAKEUP;
	if (bpf_ringbuf_output(&EXITS, record, size, wake))
		count(COUNT_RINGBUF_FULL);

forget:
	bpf_map_delete_elem(&SENDERS, &tgid);
	bpf_map_delete_elem(&OOM_VICTIMS, &tgid);
	bpf_map_delete_elem(&EXEC_ARGS, &tgid);
	bpf_map_delete_elem(&PEAK_RSS, &tgid);
	return 0;
}

/* Keeps the calling process's peak RSS while its address space is still
 * attached (the highest of its threads' readings). */
static __always_inline void keep_peak_rss(void)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct task_struct___pre62 *old = (void *)task;
	struct mm_struct *mm = BPF_CORE_READ(task, mm);
	__s64 unsynced = 0;
	__u32 tgid;
	__u64 pages, *kept;

	if (!mm)
		return;
	tgid = BPF_CORE_READ(task, tgid);
	/* Before 6.2 the exiting thread's own changes reach the mm only
	 * later in do_exit (sync_mm_rss). */
	if (bpf_core_field_exists(old->rss_stat))
		unsynced = BPF_CORE_READ(old, rss_stat.count[0]) +
			   BPF_CORE_READ(old, rss_stat.count[1]) +
			   BPF_CORE_READ(old, rss_stat.count[3]);
	pages = peak_rss_pages(mm, unsynced);
	kept = bpf_map_lookup_elem(&PEAK_RSS, &tgid);
	if (kept && *kept >= pages)
		return;
	bpf_map_update_elem(&PEAK_RSS, &tgid, &pages, BPF_ANY);
}

/* x86-64 system call numbers. */
#define NR_EXIT 60
#define NR_EXIT_GROUP 231

/* A thread calls exit or exit_group: nothing runs in user space after. */
SEC("tp_btf/sys_enter")
int BPF_PROG(handle_sys_enter, struct pt_regs *regs, long id)
{
	if (id == NR_EXIT || id == NR_EXIT_GROUP)
		keep_peak_rss();
	return 0;
}

/* Signals whose default action does not end the process. */
#define NONFATAL_DEFAULT                                                                   \
	((1u << 17) | (1u << 18) | (1u << 19) | (1u << 20) | (1u << 21) | (1u << 22) |     \
	 (1u << 23) | (1u << 28))

/* A signal is delivered with its default action that ends the process
 * (the group exit of a fatal signal or SIGKILL is delivered as SIGKILL). */
SEC("tp_btf/signal_deliver")
int BPF_PROG(handle_signal_deliver, int sig, struct kernel_siginfo *info, struct k_sigaction *ka)
{
	if (BPF_CORE_READ(ka, sa.sa_handler))
		return 0;
	if (sig < 32 && (NONFATAL_DEFAULT & (1u << (sig & 31))))
		return 0;
	keep_peak_rss();
	return 0;
}

SEC("tp_btf/signal_generate")
int BPF_PROG(handle_signal, int sig, struct kernel_siginfo *info, struct task_struct *target,
	     int group, int result)
{
	struct task_struct *current;
	struct sender sender = {};
	__u32 target_tgid;

	/* result 0 is TRACE_SIGNAL_DELIVERED: the signal was queued. */
	if (result != 0)
		return 0;
	if (info == SEND_SIG_PRIV)
		return 0;
	if (info && BPF_CORE_READ(info, si_code) > 0)
		return 0;
	/* bpf_get_current_task, not _btf (helper 158, new in 5.11): the
	 * reads below are CO-RE reads either way. */
	current = (struct task_struct *)bpf_get_current_task();
	sender.pid = BPF_CORE_READ(current, tgid);
	target_tgid = BPF_CORE_READ(target, tgid);
	if (sender.pid == target_tgid)
		return 0;
	sender.signal = sig;
	bpf_get_current_comm(&sender.comm, sizeof(sender.comm));
	bpf_map_update_elem(&SENDERS, &target_tgid, &sender, BPF_ANY);
	return 0;
}

SEC("tp_btf/mark_victim")
int BPF_PROG(handle_oom_victim, struct task_struct *victim)
{
	__u32 tgid = BPF_CORE_READ(victim, tgid);
	__u8 yes = 1;

	bpf_map_update_elem(&OOM_VICTIMS, &tgid, &yes, BPF_ANY);
	return 0;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(handle_exec, struct task_struct *task)
{
	__u32 zero = 0;
	struct config *cfg = bpf_map_lookup_elem(&CONFIG, &zero);
	struct exec_args *scratch;
	struct mm_struct *mm;
	__u32 tgid;

	if (!cfg || !cfg->args_at_exec)
		return 0;
	scratch = bpf_map_lookup_elem(&EXEC_SCRATCH, &zero);
	if (!scratch)
		return 0;
	mm = BPF_CORE_READ(task, mm);
	if (!mm)
		return 0;
	tgid = BPF_CORE_READ(task, tgid);
	scratch->truncated = 0;
	scratch->len = copy_args(scratch->args, BPF_CORE_READ(mm, arg_start),
				 BPF_CORE_READ(mm, arg_end), &scratch->truncated);
	bpf_map_update_elem(&EXEC_ARGS, &tgid, scratch, BPF_ANY);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
