//! `procexit`: how every process on this machine ends.

mod args;
mod docs;
mod escape;
mod json;
mod output;
mod replay;
mod service;
mod signals;
mod sink;

use std::io;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use procexit::schema::Message;
use procexit::{Backend, Event, LinuxOptions, Monitor, RecvError, WaitSet, WindowsOptions};

use crate::args::{Cli, Command, ReplayArgs, SinkArgs, WaitArgs, WatchArgs};
use crate::output::{Format, Printer};

/// Exit status for errors (like grep/ripgrep).
const EXIT_ERROR: u8 = 2;
/// Exit status for a command line that cannot be run (as clap and getopt
/// programs use).
const EXIT_USAGE: u8 = 2;
/// Exit status when `wait --timeout` ran out (like timeout(1)).
const EXIT_TIMEOUT: u8 = 124;
/// Exit status of `watch --strict` when exits were lost, dropped or overrun,
/// and of `wait` when the last process's exit status could not be learned.
const EXIT_INCOMPLETE: u8 = 3;

fn main() -> ExitCode {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cli = match <Cli as clap::Parser>::try_parse_from(&argv) {
        Ok(cli) => cli,
        Err(error) => return usage(&error, &argv[1.min(argv.len())..]),
    };
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            if is_broken_pipe(&err) {
                return ExitCode::SUCCESS;
            }
            eprintln!("procexit: {err:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// What clap stopped at: help and version go to stdout (status 0; a closed
/// pipe, `procexit --help | head`, is not an error); a command that needs a
/// subcommand prints its help on stderr; any other usage error is one line
/// on stderr, status 2.
fn usage(error: &clap::Error, argv: &[std::ffi::OsString]) -> ExitCode {
    use std::io::Write;
    let text = error.render().to_string();
    if !error.use_stderr() {
        let _ = io::stdout().lock().write_all(text.as_bytes());
        return ExitCode::SUCCESS;
    }
    if error.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        eprint!("{text}");
    } else {
        eprintln!("procexit: {}", args::one_line(error, argv));
    }
    ExitCode::from(EXIT_USAGE)
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Watch(args) => watch(args),
        Command::Wait(args) => wait(args),
        Command::Replay(args) => replay(args),
        Command::Service(args) => service::run(args),
        Command::Completions { shell } => docs::completions(shell),
        Command::Man { command } => docs::man(command.as_deref()),
    }
}

fn format(json: bool) -> Format {
    if json {
        Format::JsonLines
    } else {
        Format::Table
    }
}

fn watch(args: WatchArgs) -> anyhow::Result<ExitCode> {
    let slot = signals::StopSlot::default();
    let reopen = Arc::new(AtomicBool::new(false));
    let reopen_on_hangup = args.sinks.output_file.is_some().then(|| reopen.clone());
    // The handlers go in before the monitor starts: Windows calls console
    // handlers last-installed first, and the library's own handler (which
    // stops the session when the console closes) must come first.
    signals::install(slot.clone(), reopen_on_hangup)?;
    watch_with(args, false, slot, reopen, || {})
}

