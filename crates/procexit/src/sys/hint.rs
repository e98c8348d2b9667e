//! A cache hint for the `.etl` reader, whose record chain would otherwise
//! wait on memory one record at a time.

/// Asks the CPU to bring the cache line holding `at` into its nearest
/// cache. A hint: `at` is never read, may be any address (one past a
/// buffer's end included), and on targets without a stable prefetch
/// instruction nothing happens.
#[inline(always)]
pub(crate) fn prefetch(at: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch reads nothing into the program, writes nothing
    // and never faults, whatever the address; SSE, which the instruction
    // needs, is part of every x86_64 target. (The intrinsic is an `unsafe
    // fn` in Rust 1.95 and a safe one in newer releases, hence the allow.)
    #[allow(unsafe_code, unused_unsafe)]
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(at.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}
