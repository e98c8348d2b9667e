//! `procexit completions SHELL` and `procexit man [COMMAND]`: files that
//! clap_complete and clap_mangen generate from the command-line model
//! (`args.rs`), committed under `generated/` and embedded as they are, like
//! the `--help` texts clap renders (`generated/help/`, printed by `cli.rs`).
//! None of these crates is linked into the binary (they are development
//! dependencies); the test below renders the files again from the current
//! model and fails when the committed ones differ, so they cannot drift
//! from the flags (`scripts/gen-cli-docs.sh` rewrites them).

use std::io::{self, Write};
use std::process::ExitCode;

/// A shell that `procexit completions` has a script for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(clap::ValueEnum))]
pub enum Shell {
    Bash,
    Elvish,
    Fish,
    Powershell,
    Zsh,
}

impl Shell {
    /// The completion script, named as each shell loads it.
    fn script(self) -> &'static str {
        match self {
            Shell::Bash => "completions/procexit.bash",
            Shell::Elvish => "completions/procexit.elv",
            Shell::Fish => "completions/procexit.fish",
            Shell::Powershell => "completions/_procexit.ps1",
            Shell::Zsh => "completions/_procexit",
        }
    }
}

/// `(command, page)`: procexit(1) first (command ""), then one page per
/// command that `--help` lists.
const MAN_PAGES: [(&str, &str); 7] = [
    ("", "man/procexit.1"),
    ("watch", "man/procexit-watch.1"),
    ("wait", "man/procexit-wait.1"),
    ("replay", "man/procexit-replay.1"),
    ("service", "man/procexit-service.1"),
    ("completions", "man/procexit-completions.1"),
    ("man", "man/procexit-man.1"),
];

/// Where each file of `generated/` lies in the packed text (build.rs).
mod packed {
    include!(concat!(env!("OUT_DIR"), "/generated_index.rs"));
}

/// Every file of `generated/`, back to back, DEFLATE-compressed by build.rs.
static PACKED: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/generated.deflate"));

/// The file at `path` under `generated/` (`man/procexit.1`), as it was
/// committed when the binary was built.
pub fn generated(path: &str) -> Option<String> {
    let &(_, start, end) = packed::FILES.iter().find(|(name, _, _)| *name == path)?;
    let all = miniz_oxide::inflate::decompress_to_vec_with_limit(PACKED, packed::LEN).ok()?;
    String::from_utf8(all.get(start..end)?.to_vec()).ok()
}