/// `watch`. Stop requests (signals, a service's control handler) reach the
/// monitor through `slot`; `reopen` asks the file sink to reopen its path;
/// `on_running` is called once the monitor runs. `quiet` keeps stdout silent
/// (a service has none).
pub fn watch_with(
    args: WatchArgs,
    quiet: bool,
    slot: signals::StopSlot,
    reopen: Arc<AtomicBool>,
    on_running: impl FnOnce(),
) -> anyhow::Result<ExitCode> {
    // Sinks first: a path that cannot be written is an error before anything runs.
    let (mut sinks, source_info) = open_sinks(&args.sinks, &reopen)?;
    let mut linux = LinuxOptions::new();
    if let Some(bytes) = args.socket_buffer {
        linux = linux.socket_buffer(bytes);
    }
    let builder = Monitor::builder()
        .filter(args.filter.to_filter())
        .backend(args.source.backend())
        .linux(linux)
        // `quiet` is the service's run (see service.rs): the library is
        // told so, for its console handler.
        .windows(
            WindowsOptions::new()
                .session_name(args.session_name.clone())
                .service(quiet),
        );
    let backend = builder.resolved_backend();
    let monitor = builder
        .start()
        .context("cannot start watching process exits")?;
    let mut backend = backend;
    if let Some(error) = monitor.fallback() {
        eprintln!("procexit: the eBPF source did not load ({error}); using the process connector");
        backend = Backend::LinuxConnector;
    }
    if let (Some(info), Some(source)) = (&source_info, source_name(backend)) {
        info.set(source);
    }
    if let Some(note) = source_note(backend, args.source, privileged()) {
        // One line: what the source never gives, then what this kernel
        // keeps from it.
        let mut line = format!("procexit: {note}");
        for limitation in monitor.limitations() {
            line.push_str(&format!("; on this kernel also {limitation}"));
        }
        eprintln!("{line}");
    }
    slot.attach(monitor.stopper());
    on_running();

    // With a sink, stdout stays quiet unless --json asks for the stream too.
    let to_stdout = !quiet && (!args.sinks.any() || args.output.json);
    // Lines wait in memory while events keep coming and are written once
    // the queue is empty: a burst costs a write per batch, a lone exit is
    // written at once.
    let mut printer = Printer::buffered(format(args.output.json));
    let mut printed = 0u64;
    let result: anyhow::Result<()> = (|| {
        loop {
            let event = match monitor.recv_timeout(Duration::ZERO) {
                Ok(event) => event,
                Err(RecvError::Timeout) => {
                    printer.flush()?;
                    match monitor.recv_timeout(sinks.idle_after()) {
                        Ok(event) => event,
                        Err(RecvError::Timeout) => {
                            sinks.idle();
                            continue;
                        }
                        Err(_) => break,
                    }
                }
                Err(_) => break,
            };
            if to_stdout {
                printer.event(&event)?;
            }
            sinks.send(&Message::from(&event));
            if matches!(event, Event::Exit(_)) {
                printed += 1;
                if args.count.is_some_and(|n| printed >= n) {
                    break;
                }
            }
        }
        Ok(())
    })();
    let stopped = monitor.stop();
    if let Ok(stats) = &stopped {
        sinks.send(&Message::Stats(stats));
    }
    sinks.finish();
    let stats = stopped.context("the monitor stopped with an error")?;
    result?;
    printer.summary(&stats)?;
    for line in sinks.summary() {
        eprintln!("procexit: {line}");
    }
    if sinks.unwritten() > 0 {
        return Ok(ExitCode::from(EXIT_ERROR));
    }
    if args.strict && stats.has_loss() {
        eprintln!("procexit: --strict: exits were lost, dropped or overrun (see the summary)");
        return Ok(ExitCode::from(EXIT_INCOMPLETE));
    }
    Ok(ExitCode::SUCCESS)
}

/// What `watch` says once on stderr about its Linux source: which one, why
/// (when it is the connector), and which JSON keys it leaves null.
/// `privileged`: running as root, where the connector adds taskstats and
/// its records say `linux-taskstats`.
fn source_note(backend: Backend, chosen: args::SourceChoice, privileged: bool) -> Option<String> {
    match backend {
        Backend::LinuxEbpf => Some(
            "source linux-ebpf (eBPF); always null: the resource keys other than cpu_user_ms, \
             cpu_system_ms and peak_rss_bytes"
                .into(),
        ),
        Backend::LinuxConnector => {
            let why = match (chosen, privileged) {
                (args::SourceChoice::Connector, _) => "chosen with --source connector",
                (_, true) => "the eBPF source did not load",
                (_, false) => "eBPF needs root or CAP_BPF+CAP_PERFMON",
            };
            let resources = if privileged {
                "with taskstats: records say linux-taskstats and carry the resource keys"
            } else {
                "resource keys only with taskstats (root)"
            };
            Some(format!(
                "source linux-connector (process connector; {why}); always null: killer_pid, \
                 killer_name, oom_killed; {resources}; command_line often null for processes \
                 that exit at once"
            ))
        }
        _ => None,
    }
}

/// Whether `watch` runs as root (Unix).
fn privileged() -> bool {
    #[cfg(unix)]
    return rustix::process::geteuid().is_root();
    #[cfg(not(unix))]
    false
}

/// The `source` string of the exits a backend delivers.
fn source_name(backend: Backend) -> Option<&'static str> {
    Some(match backend {
        Backend::LinuxConnector => "linux-connector",
        Backend::LinuxEbpf => "linux-ebpf",
        Backend::EtwKernel => "etw-kernel",
        Backend::EtwKernelProcess => "etw-kernel-process",
        _ => return None,
    })
}

