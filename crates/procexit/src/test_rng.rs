//! The pseudo-random numbers of the garbage-input tests: Marsaglia's
//! xorshift64 (13, 7, 17). Reproducible from its seed, so a failing input can
//! be found again; not for anything but tests. Integration tests include this
//! file with `#[path]`.

/// The next state of a xorshift64 generator (never 0 from a non-zero state).
pub(crate) fn xorshift(mut x: u64) -> u64 {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}
