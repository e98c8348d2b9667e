//! `procexit replay` on the real traces in testdata/etl (any OS).

use std::path::PathBuf;
use std::process::Output;

mod common;
use common::procexit;

/// A trace in the repository's `testdata/etl`; a missing one fails the test.
fn trace(name: &str) -> PathBuf {
    let path = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/etl")).join(name);
    assert!(path.is_file(), "test data missing: {}", path.display());
    path
}

fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

#[test]
fn replay_prints_every_exit_of_the_shutdown_trace() {
    let file = trace("etlparser_ShutdownPerfDiagLogger.etl");
    let out = procexit()
        .args(["replay", "--json"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = json_lines(&out);
    // 60 End events; the 5 Defunct events repeat Ends of the same processes.
    assert_eq!(lines.len(), 60);
    let dbg_terminate = lines
        .iter()
        .filter(|l| l["exit_code"] == 0x4001_0004u32)
        .count();
    assert!(dbg_terminate > 0);
    for line in &lines {
        assert_eq!(line["type"], "exit");
        assert_eq!(line["source"], "etl-file");
        assert!(line["name"].as_str().is_some_and(|n| !n.is_empty()));
        assert!(
            line["exit_time"]
                .as_str()
                .is_some_and(|t| t.starts_with("2020-02-28")),
            "{line}"
        );
        // Windows keys are kernel addresses: above 2^53 a string of digits
        // (exact for readers that parse numbers as doubles), else a number.
        let key = &line["process_key"];
        let exact = key.as_u64().is_some_and(|k| k <= 1 << 53)
            || key
                .as_str()
                .and_then(|k| k.parse::<u64>().ok())
                .is_some_and(|k| k > 1 << 53);
        assert!(exact, "{line}");
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("17078 events"), "{stderr}");
}

#[test]
fn filters_and_count_apply_to_replay() {
    let file = trace("etlparser_ShutdownPerfDiagLogger.etl");
    let all = json_lines(
        &procexit()
            .args(["replay", "--json"])
            .arg(&file)
            .output()
            .unwrap(),
    );
    let failed = json_lines(
        &procexit()
            .args(["replay", "--json", "--failed"])
            .arg(&file)
            .output()
            .unwrap(),
    );
    let expected_failed = all.iter().filter(|l| l["exit_code"] != 0).count();
    assert_eq!(failed.len(), expected_failed);
    assert!(failed.len() < all.len());
    let two = json_lines(
        &procexit()
            .args(["replay", "--json", "--count", "2"])
            .arg(&file)
            .output()
            .unwrap(),
    );
    assert_eq!(two.len(), 2);
    let starts = json_lines(
        &procexit()
            .args(["replay", "--json", "--all"])
            .arg(&file)
            .output()
            .unwrap(),
    );
    assert!(starts
        .iter()
        .any(|l| l["type"] == "process" && l["kind"] == "dc-start"));
}

#[test]
fn both_providers_give_one_record_per_exit() {
    let file = trace("perfview_net.4.5.2.x64.etl");
    let out = procexit()
        .args(["replay", "--json", "--pid", "3676"])
        .arg(&file)
        .output()
        .unwrap();
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 1, "{lines:?}");
    // The kernel End (command line) with the Kernel-Process create time.
    assert_eq!(lines[0]["command_line"], "Test.x64.exe");
    assert!(lines[0]["duration_ms"]
        .as_f64()
        .is_some_and(|ms| ms > 1000.0));
}

#[test]
fn damaged_input_is_an_error_with_an_offset_and_keeps_earlier_exits() {
    let tmp = std::env::temp_dir().join(format!("procexit-replay-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let not_etl = tmp.join("not.etl");
    std::fs::write(&not_etl, b"this is not a trace file at all, just text").unwrap();
    let out = procexit().arg("replay").arg(&not_etl).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Named for what it is (damage inside a trace keeps its offset, below).
    assert!(
        stderr.contains("not.etl") && stderr.contains("not an .etl trace"),
        "{stderr}"
    );

    let bytes = std::fs::read(trace("etlparser_ShutdownPerfDiagLogger.etl")).unwrap();
    let cut = tmp.join("cut.etl");
    std::fs::write(&cut, &bytes[..bytes.len() / 2 + 1234]).unwrap();
    let out = procexit()
        .args(["replay", "--json"])
        .arg(&cut)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let lines = json_lines(&out);
    assert!(
        !lines.is_empty() && lines.len() < 60,
        "{} exits",
        lines.len()
    );
    let _ = std::fs::remove_dir_all(&tmp);
}

/// Exits per trace: its End events (no trace here has an in-window
/// Defunct-only exit), as testdata/etl/README.md lists them.
const EXITS: [(&str, usize); 9] = [
    ("etlparser_ShutdownPerfDiagLogger.etl", 60),
    ("etlparser_lxcore_kernel.etl", 0),
    ("perfview_SelfDescribingSingleEvent.etl", 0),
    ("perfview_diaghub.kernel.1.etl", 3),
    ("perfview_net.4.5.2.x64.etl", 1),
    ("perfview_net.4.5.2.x86.etl", 1),
    ("sawbuck_process_data_32_v1.etl", 1),
    ("sawbuck_process_data_32_v2.etl", 1),
    ("sawbuck_process_data_32_v3.etl", 1),
];

#[test]
fn every_trace_prints_its_end_events_and_the_summary_agrees() {
    for (name, exits) in EXITS {
        let out = procexit()
            .args(["replay", "--json"])
            .arg(trace(name))
            .output()
            .unwrap();
        assert!(out.status.success(), "{name}");
        let lines = json_lines(&out);
        assert_eq!(lines.len(), exits, "{name}: {lines:?}");
        assert!(lines.iter().all(|l| l["type"] == "exit"), "{name}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!(" {exits} exits,")),
            "{name}: {stderr}"
        );
    }
}

#[test]
fn zombie_rundowns_are_listed_with_all_and_never_as_exits() {
    // diaghub: 9 Defunct v5 records of processes that ended before the
    // trace began (hours or days), each with its ExitTime.
    let out = procexit()
        .args(["replay", "--json", "--all"])
        .arg(trace("perfview_diaghub.kernel.1.etl"))
        .output()
        .unwrap();
    let lines = json_lines(&out);
    let zombies: Vec<_> = lines.iter().filter(|l| l["type"] == "zombie").collect();
    assert_eq!(zombies.len(), 9, "{zombies:?}");
    for z in &zombies {
        let exit_time = z["exit_time"].as_str().expect("v5 has an exit time");
        // The trace began 2020-09-14T22:49:57Z.
        assert!(exit_time < "2020-09-14T22:49:57", "{z}");
        assert!(z["pid"].is_u64() && z["name"].is_string(), "{z}");
    }
    assert_eq!(lines.iter().filter(|l| l["type"] == "exit").count(), 3);

    // net.4.5.2.x64: smss.exe 616 and LogonUI.exe 988 (Defunct v4, no exit
    // time, never seen alive in the trace) are zombies, not exits.
    let out = procexit()
        .args(["replay", "--json", "--all"])
        .arg(trace("perfview_net.4.5.2.x64.etl"))
        .output()
        .unwrap();
    let lines = json_lines(&out);
    let mut zombie_pids: Vec<u64> = lines
        .iter()
        .filter(|l| l["type"] == "zombie")
        .map(|l| l["pid"].as_u64().unwrap())
        .collect();
    zombie_pids.sort_unstable();
    assert_eq!(zombie_pids, [616, 988]);
    assert!(lines
        .iter()
        .filter(|l| l["type"] == "zombie")
        .all(|l| l["exit_time"].is_null()));
    let exits: Vec<_> = lines.iter().filter(|l| l["type"] == "exit").collect();
    assert_eq!(exits.len(), 1);
    assert_eq!(exits[0]["pid"], 3676);

    // The table shows them as "zombie" rows.
    let out = procexit()
        .args(["replay", "--all"])
        .arg(trace("perfview_net.4.5.2.x64.etl"))
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        table.lines().filter(|l| l.contains(" zombie ")).count(),
        2,
        "{table}"
    );
}

/// Every exit of two real traces, with the kind and name its code gets:
/// 24 processes Windows terminated at shutdown (0x40010004), two console
/// processes closed by the debugger's console (0xC000013A), and the plain
/// codes 0 and 1, which stay unnamed. (The HRESULT 0x8007042B in the
/// diaghub trace belongs to a zombie rundown record, not an exit.)
#[test]
fn replay_names_the_statuses_of_the_real_traces() {
    let mut seen = std::collections::BTreeMap::new();
    for file in [
        "etlparser_ShutdownPerfDiagLogger.etl",
        "perfview_diaghub.kernel.1.etl",
    ] {
        let out = procexit()
            .args(["replay", "--json"])
            .arg(trace(file))
            .output()
            .unwrap();
        assert!(out.status.success(), "{file}");
        for line in json_lines(&out) {
            let code = line["exit_code"].as_u64().expect("a code");
            let kind = line["kind"].as_str().expect("a kind").to_string();
            let name = line["status_name"].as_str().map(str::to_string);
            *seen.entry((code, kind, name)).or_insert(0) += 1;
        }
    }
    let named = |name: &str| Some(name.to_string());
    let expected: std::collections::BTreeMap<_, _> = [
        ((0, "exited".to_string(), None), 22),
        ((1, "exited".to_string(), None), 15),
        (
            (
                0x4001_0004,
                "terminated".into(),
                named("DBG_TERMINATE_PROCESS"),
            ),
            24,
        ),
        (
            (0xC000_013A, "ctrl_c".into(), named("STATUS_CONTROL_C_EXIT")),
            2,
        ),
    ]
    .into_iter()
    .collect();
    assert_eq!(seen, expected);

    // The table shows the name beside the code.
    let out = procexit()
        .args(["replay", "--name", "locProject.exe"])
        .arg(trace("perfview_diaghub.kernel.1.etl"))
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("code 0xc000013a STATUS_CONTROL_C_EXIT"),
        "{table}"
    );
}

/// The resource use in a real Kernel-Process ProcessStop reaches the exit
/// record, equal to what a third-party decoder read from the same event.
#[test]
fn replay_reports_the_resources_of_a_kernel_process_stop() {
    let name = "perfview_net.4.5.2.x64.etl";
    let expected: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(trace(&format!("{name}.expected.json"))).unwrap(),
    )
    .unwrap();
    let stops: Vec<_> = expected["expected"]["kernel_process_start_stop_events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event_id"] == 2)
        .map(|e| &e["fields"])
        .collect();
    assert_eq!(stops.len(), 1);
    let stop = stops[0];
    let out = procexit()
        .args(["replay", "--json"])
        .arg(trace(name))
        .output()
        .unwrap();
    assert!(out.status.success());
    let lines = json_lines(&out);
    let exit = lines
        .iter()
        .find(|l| l["pid"] == stop["ProcessID"])
        .expect("the stopped process's exit");
    let kib = |v: &serde_json::Value| v.as_u64().unwrap() * 1024;
    assert_eq!(exit["peak_commit_bytes"], stop["CommitPeak"], "{exit}");
    assert_eq!(exit["cpu_cycles"], stop["CPUCycleCount"]);
    assert_eq!(exit["hard_faults"], stop["HardFaultCount"]);
    assert_eq!(exit["io_read_ops"], stop["ReadOperationCount"]);
    assert_eq!(exit["io_write_ops"], stop["WriteOperationCount"]);
    assert_eq!(exit["io_read_bytes"], kib(&stop["ReadTransferKiloBytes"]));
    assert_eq!(exit["io_write_bytes"], kib(&stop["WriteTransferKiloBytes"]));
    // ProcessStop carries no CPU times or RSS: those stay null.
    assert!(exit["cpu_user_ms"].is_null() && exit["peak_rss_bytes"].is_null());
    // One record for the exit, though both providers reported it.
    let same_pid = lines.iter().filter(|l| l["pid"] == stop["ProcessID"]);
    assert_eq!(same_pid.count(), 1);
}

