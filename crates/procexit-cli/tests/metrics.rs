//! `watch --metrics` scraped by a real Prometheus (Debian's `prometheus`,
//! installed by scripts/test.sh), started by the test on loopback ports with
//! a configuration of its own: a PromQL query gives the exit counts by kind
//! of the JSON stream of the same run.
#![cfg(target_os = "linux")]

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

mod common;
use common::{connector_usable, is_root, procexit, skip};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One instant PromQL query: label value of `label` → value.
fn query(port: u16, promql: &str, label: &str) -> BTreeMap<String, u64> {
    let url = format!("http://127.0.0.1:{port}/api/v1/query");
    // The query as a form (Prometheus takes POST too), percent-encoded.
    let encoded: String = promql
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    let Ok(response) = minreq::post(url)
        .with_header("Content-Type", "application/x-www-form-urlencoded")
        .with_body(format!("query={encoded}"))
        .with_timeout(10)
        .send()
    else {
        return BTreeMap::new();
    };
    let body = response.as_str().unwrap_or_default();
    let reply: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    reply["data"]["result"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|series| {
            let key = series["metric"][label].as_str().unwrap_or("").to_owned();
            let value = series["value"][1]
                .as_str()
                .unwrap_or("0")
                .parse::<f64>()
                .unwrap_or(0.0);
            (key, value as u64)
        })
        .collect()
}

fn json_kinds(path: &Path, name: &str) -> BTreeMap<String, u64> {
    let mut kinds = BTreeMap::new();
    for line in std::fs::read_to_string(path).unwrap_or_default().lines() {
        let Ok(value) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if value["type"] == "exit" && value["name"] == name {
            *kinds
                .entry(value["kind"].as_str().unwrap().to_owned())
                .or_insert(0) += 1;
        }
    }
    kinds
}

#[test]
fn prometheus_scrapes_exit_counts_by_kind_equal_to_the_json_stream() {
    let prometheus = Path::new("/usr/bin/prometheus");
    if !prometheus.exists() {
        skip("no /usr/bin/prometheus (apt-get install prometheus)");
        return;
    }
    if !is_root() {
        skip("watching every exit needs root here");
        return;
    }
    if !connector_usable() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("procexit-metrics-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // With this process's pid: another run of these tests must not match.
    let name = format!("pxm{}", std::process::id());
    let program = dir.join(&name);
    std::fs::copy("/bin/sh", &program).unwrap();

    let metrics_port = free_port();
    let json = dir.join("watch.jsonl");
    let errors = dir.join("watch.err");
    let watch = procexit()
        .args(["watch", "--json", "--name", &name, "--metrics"])
        .arg(format!("127.0.0.1:{metrics_port}"))
        .stdout(std::fs::File::create(&json).unwrap())
        .stderr(std::fs::File::create(&errors).unwrap())
        .spawn()
        .unwrap();
    let watch = Killed(watch);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&errors)
        .unwrap_or_default()
        .contains("source ")
    {
        assert!(Instant::now() < deadline, "watch did not start");
        std::thread::sleep(Duration::from_millis(50));
    }

    let prometheus_port = free_port();
    let config = dir.join("prometheus.yml");
    // The recipe, with the test's port and a short interval.
    let recipe = include_str!("../../../packaging/recipes/prometheus-scrape.yml");
    assert!(recipe.contains("127.0.0.1:9464") && recipe.contains("scrape_interval: 15s"));
    let recipe = recipe
        .replace("127.0.0.1:9464", &format!("127.0.0.1:{metrics_port}"))
        .replace(
            "scrape_interval: 15s",
            "scrape_interval: 1s\n    scrape_timeout: 1s",
        );
    std::fs::write(&config, recipe).unwrap();
    let server = Command::new(prometheus)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{prometheus_port}"))
        .stdout(std::fs::File::create(dir.join("prometheus.log")).unwrap())
        .stderr(std::fs::File::create(dir.join("prometheus.err")).unwrap())
        .spawn()
        .expect("start prometheus");
    let _server = Killed(server);

    // Exits of three kinds: exited (0 and 3), signaled (SIGKILL, SIGTERM).
    for i in 0..120 {
        let script = match i % 4 {
            0 => "kill -9 $$",
            1 => "kill -TERM $$",
            2 => "exit 3",
            _ => "exit 0",
        };
        Command::new(&program)
            .args(["-c", script])
            .status()
            .unwrap();
    }

    // Prometheus has scraped the final counts once the query gives all of them.
    let promql =
        format!("sum by (kind) (procexit_exits_total{{instance=\"127.0.0.1:{metrics_port}\"}})");
    let deadline = Instant::now() + Duration::from_secs(60);
    let scraped = loop {
        let scraped = query(prometheus_port, &promql, "kind");
        if scraped.values().sum::<u64>() >= 120 || Instant::now() > deadline {
            break scraped;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let signals = query(
        prometheus_port,
        "sum by (signal) (procexit_exit_signals_total)",
        "signal",
    );
    let source = query(prometheus_port, "procexit_source_info", "source");
    let build = query(prometheus_port, "procexit_build_info", "version");

    Command::new("kill")
        .args(["-TERM", &watch.0.id().to_string()])
        .status()
        .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let kinds = json_kinds(&json, &name);
    assert_eq!(kinds.values().sum::<u64>(), 120, "JSON stream: {kinds:?}");
    assert_eq!(scraped, kinds, "PromQL against the JSON stream");
    assert_eq!(signals.get("SIGKILL"), Some(&30), "{signals:?}");
    assert_eq!(signals.get("SIGTERM"), Some(&30), "{signals:?}");
    assert_eq!(source.len(), 1, "{source:?}");
    assert!(
        ["linux-ebpf", "linux-connector"].contains(&source.keys().next().unwrap().as_str()),
        "{source:?}"
    );
    assert_eq!(
        build.keys().next().map(String::as_str),
        Some(env!("CARGO_PKG_VERSION"))
    );
}
