//! `procexit service install|start|stop|uninstall` through the real service
//! manager: Wine's under CI on Linux, Windows' on the Windows workflow.
//!
//! Wine's ETW functions are stubs, so there the service starts, opens its
//! output file and stops with an error when the monitor cannot start; that
//! proves registration, the launch command line, the dispatcher and the
//! status reports. With `PROCEXIT_WINDOWS_E2E=1` (an elevated real Windows)
//! the service runs, records a `cmd /c exit 42` in its file, and on stop
//! writes the closing stats record.
#![cfg(windows)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use windows_service::service::ServiceAccess;
use windows_service::service_manager::{ServiceManager, ServiceManagerAccess};

fn procexit() -> Command {
    Command::new(env!("CARGO_BIN_EXE_procexit"))
}

fn strict() -> bool {
    std::env::var("PROCEXIT_STRICT_SKIPS").is_ok_and(|v| v == "1")
}

fn under_wine() -> bool {
    std::env::var_os("WINEPREFIX").is_some()
        || Path::new("C:\\windows\\system32\\winecfg.exe").exists()
}

fn e2e() -> bool {
    std::env::var("PROCEXIT_WINDOWS_E2E").is_ok_and(|v| v == "1")
}

fn service(name: &str, action: &str) -> Output {
    procexit()
        .args(["service", action, "--name", name])
        .output()
        .unwrap()
}

/// The service's launch command line as the service manager stores it.
fn launch_command(name: &str) -> Option<String> {
    let manager =
        ServiceManager::local_computer(None::<&str>, ServiceManagerAccess::CONNECT).ok()?;
    let service = manager
        .open_service(name, ServiceAccess::QUERY_CONFIG)
        .ok()?;
    let config = service.query_config().ok()?;
    Some(config.executable_path.to_string_lossy().into_owned())
}

/// The service's status as the service manager reports it.
fn query_status(name: &str) -> Option<windows_service::service::ServiceStatus> {
    let manager =
        ServiceManager::local_computer(None::<&str>, ServiceManagerAccess::CONNECT).ok()?;
    let service = manager
        .open_service(name, ServiceAccess::QUERY_STATUS)
        .ok()?;
    service.query_status().ok()
}

fn lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

struct Uninstall(String);

impl Drop for Uninstall {
    fn drop(&mut self) {
        let _ = service(&self.0, "uninstall");
    }
}

#[test]
fn service_runs_watch_with_its_output_options() {
    let name = format!("procexit-test-{}", std::process::id());
    let dir: PathBuf = std::env::temp_dir().join(&name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("exits.jsonl");

    // A service without a sink has nowhere to write: refused.
    let out = procexit()
        .args(["service", "install", "--name", &name, "--failed"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--output FILE or --syslog"));

    let out = procexit()
        .args(["service", "install", "--name", &name, "--output"])
        .arg(&file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("Administrator") {
        assert!(!strict(), "PROCEXIT_STRICT_SKIPS=1 but: {stderr}");
        eprintln!("SKIPPED: needs an elevated console: {stderr}");
        return;
    }
    assert!(out.status.success(), "{stderr}");
    let _uninstall = Uninstall(name.clone());
    let command = launch_command(&name).expect("the service is registered");
    assert!(
        command.contains(&format!("service run --name {name} -- --output"))
            && command.contains("exits.jsonl"),
        "{command}"
    );

    let out = service(&name, "start");
    if under_wine() {
        // The service process ran with its options (it opened the file)
        // and reported its stop when the stubbed ETW refused to start.
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("stopped at once"), "{stderr}");
        assert!(file.exists(), "the service never opened its output file");
    } else if e2e() {
        assert!(out.status.success(), "{out:?}");
        let deadline = Instant::now() + Duration::from_secs(30);
        let seen = loop {
            let _ = Command::new("cmd").args(["/c", "exit 42"]).status();
            std::thread::sleep(Duration::from_millis(500));
            let found = lines(&file)
                .iter()
                .any(|r| r["exit_code"] == 42 && r["name"] == "cmd.exe");
            if found || Instant::now() > deadline {
                break found;
            }
        };
        assert!(seen, "no cmd.exe exit 42 in {}", file.display());
        // A system shutdown reaches it as PRESHUTDOWN (or SHUTDOWN).
        let accepted = query_status(&name).expect("status").controls_accepted;
        use windows_service::service::ServiceControlAccept as A;
        assert!(
            accepted.contains(A::STOP | A::PRESHUTDOWN | A::SHUTDOWN),
            "{accepted:?}"
        );
        // The LocalSystem service holds the name's lock: this elevated
        // administrator's watch of the same session name is told another
        // monitor runs (not "run as Administrator"), at once.
        let mut watch = procexit()
            .arg("watch")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while watch.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = watch.kill();
                panic!("a second watch of the service's session name kept running");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let out = watch.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
        assert!(
            stderr.contains("already running") && !stderr.contains("run as Administrator"),
            "{stderr}"
        );
        let out = service(&name, "stop");
        assert!(out.status.success(), "{out:?}");
        // A clean stop: the file ends with the closing stats record.
        let records = lines(&file);
        assert_eq!(records.last().unwrap()["type"], "stats", "{records:?}");
    } else {
        eprintln!("not started: only PROCEXIT_WINDOWS_E2E=1 runs the service on real Windows");
        let _ = service(&name, "stop");
    }

    let out = service(&name, "uninstall");
    assert!(out.status.success(), "{out:?}");
    assert!(launch_command(&name).is_none(), "still registered");
}