/// The sinks `watch` was asked for, opened (so errors show before watching),
/// and the metrics' source label to set once the monitor runs.
fn open_sinks(
    args: &SinkArgs,
    reopen: &Arc<AtomicBool>,
) -> anyhow::Result<(sink::Sinks, Option<sink::metrics::SourceInfo>)> {
    let mut sinks = sink::Sinks::default();
    let mut source_info = None;
    if let Some(path) = &args.output_file {
        let rotation = args.rotate_size.map(|max_bytes| sink::file::Rotation {
            max_bytes,
            keep: args.rotate_keep,
        });
        sinks.push(Box::new(sink::file::FileSink::open(
            path,
            rotation,
            reopen.clone(),
        )?));
    }
    if args.journald || args.journald_namespace.is_some() {
        #[cfg(target_os = "linux")]
        {
            let path = match &args.journald_namespace {
                Some(namespace) => sink::journald::namespace_socket(namespace),
                None => sink::journald::DEFAULT_SOCKET.into(),
            };
            sinks.push(Box::new(sink::journald::JournaldSink::connect(&path)?));
        }
        #[cfg(not(target_os = "linux"))]
        anyhow::bail!("--journald needs Linux (systemd-journald)");
    }
    for target in &args.syslog {
        sinks.push(Box::new(sink::syslog::SyslogSink::connect(target.clone())?));
    }
    if let Some(url) = &args.otlp {
        let options = sink::otlp::Options {
            batch: args.otlp_batch.max(1),
            queue: args.otlp_queue.max(1),
            ..sink::otlp::Options::default()
        };
        sinks.push(Box::new(sink::otlp::OtlpSink::start(url, options)?));
    }
    if let Some(address) = args.metrics {
        let metrics = sink::metrics::MetricsSink::serve(address, args.metrics_names)?;
        source_info = Some(metrics.source_info());
        sinks.push(Box::new(metrics));
    }
    Ok((sinks, source_info))
}

fn replay(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let mut printer = Printer::for_trace(format(args.output.json));
    let outcome = replay::replay(&args, &mut printer)?;
    Ok(if outcome.files_with_errors > 0 {
        ExitCode::from(EXIT_ERROR)
    } else {
        ExitCode::SUCCESS
    })
}

fn wait(args: WaitArgs) -> anyhow::Result<ExitCode> {
    let mut set = WaitSet::new(&args.pids).context("cannot wait")?;
    if let Some(procexit::Error::ConnectorPermission { code }) = set.fallback() {
        eprintln!(
            "procexit: the kernel refused this process as a listener of the process connector \
             (os error {code}): waiting on pidfds alone, which give the pid, name and status, the \
             status only where the kernel keeps it (Linux 6.15+, once the parent reaped the \
             process); run as root or with CAP_NET_ADMIN for the full record"
        );
    }
    let deadline = args.timeout.map(|t| Instant::now() + t);
    let mut printer = Printer::new(format(args.output.json));
    // The last process's shell status; `None` inside when it is unknown.
    let mut last_status = None;
    while !set.remaining().is_empty() {
        let next = match set.next_exit(deadline) {
            Err(unknown @ procexit::Error::ExitStatusUnknown { .. }) => {
                eprintln!("procexit: {unknown}");
                last_status = Some(None);
                continue;
            }
            next => next?,
        };
        match next {
            Some(exit) => {
                last_status = Some(Some(exit.status.shell_status()));
                printer.event(&Event::Exit(exit))?;
            }
            None => {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    let pids: Vec<String> = set.remaining().iter().map(|p| p.to_string()).collect();
                    eprintln!("procexit: timed out; still running: {}", pids.join(", "));
                    return Ok(ExitCode::from(EXIT_TIMEOUT));
                }
                anyhow::bail!("the monitor stopped before every process ended");
            }
        }
    }
    match last_status {
        Some(None) => Ok(ExitCode::from(EXIT_INCOMPLETE)),
        Some(Some(status)) => Ok(exit_status(status)),
        None => Ok(exit_status(0)),
    }
}

/// Like a shell: the status of the last process. Unix keeps 8 bits; Windows
/// passes the whole 32-bit code (an NTSTATUS such as 0xC000013A included),
/// which `ExitCode` cannot carry, so it exits directly (stdout is flushed
/// after every line).
fn exit_status(status: i32) -> ExitCode {
    #[cfg(windows)]
    std::process::exit(status);
    #[cfg(not(windows))]
    ExitCode::from(status as u8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::SourceChoice;

    /// As root with --source connector the note says why it is the
    /// connector, and that records say linux-taskstats: not that eBPF needs
    /// root.
    #[test]
    fn the_source_note_matches_the_run() {
        let root_connector =
            source_note(Backend::LinuxConnector, SourceChoice::Connector, true).unwrap();
        assert!(!root_connector.contains("needs root"), "{root_connector}");
        assert!(
            root_connector.contains("--source connector"),
            "{root_connector}"
        );
        assert!(
            root_connector.contains("linux-taskstats"),
            "{root_connector}"
        );
        let user = source_note(Backend::LinuxConnector, SourceChoice::Auto, false).unwrap();
        assert!(user.contains("eBPF needs root"), "{user}");
        assert!(user.contains("only with taskstats (root)"), "{user}");
    }
}
