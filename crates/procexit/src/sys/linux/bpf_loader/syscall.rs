//! The `bpf(2)` commands the loader uses: create a map, read and write its
//! elements, load a program and attach it to its BTF-typed tracepoint.
//! Attribute layouts follow `union bpf_attr` in include/uapi/linux/bpf.h;
//! each command gets only the leading fields it uses (the kernel zero-fills
//! the rest).

#![allow(unsafe_code)]

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use super::object::{Insn, MapDef};
use super::LoadError;

const BPF_MAP_CREATE: i32 = 0;
const BPF_MAP_LOOKUP_ELEM: i32 = 1;
const BPF_MAP_UPDATE_ELEM: i32 = 2;
const BPF_PROG_LOAD: i32 = 5;
const BPF_RAW_TRACEPOINT_OPEN: i32 = 17;

/// `BPF_PROG_TYPE_TRACING`.
const PROG_TYPE_TRACING: u32 = 26;
/// `BPF_TRACE_RAW_TP`: a tp_btf program.
const TRACE_RAW_TP: u32 = 23;

/// Map types whose values are one slot per possible CPU.
const PERCPU_HASH: u32 = 5;
const PERCPU_ARRAY: u32 = 6;
const LRU_PERCPU_HASH: u32 = 10;

const ENOENT: i32 = 2;
const EPERM: i32 = 1;
const EAGAIN: i32 = 11;
/// Extra tries of a program load the verifier gave up on with EAGAIN.
const PROG_LOAD_ATTEMPTS: usize = 4;

/// Verifier log kept in an error (its end, where the reason is).
const LOG_TAIL: usize = 4096;
/// Verifier log buffer for the retry after a failed load.
const LOG_BUFFER: usize = 1 << 20;

#[repr(C)]
#[derive(Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
}

#[repr(C)]
#[derive(Default)]
struct MapElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
    prog_btf_fd: u32,
    func_info_rec_size: u32,
    func_info: u64,
    func_info_cnt: u32,
    line_info_rec_size: u32,
    line_info: u64,
    line_info_cnt: u32,
    attach_btf_id: u32,
    attach_btf_obj_fd: u32,
    _pad: u32,
}

#[repr(C)]
#[derive(Default)]
struct RawTracepointAttr {
    name: u64,
    prog_fd: u32,
    _pad: u32,
}

/// The `bpf(2)` system call with one attribute struct; the result or errno.
fn bpf<T>(cmd: i32, attr: &mut T) -> Result<i64, i32> {
    let size = std::mem::size_of::<T>();
    // SAFETY: `attr` is one of the repr(C) attribute structs above, laid out
    // as the leading fields of `union bpf_attr` for `cmd`; the kernel reads
    // and may write at most `size` bytes of it. Every address stored in it
    // points to a buffer the caller keeps alive and large enough for the
    // length given next to it.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, std::ptr::from_mut(attr), size) };
    if r < 0 {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    } else {
        Ok(r)
    }
}

