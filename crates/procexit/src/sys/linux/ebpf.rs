//! Linux eBPF source: a BPF program on the exit of each process's last
//! thread sends one complete record per process through a ring buffer.
//!
//! The program is C (`bpf/procexit.bpf.c`), compiled by clang to a CO-RE
//! object that is committed (`bpf/procexit.bpf.o`, rebuilt and compared by
//! `scripts/build-bpf.sh --check`), so building procexit needs only Rust.
//! The in-house loader (`bpf_loader`) applies the CO-RE relocations against
//! the running kernel's BTF (`/sys/kernel/btf/vmlinux`), loads and attaches
//! it, and reads the ring buffer.
//! All hooks are BTF-typed raw tracepoints: no tracefs mount, no kprobes.
//!
//! Loading needs root, or CAP_BPF + CAP_PERFMON (CAP_SYS_ADMIN stands in
//! for both).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::bpf_loader::object::object;
use super::bpf_loader::ringbuf::RingBuffer;
use super::bpf_loader::syscall::Map;
use super::bpf_loader::{Collection, Link, LoadError};
use super::ffi::{self, Waker};
use crate::backend::{spawn_backend, Backend, Limitation, Running, StopSignal};
use crate::decode::ebpf_exit::EbpfExit;
use crate::error::{Error, Result};
use crate::merge::ebpf::{exit_from_record, Machine, StartedBefore};
use crate::queue::Sink;
use crate::sys::Config;

/// Per-CPU counter slots (`COUNT_*` in the C source).
const COUNT_RINGBUF_FULL: u32 = 0;
const COUNT_FILTERED: u32 = 1;
const COUNT_EXIT_WITH_MM: u32 = 3;
/// `config.args_at_exec` (`ARGS_AT_EXEC_*` in the C source).
const ARGS_AT_EXEC_UNTIL_MM: u32 = 1;
const ARGS_AT_EXEC_ALWAYS: u32 = 2;
/// Entries of the in-kernel pid and ppid filter maps.
const FILTER_MAP_ENTRIES: usize = 1024;
/// Idle wake-up: loss and filter counters, clock refresh.
const TICK_MS: i32 = 100;
/// Records per second (one per exit) above which the reader gathers
/// (see `BurstGate`): well above the 1 000 exits/s at which latency is
/// measured, since every process on the machine counts.
const BURST_RATE: usize = 4_000;

/// errno of a missing privilege.
const EPERM: i32 = 1;

/// Capability numbers (linux/capability.h).
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// `struct config` of the C source.
#[derive(Debug, Clone, Copy, Default)]
struct BpfConfig {
    failed_only: u32,
    filter_pids: u32,
    filter_ppids: u32,
    args_at_exec: u32,
    wakeup_bytes: u64,
}

/// Size of `struct config` (4 × u32, then a u64 at offset 16).
const CONFIG_SIZE: usize = 24;

impl BpfConfig {
    /// The C layout, native byte order.
    fn to_bytes(self) -> [u8; CONFIG_SIZE] {
        let mut out = [0u8; CONFIG_SIZE];
        let fields = [
            self.failed_only,
            self.filter_pids,
            self.filter_ppids,
            self.args_at_exec,
        ];
        for (chunk, value) in out.chunks_exact_mut(4).zip(fields) {
            chunk.copy_from_slice(&value.to_ne_bytes());
        }
        if let Some(tail) = out.get_mut(16..) {
            tail.copy_from_slice(&self.wakeup_bytes.to_ne_bytes());
        }
        out
    }
}

/// What this process may do with BPF, from its effective capabilities.
/// `Err` names what is missing.
pub(crate) fn permission() -> std::result::Result<(), &'static str> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let effective = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0);
    let has = |cap: u32| effective & (1u64 << cap) != 0;
    if has(CAP_SYS_ADMIN) {
        return Ok(());
    }
    match (has(CAP_BPF), has(CAP_PERFMON)) {
        (true, true) => Ok(()),
        (true, false) => Err("CAP_PERFMON"),
        (false, true) => Err("CAP_BPF"),
        (false, false) => Err("CAP_BPF and CAP_PERFMON"),
    }
}

