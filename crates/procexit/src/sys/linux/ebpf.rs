//! Linux eBPF source: a BPF program on the exit of each process's last
//! thread sends one complete record per process through a ring buffer.
//!
//! The program is C (`bpf/procexit.bpf.c`), compiled by clang to a CO-RE
//! object that is committed (`bpf/procexit.bpf.o`, rebuilt and compared by
//! `scripts/build-bpf.sh --check`), so building procexit needs only Rust.
//! aya, a pure-Rust loader, applies the CO-RE relocations against the
//! running kernel's BTF (`/sys/kernel/btf/vmlinux`), loads and attaches it.
//! All hooks are BTF-typed raw tracepoints: no tracefs mount, no kprobes.
//!
//! Loading needs root, or CAP_BPF + CAP_PERFMON (CAP_SYS_ADMIN stands in
//! for both).

use std::sync::Arc;
use std::time::{Duration, Instant};

use aya::maps::{Array, HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf};
use aya::programs::BtfTracePoint;
use aya::{Btf, Ebpf, EbpfLoader};

use super::ffi::{self, Waker};
use crate::decode::ebpf_exit::{EbpfExit, RECORD_SIZE};
use crate::error::{Error, Result};
use crate::merge::ebpf::{exit_from_record, Machine};
use crate::monitor::{spawn_backend, Backend, Running, StopSignal};
use crate::queue::Sink;
use crate::sys::Config;

/// The committed CO-RE object (8-byte aligned, as ELF parsing wants).
static OBJECT: &[u8] = aya::include_bytes_aligned!("bpf/procexit.bpf.o");

/// Per-CPU counter slots (`COUNT_*` in the C source).
const COUNT_RINGBUF_FULL: u32 = 0;
const COUNT_FILTERED: u32 = 1;
/// Entries of the in-kernel pid and ppid filter maps.
const FILTER_MAP_ENTRIES: usize = 1024;
/// Idle wake-up: loss and filter counters, clock refresh.
const TICK_MS: i32 = 100;
/// Records per second (one per exit) above which the reader gathers
/// (see `BurstGate`).
const BURST_RATE: usize = 2_000;

/// errno of a missing privilege.
const EPERM: i32 = 1;

/// Capability numbers (linux/capability.h).
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// `struct config` of the C source.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct BpfConfig {
    failed_only: u32,
    filter_pids: u32,
    filter_ppids: u32,
    args_at_exec: u32,
    wakeup_bytes: u64,
}

// SAFETY: plain integers in a repr(C) struct without padding (4 × u32 then
// a u64 at offset 16): every bit pattern is a valid value.
#[allow(unsafe_code)]
unsafe impl aya::Pod for BpfConfig {}

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
/// process may load BPF and the kernel has BTF, else the connector. A cgroup
/// filter needs the connector (the eBPF source reports no cgroup).
pub(crate) fn resolve_backend(options: &Config<'_>) -> Backend {
    match options.backend {
        Backend::Auto
            if permission().is_ok()
                && !options.filter.has_cgroup_condition()
                && std::path::Path::new("/sys/kernel/btf/vmlinux").exists() =>
        {
            Backend::LinuxEbpf
        }
        Backend::Auto => Backend::LinuxConnector,
        other => other,
    }
}

/// The errno somewhere in an aya error chain.
fn os_code(error: &(dyn std::error::Error + 'static)) -> Option<i32> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(code) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.raw_os_error())
        {
            return Some(code);
        }
        current = e.source();
    }
    None
}

/// A typed error for a failed load step: EPERM/EACCES say what is missing.
fn load_error(step: &'static str, error: &(dyn std::error::Error + 'static)) -> Error {
    let code = os_code(error).unwrap_or(0);
    // EACCES is also the verifier's "rejected": only EPERM means privileges.
    if code == EPERM {
        return Error::EbpfPermission {
            missing: permission()
                .err()
                .unwrap_or("a BPF permission (a security module or sysctl refused it)"),
            code,
        };
    }
    let mut detail = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        detail.push_str(": ");
        detail.push_str(&e.to_string());
        source = e.source();
    }
    Error::EbpfUnavailable { step, detail, code }
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
    /// Owns the programs and their links.
    _bpf: Ebpf,
    ring: RingBuf<MapData>,
    counters: PerCpuArray<MapData, u64>,
    machine: Machine,
}

fn attach(bpf: &mut Ebpf, btf: &Btf, program: &'static str, hook: &str) -> Result<()> {
    let prog: &mut BtfTracePoint = bpf
        .program_mut(program)
        .ok_or(Error::EbpfUnavailable {
            step: "find program",
            detail: format!("{program} is missing from the object"),
            code: 0,
        })?
        .try_into()
        .map_err(|e| load_error("program type", &e))?;
    prog.load(hook, btf)
        .map_err(|e| load_error("load program", &e))?;
    prog.attach().map_err(|e| load_error("attach", &e))?;
    Ok(())
}

fn take_map(bpf: &mut Ebpf, name: &'static str) -> Result<aya::maps::Map> {
    bpf.take_map(name).ok_or(Error::EbpfUnavailable {
        step: "find map",
        detail: format!("{name} is missing from the object"),
        code: 0,
    })
}

