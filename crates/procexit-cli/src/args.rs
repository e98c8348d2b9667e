//! Command-line flags. Each subcommand has its own struct; shared flags are
//! flattened in.
//!
//! These types, with their clap attributes, are the one definition of the
//! command line: clap parses it at run time and renders `--help` from it,
//! and `procexit completions` / `procexit man` generate the completion
//! scripts and man pages from it (clap_complete, clap_mangen, `docs.rs`).

use std::time::Duration;

use procexit::Filter;

const ABOUT: &str = "How every process on this machine ends: pid, parent, exit code or signal, \
name, command line and duration, system-wide, as it happens. Loss is never silent.";

const AFTER_HELP: &str = "\
Examples:
  procexit watch                         every exit, as a table
  procexit watch --json | jq .           JSON Lines, one object per exit
  procexit watch --failed --name 'py*'   failing Python processes only
  procexit watch --duration 5s           processes that lived 5 s or more
  procexit wait 1234 5678                wait for two processes (any, not only children)
  procexit wait --timeout 30s 1234; echo $?
  procexit replay --failed trace.etl     exits recorded in a Windows trace, on any OS";

#[derive(Debug, PartialEq, clap::Parser)]
#[command(name = "procexit", version, about = ABOUT, after_help = AFTER_HELP)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, PartialEq, clap::Subcommand)]
pub enum Command {
    /// Print every process exit as it happens (Ctrl-C stops and prints a summary).
    #[command(after_help = "\
Examples:
  procexit watch
  procexit watch --json --failed
  procexit watch --name 'cc*' --name ld --count 10
  procexit watch --ppid 1 --duration 100ms
  procexit watch --cgroup '*docker-*' --json
  procexit watch --strict --json --count 100 > exits.jsonl; echo $?

Exit status: 0; 3 with --strict when any exit was lost, dropped or overrun
(the summary says how many); 2 on an error.

On Linux any user can watch through the process connector where the kernel's
build allows it (others need CAP_NET_ADMIN); root (or CAP_BPF + CAP_PERFMON) gets the eBPF source, which adds
the command line of every process, CPU time, peak RSS, the killer and OOM kills
(--source forces one). On Windows run as Administrator.

The command line is shown when the source has it ('-' in the table, null in
JSON otherwise): the eBPF source and Windows have it for every process; with
the process connector, programs that exit at once often have none.")]
    Watch(WatchArgs),
    /// Wait until the given processes end (any process, not only children).
    #[command(after_help = "\
Exit status: that of the last process to end (128+N for signal N), 124 on
--timeout, 2 on error (for example a pid that does not exist).

Examples:
  procexit wait 1234
  procexit wait --timeout 10s 1234 5678
  procexit wait --json 1234")]
    Wait(WaitArgs),
    /// Print the process exits recorded in Windows .etl trace files (on any OS).
    #[command(after_help = "\
Reads kernel traces recorded by xperf, WPR, PerfView or logman (compressed or
not, 32- or 64-bit) and prints the exits they hold in exit-time order (over
all files), with the same filters and output as watch; table rows carry the
date. A summary per file (events, exits, anomalies) goes to stderr first.
Exit status: 0, or 2 when a file could not be read or had damaged parts (the
exits before and after the damage are still printed).

Examples:
  procexit replay trace.etl
  procexit replay --failed --json *.etl
  procexit replay --all --name 'cmd*' trace.etl")]
    Replay(ReplayArgs),
    /// Run watch as a Windows service: install, uninstall, start, stop.
    #[command(after_help = "\
The service runs as LocalSystem, starts with Windows, and runs `procexit watch`
with the options given to install (which must include --output or --syslog: a
service has no console). Stopping it stops the ETW session and writes what is
buffered plus the closing stats record. Run these from an elevated console.

Examples:
  procexit service install --output C:\\ProgramData\\procexit\\exits.jsonl --rotate-size 100M
  procexit service start
  procexit service stop
  procexit service uninstall

On Linux use the systemd unit packaging/procexit.service instead.")]
    Service(ServiceArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(after_help = "\
Examples:
  procexit completions bash > /etc/bash_completion.d/procexit
  procexit completions zsh > /usr/local/share/zsh/site-functions/_procexit
  procexit completions fish > ~/.config/fish/completions/procexit.fish
  procexit completions powershell >> $PROFILE")]
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print a man page (roff): procexit(1), or procexit-COMMAND(1).
    #[command(after_help = "\
Examples:
  procexit man > /usr/local/share/man/man1/procexit.1
  procexit man watch > /usr/local/share/man/man1/procexit-watch.1
  procexit man | man -l -")]
    Man {
        /// The command whose page to print (watch, wait, replay, service, …).
        #[arg(value_name = "COMMAND")]
        command: Option<String>,
    },
}

#[derive(Debug, PartialEq, clap::Args)]
pub struct ServiceArgs {
    #[command(subcommand)]
    pub action: ServiceAction,
}

#[derive(Debug, PartialEq, clap::Subcommand)]
pub enum ServiceAction {
    /// Register the service to run `watch` with the options that follow.
    Install {
        /// Service name (several can be installed under different names).
        #[arg(long, default_value = "procexit")]
        name: String,
        /// `procexit watch` options, e.g. --output FILE --failed.
        #[arg(
            value_name = "WATCH OPTIONS",
            trailing_var_arg = true,
            allow_hyphen_values = true
        )]
        options: Vec<std::ffi::OsString>,
    },
    /// Stop (if running) and remove the service.
    Uninstall {
        /// Service name.
        #[arg(long, default_value = "procexit")]
        name: String,
    },
    /// Start the service and wait until it runs.
    Start {
        /// Service name.
        #[arg(long, default_value = "procexit")]
        name: String,
    },
    /// Stop the service and wait until it stopped.
    Stop {
        /// Service name.
        #[arg(long, default_value = "procexit")]
        name: String,
    },
    /// What the service manager runs (not for use from a console).
    #[command(hide = true)]
    Run {
        #[arg(long)]
        name: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        options: Vec<std::ffi::OsString>,
    },
}

