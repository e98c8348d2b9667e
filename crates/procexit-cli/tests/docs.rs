//! `procexit completions SHELL` and `procexit man`: generated from the
//! command-line definition, so they know every flag.

#[cfg(target_os = "linux")]
use std::process::Command;

mod common;
use common::{procexit, stdout_of};

#[test]
fn completions_know_every_command_and_new_flags() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let script = stdout_of(&["completions", shell]);
        for word in [
            "watch",
            "replay",
            "service",
            "rotate-size",
            "journald",
            "syslog",
        ] {
            assert!(script.contains(word), "{shell} completion lacks {word}");
        }
    }
    let out = procexit().args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[cfg(target_os = "linux")]
#[test]
fn bash_completion_loads_and_completes() {
    let script = stdout_of(&["completions", "bash"]);
    let dir = std::env::temp_dir().join(format!("procexit-completion-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("procexit.bash");
    std::fs::write(&file, script).unwrap();
    // Load it and ask for the completions of `procexit watch --rot`.
    let probe = format!(
        "source {}; COMP_WORDS=(procexit watch --rot); COMP_CWORD=2; \
         _procexit procexit --rot watch; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        file.display()
    );
    let out = Command::new("bash").args(["-c", &probe]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(text.lines().any(|l| l == "--rotate-size"), "{text}");
    assert!(text.lines().any(|l| l == "--rotate-keep"), "{text}");
}

#[test]
fn man_pages_cover_the_commands() {
    let page = stdout_of(&["man"]);
    assert!(
        page.starts_with(".ie") || page.contains(".TH procexit 1"),
        "{page}"
    );
    assert!(page.contains(".TH procexit 1"));
    for command in ["watch", "wait", "replay", "service", "completions"] {
        assert!(page.contains(command), "procexit(1) lacks {command}");
    }
    let watch = stdout_of(&["man", "watch"]);
    assert!(watch.contains(".TH procexit-watch 1"), "{watch}");
    for flag in ["rotate\\-size", "journald", "syslog", "output"] {
        assert!(watch.contains(flag), "procexit-watch(1) lacks {flag}");
    }
    let out = procexit().args(["man", "bogus"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// The README's jq recipes that pick exits by their keys select on
/// `.type == "exit"`: the closing `stats` line (and `lost` lines) have no
/// `exit_code`, and `null != 0` is true in jq.
#[test]
fn readme_jq_recipes_keep_to_exits() {
    let readme = include_str!("../../../README.md");
    let mut recipes = 0;
    for line in readme.lines().filter(|l| l.contains("| jq")) {
        let Some(filter) = line.split('\'').nth(1) else {
            continue;
        };
        if ["exit_code", "signal", "kind", "status_name"]
            .iter()
            .any(|key| filter.contains(&format!(".{key}")))
        {
            recipes += 1;
            assert!(filter.contains(r#".type == "exit""#), "{line}");
        }
    }
    assert!(recipes > 0, "no jq recipe on exit keys found in the README");
}

/// Every `procexit …` command of the README's shell examples runs: each is
/// started with its pids, trace and file names swapped for real ones, and
/// must either still be running after a moment (it is watching or
/// waiting) or have ended with status 0. A usage error (status 2) or any
/// other failure names the example.
#[cfg(target_os = "linux")]
#[test]
fn readme_shell_examples_run() {
    use std::process::Stdio;
    use std::time::{Duration, Instant};
    if !common::is_root() {
        common::skip("the README's watch examples need root on kernels that refuse the connector");
        return;
    }
    let readme = include_str!("../../../README.md");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let trace = root.join("testdata/etl/etlparser_ShutdownPerfDiagLogger.etl");
    let dir = std::env::temp_dir().join(format!("procexit-readme-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut sleepers: Vec<std::process::Child> = (0..2)
        .map(|_| Command::new("sleep").arg("60").spawn().unwrap())
        .collect();
    let pids: Vec<String> = sleepers.iter().map(|c| c.id().to_string()).collect();
    let mut in_sh = false;
    let mut ran = 0;
    for line in readme.lines() {
        if line.starts_with("```") {
            in_sh = line == "```sh";
            continue;
        }
        let Some(rest) = line.strip_prefix("procexit ").filter(|_| in_sh) else {
            continue;
        };
        // The command alone: up to a pipe, redirection, `;` or comment.
        let command = rest
            .split(['|', '>', ';', '#'])
            .next()
            .unwrap_or_default()
            .trim();
        let mut args = Vec::new();
        for (i, word) in command.split('\'').enumerate() {
            if i % 2 == 1 {
                args.push(word.to_string());
            } else {
                args.extend(word.split_whitespace().map(str::to_string));
            }
        }
        let args: Vec<String> = args
            .into_iter()
            .map(|a| match a.as_str() {
                "1234" => pids[0].clone(),
                "5678" => pids[1].clone(),
                "trace.etl" => trace.display().to_string(),
                "exits.jsonl" => dir.join("exits.jsonl").display().to_string(),
                _ => a,
            })
            .collect();
        let mut child = procexit()
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_millis(1500);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if Instant::now() >= deadline {
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        if let Some(status) = status {
            assert!(
                status.success(),
                "README example `procexit {rest}` ended with {status}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        ran += 1;
    }
    for sleeper in &mut sleepers {
        let _ = sleeper.kill();
        let _ = sleeper.wait();
    }
    assert!(ran >= 5, "only {ran} README examples found");
}
