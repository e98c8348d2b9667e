//! `watch --otlp` against a real OpenTelemetry collector: rotel's
//! `rotel-agent` (PyPI package `rotel`, installed by scripts/test.sh), started
//! by the tests on a loopback port with its debug log, which prints every log
//! record it receives with its attributes.
#![cfg(target_os = "linux")]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

mod common;
use common::{connector_usable, is_root, procexit, skip};

/// rotel-agent: `PROCEXIT_ROTEL_AGENT`, else where scripts/test.sh installs it.
fn rotel_agent() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("PROCEXIT_ROTEL_AGENT") {
        return Some(PathBuf::from(path)).filter(|p| p.exists());
    }
    let home = std::env::var_os("HOME")?;
    let venv = Path::new(&home).join(".cache/procexit-test/rotel-venv/lib");
    std::fs::read_dir(venv)
        .ok()?
        .flatten()
        .map(|python| python.path().join("site-packages/rotel/rotel-agent"))
        .find(|p| p.exists())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A rotel-agent receiving OTLP/HTTP on `port`, printing what it gets to `log`.
struct Collector {
    child: Child,
}

impl Collector {
    fn start(binary: &Path, port: u16, log: &Path) -> Collector {
        let out = std::fs::File::create(log).unwrap();
        let child = Command::new(binary)
            .args(["start", "--otlp-http-endpoint"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--otlp-grpc-endpoint")
            .arg(format!("127.0.0.1:{}", free_port()))
            .args([
                "--exporter",
                "blackhole",
                "--debug-log",
                "logs",
                "--debug-log-verbosity",
                "detailed",
            ])
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start rotel-agent");
        // Listening?
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "rotel-agent did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Collector { child }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The log records in rotel's debug log: event name and attributes (values
/// as rotel prints them: `Int(3)`, `Str(x)`, …).
fn received(log: &Path) -> Vec<(String, HashMap<String, String>)> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut records = Vec::new();
    for chunk in text.split("LogRecord #").skip(1) {
        let mut event = String::new();
        let mut attributes = HashMap::new();
        let mut in_attributes = false;
        for line in chunk.lines() {
            if let Some(name) = line.strip_prefix("EventName: ") {
                event = name.to_owned();
            } else if line == "Attributes:" {
                in_attributes = true;
            } else if let Some(kv) = line
                .trim_start()
                .strip_prefix("-> ")
                .filter(|_| in_attributes)
            {
                if let Some((k, v)) = kv.split_once(": ") {
                    attributes.insert(k.to_owned(), v.to_owned());
                }
            } else if in_attributes {
                in_attributes = false;
            }
            if line.starts_with("ResourceLog #") {
                break;
            }
        }
        records.push((event, attributes));
    }
    records
}

/// Exits of this test's program: pid → JSON record.
fn json_exits(stdout: &str, name: &str) -> BTreeMap<u64, serde_json::Value> {
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["type"] == "exit" && v["name"] == name)
        .map(|v| (v["pid"].as_u64().unwrap(), v))
        .collect()
}

/// `(written, unwritten)` from the OTLP sink's summary line.
fn summary_counts(stderr: &str) -> (u64, u64) {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("procexit: OTLP ") && l.contains(" records written, "))
        .unwrap_or_else(|| panic!("no OTLP summary in\n{stderr}"));
    let number = |before: &str| -> u64 {
        let head = line.split(before).next().unwrap();
        head.rsplit(' ').next().unwrap().parse().unwrap()
    };
    (number(" records written"), number(" could not be written"))
}

struct Rig {
    rotel: PathBuf,
    dir: PathBuf,
    name: String,
    program: PathBuf,
}

/// rotel-agent, root (the test floods exits and reads every one of them, as
/// the eBPF source or the connector allows), a program of its own name.
fn rig(tag: &str) -> Option<Rig> {
    let Some(rotel) = rotel_agent() else {
        skip("no rotel-agent (scripts/test.sh installs the PyPI package rotel)");
        return None;
    };
    if !is_root() {
        skip("watching every exit needs root here");
        return None;
    }
    if !connector_usable() {
        return None;
    }
    let dir = std::env::temp_dir().join(format!("procexit-otlp-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // With this process's pid: another run of these tests must not match.
    let name = format!("pxo{tag}{}", std::process::id());
    let program = dir.join(&name);
    std::fs::copy("/bin/sh", &program).unwrap();
    Some(Rig {
        rotel,
        dir,
        name,
        program,
    })
}

/// Starts `watch --json --name NAME --otlp URL` plus `extra` flags, waits
/// until it runs.
fn watch(rig: &Rig, port: u16, extra: &[&str]) -> Child {
    let child = procexit()
        .args(["watch", "--json", "--name", &rig.name, "--otlp"])
        .arg(format!("http://127.0.0.1:{port}"))
        .args(extra)
        .stdout(std::fs::File::create(rig.dir.join("watch.jsonl")).unwrap())
        .stderr(std::fs::File::create(rig.dir.join("watch.err")).unwrap())
        .spawn()
        .unwrap();
    // It runs once it printed which source it uses.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(rig.dir.join("watch.err"))
        .unwrap_or_default()
        .contains("source ")
    {
        assert!(Instant::now() < deadline, "watch did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

/// Runs the program `count` times: every third exits 3, every fifth is
/// killed by SIGKILL, the rest exit 0.
fn flood(rig: &Rig, count: usize) {
    for i in 0..count {
        let script = match i {
            i if i % 5 == 0 => "kill -9 $$",
            i if i % 3 == 0 => "exit 3",
            _ => "exit 0",
        };
        Command::new(&rig.program)
            .args(["-c", script])
            .status()
            .unwrap();
    }
}

fn stop(child: Child, rig: &Rig) -> (String, String, bool) {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let mut child = child;
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "watch did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    (
        std::fs::read_to_string(rig.dir.join("watch.jsonl")).unwrap(),
        std::fs::read_to_string(rig.dir.join("watch.err")).unwrap(),
        status.success(),
    )
}

/// Waits until the collector logged `want` exit records of the program.
fn wait_for_exits(logs: &[&Path], name: &str, want: usize) -> HashSet<u64> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let pids: HashSet<u64> = logs
            .iter()
            .flat_map(|log| received(log))
            .filter(|(event, a)| {
                event == "procexit.exit"
                    && a.get("process.executable.name") == Some(&format!("Str({name})"))
            })
            .filter_map(|(_, a)| {
                let pid = a.get("process.pid")?;
                pid.strip_prefix("Int(")?.strip_suffix(')')?.parse().ok()
            })
            .collect();
        if pids.len() >= want || Instant::now() > deadline {
            return pids;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_flood_of_exits_reaches_rotel_complete_with_its_attributes() {
    let Some(rig) = rig("flood") else { return };
    let port = free_port();
    let log = rig.dir.join("rotel.log");
    let _collector = Collector::start(&rig.rotel, port, &log);
    let child = watch(&rig, port, &[]);
    let count = 1500;
    flood(&rig, count);
    // Every exit the JSON stream shows must reach the collector.
    std::thread::sleep(Duration::from_secs(1));
    let json_now = std::fs::read_to_string(rig.dir.join("watch.jsonl")).unwrap();
    let want = json_exits(&json_now, &rig.name).len();
    wait_for_exits(&[&log], &rig.name, want);
    let (stdout, stderr, success) = stop(child, &rig);
    assert!(success, "{stderr}");
    let exits = json_exits(&stdout, &rig.name);
    assert_eq!(exits.len(), count, "the JSON stream lacks exits: {stderr}");
    let (written, unwritten) = summary_counts(&stderr);
    assert_eq!(unwritten, 0, "{stderr}");
    std::thread::sleep(Duration::from_millis(500));

    let records = received(&log);
    let mine: Vec<&HashMap<String, String>> = records
        .iter()
        .filter(|(event, a)| {
            event == "procexit.exit"
                && a.get("process.executable.name") == Some(&format!("Str({})", rig.name))
        })
        .map(|(_, a)| a)
        .collect();
    assert_eq!(mine.len(), count, "each exit once at the collector");
    let mut kinds = BTreeMap::new();
    for attributes in &mine {
        let pid: u64 = attributes["process.pid"]
            .trim_start_matches("Int(")
            .trim_end_matches(')')
            .parse()
            .unwrap();
        let json = &exits[&pid];
        assert_eq!(
            attributes["process.parent_pid"],
            format!("Int({})", json["ppid"])
        );
        assert_eq!(
            attributes["procexit.kind"],
            format!("Str({})", json["kind"].as_str().unwrap())
        );
        assert_eq!(
            attributes["procexit.source"],
            format!("Str({})", json["source"].as_str().unwrap())
        );
        assert_eq!(attributes["process.user.id"], "Int(0)");
        assert!(attributes["process.exit.time"].starts_with("Str(20"));
        match json["exit_code"].as_u64() {
            Some(code) => assert_eq!(attributes["process.exit.code"], format!("Int({code})")),
            None => {
                assert!(!attributes.contains_key("process.exit.code"));
                assert_eq!(attributes["procexit.signal"], "Int(9)");
                assert_eq!(attributes["procexit.status_name"], "Str(SIGKILL)");
            }
        }
        *kinds
            .entry(json["kind"].as_str().unwrap().to_owned())
            .or_insert(0) += 1;
    }
    assert_eq!(kinds.get("signaled"), Some(&(count / 5)), "{kinds:?}");
    // The resource the records came under.
    let text = std::fs::read_to_string(&log).unwrap();
    for attribute in [
        "service.name: Str(procexit)",
        "os.type: Str(linux)",
        "host.name: Str(",
    ] {
        assert!(text.contains(attribute), "no {attribute}");
    }
    // Written: every record of the run (all exits of the machine, the
    // closing stats), at least this program's.
    assert!(written > count as u64, "{stderr}");
}

#[test]
fn rotel_killed_and_restarted_mid_flood_every_exit_is_delivered_or_counted() {
    let Some(rig) = rig("restart") else { return };
    let port = free_port();
    let first_log = rig.dir.join("rotel-1.log");
    let second_log = rig.dir.join("rotel-2.log");
    let mut collector = Collector::start(&rig.rotel, port, &first_log);
    // A small queue: while the collector is down it overflows, and those
    // records must be counted, not lost silently. Only this program's exits
    // are watched, so the counts are this test's.
    let child = watch(&rig, port, &["--otlp-queue", "100", "--otlp-batch", "20"]);
    flood(&rig, 300);
    wait_for_exits(&[&first_log], &rig.name, 300);
    collector.kill();
    // Down for a while mid-flood: batches are retried, the queue fills.
    flood(&rig, 600);
    let collector = Collector::start(&rig.rotel, port, &second_log);
    flood(&rig, 300);
    std::thread::sleep(Duration::from_secs(2));
    let (stdout, stderr, success) = stop(child, &rig);
    let exits = json_exits(&stdout, &rig.name);
    assert_eq!(exits.len(), 1200, "the JSON stream lacks exits: {stderr}");
    let (written, unwritten) = summary_counts(&stderr);
    assert!(
        !success,
        "undelivered records make the status non-zero: {stderr}"
    );
    assert!(unwritten > 0, "the queue should have overflowed: {stderr}");
    assert!(
        stderr.contains("retry") || stderr.contains("queue is full"),
        "{stderr}"
    );
    std::thread::sleep(Duration::from_secs(1));
    drop(collector);
    let delivered = wait_for_exits(&[&first_log, &second_log], &rig.name, 0);
    assert!(delivered.iter().all(|pid| exits.contains_key(pid)));
    // Every exit of the JSON stream was delivered or counted, exactly: the
    // records are this program's exits and the closing stats record (which
    // reached the restarted collector).
    assert_eq!(written + unwritten, 1200 + 1, "{stderr}");
    assert_eq!(delivered.len() as u64 + unwritten, 1200, "{stderr}");
    assert_eq!(delivered.len() as u64 + 1, written, "{stderr}");
}
