//! `watch --syslog` against a real rsyslog, started by the test with its own
//! configuration on a unix socket and loopback UDP and TCP ports.
#![cfg(target_os = "linux")]

use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{procexit, skip};

fn rsyslogd() -> Option<PathBuf> {
    ["/usr/sbin/rsyslogd", "/sbin/rsyslogd"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// Connector usable here (any user ≥ 6.6, root before)?
fn connector_usable() -> bool {
    let out = procexit()
        .args(["wait", &std::process::id().to_string(), "--timeout", "10ms"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("process connector") {
        skip(&stderr);
        return false;
    }
    true
}

fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// rsyslogd in the foreground, writing every message it gets to one file as
/// `input|pri|app-name|procid|msgid|structured-data|msg`.
struct Rsyslog {
    child: Child,
    log: PathBuf,
}

impl Rsyslog {
    fn start(binary: &Path, dir: &Path, socket: &Path, udp: u16, tcp: u16) -> Rsyslog {
        let log = dir.join("received.log");
        let config = dir.join("rsyslog.conf");
        std::fs::write(
            &config,
            format!(
                r#"global(workDirectory="{dir}" maxMessageSize="256k")
module(load="imuxsock" SysSock.Use="off")
input(type="imuxsock" Socket="{socket}" UseSpecialParser="off" ParseHostname="on" RateLimit.Interval="0")
module(load="imudp")
input(type="imudp" address="127.0.0.1" port="{udp}")
module(load="imtcp")
input(type="imtcp" address="127.0.0.1" port="{tcp}")
template(name="fields" type="string" string="%inputname%|%pri%|%app-name%|%procid%|%msgid%|%structured-data%|%msg%\n")
*.* action(type="omfile" file="{log}" template="fields")
"#,
                dir = dir.display(),
                socket = socket.display(),
                log = log.display()
            ),
        )
        .unwrap();
        let child = Command::new(binary)
            .arg("-n")
            .arg("-f")
            .arg(&config)
            .arg("-i")
            .arg(dir.join("rsyslogd.pid"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start rsyslogd");
        let rsyslog = Rsyslog { child, log };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !(socket.exists() && std::net::TcpStream::connect(("127.0.0.1", tcp)).is_ok()) {
            assert!(Instant::now() < deadline, "rsyslogd did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        rsyslog
    }

    /// Received lines: (input, pri, app, procid, msgid, sd, JSON record).
    fn received(
        &self,
    ) -> Vec<(
        String,
        String,
        String,
        String,
        String,
        String,
        serde_json::Value,
    )> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .filter_map(|line| {
                let parts: Vec<&str> = line.splitn(7, '|').collect();
                let json = serde_json::from_str(parts.get(6)?).ok()?;
                Some((
                    parts[0].to_string(),
                    parts[1].to_string(),
                    parts[2].to_string(),
                    parts[3].to_string(),
                    parts[4].to_string(),
                    parts[5].to_string(),
                    json,
                ))
            })
            .collect()
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn watch_sends_rfc5424_to_a_real_rsyslog_over_unix_udp_and_tcp() {
    let Some(binary) = rsyslogd() else {
        skip("no rsyslogd (apt-get install rsyslog)");
        return;
    };
    if !connector_usable() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("procexit-syslog-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("log.sock");
    let (udp, tcp) = (free_udp_port(), free_tcp_port());
    let rsyslog = Rsyslog::start(&binary, &dir, &socket, udp, tcp);

    // With this process's pid: another run of these tests must not match.
    let name = &format!("pxsys{}", std::process::id());
    let shell = dir.join(name);
    std::fs::copy("/bin/sh", &shell).unwrap();
    settle_executable(&shell);
    let watch = procexit()
        // The connector keeps whole command lines (the eBPF source 2 KiB):
        // the large-message case needs them.
        .args(["watch", "--source", "connector", "--name", name])
        .arg("--syslog")
        .arg(format!("unix:{}", socket.display()))
        .arg("--syslog")
        .arg(format!("udp:127.0.0.1:{udp}"))
        .arg("--syslog")
        .arg(format!("tcp:127.0.0.1:{tcp}"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // Runs the shell until all three inputs got its exit; returns the pid.
    let run_until_received = |script: &str, extra: &[String]| -> u64 {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let child = Command::new(&shell)
                .args(["-c", script, "sh"])
                .args(extra)
                .spawn()
                .unwrap();
            let pid = u64::from(child.id());
            child.wait_with_output().unwrap();
            std::thread::sleep(Duration::from_millis(400));
            let inputs: Vec<String> = rsyslog
                .received()
                .into_iter()
                .filter(|r| r.6["pid"] == pid)
                .map(|r| r.0)
                .collect();
            if ["imuxsock", "imudp", "imtcp"]
                .iter()
                .all(|i| inputs.iter().any(|got| got == i))
            {
                return pid;
            }
        }
        panic!("{script:?} did not reach all three rsyslog inputs within 30 s");
    };

    let failed = run_until_received("sleep 0.1; exit 5", &[]);
    let ok = run_until_received("sleep 0.1; exit 0", &[]);
    // A record of 30 KB, whole over TCP thanks to octet counting.
    let big = vec!["y".repeat(30_000)];
    let large = run_until_received("sleep 0.1; exit 6", &big);

    let received = rsyslog.received();
    for (input, pri, app, procid, msgid, sd, json) in &received {
        if json["pid"] == failed {
            assert_eq!(pri, "28", "daemon.warning on {input}");
            assert_eq!(json["exit_code"], 5);
        }
        if json["pid"] == ok {
            assert_eq!(pri, "30", "daemon.info on {input}");
        }
        if json["pid"] == large {
            let command_line = json["command_line"].as_str().unwrap_or("");
            assert!(command_line.len() > 30_000, "{input}: cut short");
        }
        assert_eq!(app, "procexit");
        assert_eq!(procid, &watch.id().to_string());
        assert_eq!(msgid, json["type"].as_str().unwrap());
        assert_eq!(sd, "-");
    }
    let pid = watch.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let out = watch.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stderr.matches(", 0 could not be written").count(),
        3,
        "{stderr}"
    );
    // The closing stats record reaches every input.
    std::thread::sleep(Duration::from_millis(500));
    let stats = rsyslog
        .received()
        .into_iter()
        .filter(|r| r.4 == "stats")
        .count();
    assert_eq!(stats, 3);
}

#[test]
fn unreachable_syslog_server_is_a_clear_error() {
    let port = free_tcp_port();
    let out = procexit()
        .args(["watch", "--syslog", &format!("tcp:127.0.0.1:{port}")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot reach the syslog server") && stderr.contains("refused"),
        "{stderr}"
    );
    let out = procexit()
        .args(["watch", "--syslog", "ftp:host:1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unix:PATH, udp:HOST:PORT or tcp:HOST:PORT")
    );
}

/// A UDP target with nothing listening answers every datagram with ICMP
/// port unreachable: every record is counted as not written, none as
/// written (UDP itself would let them vanish silently).
#[test]
fn a_dead_udp_target_counts_every_record_as_not_written() {
    if !connector_usable() {
        return;
    }
    let port = free_udp_port();
    let dir = std::env::temp_dir().join(format!("procexit-deadudp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let name = format!("pxudp{}", std::process::id());
    let shell = dir.join(&name);
    std::fs::copy("/bin/sh", &shell).unwrap();
    settle_executable(&shell);
    let target = format!("udp:127.0.0.1:{port}");
    let watch = procexit()
        .args([
            "watch", "--name", &name, "--count", "3", "--syslog", &target,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let pid = watch.id();
    while Instant::now() < deadline && std::path::Path::new(&format!("/proc/{pid}")).exists() {
        let _ = Command::new(&shell).args(["-c", "exit 1"]).status();
        std::thread::sleep(Duration::from_millis(100));
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if state.contains(") Z ") {
            break;
        }
    }
    let out = watch.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Records that could not be written make the run an error.
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    // Three exits and the closing stats record.
    assert!(
        stderr.contains(&format!(
            "syslog {target}: 0 records written, 4 could not be written"
        )),
        "{stderr}"
    );
    // Said once, not once per record.
    assert_eq!(stderr.matches("Connection refused").count(), 2, "{stderr}");
}

/// The rsyslog recipes of docs/outputs.md (packaging/recipes/rsyslog-*.conf, shown
/// verbatim there) run in a real rsyslogd: one follows the JSON
/// Lines file with imfile, the other parses what --syslog sends.
#[test]
fn readme_rsyslog_recipes_work() {
    let Some(binary) = rsyslogd() else {
        skip("no rsyslogd (apt-get install rsyslog)");
        return;
    };
    if !connector_usable() {
        return;
    }
    let recipes = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging/recipes");
    let readme = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/outputs.md"),
    )
    .unwrap();
    let file_recipe = std::fs::read_to_string(recipes.join("rsyslog-file.conf")).unwrap();
    let syslog_recipe = std::fs::read_to_string(recipes.join("rsyslog-syslog.conf")).unwrap();
    for recipe in [&file_recipe, &syslog_recipe] {
        assert!(
            readme.contains(recipe.as_str()),
            "docs/outputs.md lacks:\n{recipe}"
        );
    }

    let dir = std::env::temp_dir().join(format!("procexit-recipes-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("log.sock");
    let here = format!("{}/", dir.display());
    let config = format!(
        "global(workDirectory=\"{dir}\" maxMessageSize=\"64k\")\n\
         module(load=\"imuxsock\" SysSock.Use=\"off\")\n\
         input(type=\"imuxsock\" Socket=\"{socket}\" UseSpecialParser=\"off\" \
         ParseHostname=\"on\" RateLimit.Interval=\"0\")\n{file}\n{syslog}",
        dir = dir.display(),
        socket = socket.display(),
        file = file_recipe.replace("/var/log/procexit/", &here),
        syslog = syslog_recipe.replace("/var/log/", &here),
    );
    let config_path = dir.join("rsyslog.conf");
    std::fs::write(&config_path, config).unwrap();
    let mut rsyslog = Command::new(binary)
        .arg("-n")
        .arg("-f")
        .arg(&config_path)
        .arg("-i")
        .arg(dir.join("rsyslogd.pid"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !socket.exists() {
        assert!(Instant::now() < deadline, "rsyslogd did not start");
        std::thread::sleep(Duration::from_millis(50));
    }

    // With this process's pid: another run of these tests must not match.
    let name = &format!("pxrec{}", std::process::id());
    let shell = dir.join(name);
    std::fs::copy("/bin/sh", &shell).unwrap();
    settle_executable(&shell);
    let mut watch = procexit()
        .args(["watch", "--name", name, "--output"])
        .arg(dir.join("exits.jsonl"))
        .arg("--syslog")
        .arg(format!("unix:{}", socket.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let read = |file: &str| std::fs::read_to_string(dir.join(file)).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(30);
    let (failed, ok) = loop {
        let failed = Command::new(&shell)
            .args(["-c", "sleep 0.1; exit 7"])
            .spawn()
            .unwrap();
        let failed_pid = failed.id();
        failed.wait_with_output().unwrap();
        let ok = Command::new(&shell)
            .args(["-c", "sleep 0.1; exit 0"])
            .spawn()
            .unwrap();
        let ok_pid = ok.id();
        ok.wait_with_output().unwrap();
        std::thread::sleep(Duration::from_millis(700));
        let line = |pid: u32, code: u32| format!("pid={pid} name={name} code={code} ");
        if read("exits.log").contains(&line(failed_pid, 7))
            && read("exits.log").contains(&line(ok_pid, 0))
            && read("procexit-failures.log").contains(&line(failed_pid, 7))
        {
            break (failed_pid, ok_pid);
        }
        assert!(
            Instant::now() < deadline,
            "recipes produced nothing:\nexits.log: {}\nfailures: {}",
            read("exits.log"),
            read("procexit-failures.log")
        );
    };
    let _ = watch.kill();
    let _ = watch.wait();
    let _ = rsyslog.kill();
    let _ = rsyslog.wait();
    let failures = read("procexit-failures.log");
    assert!(!failures.contains(&format!("pid={ok} ")), "{failures}");
    assert!(failures.contains(&format!("pid={failed} ")));
}

/// Runs a freshly copied executable once: a thread of this test binary may
/// have forked while the copy was open for writing, and exec fails with
/// ETXTBSY until that child has exec'd in turn.
fn settle_executable(path: &std::path::Path) {
    for _ in 0..200 {
        match std::process::Command::new(path).args(["-c", ":"]).status() {
            Err(e) if e.raw_os_error() == Some(26) => {
                std::thread::sleep(std::time::Duration::from_millis(10))
            }
            _ => return,
        }
    }
}
