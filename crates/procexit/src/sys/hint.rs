//! A cache hint for the `.etl` reader, whose record chain would otherwise
//! wait on memory one record at a time.

/// Asks the CPU to bring the cache line holding `bytes[at]` into its
/// nearest cache. A hint: no effect when `at` is out of range or the target
/// has no stable prefetch instruction.
#[inline(always)]
pub(crate) fn prefetch(bytes: &[u8], at: usize) {
    #[cfg(target_arch = "x86_64")]
    if let Some(byte) = bytes.get(at) {
        // SAFETY: a prefetch never faults and writes nothing; the address is
        // of a byte of `bytes`, and SSE, which the instruction needs, is
        // part of every x86_64 target. (`unsafe` for Rust before 1.87,
        // where the intrinsic was not yet a safe function.)
        #[allow(unsafe_code, unused_unsafe)]
        unsafe {
            core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(
                std::ptr::from_ref(byte).cast::<i8>(),
            );
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (bytes, at);
}