/// The backend `Backend::Auto` means here: the eBPF source when this
/// process may load BPF, else the connector. A kernel that lacks what the
/// source needs (`ebpf_probe`) makes the start fall back to the connector.
pub(crate) fn resolve_backend(options: &Config<'_>) -> Backend {
    match options.backend {
        // What the kernel lacks is found when the source starts (which then
        // falls back to the connector, saying why).
        Backend::Auto if permission().is_ok() => Backend::LinuxEbpf,
        Backend::Auto => Backend::LinuxConnector,
        other => other,
    }
}

/// A typed error for a failed load step: EPERM says what is missing.
fn load_error(step: &'static str, error: &LoadError) -> Error {
    let code = error.code();
    // EACCES is also the verifier's "rejected": only EPERM means privileges.
    if code == EPERM {
        return Error::EbpfPermission {
            missing: permission()
                .err()
                .unwrap_or("a BPF permission (a security module or sysctl refused it)"),
            code,
        };
    }
    Error::EbpfUnavailable {
        step,
        detail: error.to_string(),
        code,
    }
}

struct Stop(Waker);

impl StopSignal for Stop {
    fn stop(&self) {
        self.0.wake();
    }
}

/// The loaded, attached program and the maps the reader uses. Dropping it
/// detaches every hook.
struct Loaded {
    _links: Vec<Link>,
    /// The hooks that take the peak RSS as a process starts to exit; dropped
    /// once an exit hook finds the address space still there.
    peak_links: Vec<Link>,
    /// Command lines of the processes alive at the start.
    started_before: StartedBefore,
    /// Keys the optional hooks that failed leave null.
    limitations: Vec<Limitation>,
    ring: RingBuffer,
    /// Records the ring holds at least.
    ring_records: usize,
    counters: Map,
    machine: Machine,
}

/// The most a record takes of the ring, rounded up: 876 bytes, up to
/// 2 KiB of command line, and the ring's 8-byte header.
const RECORD_BYTES: usize = 3 * 1024;

/// Before 5.11 BPF maps and programs count against RLIMIT_MEMLOCK, whose
/// usual default (64 KiB to 8 MiB) is smaller than the ring buffer, and
/// creating them fails with EPERM even as root. Lifting the limit (what
/// libbpf does too) is harmless on later kernels, which charge the memory
/// cgroup instead; best effort, since the program may still load.
fn lift_memlock_limit() {
    use rustix::process::{setrlimit, Resource, Rlimit};
    let _ = setrlimit(
        Resource::Memlock,
        Rlimit {
            current: None,
            maximum: None,
        },
    );
}

