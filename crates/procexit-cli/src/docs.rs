//! `procexit completions SHELL` and `procexit man [COMMAND]`: generated at
//! run time from the command-line definition (`args.rs`) by clap_complete
//! and clap_mangen, so they always know every flag. Packagers run the
//! binary to get the files (`procexit completions bash > …`,
//! `procexit man watch > …`).

use std::io::{self, Write};
use std::process::ExitCode;

use clap::CommandFactory;

use crate::args::Cli;

/// `procexit completions SHELL`.
pub fn completions(shell: clap_complete::Shell) -> anyhow::Result<ExitCode> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "procexit", &mut out);
    io::stdout().lock().write_all(&out)?;
    Ok(ExitCode::SUCCESS)
}

/// The man page of `command` (procexit(1) for None, procexit-watch(1) for
/// `watch`, …), or None when there is no such (visible) command.
pub fn man_page(command: Option<&str>) -> Option<Vec<u8>> {
    let top = Cli::command();
    let page = match command {
        None => top,
        Some(name) => {
            let version = top.get_version().unwrap_or_default().to_string();
            top.get_subcommands()
                .find(|c| c.get_name() == name && !c.is_hide_set())?
                .clone()
                .name(format!("procexit-{name}"))
                .version(version)
        }
    };
    let mut out = Vec::new();
    clap_mangen::Man::new(page).render(&mut out).ok()?;
    Some(out)
}

/// `procexit man`: procexit(1), or the page of one command
/// (procexit-watch(1), …).
pub fn man(command: Option<&str>) -> anyhow::Result<ExitCode> {
    let page = man_page(command).ok_or_else(|| {
        anyhow::anyhow!(
            "no command {:?} (see procexit --help)",
            command.unwrap_or_default()
        )
    })?;
    io::stdout().lock().write_all(&page)?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_visible_command_has_a_man_page() {
        for sub in Cli::command().get_subcommands() {
            let page = man_page(Some(sub.get_name()));
            assert_eq!(page.is_some(), !sub.is_hide_set(), "{}", sub.get_name());
        }
        assert!(man_page(Some("bogus")).is_none());
        let top = String::from_utf8(man_page(None).unwrap()).unwrap();
        assert!(top.contains(".TH procexit 1"), "{top}");
    }
}