#[derive(Debug, PartialEq, clap::Args)]
pub struct OutputArgs {
    /// Print JSON Lines (one object per exit) instead of a table. Lines are
    /// written in batches while events keep coming, and at once when the
    /// stream goes quiet.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, PartialEq, clap::Args)]
pub struct FilterArgs {
    /// Only processes whose name matches this glob (`*`, `?`); repeatable.
    #[arg(long, value_name = "GLOB")]
    pub name: Vec<String>,
    /// Only this pid; repeatable.
    #[arg(long, value_name = "PID", value_parser = parse_pid)]
    pub pid: Vec<u32>,
    /// Only children of this pid; repeatable.
    #[arg(long, value_name = "PID")]
    pub ppid: Vec<u32>,
    /// Only failures: non-zero exit code or killed by a signal.
    #[arg(long)]
    pub failed: bool,
    /// Only processes that lived at least this long, with a unit: 250ms,
    /// 2s, 1m.
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Linux: only processes whose cgroup path matches this glob (`*` also
    /// matches `/`), e.g. '/system.slice/docker-*'; repeatable.
    #[arg(long, value_name = "GLOB")]
    pub cgroup: Vec<String>,
    /// Only processes run by this Unix uid (real uid); repeatable.
    #[arg(long, value_name = "UID")]
    pub uid: Vec<u32>,
    /// Leave out processes whose name matches this glob; repeatable.
    #[arg(long, value_name = "GLOB")]
    pub not_name: Vec<String>,
    /// Leave out this pid; repeatable.
    #[arg(long, value_name = "PID")]
    pub not_pid: Vec<u32>,
    /// Leave out children of this pid; repeatable.
    #[arg(long, value_name = "PID")]
    pub not_ppid: Vec<u32>,
}

impl FilterArgs {
    pub fn to_filter(&self) -> Filter {
        let mut filter = Filter::new().failed_only(self.failed);
        for name in &self.name {
            filter = filter.name(name.clone());
        }
        for &pid in &self.pid {
            filter = filter.pid(pid);
        }
        for &ppid in &self.ppid {
            filter = filter.ppid(ppid);
        }
        if let Some(d) = self.duration {
            filter = filter.min_duration(d);
        }
        for cgroup in &self.cgroup {
            filter = filter.cgroup(cgroup.clone());
        }
        for &uid in &self.uid {
            filter = filter.uid(uid);
        }
        for name in &self.not_name {
            filter = filter.not_name(name.clone());
        }
        for &pid in &self.not_pid {
            filter = filter.not_pid(pid);
        }
        for &ppid in &self.not_ppid {
            filter = filter.not_ppid(ppid);
        }
        filter
    }
}

/// Which Linux source `watch` uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SourceChoice {
    /// eBPF when permitted (root, or CAP_BPF + CAP_PERFMON), else the connector.
    Auto,
    /// The eBPF source (fails with the reason when not permitted).
    Ebpf,
    /// The netlink process connector (any user where the kernel allows it).
    Connector,
}

impl SourceChoice {
    pub fn backend(self) -> procexit::Backend {
        match self {
            SourceChoice::Auto => procexit::Backend::Auto,
            SourceChoice::Ebpf => procexit::Backend::LinuxEbpf,
            SourceChoice::Connector => procexit::Backend::LinuxConnector,
        }
    }
}

#[derive(Debug, PartialEq, clap::Args)]
pub struct WatchArgs {
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Linux: the source of exits (auto: eBPF when permitted, else the connector)
    #[arg(long, value_enum, default_value_t = SourceChoice::Auto, value_name = "SOURCE")]
    pub source: SourceChoice,
    /// Stop after printing N exits (1 or more).
    #[arg(long, value_name = "N", allow_hyphen_values = true, value_parser = parse_count)]
    pub count: Option<u64>,
    /// Exit with status 3 at the end if any exit was lost, dropped or
    /// overrun, so that a script can trust a clean run (status 0).
    #[arg(long)]
    pub strict: bool,
    /// Linux: the netlink receive buffer to ask for, in bytes (default 8 MiB,
    /// which the kernel doubles). Smaller buffers lose exits in bursts.
    #[arg(long, value_name = "BYTES")]
    pub socket_buffer: Option<usize>,
    /// Windows: the ETW session's name; it must start with "procexit". One
    /// watch per name runs at a time (ignored on other OSes).
    #[arg(long, value_name = "NAME", default_value = procexit::config::DEFAULT_SESSION_NAME)]
    pub session_name: String,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub sinks: SinkArgs,
}

/// Where `watch` ships records besides stdout. With any of these, stdout
/// stays quiet unless `--json` is given.
#[derive(Debug, PartialEq, clap::Args)]
#[command(next_help_heading = "Shipping records")]
pub struct SinkArgs {
    /// Append JSON Lines to FILE (created mode 0640 if missing; reopened on
    /// SIGHUP). Stdout then stays quiet unless --json is given.
    #[arg(long = "output", value_name = "FILE")]
    pub output_file: Option<std::path::PathBuf>,
    /// Rotate FILE before it grows past SIZE (bytes, or with k, M, G:
    /// 1024-based): FILE becomes FILE.1, FILE.1 becomes FILE.2, …
    #[arg(long, value_name = "SIZE", requires = "output_file", value_parser = parse_size)]
    pub rotate_size: Option<u64>,
    /// Rotated files to keep (FILE.1 … FILE.N); older ones are deleted.
    #[arg(long, value_name = "N", requires = "rotate_size", default_value_t = 5, value_parser = parse_keep)]
    pub rotate_keep: u32,
    /// Send every record to the systemd journal as a structured entry:
    /// MESSAGE, PRIORITY (4 for failures and losses, else 6) and one
    /// PROCEXIT_KEY field per JSON key (PROCEXIT_PID, …) (Linux).
    #[arg(long)]
    pub journald: bool,
    /// Send to this journal namespace instead of the default journal
    /// (systemd LogNamespace=, journalctl --namespace); implies --journald.
    #[arg(long, value_name = "NAMESPACE", value_parser = parse_namespace)]
    pub journald_namespace: Option<String>,
    /// Send every record to a syslog server as an RFC 5424 message whose MSG
    /// is the JSON record: unix:PATH (datagram), udp:HOST:PORT or
    /// tcp:HOST:PORT (octet-counted framing). Repeatable.
    #[arg(long, value_name = "TARGET")]
    pub syslog: Vec<crate::sink::syslog::Target>,
    /// Send every record to an OpenTelemetry collector as an OTLP log
    /// record (HTTP, protobuf): http://HOST:PORT posts to /v1/logs, a URL
    /// with a path is used as given. Batched; retried while the collector is
    /// down; what could not be delivered is counted (summary, exit status).
    #[arg(long, value_name = "URL")]
    pub otlp: Option<String>,
    /// OTLP: records per request at most.
    #[arg(long, value_name = "N", requires = "otlp", default_value_t = 512)]
    pub otlp_batch: usize,
    /// OTLP: records that may wait for the collector at most (memory bound);
    /// records beyond are counted as not delivered.
    #[arg(long, value_name = "N", requires = "otlp", default_value_t = 65_536)]
    pub otlp_queue: usize,
    /// Serve Prometheus metrics (exit counts by kind, signal and status
    /// name, OOM kills, losses, the source) at http://ADDR/metrics, e.g.
    /// 127.0.0.1:9464.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<std::net::SocketAddr>,
    /// Also count exits by process name in the metrics, for at most N
    /// names (the rest as "other").
    #[arg(long, value_name = "N", requires = "metrics", default_value_t = 0)]
    pub metrics_names: usize,
}

impl SinkArgs {
    /// Whether any sink was asked for.
    pub fn any(&self) -> bool {
        self.output_file.is_some()
            || self.journald
            || self.journald_namespace.is_some()
            || !self.syslog.is_empty()
            || self.otlp.is_some()
            || self.metrics.is_some()
    }
}

#[derive(Debug, PartialEq, clap::Args)]
pub struct WaitArgs {
    /// The processes to wait for.
    #[arg(required = true, value_name = "PID", value_parser = parse_pid)]
    pub pids: Vec<u32>,
    /// Give up after this long (with a unit: 30s, 5m) and exit with status 124.
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true, value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// A usage error as one line: the first paragraph of clap's message
/// (`error: ` taken off, lines joined) and the command whose `--help` to
/// read, the subcommands named in `argv` (without the program name):
/// `unexpected argument '--bogus' found (see 'procexit watch --help')`.
pub fn one_line(error: &clap::Error, argv: &[std::ffi::OsString]) -> String {
    use clap::CommandFactory;
    let rendered = error.render().to_string();
    let first = rendered.split("\n\n").next().unwrap_or_default();
    let message: Vec<&str> = first
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let message = message.join(" ");
    let message = message.strip_prefix("error: ").unwrap_or(&message);
    let mut command = String::from("procexit");
    let mut current = Cli::command();
    for arg in argv {
        if !current.has_subcommands() {
            break;
        }
        let Some(sub) = arg
            .to_str()
            .and_then(|name| current.find_subcommand(name))
            .cloned()
        else {
            continue;
        };
        command.push(' ');
        command.push_str(sub.get_name());
        current = sub;
    }
    format!("{message} (see '{command} --help')")
}

/// `procexit watch …` from the options alone (what `service install` and
/// `service run` carry), or clap's error.
pub fn parse_watch(options: &[std::ffi::OsString]) -> Result<WatchArgs, String> {
    use clap::Parser;
    let argv = ["procexit".into(), "watch".into()]
        .into_iter()
        .chain(options.iter().cloned());
    match Cli::try_parse_from::<_, std::ffi::OsString>(argv) {
        Ok(Cli {
            command: Command::Watch(args),
        }) => Ok(args),
        Ok(_) => Err("not watch options".into()),
        Err(error) if !error.use_stderr() => Err("--help is not a watch option".into()),
        Err(error) => Err(one_line(&error, &[])),
    }
}

/// `N` of `--count`: 1 or more (0 would print nothing, which no one asks
/// for; a negative number is not a count).
pub fn parse_count(text: &str) -> Result<u64, String> {
    match text.parse::<u64>() {
        Ok(0) => Err("the count must be 1 or more (leave --count out for no limit)".into()),
        Ok(n) => Ok(n),
        Err(_) => Err("not a count: give a whole number of 1 or more".into()),
    }
}

/// A pid to match or wait for: pid 0 is no process (the kernel's idle task).
pub fn parse_pid(text: &str) -> Result<u32, String> {
    match text.parse::<u32>() {
        Ok(0) => Err("pid 0 is not a process".into()),
        Ok(pid) => Ok(pid),
        Err(error) => Err(format!("not a pid: {error}")),
    }
}

/// `--rotate-keep N`: at least one rotated file (without rotation, leave
/// --rotate-size out).
pub fn parse_keep(text: &str) -> Result<u32, String> {
    match text.parse::<u32>() {
        Ok(0) => Err("keep at least 1 rotated file".into()),
        Ok(n) => Ok(n),
        Err(error) => Err(format!("not a number of files: {error}")),
    }
}

/// A journal namespace name (systemd's rule: letters, digits, `_`, `-`,
/// `.`; not empty).
pub fn parse_namespace(text: &str) -> Result<String, String> {
    if text.is_empty() {
        return Err(
            "the namespace name is empty (leave --journald-namespace out for the default journal)"
                .into(),
        );
    }
    if !text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return Err("a namespace name has only letters, digits, '_', '-' and '.'".into());
    }
    Ok(text.to_string())
}

/// `250ms`, `2s`, `1.5s`, `5m`, `1h`: a unit is required (a bare `5` could
/// mean seconds or milliseconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (try 250ms, 2s, 5m)"))?;
    let seconds = match unit.trim() {
        "" => {
            return Err(format!(
                "{text:?} needs a unit (e.g. {text}s, {text}ms, {text}m)"
            ))
        }
        "s" => value,
        "ms" => value / 1000.0,
        "us" | "µs" => value / 1_000_000.0,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => return Err(format!("unknown unit {other:?} (use ms, s, m or h)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("{text:?}: {e}"))
}

/// `1048576`, `512k`, `10M`, `1G` (1024-based; a trailing `B`/`iB` is allowed).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size (try 10M, 512k, 1G)"))?;
    let unit = unit.trim().trim_end_matches("iB").trim_end_matches('B');
    let factor: u64 = match unit.to_ascii_lowercase().as_str() {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        _ => return Err(format!("unknown size unit in {text:?} (use k, M or G)")),
    };
    match value.checked_mul(factor) {
        Some(0) => Err("the size must be more than 0".into()),
        Some(bytes) => Ok(bytes),
        None => Err(format!("{text:?} is too large")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[test]
    fn cli_definition_is_valid() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("2").unwrap_err().contains("needs a unit"));
        assert!(parse_duration("-1").is_err());
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert!(parse_duration("abc").is_err());
        assert!(parse_duration("5 parsecs").is_err());
    }

    #[test]
    fn service_install_takes_watch_options() {
        let cli = Cli::try_parse_from([
            "procexit", "service", "install", "--name", "px", "--output", "x.jsonl", "--failed",
        ])
        .unwrap();
        let Command::Service(ServiceArgs {
            action: ServiceAction::Install { name, options },
        }) = cli.command
        else {
            panic!("not service install")
        };
        assert_eq!(name, "px");
        assert_eq!(options, ["--output", "x.jsonl", "--failed"]);
        let watch = crate::service::parse_watch_options(&options).unwrap();
        assert!(watch.filter.failed && crate::service::has_sink(&watch));
        assert!(crate::service::parse_watch_options(&["--bogus".into()]).is_err());
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("1000"), Ok(1000));
        assert_eq!(parse_size("512k"), Ok(512 * 1024));
        assert_eq!(parse_size("10M"), Ok(10 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert!(parse_size("0").is_err());
        assert!(parse_size("10 parsecs").is_err());
    }

    #[test]
    fn rotation_needs_an_output_file() {
        assert!(Cli::try_parse_from(["procexit", "watch", "--rotate-size", "1M"]).is_err());
        assert!(
            Cli::try_parse_from(["procexit", "watch", "--output", "x", "--rotate-keep", "3"])
                .is_err()
        );
        let cli =
            Cli::try_parse_from(["procexit", "watch", "--output", "x", "--rotate-size", "1M"])
                .unwrap();
        let Command::Watch(args) = cli.command else {
            panic!("not watch")
        };
        assert_eq!(args.sinks.rotate_size, Some(1 << 20));
        assert_eq!(args.sinks.rotate_keep, 5);
    }

    #[test]
    fn filter_flags_build_a_filter() {
        let cli = Cli::parse_from([
            "procexit", "watch", "--failed", "--name", "sh", "--pid", "3",
        ]);
        let Command::Watch(args) = cli.command else {
            panic!("not watch")
        };
        assert_eq!(
            args.filter.to_filter(),
            Filter::new().failed_only(true).name("sh").pid(3)
        );
        assert_eq!(args.session_name, "procexit");
    }

    #[test]
    fn session_name_flag() {
        let cli = Cli::parse_from(["procexit", "watch", "--session-name", "procexit-2"]);
        let Command::Watch(args) = cli.command else {
            panic!("not watch")
        };
        assert_eq!(args.session_name, "procexit-2");
    }
}

#[derive(Debug, PartialEq, clap::Args)]
pub struct ReplayArgs {
    /// The .etl files (`-`: read one from standard input).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<std::path::PathBuf>,
    /// Also list process starts and rundowns (processes alive when the trace
    /// started or ended), not only exits.
    #[arg(long)]
    pub all: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Stop after printing N exits (1 or more).
    #[arg(long, value_name = "N", allow_hyphen_values = true, value_parser = parse_count)]
    pub count: Option<u64>,
    #[command(flatten)]
    pub output: OutputArgs,
}
