//! Helpers shared by the CLI's test files (each uses a part of them).
#![allow(dead_code)]

use std::process::Command;

/// The `procexit` binary under test.
pub fn procexit() -> Command {
    Command::new(env!("CARGO_BIN_EXE_procexit"))
}

/// The stdout of a `procexit` run that must succeed.
pub fn stdout_of(args: &[&str]) -> String {
    let out = procexit().args(args).output().unwrap();
    assert!(out.status.success(), "{args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// Whether a skip must fail (`PROCEXIT_STRICT_SKIPS=1`, set by CI).
pub fn strict() -> bool {
    std::env::var("PROCEXIT_STRICT_SKIPS").is_ok_and(|v| v == "1")
}

/// Reports a skipped test, or fails it under `PROCEXIT_STRICT_SKIPS=1`.
pub fn skip(reason: &str) {
    assert!(!strict(), "PROCEXIT_STRICT_SKIPS=1 but: {reason}");
    eprintln!("SKIPPED: {reason}");
}

/// Whether the tests run as root.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
}

/// Whether the process connector works here (any user ≥ 6.6, root before);
/// says why not, and fails under `PROCEXIT_STRICT_SKIPS=1`.
pub fn connector_usable() -> bool {
    let out = procexit()
        .args(["wait", &std::process::id().to_string(), "--timeout", "10ms"])
        .output()
        .expect("run procexit");
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("process connector") {
        assert!(!strict(), "PROCEXIT_STRICT_SKIPS=1 but: {stderr}");
        eprintln!("SKIPPED: {stderr}");
        return false;
    }
    true
}

/// Whether the running kernel lets a process, run through `setpriv` with
/// `setpriv_args` (for example `--reuid=65534`), listen to the process
/// connector: `Ok(())` when its `bind` to the proc-events group succeeds,
/// `Err(errno)` when the kernel refuses it. Kernels differ here by build, not
/// only by version, so tests ask the running one instead of assuming. The
/// probe is Python's socket module, independent of procexit's own code.
pub fn connector_bind_as(setpriv_args: &[&str]) -> Result<(), i32> {
    const PROBE: &str = "import socket\n\
        s = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, 11)\n\
        try:\n    s.bind((0, 1))\n    print(0)\n\
        except OSError as e:\n    print(e.errno)\n";
    let out = Command::new("setpriv")
        .args(setpriv_args)
        .args(["/usr/bin/python3", "-c", PROBE])
        .output()
        .expect("run setpriv and /usr/bin/python3 (apt-get install util-linux python3)");
    let text = String::from_utf8_lossy(&out.stdout);
    let errno: i32 = text.trim().parse().unwrap_or_else(|_| {
        panic!(
            "connector probe printed {text:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    if errno == 0 {
        Ok(())
    } else {
        Err(errno)
    }
}

/// `setpriv` arguments that run a command as `nobody` with no groups.
pub const AS_NOBODY: [&str; 3] = ["--reuid=65534", "--regid=65534", "--clear-groups"];

/// A copy of the binary under test that `nobody` can run: the build tree
/// may sit under a directory that `nobody` cannot enter.
#[cfg(unix)]
pub fn binary_for_nobody(name: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("procexit-nobody-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let exe = dir.join(name);
    std::fs::copy(env!("CARGO_BIN_EXE_procexit"), &exe).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    exe
}