/// A new file descriptor returned by `bpf(2)`.
fn owned_fd(r: i64) -> Result<OwnedFd, i32> {
    let raw = i32::try_from(r).map_err(|_| 0)?;
    // SAFETY: the kernel just returned `raw` as a new descriptor of this
    // process; nothing else owns or closes it.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

fn fd_u32(fd: BorrowedFd<'_>) -> u32 {
    u32::try_from(fd.as_raw_fd()).unwrap_or(u32::MAX)
}

/// A kernel object name: at most 15 bytes of `[A-Za-z0-9_.]`.
fn object_name(name: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (slot, b) in out
        .iter_mut()
        .zip(
            name.bytes()
                .filter(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'.'),
        )
        .take(15)
    {
        *slot = b;
    }
    out
}

/// Slots of a per-CPU map value: the possible CPUs
/// (`/sys/devices/system/cpu/possible`, e.g. "0-3" or "0,2-5").
pub(crate) fn possible_cpus() -> Result<usize, LoadError> {
    const PATH: &str = "/sys/devices/system/cpu/possible";
    let text = std::fs::read_to_string(PATH).map_err(|e| LoadError::Read {
        path: PATH,
        code: e.raw_os_error().unwrap_or(0),
    })?;
    count_cpus(&text).ok_or(LoadError::Malformed {
        what: "CPU list",
        detail: "not a list of CPU ranges",
    })
}

/// Number of CPUs in a kernel CPU list.
pub(crate) fn count_cpus(list: &str) -> Option<usize> {
    let mut total = 0usize;
    for part in list.trim().split(',') {
        let (first, last) = match part.split_once('-') {
            Some((a, b)) => (a.parse::<usize>().ok()?, b.parse::<usize>().ok()?),
            None => {
                let n = part.parse::<usize>().ok()?;
                (n, n)
            }
        };
        total = total.checked_add(last.checked_sub(first)?.checked_add(1)?)?;
    }
    (total > 0).then_some(total)
}

/// A created map.
#[derive(Debug)]
pub(crate) struct Map {
    pub(crate) def: MapDef,
    fd: OwnedFd,
    /// Bytes of one value as the syscalls see it (per-CPU: all slots).
    value_len: usize,
}

impl AsFd for Map {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Map {
    /// `BPF_MAP_CREATE`.
    pub(crate) fn create(def: &MapDef) -> Result<Map, LoadError> {
        let value_size = usize::try_from(def.value_size).unwrap_or(usize::MAX);
        let value_len = if matches!(def.map_type, PERCPU_HASH | PERCPU_ARRAY | LRU_PERCPU_HASH) {
            let cpus = possible_cpus()?;
            value_size
                .checked_next_multiple_of(8)
                .and_then(|v| v.checked_mul(cpus))
                .ok_or(LoadError::Unsupported(format!(
                    "per-CPU value size of map {}",
                    def.name
                )))?
        } else {
            value_size
        };
        let mut attr = MapCreateAttr {
            map_type: def.map_type,
            key_size: def.key_size,
            value_size: def.value_size,
            max_entries: def.max_entries,
            map_flags: def.map_flags,
            map_name: object_name(&def.name),
            ..Default::default()
        };
        let fd = bpf(BPF_MAP_CREATE, &mut attr)
            .and_then(owned_fd)
            .map_err(|code| LoadError::Os {
                call: "BPF_MAP_CREATE",
                name: def.name.clone(),
                code,
                log: String::new(),
            })?;
        Ok(Map {
            def: def.clone(),
            fd,
            value_len,
        })
    }

    fn check_key(&self, key: &[u8]) -> Result<(), LoadError> {
        if key.len() != usize::try_from(self.def.key_size).unwrap_or(0) {
            return Err(LoadError::Unsupported(format!(
                "key of {} bytes for map {}",
                key.len(),
                self.def.name
            )));
        }
        Ok(())
    }

    /// `BPF_MAP_UPDATE_ELEM` with `BPF_ANY`. `value` must have the map's
    /// value size (all CPU slots for a per-CPU map).
    pub(crate) fn update(&self, key: &[u8], value: &[u8]) -> Result<(), LoadError> {
        self.check_key(key)?;
        if value.len() != self.value_len {
            return Err(LoadError::Unsupported(format!(
                "value of {} bytes for map {} (it takes {})",
                value.len(),
                self.def.name,
                self.value_len
            )));
        }
        let mut attr = MapElemAttr {
            map_fd: fd_u32(self.fd.as_fd()),
            key: key.as_ptr() as u64,
            value: value.as_ptr() as u64,
            ..Default::default()
        };
        bpf(BPF_MAP_UPDATE_ELEM, &mut attr)
            .map(drop)
            .map_err(|code| LoadError::Os {
                call: "BPF_MAP_UPDATE_ELEM",
                name: self.def.name.clone(),
                code,
                log: String::new(),
            })
    }

    /// `BPF_MAP_LOOKUP_ELEM`: the value (every CPU's slot, each rounded up
    /// to 8 bytes, for a per-CPU map), `None` when the key is absent.
    pub(crate) fn lookup(&self, key: &[u8]) -> Result<Option<Vec<u8>>, LoadError> {
        self.check_key(key)?;
        let mut value = vec![0u8; self.value_len];
        let mut attr = MapElemAttr {
            map_fd: fd_u32(self.fd.as_fd()),
            key: key.as_ptr() as u64,
            value: value.as_mut_ptr() as u64,
            ..Default::default()
        };
        match bpf(BPF_MAP_LOOKUP_ELEM, &mut attr) {
            Ok(_) => Ok(Some(value)),
            Err(ENOENT) => Ok(None),
            Err(code) => Err(LoadError::Os {
                call: "BPF_MAP_LOOKUP_ELEM",
                name: self.def.name.clone(),
                code,
                log: String::new(),
            }),
        }
    }

    /// Sum over CPUs of a per-CPU `u64` value at `key` (0 when absent).
    pub(crate) fn per_cpu_u64_sum(&self, key: u32) -> Result<u64, LoadError> {
        Ok(self
            .lookup(&key.to_ne_bytes())?
            .unwrap_or_default()
            .chunks_exact(8)
            .filter_map(|c| <[u8; 8]>::try_from(c).ok())
            .map(u64::from_ne_bytes)
            .fold(0u64, u64::saturating_add))
    }
}

/// `BPF_PROG_LOAD` of a tp_btf program that attaches to kernel BTF type
/// `attach_btf_id` (the `btf_trace_<tracepoint>` typedef). On failure the
/// load is retried with a log buffer and the end of the verifier's log is
/// put in the error.
pub(crate) fn load_tracing_program(
    name: &str,
    insns: &[Insn],
    license: &str,
    attach_btf_id: u32,
) -> Result<OwnedFd, LoadError> {
    let code: Vec<u8> = insns.iter().flat_map(|i| i.to_bytes()).collect();
    let mut license = license.as_bytes().to_vec();
    license.push(0);
    let attr = |log: &mut Vec<u8>| ProgLoadAttr {
        prog_type: PROG_TYPE_TRACING,
        insn_cnt: u32::try_from(insns.len()).unwrap_or(u32::MAX),
        insns: code.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: u32::from(!log.is_empty()),
        log_size: u32::try_from(log.len()).unwrap_or(0),
        log_buf: if log.is_empty() {
            0
        } else {
            log.as_mut_ptr() as u64
        },
        prog_name: object_name(name),
        expected_attach_type: TRACE_RAW_TP,
        attach_btf_id,
        ..Default::default()
    };
    // The verifier gives up with EAGAIN when a signal is pending; like
    // libbpf, try again a few times.
    let load = |log: &mut Vec<u8>| {
        let mut result = bpf(BPF_PROG_LOAD, &mut attr(log)).and_then(owned_fd);
        for _ in 0..PROG_LOAD_ATTEMPTS {
            if !matches!(result, Err(EAGAIN)) {
                break;
            }
            result = bpf(BPF_PROG_LOAD, &mut attr(log)).and_then(owned_fd);
        }
        result
    };
    let code = match load(&mut Vec::new()) {
        Ok(fd) => return Ok(fd),
        Err(code) => code,
    };
    let mut log = String::new();
    if code != EPERM {
        let mut buffer = vec![0u8; LOG_BUFFER];
        // With a log the load may succeed after all (the first failure was
        // transient): then the program is loaded.
        if let Ok(fd) = load(&mut buffer) {
            return Ok(fd);
        }
        let end = buffer.iter().position(|&b| b == 0).unwrap_or(buffer.len());
        let text = String::from_utf8_lossy(buffer.get(..end).unwrap_or_default());
        let text = text.trim_end();
        let start = text.len().saturating_sub(LOG_TAIL);
        let start = (start..text.len())
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(text.len());
        if let Some(tail) = text.get(start..).filter(|t| !t.is_empty()) {
            log = format!("; verifier log:\n{tail}");
        }
    }
    Err(LoadError::Os {
        call: "BPF_PROG_LOAD",
        name: name.to_owned(),
        code,
        log,
    })
}

/// Attaches a loaded tp_btf program (`BPF_RAW_TRACEPOINT_OPEN` without a
/// name: the tracepoint comes from the program's attach BTF id). Closing
/// the returned descriptor detaches it.
pub(crate) fn attach_tracing(name: &str, program: BorrowedFd<'_>) -> Result<OwnedFd, LoadError> {
    let mut attr = RawTracepointAttr {
        name: 0,
        prog_fd: fd_u32(program),
        ..Default::default()
    };
    bpf(BPF_RAW_TRACEPOINT_OPEN, &mut attr)
        .and_then(owned_fd)
        .map_err(|code| LoadError::Os {
            call: "BPF_RAW_TRACEPOINT_OPEN",
            name: name.to_owned(),
            code,
            log: String::new(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_layouts_match_the_kernel() {
        assert_eq!(std::mem::size_of::<MapCreateAttr>(), 44);
        assert_eq!(std::mem::size_of::<MapElemAttr>(), 32);
        assert_eq!(std::mem::size_of::<ProgLoadAttr>(), 120);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, prog_name), 48);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, expected_attach_type), 68);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, attach_btf_id), 108);
        assert_eq!(std::mem::size_of::<RawTracepointAttr>(), 16);
    }

    #[test]
    fn cpu_lists_count() {
        assert_eq!(count_cpus("0-1\n"), Some(2));
        assert_eq!(count_cpus("0"), Some(1));
        assert_eq!(count_cpus("0,2-5"), Some(5));
        assert_eq!(count_cpus(""), None);
        assert_eq!(count_cpus("3-1"), None);
        assert_eq!(count_cpus("x"), None);
    }

    #[test]
    fn names_are_cut_to_what_the_kernel_takes() {
        assert_eq!(
            &object_name("handle_oom_victim")[..16],
            b"handle_oom_vict\0"
        );
        assert_eq!(object_name("a-b")[..3], *b"ab\0");
    }
}
