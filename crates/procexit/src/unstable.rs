//! Internals made public only for the fuzz targets, tests and benchmarks:
//! the raw payload decoders, the `.etl` record layouts, the LZ77 Xpress
//! decompressor, the ETW exit tracker and the BPF loader's parsing and
//! relocation. Not part of the API and hidden from its documentation:
//! anything here may change or go in any release. Programs use
//! [`Monitor`](crate::Monitor), [`etl`](crate::etl) and
//! [`schema`](crate::schema).

/// The raw decoders of OS payloads (`&[u8]` in, typed records out).
pub mod decode {
    pub use crate::decode::*;
}

/// The `.etl` buffer and record header layouts.
pub mod layout {
    pub use crate::etl::layout::*;
}

/// The LZ77 Xpress decompressor of compressed `.etl` buffers.
pub mod xpress {
    pub use crate::etl::xpress::*;
}

/// The BPF loader without its system calls: reads an object and applies
/// its CO-RE relocations against a kernel BTF, loading nothing.
#[cfg(target_os = "linux")]
pub mod bpf {
    /// The BPF object procexit loads (committed, built from
    /// `bpf/procexit.bpf.c`; empty if its packed copy would not inflate).
    pub fn object() -> &'static [u8] {
        crate::sys::bpf_object().unwrap_or(&[])
    }

    /// The `.BTF` section of an ELF object (a stand-in kernel BTF).
    pub fn object_btf(object: &[u8]) -> Option<&[u8]> {
        crate::sys::object_btf(object)
    }

    /// Parses `object` and relocates every program against `kernel_btf`:
    /// the number of programs, or why it failed.
    pub fn relocate(object: &[u8], kernel_btf: &[u8]) -> Result<usize, String> {
        crate::sys::relocate_object(object, kernel_btf).map_err(|e| e.to_string())
    }

    /// A program's C function name and its instructions (8 bytes each).
    pub type ProgramInsns = (String, Vec<[u8; 8]>);

    /// Each program with its instructions after the CO-RE relocations
    /// against `kernel_btf`; map references are left as the object has
    /// them.
    pub fn relocated_programs(
        object: &[u8],
        kernel_btf: &[u8],
    ) -> Result<Vec<ProgramInsns>, String> {
        crate::sys::relocated_programs(object, kernel_btf).map_err(|e| e.to_string())
    }

    /// The running kernel's BTF (`/sys/kernel/btf/vmlinux`).
    pub fn kernel_btf() -> Result<Vec<u8>, String> {
        crate::sys::read_kernel_btf().map_err(|e| e.to_string())
    }
}

/// The ETW exit tracker as the real-time consumer drives it.
pub mod etw {
    use crate::decode::view::EventView;
    use crate::decode::DecodeError;
    use crate::event::{ProcessExit, Source};
    use crate::merge::etw::EtwExitTracker;

    /// Turns ETW process events into exit records, doing per event what
    /// the real-time callback does (route, decode, track), without a
    /// session: benchmarks measure the decode + merge cost with it.
    #[derive(Debug)]
    pub struct ExitTracker(EtwExitTracker);

    impl ExitTracker {
        /// A tracker for a session that began at `window_start` (FILETIME).
        pub fn new(window_start: Option<u64>) -> ExitTracker {
            ExitTracker(EtwExitTracker::new(Source::EtwKernel, window_start))
        }

        /// One event; the exit record of a kernel End (or Defunct) at once,
        /// Kernel-Process exits through [`released`](Self::released).
        pub fn on_event<P>(
            &mut self,
            event: &EventView<'_, P>,
        ) -> Result<Option<ProcessExit>, DecodeError> {
            self.0.on_event(event)
        }

        /// Exit records of Kernel-Process events decided so far.
        pub fn released(&mut self) -> impl Iterator<Item = ProcessExit> + '_ {
            self.0.take_released().filter_map(|(exit, ())| exit)
        }
    }
}
