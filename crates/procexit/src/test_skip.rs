//! How the library's own unit tests skip what this machine cannot run: with
//! the reason on stderr, or, under `PROCEXIT_STRICT_SKIPS=1` (CI), as a
//! failure.

/// Skips (or, under `PROCEXIT_STRICT_SKIPS=1`, fails) the calling test.
pub(crate) fn skip(reason: &str) {
    assert!(
        std::env::var_os("PROCEXIT_STRICT_SKIPS").is_none_or(|v| v != "1"),
        "PROCEXIT_STRICT_SKIPS=1 but: {reason}"
    );
    eprintln!("SKIPPED: {reason}");
}