/// Replay prints exits in exit-time order (the trace holds them in the
/// order each CPU's buffer was written), and every table row has its date.
#[test]
fn replay_prints_exits_in_time_order_with_dates() {
    let file = trace("etlparser_ShutdownPerfDiagLogger.etl");
    let json = json_lines(
        &procexit()
            .args(["replay", "--json"])
            .arg(&file)
            .output()
            .unwrap(),
    );
    let times: Vec<&str> = json
        .iter()
        .map(|l| l["exit_time"].as_str().unwrap())
        .collect();
    assert_eq!(times.len(), 60);
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    let out = procexit().arg("replay").arg(&file).output().unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<&str> = table.lines().skip(1).collect();
    assert_eq!(rows.len(), 60, "{table}");
    for (row, time) in rows.iter().zip(&times) {
        // `2020-02-28T17:15:47.436123Z` is shown as `2020-02-28 17:15:47.436`.
        let shown = format!("{} {}", &time[..10], &time[11..23]);
        assert!(row.starts_with(&shown), "{row} / {time}");
    }
}

/// A file that cannot be replayed is named for what it is, in the user's
/// words, not the decoder's; `-` reads a trace from standard input.
#[test]
fn replay_says_what_is_wrong_with_a_file() {
    let dir = std::env::temp_dir().join(format!("procexit-replay-errors-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let empty = dir.join("empty.etl");
    std::fs::write(&empty, b"").unwrap();
    let text = dir.join("notes.etl");
    std::fs::write(&text, b"these are notes, not a trace\n").unwrap();
    let cases = [
        (dir.join("missing.etl"), "no such file"),
        (dir.clone(), "is a directory"),
        (empty, "empty file"),
        (text, "not an .etl trace"),
    ];
    for (path, expected) in &cases {
        let out = procexit().arg("replay").arg(path).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(expected), "{}: {stderr}", path.display());
        for internal in [
            "file offset",
            "buffer 0",
            "entity not found",
            "needs 72 bytes",
        ] {
            assert!(!stderr.contains(internal), "{stderr}");
        }
    }
    // `-`: the same exits as the file itself.
    let file = trace("etlparser_ShutdownPerfDiagLogger.etl");
    let by_path = procexit()
        .args(["replay", "--json"])
        .arg(&file)
        .output()
        .unwrap();
    let by_stdin = procexit()
        .args(["replay", "--json", "-"])
        .stdin(std::fs::File::open(&file).unwrap())
        .output()
        .unwrap();
    assert!(by_stdin.status.success(), "{by_stdin:?}");
    assert_eq!(json_lines(&by_stdin).len(), 60);
    assert_eq!(by_stdin.stdout, by_path.stdout);
}