fn load(options: &Config<'_>) -> Result<Loaded> {
    if let Err(missing) = permission() {
        return Err(Error::EbpfPermission {
            missing,
            code: EPERM,
        });
    }
    lift_memlock_limit();
    let kernel_btf =
        super::ebpf_probe::check(&super::ebpf_probe::Running, |code| Error::EbpfPermission {
            missing: permission()
                .err()
                .unwrap_or("a BPF permission (a security module or sysctl refused it)"),
            code,
        })?;
    // The kernel wants a power-of-two multiple of the page size.
    let ring_bytes = options
        .linux
        .ebpf_ring_buffer_bytes()
        .max(usize::try_from(page_size()).unwrap_or(4096))
        .checked_next_power_of_two()
        .and_then(|b| u32::try_from(b).ok())
        .unwrap_or(1 << 30);
    let mut bpf = Collection::open(
        object().map_err(|e| load_error("load object", &e))?,
        &kernel_btf,
        &[("EXITS", ring_bytes)],
    )
    .map_err(|e| load_error("load object", &e))?;

    // Filters and config go in before the exit hook is attached.
    let filter = options.filter;
    let pids = filter.pid_list();
    let ppids = filter.ppid_list();
    let config = BpfConfig {
        failed_only: u32::from(filter.is_failed_only()),
        filter_pids: u32::from(!pids.is_empty() && pids.len() <= FILTER_MAP_ENTRIES),
        filter_ppids: u32::from(!ppids.is_empty() && ppids.len() <= FILTER_MAP_ENTRIES),
        // Copies at exec from the start (until the exit hook finds the
        // address space still there), or always when asked.
        args_at_exec: if options.linux.ebpf_args_at_exec_enabled() {
            ARGS_AT_EXEC_ALWAYS
        } else {
            ARGS_AT_EXEC_UNTIL_MM
        },
        // 0: the kernel's own rule, a wake-up only when the reader has
        // caught up (it is asleep); a burst is gathered in user space
        // instead (`BurstGate`), so a lone exit is read at once.
        wakeup_bytes: 0,
    };
    for (map, list, on) in [
        ("PIDS", pids, config.filter_pids),
        ("PPIDS", ppids, config.filter_ppids),
    ] {
        if on == 0 {
            continue;
        }
        let table = bpf.map(map).map_err(|e| load_error("filter map", &e))?;
        for &pid in list {
            table
                .update(&pid.to_ne_bytes(), &[1])
                .map_err(|e| load_error("fill filter map", &e))?;
        }
    }
    bpf.map("CONFIG")
        .and_then(|m| m.update(&0u32.to_ne_bytes(), &config.to_bytes()))
        .map_err(|e| load_error("write config", &e))?;

    let mut limitations = Vec::new();
    // Optional hooks first: a kernel without one loses only those keys,
    // and says so (`Monitor::limitations`).
    let mut optional = |program: &'static str, keys: &'static [&'static str]| {
        bpf.attach(program)
            .map_err(|e| {
                limitations.push(Limitation {
                    keys,
                    reason: format!("the BPF program {program} did not load or attach: {e}"),
                });
            })
            .ok()
    };
    let signal = optional("handle_signal", &["killer_pid", "killer_name"]);
    let sees_killer = signal.is_some();
    let oom = optional("handle_oom_victim", &["oom_killed"]);
    let sees_oom = oom.is_some();
    // Needed only where the address space is gone at exit.
    let exec = optional(
        "handle_exec",
        &["command_line (of processes that exit after the address space is freed)"],
    );
    let rss_keys: &[&str] =
        &["peak_rss_bytes (where the address space is freed before the exit hook)"];
    let peak_links: Vec<Link> = [
        optional("handle_sys_enter", rss_keys),
        optional("handle_signal_deliver", rss_keys),
    ]
    .into_iter()
    .flatten()
    .collect();
    let mut links: Vec<Link> = [signal, oom, exec].into_iter().flatten().collect();
    links.push(
        bpf.attach("handle_exit")
            .map_err(|e| load_error("load and attach the exit program", &e))?,
    );

    // Processes that exec'd before the hooks were attached: their command
    // lines from /proc, for kernels where the exit hook cannot read them.
    let started_before =
        StartedBefore::from_proc(super::procfs::pids().into_iter().filter_map(|pid| {
            let stat = super::procfs::stat(pid)?;
            Some((pid, stat.start_ticks, super::procfs::cmdline(pid)?))
        }));
    let ring = bpf
        .take_map("EXITS")
        .and_then(RingBuffer::new)
        .map_err(|e| load_error("ring buffer", &e))?;
    let counters = bpf
        .take_map("COUNTERS")
        .map_err(|e| load_error("counters map", &e))?;
    Ok(Loaded {
        _links: links,
        peak_links,
        started_before,
        limitations,
        ring,
        ring_records: usize::try_from(ring_bytes).unwrap_or(usize::MAX) / RECORD_BYTES,
        counters,
        machine: Machine {
            boot_wall_ns: boot_wall_ns(),
            ticks_per_second: ffi::clock_ticks_per_second(),
            page_size: page_size(),
            sees_oom,
            sees_killer,
        },
    })
}

/// CLOCK_REALTIME − CLOCK_BOOTTIME, ns: the boot instant in wall time.
fn boot_wall_ns() -> i128 {
    i128::from(ffi::clock_ns(ffi::ClockId::Realtime))
        - i128::from(ffi::clock_ns(ffi::ClockId::Boottime))
}

fn page_size() -> u64 {
    u64::try_from(rustix::param::page_size()).unwrap_or(4096)
}

/// Starts the eBPF source.
pub(crate) fn start(options: &Config<'_>, sink: Sink) -> Result<Running> {
    let mut loaded = load(options)?;
    for limitation in std::mem::take(&mut loaded.limitations) {
        sink.limitation(limitation);
    }
    let waker = Waker::new().map_err(|code| Error::Os {
        call: "eventfd",
        code,
    })?;
    let stop = Arc::new(Stop(waker));
    let wake = stop.clone();
    let thread = spawn_backend("procexit-ebpf", sink, move |sink| {
        run(loaded, &wake.0, sink)
    })?;
    Ok(Running {
        stop,
        thread,
        fallback: None,
    })
}