/// Writes a file of `generated/` to stdout.
fn print(path: &str) -> anyhow::Result<ExitCode> {
    let text =
        generated(path).ok_or_else(|| anyhow::anyhow!("the built-in copy of {path} is damaged"))?;
    io::stdout().lock().write_all(text.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

/// `procexit completions SHELL`.
pub fn completions(shell: Shell) -> anyhow::Result<ExitCode> {
    print(shell.script())
}

/// `procexit man`: procexit(1), or the page of one command
/// (procexit-watch(1), …).
pub fn man(command: Option<&str>) -> anyhow::Result<ExitCode> {
    let wanted = command.unwrap_or("");
    let (_, page) = MAN_PAGES
        .iter()
        .find(|(name, _)| *name == wanted)
        .ok_or_else(|| anyhow::anyhow!("no command {wanted:?} (see procexit --help)"))?;
    print(page)
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use clap::{CommandFactory, ValueEnum};
    use clap_complete::Generator;

    use super::*;
    use crate::args::Cli;

    fn clap_shell(shell: Shell) -> clap_complete::Shell {
        match shell {
            Shell::Bash => clap_complete::Shell::Bash,
            Shell::Elvish => clap_complete::Shell::Elvish,
            Shell::Fish => clap_complete::Shell::Fish,
            Shell::Powershell => clap_complete::Shell::PowerShell,
            Shell::Zsh => clap_complete::Shell::Zsh,
        }
    }

    /// What the generators make of the current definition: the path under
    /// `generated/`, the content, and what the binary embeds for it.
    fn rendered() -> Vec<(PathBuf, String, String)> {
        let mut files = Vec::new();
        for &shell in Shell::value_variants() {
            let generator = clap_shell(shell);
            let mut out = Vec::new();
            clap_complete::generate(generator, &mut Cli::command(), "procexit", &mut out);
            let path = Path::new("completions").join(generator.file_name("procexit"));
            let embedded = generated(shell.script()).unwrap_or_default();
            files.push((path, String::from_utf8(out).unwrap(), embedded));
        }
        let top = Cli::command();
        let version = top.get_version().unwrap_or_default().to_string();
        let mut pages = vec![(String::new(), top.clone())];
        for sub in top.get_subcommands().filter(|c| !c.is_hide_set()) {
            let name = sub.get_name().to_string();
            let page = sub
                .clone()
                .name(format!("procexit-{name}"))
                .version(version.clone());
            pages.push((name, page));
        }
        for (name, page) in pages {
            let file = format!("{}.1", page.get_name());
            let mut out = Vec::new();
            clap_mangen::Man::new(page).render(&mut out).unwrap();
            let embedded = MAN_PAGES
                .iter()
                .find(|(command, _)| *command == name)
                .and_then(|(_, page)| generated(page))
                .unwrap_or_default();
            files.push((
                Path::new("man").join(file),
                String::from_utf8(out).unwrap(),
                embedded,
            ));
        }
        for (path, long, short) in help_texts() {
            let file = format!("{}.txt", path.join("-"));
            let embedded = crate::cli::help_text(&path[1..], true).unwrap_or_default();
            files.push((Path::new("help").join(&file), long.clone(), embedded));
            if short != long {
                let embedded = crate::cli::help_text(&path[1..], false).unwrap_or_default();
                files.push((
                    Path::new("help").join(format!("{}.short.txt", path.join("-"))),
                    short,
                    embedded,
                ));
            }
        }
        files
    }

    /// What clap prints for `--help` and `-h` of every command (hidden ones
    /// too: `service run --help` works), found by walking the model: the
    /// command's path (`["procexit", "service", "install"]`), long, short.
    pub(crate) fn help_texts() -> Vec<(Vec<String>, String, String)> {
        fn walk(
            command: &clap::Command,
            path: Vec<String>,
            out: &mut Vec<(Vec<String>, String, String)>,
        ) {
            let render = |flag: &str| {
                let argv = path.iter().map(String::as_str).chain([flag]);
                let error = Cli::command().try_get_matches_from(argv).unwrap_err();
                assert_eq!(error.kind(), clap::error::ErrorKind::DisplayHelp);
                error.render().to_string()
            };
            out.push((path.clone(), render("--help"), render("-h")));
            for sub in command.get_subcommands() {
                let mut path = path.clone();
                path.push(sub.get_name().to_string());
                walk(sub, path, out);
            }
        }
        let mut out = Vec::new();
        walk(&Cli::command(), vec!["procexit".to_string()], &mut out);
        out
    }

    /// The committed files are what clap, clap_complete and clap_mangen
    /// give today, and the binary prints them. With PROCEXIT_REGENERATE=1 the
    /// test rewrites them instead (scripts/gen-cli-docs.sh).
    #[test]
    fn generated_completions_and_man_pages_are_current() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("generated");
        let files = rendered();
        if std::env::var_os("PROCEXIT_REGENERATE").is_some() {
            for (path, content, _) in &files {
                let path = dir.join(path);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(&path, content).unwrap();
            }
            return;
        }
        // Every file the binary embeds is one the model renders.
        assert_eq!(
            files.len(),
            packed::FILES.len(),
            "stray files in generated/"
        );
        for (path, content, embedded) in &files {
            assert!(
                content == embedded,
                "generated/{} is not what the command-line definition gives: \
                 run scripts/gen-cli-docs.sh and commit",
                path.display()
            );
        }
    }
}