fn load(options: &Config<'_>) -> Result<Loaded> {
    if options.filter.has_cgroup_condition() {
        return Err(Error::Unsupported {
            what: "a cgroup filter with the eBPF source (it reports no cgroup; use the connector)",
        });
    }
    if let Err(missing) = permission() {
        return Err(Error::EbpfPermission {
            missing,
            code: EPERM,
        });
    }
    let btf = Btf::from_sys_fs().map_err(|e| load_error("read /sys/kernel/btf/vmlinux", &e))?;
    // The kernel wants a power-of-two multiple of the page size.
    let ring_bytes = options
        .linux
        .ebpf_ring_buffer_bytes()
        .max(usize::try_from(page_size()).unwrap_or(4096))
        .checked_next_power_of_two()
        .and_then(|b| u32::try_from(b).ok())
        .unwrap_or(1 << 30);
    let mut bpf = EbpfLoader::new()
        .btf(Some(&btf))
        .map_max_entries("EXITS", ring_bytes)
        .load(OBJECT)
        .map_err(|e| load_error("load object", &e))?;

    // Filters and config go in before the exit hook is attached.
    let filter = options.filter;
    let pids = filter.pid_list();
    let ppids = filter.ppid_list();
    let config = BpfConfig {
        failed_only: u32::from(filter.is_failed_only()),
        filter_pids: u32::from(!pids.is_empty() && pids.len() <= FILTER_MAP_ENTRIES),
        filter_ppids: u32::from(!ppids.is_empty() && ppids.len() <= FILTER_MAP_ENTRIES),
        args_at_exec: u32::from(options.linux.ebpf_args_at_exec_enabled()),
        // 0: the kernel's own rule, a wake-up only when the reader has
        // caught up (it is asleep); a burst is gathered in user space
        // instead (`gather_burst`), so a lone exit is read at once.
        wakeup_bytes: 0,
    };
    for (map, list, on) in [
        ("PIDS", pids, config.filter_pids),
        ("PPIDS", ppids, config.filter_ppids),
    ] {
        if on == 0 {
            continue;
        }
        let mut table: BpfHashMap<&mut MapData, u32, u8> = bpf
            .map_mut(map)
            .ok_or(Error::EbpfUnavailable {
                step: "find map",
                detail: format!("{map} is missing from the object"),
                code: 0,
            })?
            .try_into()
            .map_err(|e| load_error("filter map", &e))?;
        for &pid in list {
            table
                .insert(pid, 1, 0)
                .map_err(|e| load_error("fill filter map", &e))?;
        }
    }
    let mut config_map: Array<MapData, BpfConfig> = take_map(&mut bpf, "CONFIG")?
        .try_into()
        .map_err(|e| load_error("config map", &e))?;
    config_map
        .set(0, config, 0)
        .map_err(|e| load_error("write config", &e))?;

    // Optional hooks first: a kernel without one loses only that field.
    let sees_killer = attach(&mut bpf, &btf, "handle_signal", "signal_generate").is_ok();
    let sees_oom = attach(&mut bpf, &btf, "handle_oom_victim", "mark_victim").is_ok();
    // Needed only where the address space is gone at exit; harmless elsewhere.
    let _ = attach(&mut bpf, &btf, "handle_exec", "sched_process_exec");
    attach(&mut bpf, &btf, "handle_exit", "sched_process_exit")?;

    let ring = RingBuf::try_from(take_map(&mut bpf, "EXITS")?)
        .map_err(|e| load_error("ring buffer", &e))?;
    let counters = PerCpuArray::try_from(take_map(&mut bpf, "COUNTERS")?)
        .map_err(|e| load_error("counters map", &e))?;
    Ok(Loaded {
        _bpf: bpf,
        ring,
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
    let loaded = load(options)?;
    let waker = Waker::new().map_err(|code| Error::Os {
        call: "eventfd",
        code,
    })?;
    let stop = Arc::new(Stop(waker));
    let wake = stop.clone();
    let thread = spawn_backend("procexit-ebpf", sink, move |sink| {
        run(loaded, &wake.0, sink)
    })?;
    Ok(Running { stop, thread })
}

/// Sum over CPUs of one counter slot.
fn counter(counters: &PerCpuArray<MapData, u64>, slot: u32) -> u64 {
    counters
        .get(&slot, 0)
        .map(|values| values.iter().fold(0u64, |a, &v| a.saturating_add(v)))
        .unwrap_or(0)
}

fn run(mut loaded: Loaded, waker: &Waker, sink: &Sink) -> Result<()> {
    use std::os::fd::AsFd;
    let mut reported_lost = 0u64;
    let mut reported_filtered = 0u64;
    let mut last_tick = Instant::now();
    let mut gate = super::BurstGate::new(BURST_RATE);
    loop {
        let [_, stop] =
            ffi::poll_readable([Some(loaded.ring.as_fd()), Some(waker.as_fd())], TICK_MS)
                .map_err(|code| Error::Os { call: "poll", code })?;
        // Drain everything submitted so far (also the final drain on stop);
        // the consumer gets it with one wake-up.
        let batch = sink.batch();
        let mut read = 0usize;
        while let Some(item) = loaded.ring.next() {
            read += 1;
            match item.get(..RECORD_SIZE).map(EbpfExit::parse) {
                Some(Ok(record)) => sink.exit(exit_from_record(&record, &loaded.machine)),
                _ => sink.anomaly(),
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

    #[test]
    fn config_matches_the_c_layout() {
        assert_eq!(std::mem::size_of::<BpfConfig>(), 24);
    }

    #[test]
    fn the_object_has_every_program_and_map() {
        let object = aya_obj_names();
        for name in [
            "handle_exit",
            "handle_signal",
            "handle_oom_victim",
            "handle_exec",
            "EXITS",
            "COUNTERS",
            "CONFIG",
            "PIDS",
            "PPIDS",
        ] {
            assert!(object.contains(name), "{name} missing");
        }
    }

    /// Symbol names in the object's string tables (enough to catch a stale
    /// or wrong object without loading it).
    fn aya_obj_names() -> String {
        String::from_utf8_lossy(OBJECT).into_owned()
    }
}
