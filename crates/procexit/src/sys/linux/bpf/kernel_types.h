/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/*
 * The few kernel types the exit program reads, declared by hand instead of a
 * multi-megabyte vmlinux.h. Every struct carries preserve_access_index, so
 * each field access becomes a CO-RE relocation: the loader finds the field by
 * name in the running kernel's BTF (/sys/kernel/btf/vmlinux) and patches the
 * offset. Only names and types matter here, never order or size.
 * Anonymous members mirror the kernel's layout, where a field sits inside an
 * unnamed struct, so that the access path matches the kernel's BTF.
 */
#ifndef PROCEXIT_KERNEL_TYPES_H
#define PROCEXIT_KERNEL_TYPES_H

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;
typedef signed char __s8;
typedef short __s16;
typedef int __s32;
typedef long long __s64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;
typedef _Bool bool;
#define true 1
#define false 0

enum bpf_map_type {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_LRU_HASH = 9,
	BPF_MAP_TYPE_RINGBUF = 27,
};

enum {
	BPF_ANY = 0,
	BPF_RB_NO_WAKEUP = 1,
	BPF_RB_FORCE_WAKEUP = 2,
	BPF_RB_AVAIL_DATA = 0,
};

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)

typedef struct {
	int counter;
} atomic_t;

typedef struct {
	__u32 val;
} kuid_t;

struct cred {
	kuid_t uid;
};

struct signal_struct {
	atomic_t live;
	unsigned int flags;
	int group_exit_code;
	__u64 utime;
	__u64 stime;
};

/* Since 6.2 the RSS counters are per-CPU counters; `count` is their
 * folded value (off by at most a batch of pages per CPU). */
struct percpu_counter {
	__s64 count;
};

struct mm_struct {
	struct {
		unsigned long hiwater_rss;
		unsigned long arg_start;
		unsigned long arg_end;
		struct percpu_counter rss_stat[4];
	};
};

/* Before 6.2 the counters were atomics in one struct, mm_rss_stat. The
 * ___pre62 flavours name that layout (the loader ignores the suffix when it
 * looks for the kernel's type); a field whose type does not match the
 * kernel's does not exist for bpf_core_field_exists, which picks the right
 * reads on either side of 6.2. */
typedef struct {
	__s64 counter;
} atomic_long_t___pre62;

struct mm_rss_stat___pre62 {
	atomic_long_t___pre62 count[4];
};

struct mm_struct___pre62 {
	struct {
		struct mm_rss_stat___pre62 rss_stat;
	};
};

/* Cgroups. A cgroup is a kernfs directory (kn); its parent is the cgroup
 * of its own css's parent (self.parent, NULL at a hierarchy root), which
 * avoids kernfs_node's parent pointer (renamed __parent in 6.15). */
struct kernfs_node {
	const char *name;
};

struct cgroup_subsys {
	const char *name;
};

struct cgroup_root;

struct cgroup_subsys_state {
	struct cgroup *cgroup;
	struct cgroup_subsys *ss;
	struct cgroup_subsys_state *parent;
};

struct cgroup {
	struct cgroup_subsys_state self;
	struct kernfs_node *kn;
	struct cgroup_root *root;
};

/* subsys[] has one slot per controller built into the kernel, in an order
 * that depends on its configuration: the program finds the slots it needs
 * by controller name, and the array's offset and size by relocation. */
struct css_set {
	struct cgroup_subsys_state *subsys[16];
	struct cgroup *dfl_cgrp;
};

struct task_struct {
	unsigned int flags;
	struct css_set *cgroups;
	struct mm_struct *mm;
	int exit_code;
	int pid;
	int tgid;
	struct task_struct *real_parent;
	struct task_struct *group_leader;
	__u64 utime;
	__u64 stime;
	__u64 start_boottime;
	const struct cred *real_cred;
	char comm[16];
	struct signal_struct *signal;
};

struct kernel_siginfo {
	struct {
		int si_signo;
		int si_errno;
		int si_code;
	};
};

/* Before 6.2 each task also held RSS changes not yet added to its mm's
 * counters (SPLIT_RSS_COUNTING; added at the latest when it exits). */
struct task_rss_stat___pre62 {
	int events;
	int count[4];
};

struct task_struct___pre62 {
	struct task_rss_stat___pre62 rss_stat;
};

struct sigaction {
	void *sa_handler;
};

struct k_sigaction {
	struct sigaction sa;
};

struct pt_regs;

#pragma clang attribute pop

#endif
