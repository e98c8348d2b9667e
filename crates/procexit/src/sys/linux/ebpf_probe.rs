//! What the eBPF source needs of the running kernel, asked of the kernel
//! itself (never guessed from its version): its BTF, BTF-typed tracepoints
//! (`tp_btf`) and BPF ring buffers. The questions sit behind
//! [`KernelFeatures`] so that tests can play a kernel that refuses each.

use super::bpf_loader::btf::{kind, Btf};
use super::bpf_loader::object::MapDef;
use super::bpf_loader::syscall::Map;
use super::bpf_loader::{self, LoadError};
use crate::error::Error;

/// `BPF_MAP_TYPE_RINGBUF` (Linux 5.8).
const MAP_TYPE_RINGBUF: u32 = 27;
/// The typedef the kernel's BTF has for a BTF-typed tracepoint.
const EXIT_TRACEPOINT_TYPE: &str = "btf_trace_sched_process_exit";

/// The kernel's answers.
pub(crate) trait KernelFeatures {
    /// The kernel's BTF (`/sys/kernel/btf/vmlinux`), or the errno.
    fn btf(&self) -> Result<Vec<u8>, i32>;
    /// Whether `btf` has a typedef named `name`.
    fn has_typedef(&self, btf: &[u8], name: &str) -> bool {
        Btf::parse(btf, "kernel BTF")
            .and_then(|b| b.find_all(&[kind::TYPEDEF], |n| n == name))
            .is_ok_and(|found| !found.is_empty())
    }
    /// Creates (and drops) a one-page BPF ring buffer: Err(errno) if the
    /// kernel refuses.
    fn ring_buffer(&self) -> Result<(), i32>;
}

/// The running kernel.
pub(crate) struct Running;

impl KernelFeatures for Running {
    fn btf(&self) -> Result<Vec<u8>, i32> {
        bpf_loader::read_kernel_btf().map_err(|e| e.code())
    }
    fn ring_buffer(&self) -> Result<(), i32> {
        let def = MapDef {
            name: "probe".into(),
            map_type: MAP_TYPE_RINGBUF,
            key_size: 0,
            value_size: 0,
            max_entries: 4096,
            map_flags: 0,
        };
        Map::create(&def).map(drop).map_err(|e: LoadError| e.code())
    }
}

/// errno of a missing privilege (not a missing feature).
const EPERM: i32 = 1;

/// The kernel's BTF when the kernel has everything the eBPF source needs;
/// else a typed error naming the first thing missing. A refusal for lack
/// of privileges (EPERM) is not a missing feature: `permission` says that.
pub(crate) fn check(
    kernel: &impl KernelFeatures,
    permission: impl Fn(i32) -> Error,
) -> Result<Vec<u8>, Error> {
    let btf = kernel.btf().map_err(|code| Error::EbpfUnsupportedKernel {
        missing: "kernel BTF (/sys/kernel/btf/vmlinux, CONFIG_DEBUG_INFO_BTF)",
        code,
    })?;
    if !kernel.has_typedef(&btf, EXIT_TRACEPOINT_TYPE) {
        return Err(Error::EbpfUnsupportedKernel {
            missing: "BTF-typed tracepoints (tp_btf; the kernel's BTF has no \
                      btf_trace_sched_process_exit)",
            code: 0,
        });
    }
    match kernel.ring_buffer() {
        Ok(()) => Ok(btf),
        Err(EPERM) => Err(permission(EPERM)),
        Err(code) => Err(Error::EbpfUnsupportedKernel {
            missing: "BPF ring buffers (Linux 5.8 or later)",
            code,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A kernel that refuses what it is told to.
    struct Fake {
        btf: Result<(), i32>,
        tp_btf: bool,
        ring: Result<(), i32>,
    }

    impl KernelFeatures for Fake {
        fn btf(&self) -> Result<Vec<u8>, i32> {
            self.btf.map(|()| vec![0u8; 4])
        }
        fn has_typedef(&self, _: &[u8], name: &str) -> bool {
            assert_eq!(name, EXIT_TRACEPOINT_TYPE);
            self.tp_btf
        }
        fn ring_buffer(&self) -> Result<(), i32> {
            self.ring
        }
    }

    const GOOD: Fake = Fake {
        btf: Ok(()),
        tp_btf: true,
        ring: Ok(()),
    };

    fn permission(code: i32) -> Error {
        Error::EbpfPermission {
            missing: "CAP_BPF",
            code,
        }
    }

    fn missing(fake: &Fake) -> (&'static str, i32) {
        match check(fake, permission) {
            Err(Error::EbpfUnsupportedKernel { missing, code }) => (missing, code),
            other => panic!("not a missing feature: {other:?}"),
        }
    }

    #[test]
    fn a_kernel_with_everything_passes() {
        assert!(check(&GOOD, permission).is_ok());
    }

    #[test]
    fn each_missing_feature_is_named() {
        let no_btf = Fake {
            btf: Err(2),
            ..GOOD
        };
        assert_eq!(missing(&no_btf).1, 2);
        assert!(missing(&no_btf).0.starts_with("kernel BTF"));
        let no_tp_btf = Fake {
            tp_btf: false,
            ..GOOD
        };
        assert!(missing(&no_tp_btf).0.starts_with("BTF-typed tracepoints"));
        // Before 5.8 creating a map of an unknown type gives EINVAL.
        let no_ring = Fake {
            ring: Err(22),
            ..GOOD
        };
        assert_eq!(
            missing(&no_ring),
            ("BPF ring buffers (Linux 5.8 or later)", 22)
        );
    }

    #[test]
    fn a_refusal_for_privileges_is_not_a_missing_feature() {
        let refused = Fake {
            ring: Err(EPERM),
            ..GOOD
        };
        assert!(matches!(
            check(&refused, permission),
            Err(Error::EbpfPermission { code: EPERM, .. })
        ));
    }

    #[test]
    fn the_real_typedef_lookup_reads_btf() {
        // Not BTF at all: no typedef.
        assert!(!Running.has_typedef(b"not btf", EXIT_TRACEPOINT_TYPE));
    }
}