/// Sum over CPUs of one counter slot.
fn counter(counters: &Map, slot: u32) -> u64 {
    counters.per_cpu_u64_sum(slot).unwrap_or(0)
}

fn run(mut loaded: Loaded, waker: &Waker, sink: &Sink) -> Result<()> {
    use std::os::fd::AsFd;
    let mut reported_lost = 0u64;
    let mut reported_filtered = 0u64;
    let mut last_tick = Instant::now();
    let mut gate = super::BurstGate::new(BURST_RATE, loaded.ring_records);
    loop {
        let [_, stop] =
            ffi::poll_readable([Some(loaded.ring.as_fd()), Some(waker.as_fd())], TICK_MS)
                .map_err(|code| Error::Os { call: "poll", code })?;
        // Drain everything submitted so far (also the final drain on stop);
        // the consumer gets it with one wake-up.
        let batch = sink.batch();
        let mut read = 0usize;
        let machine = &loaded.machine;
        // One pass reads up to where the producer was; at stop, passes go on
        // (a few at most) until one finds nothing more.
        for _ in 0..if stop { 16 } else { 1 } {
            let taken = loaded
                .ring
                .drain(|item| match EbpfExit::parse(item) {
                    Ok(record) => {
                        read += 1;
                        let mut exit = exit_from_record(&record, machine);
                        loaded.started_before.complete(&mut exit);
                        sink.exit(exit)
                    }
                    Err(_) => sink.anomaly(),
                })
                .map_err(|corrupt| Error::EbpfUnavailable {
                    step: "read the ring buffer",
                    detail: format!(
                        "a record header holds length {:#x}, more than the ring",
                        corrupt.len
                    ),
                    code: 0,
                })?;
            if taken == 0 {
                break;
            }
        }
        // Loss is reported where it is noticed: after the records that made
        // it, at most one tick late.
        let lost = counter(&loaded.counters, COUNT_RINGBUF_FULL);
        if lost > reported_lost {
            sink.lost(lost - reported_lost);
            reported_lost = lost;
        }
        let filtered = counter(&loaded.counters, COUNT_FILTERED);
        if filtered > reported_filtered {
            sink.filtered_upstream(filtered - reported_filtered);
            reported_filtered = filtered;
        }
        if stop {
            return Ok(());
        }
        // This kernel keeps the address space up to the exit hook, which
        // then reads the peak RSS itself: the early hooks (one runs on every
        // system call) are not needed.
        if !loaded.peak_links.is_empty() && counter(&loaded.counters, COUNT_EXIT_WITH_MM) > 0 {
            loaded.peak_links.clear();
        }
        if last_tick.elapsed() >= Duration::from_secs(1) {
            last_tick = Instant::now();
            // Follows settimeofday and NTP steps.
            loaded.machine.boot_wall_ns = boot_wall_ns();
        }
        drop(batch);
        gate.after_read(read, waker)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::sys::linux::bpf_loader::object::Object;

    #[test]
    fn config_matches_the_c_layout() {
        let object = Object::parse(object().unwrap()).expect("object");
        let config = object
            .maps
            .iter()
            .find(|m| m.name == "CONFIG")
            .expect("CONFIG");
        assert_eq!(usize::try_from(config.value_size), Ok(CONFIG_SIZE));
        let bytes = BpfConfig {
            failed_only: 1,
            filter_pids: 2,
            filter_ppids: 3,
            args_at_exec: 4,
            wakeup_bytes: 5,
        }
        .to_bytes();
        assert_eq!(bytes[12..16], 4u32.to_ne_bytes());
        assert_eq!(bytes[16..], 5u64.to_ne_bytes());
    }

    #[test]
    fn the_object_has_every_program_and_map() {
        let object = Object::parse(object().unwrap()).expect("object");
        for name in [
            "handle_exit",
            "handle_signal",
            "handle_oom_victim",
            "handle_exec",
            "handle_sys_enter",
            "handle_signal_deliver",
        ] {
            assert!(
                object.programs.iter().any(|p| p.name == name),
                "{name} missing"
            );
        }
        for name in ["EXITS", "COUNTERS", "CONFIG", "PIDS", "PPIDS"] {
            assert!(object.maps.iter().any(|m| m.name == name), "{name} missing");
        }
    }
}
