//! The command line as the binary reads it: lexopt splits the arguments,
//! this module fills the types of `args.rs`. The help texts are what clap
//! renders from the model in `args.rs` (the derive is compiled in tests
//! only), committed under `generated/help/` and embedded as they are. The
//! tests below hold this parser to that model: every argument the model
//! has is known here, and a table of command lines gives the same typed
//! result (or an error in both) through clap and through this parser.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::args::{
    Cli, Command, FilterArgs, OutputArgs, ReplayArgs, ServiceAction, ServiceArgs, SinkArgs,
    SourceChoice, WaitArgs, WatchArgs,
};
use crate::docs::Shell;

/// What the command line asks for.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // one per run
pub enum Parsed {
    /// Run a command.
    Run(Cli),
    /// Print this help text (`--help`, `-h`, `procexit help …`).
    Help(String),
    /// Print the version (`--version`, `-V`).
    Version,
}

/// A command line that cannot be run: what is wrong, and which command's
/// help to read. `procexit` without a command prints its whole help instead
/// (as `help`).
#[derive(Debug)]
pub struct UsageError {
    pub message: String,
    /// The command whose `--help` explains it (`procexit watch`).
    pub command: String,
    /// Print the command's help instead of the one-line message.
    pub help: Option<String>,
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (see '{} --help')", self.message, self.command)
    }
}

/// `procexit --version`.
pub const VERSION: &str = concat!("procexit ", env!("CARGO_PKG_VERSION"), "\n");

/// `(command path, --help, -h)` for every command: files of `generated/help/`
/// (what clap renders; see `docs.rs`).
pub const HELP: [(&str, &str, &str); 12] = [
    ("", "help/procexit.txt", "help/procexit.txt"),
    (
        "watch",
        "help/procexit-watch.txt",
        "help/procexit-watch.short.txt",
    ),
    ("wait", "help/procexit-wait.txt", "help/procexit-wait.txt"),
    (
        "replay",
        "help/procexit-replay.txt",
        "help/procexit-replay.txt",
    ),
    (
        "service",
        "help/procexit-service.txt",
        "help/procexit-service.txt",
    ),
    (
        "service install",
        "help/procexit-service-install.txt",
        "help/procexit-service-install.txt",
    ),
    (
        "service uninstall",
        "help/procexit-service-uninstall.txt",
        "help/procexit-service-uninstall.txt",
    ),
    (
        "service start",
        "help/procexit-service-start.txt",
        "help/procexit-service-start.txt",
    ),
    (
        "service stop",
        "help/procexit-service-stop.txt",
        "help/procexit-service-stop.txt",
    ),
    (
        "service run",
        "help/procexit-service-run.txt",
        "help/procexit-service-run.txt",
    ),
    (
        "completions",
        "help/procexit-completions.txt",
        "help/procexit-completions.txt",
    ),
    ("man", "help/procexit-man.txt", "help/procexit-man.txt"),
];

/// The help of the command at `path` (`["service", "install"]`; empty for
/// procexit itself): `--help`'s when `long`, else `-h`'s. None for a
/// command that does not exist.
pub fn help_text<S: AsRef<str>>(path: &[S], long: bool) -> Option<String> {
    let wanted: Vec<&str> = path.iter().map(AsRef::as_ref).collect();
    let wanted = wanted.join(" ");
    let &(_, long_file, short_file) = HELP.iter().find(|(command, _, _)| *command == wanted)?;
    crate::docs::generated(if long { long_file } else { short_file })
}

/// Reads the arguments after the program name.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Parsed, UsageError> {
    let mut p = Args::new(args, &[]);
    let name = match p.next()? {
        None => return Err(p.help_instead()),
        Some(Token::Long(flag)) if flag == "help" => return Ok(p.help(true)),
        Some(Token::Short('h')) => return Ok(p.help(false)),
        Some(Token::Long(flag)) if flag == "version" => return Ok(Parsed::Version),
        Some(Token::Short('V')) => return Ok(Parsed::Version),
        Some(Token::Value(name)) => name,
        Some(token) => return Err(p.unexpected(&token)),
    };
    match name.to_str() {
        Some("watch") => p.enter("watch").finish(watch),
        Some("wait") => p.enter("wait").finish(wait),
        Some("replay") => p.enter("replay").finish(replay),
        Some("service") => service(p.enter("service")),
        Some("completions") => p.enter("completions").finish(completions),
        Some("man") => p.enter("man").finish(man),
        Some("help") => help_command(p.enter("help"), &[]),
        _ => Err(p.unrecognized_command(&name)),
    }
}

/// `procexit watch …` from the options alone (what `service install` and
/// `service run` carry).
pub fn parse_watch(options: &[OsString]) -> Result<WatchArgs, UsageError> {
    match watch(Args::new(options.iter().cloned(), &["watch"]))? {
        Ok(args) => Ok(args),
        Err(_) => Err(UsageError {
            message: "--help is not a watch option".into(),
            command: "procexit watch".into(),
            help: None,
        }),
    }
}

/// One argument as lexopt split it.
#[derive(Debug)]
enum Token {
    Long(String),
    Short(char),
    Value(OsString),
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Token::Long(name) => write!(f, "--{name}"),
            Token::Short(c) => write!(f, "-{c}"),
            Token::Value(value) => write!(f, "{}", value.to_string_lossy()),
        }
    }
}

/// The arguments still to read, and the command they belong to.
struct Args {
    lexer: lexopt::Parser,
    path: Vec<&'static str>,
}

/// A command's result: its arguments, or the help it was asked for.
type Outcome<T> = Result<Result<T, Parsed>, UsageError>;

impl Args {
    fn new(args: impl IntoIterator<Item = OsString>, path: &[&'static str]) -> Args {
        Args {
            lexer: lexopt::Parser::from_args(args),
            path: path.to_vec(),
        }
    }

    fn enter(mut self, command: &'static str) -> Args {
        self.path.push(command);
        self
    }

    /// Runs a command parser whose arguments make a whole `Command`.
    fn finish<T: Into<Command>>(self, parse: fn(Args) -> Outcome<T>) -> Result<Parsed, UsageError> {
        Ok(match parse(self)? {
            Ok(args) => Parsed::Run(Cli {
                command: args.into(),
            }),
            Err(help) => help,
        })
    }

    fn command(&self) -> String {
        let mut name = String::from("procexit");
        for part in &self.path {
            name.push(' ');
            name.push_str(part);
        }
        name
    }

    fn error(&self, message: String) -> UsageError {
        UsageError {
            message,
            command: self.command(),
            help: None,
        }
    }

    fn help(&self, long: bool) -> Parsed {
        Parsed::Help(help_text(&self.path, long).unwrap_or_default())
    }

    /// A command that needs a subcommand and got none shows its help.
    fn help_instead(&self) -> UsageError {
        UsageError {
            message: "a command is needed".into(),
            command: self.command(),
            help: help_text(&self.path, false),
        }
    }

    fn next(&mut self) -> Result<Option<Token>, UsageError> {
        match self.lexer.next() {
            Ok(None) => Ok(None),
            Ok(Some(lexopt::Arg::Long(name))) => Ok(Some(Token::Long(name.to_owned()))),
            Ok(Some(lexopt::Arg::Short(c))) => Ok(Some(Token::Short(c))),
            Ok(Some(lexopt::Arg::Value(value))) => Ok(Some(Token::Value(value))),
            Err(error) => Err(self.error(error.to_string())),
        }
    }

    fn unexpected(&self, token: &Token) -> UsageError {
        self.error(format!("unexpected argument '{token}'"))
    }

    fn unrecognized_command(&self, name: &OsStr) -> UsageError {
        self.error(format!("unrecognized command '{}'", name.to_string_lossy()))
    }

    /// The value of the option just read (`flag` names it in errors:
    /// `--name <GLOB>`): attached (`--name=x`) or the next argument, which
    /// may not look like an option (`-`, alone, may).
    fn value(&mut self, flag: &str) -> Result<OsString, UsageError> {
        if let Some(value) = self.lexer.optional_value() {
            return Ok(value);
        }
        let next_is_value = self
            .lexer
            .try_raw_args()
            .and_then(|raw| raw.peek().map(|next| !looks_like_option(next)))
            .unwrap_or(false);
        if !next_is_value {
            return Err(self.error(format!("'{flag}' needs a value")));
        }
        self.lexer
            .value()
            .map_err(|_| self.error(format!("'{flag}' needs a value")))
    }

    /// A value as text (arguments are not always valid Unicode).
    fn text(&self, flag: &str, value: OsString) -> Result<String, UsageError> {
        value.into_string().map_err(|value| {
            self.error(format!(
                "invalid value '{}' for '{flag}': not valid UTF-8",
                value.to_string_lossy()
            ))
        })
    }

    fn string(&mut self, flag: &str) -> Result<String, UsageError> {
        let value = self.value(flag)?;
        self.text(flag, value)
    }

    fn path_value(&self, flag: &str, value: OsString) -> Result<PathBuf, UsageError> {
        if value.is_empty() {
            return Err(self.error(format!("'{flag}' needs a value")));
        }
        Ok(value.into())
    }

    fn path(&mut self, flag: &str) -> Result<PathBuf, UsageError> {
        let value = self.value(flag)?;
        self.path_value(flag, value)
    }

    /// A value read by `parse` (the error says why it is invalid).
    fn converted<T>(
        &self,
        flag: &str,
        value: OsString,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<T, UsageError> {
        let text = self.text(flag, value)?;
        parse(&text)
            .map_err(|why| self.error(format!("invalid value '{text}' for '{flag}': {why}")))
    }

    fn parsed<T>(
        &mut self,
        flag: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<T, UsageError> {
        let value = self.value(flag)?;
        self.converted(flag, value, parse)
    }

    fn number<T: FromStr>(&mut self, flag: &str) -> Result<T, UsageError>
    where
        T::Err: fmt::Display,
    {
        self.parsed(flag, |text| text.parse::<T>().map_err(|e| e.to_string()))
    }

    /// An option that may be given once.
    fn once<T>(&self, slot: &mut Option<T>, flag: &str, value: T) -> Result<(), UsageError> {
        if slot.is_some() {
            return Err(self.repeated(flag));
        }
        *slot = Some(value);
        Ok(())
    }

    /// A flag without a value, given at most once.
    fn switch(&self, slot: &mut bool, flag: &str) -> Result<(), UsageError> {
        if *slot {
            return Err(self.repeated(flag));
        }
        *slot = true;
        Ok(())
    }

    fn repeated(&self, flag: &str) -> UsageError {
        self.error(format!("'{flag}' was given more than once"))
    }

    /// The arguments not yet read, as they were given.
    fn rest(&mut self) -> Vec<OsString> {
        match self.lexer.try_raw_args() {
            Some(raw) => raw.collect(),
            None => Vec::new(),
        }
    }

    /// The next argument as given, before lexopt splits it.
    fn peek_raw(&mut self) -> Option<OsString> {
        self.lexer
            .try_raw_args()
            .and_then(|raw| raw.peek().map(OsStr::to_os_string))
    }
}

/// `-x`, `--x`: not a value for the option before it (`-` alone is).
fn looks_like_option(arg: &OsStr) -> bool {
    let bytes = arg.as_encoded_bytes();
    bytes.len() > 1 && bytes[0] == b'-'
}

impl From<WatchArgs> for Command {
    fn from(args: WatchArgs) -> Command {
        Command::Watch(args)
    }
}

impl From<WaitArgs> for Command {
    fn from(args: WaitArgs) -> Command {
        Command::Wait(args)
    }
}

impl From<ReplayArgs> for Command {
    fn from(args: ReplayArgs) -> Command {
        Command::Replay(args)
    }
}

/// The filter options `watch` and `replay` share; false when `flag` is none.
fn filter_option(p: &mut Args, flag: &str, filter: &mut FilterArgs) -> Result<bool, UsageError> {
    match flag {
        "name" => filter.name.push(p.string("--name <GLOB>")?),
        "pid" => filter.pid.push(p.number("--pid <PID>")?),
        "ppid" => filter.ppid.push(p.number("--ppid <PID>")?),
        "failed" => p.switch(&mut filter.failed, "--failed")?,
        "duration" => {
            let value = p.parsed("--duration <DURATION>", crate::args::parse_duration)?;
            p.once(&mut filter.duration, "--duration <DURATION>", value)?;
        }
        "cgroup" => filter.cgroup.push(p.string("--cgroup <GLOB>")?),
        _ => return Ok(false),
    }
    Ok(true)
}

fn empty_filter() -> FilterArgs {
    FilterArgs {
        name: Vec::new(),
        pid: Vec::new(),
        ppid: Vec::new(),
        failed: false,
        duration: None,
        cgroup: Vec::new(),
    }
}

fn watch(mut p: Args) -> Outcome<WatchArgs> {
    let mut filter = empty_filter();
    let mut source = None;
    let mut count = None;
    let mut strict = false;
    let mut socket_buffer = None;
    let mut session_name = None;
    let mut json = false;
    let mut output_file = None;
    let mut rotate_size = None;
    let mut rotate_keep = None;
    let mut journald = false;
    let mut journald_namespace = None;
    let mut syslog = Vec::new();
    while let Some(token) = p.next()? {
        let Token::Long(flag) = &token else {
            if let Token::Short('h') = token {
                return Ok(Err(p.help(false)));
            }
            return Err(p.unexpected(&token));
        };
        if filter_option(&mut p, flag, &mut filter)? {
            continue;
        }
        match flag.as_str() {
            "help" => return Ok(Err(p.help(true))),
            "source" => {
                let value = p.parsed("--source <SOURCE>", parse_source)?;
                p.once(&mut source, "--source <SOURCE>", value)?;
            }
            "count" => {
                let value = p.number("--count <N>")?;
                p.once(&mut count, "--count <N>", value)?;
            }
            "strict" => p.switch(&mut strict, "--strict")?,
            "socket-buffer" => {
                let value = p.number("--socket-buffer <BYTES>")?;
                p.once(&mut socket_buffer, "--socket-buffer <BYTES>", value)?;
            }
            "session-name" => {
                let value = p.string("--session-name <NAME>")?;
                p.once(&mut session_name, "--session-name <NAME>", value)?;
            }
            "json" => p.switch(&mut json, "--json")?,
            "output" => {
                let value = p.path("--output <FILE>")?;
                p.once(&mut output_file, "--output <FILE>", value)?;
            }
            "rotate-size" => {
                let value = p.parsed("--rotate-size <SIZE>", crate::args::parse_size)?;
                p.once(&mut rotate_size, "--rotate-size <SIZE>", value)?;
            }
            "rotate-keep" => {
                let value = p.number("--rotate-keep <N>")?;
                p.once(&mut rotate_keep, "--rotate-keep <N>", value)?;
            }
            "journald" => p.switch(&mut journald, "--journald")?,
            "journald-namespace" => {
                let value = p.string("--journald-namespace <NAMESPACE>")?;
                p.once(
                    &mut journald_namespace,
                    "--journald-namespace <NAMESPACE>",
                    value,
                )?;
            }
            "syslog" => {
                let value = p.parsed("--syslog <TARGET>", crate::sink::syslog::Target::from_str)?;
                syslog.push(value);
            }
            _ => return Err(p.unexpected(&token)),
        }
    }
    if rotate_size.is_some() && output_file.is_none() {
        return Err(p.error("'--rotate-size <SIZE>' needs '--output <FILE>'".into()));
    }
    if rotate_keep.is_some() && rotate_size.is_none() {
        return Err(p.error("'--rotate-keep <N>' needs '--rotate-size <SIZE>'".into()));
    }
    Ok(Ok(WatchArgs {
        filter,
        source: source.unwrap_or(SourceChoice::Auto),
        count,
        strict,
        socket_buffer,
        session_name: session_name
            .unwrap_or_else(|| procexit::config::DEFAULT_SESSION_NAME.to_string()),
        output: OutputArgs { json },
        sinks: SinkArgs {
            output_file,
            rotate_size,
            rotate_keep: rotate_keep.unwrap_or(5),
            journald,
            journald_namespace,
            syslog,
        },
    }))
}

fn parse_source(text: &str) -> Result<SourceChoice, String> {
    match text {
        "auto" => Ok(SourceChoice::Auto),
        "ebpf" => Ok(SourceChoice::Ebpf),
        "connector" => Ok(SourceChoice::Connector),
        _ => Err("use auto, ebpf or connector".into()),
    }
}

fn wait(mut p: Args) -> Outcome<WaitArgs> {
    let mut pids = Vec::new();
    let mut timeout: Option<Duration> = None;
    let mut json = false;
    while let Some(token) = p.next()? {
        match &token {
            Token::Value(value) => {
                let pid = p.converted("<PID>", value.clone(), |text| {
                    text.parse::<u32>().map_err(|e| e.to_string())
                })?;
                pids.push(pid);
            }
            Token::Short('h') => return Ok(Err(p.help(false))),
            Token::Long(flag) if flag == "help" => return Ok(Err(p.help(true))),
            Token::Long(flag) if flag == "timeout" => {
                let value = p.parsed("--timeout <DURATION>", crate::args::parse_duration)?;
                p.once(&mut timeout, "--timeout <DURATION>", value)?;
            }
            Token::Long(flag) if flag == "json" => p.switch(&mut json, "--json")?,
            _ => return Err(p.unexpected(&token)),
        }
    }
    if pids.is_empty() {
        return Err(p.error("the pids to wait for are missing: <PID>...".into()));
    }
    Ok(Ok(WaitArgs {
        pids,
        timeout,
        output: OutputArgs { json },
    }))
}

fn replay(mut p: Args) -> Outcome<ReplayArgs> {
    let mut files = Vec::new();
    let mut all = false;
    let mut filter = empty_filter();
    let mut count = None;
    let mut json = false;
    while let Some(token) = p.next()? {
        let flag = match &token {
            Token::Value(value) => {
                files.push(p.path_value("<FILE>", value.clone())?);
                continue;
            }
            Token::Short('h') => return Ok(Err(p.help(false))),
            Token::Long(flag) => flag,
            Token::Short(_) => return Err(p.unexpected(&token)),
        };
        if filter_option(&mut p, flag, &mut filter)? {
            continue;
        }
        match flag.as_str() {
            "help" => return Ok(Err(p.help(true))),
            "all" => p.switch(&mut all, "--all")?,
            "count" => {
                let value = p.number("--count <N>")?;
                p.once(&mut count, "--count <N>", value)?;
            }
            "json" => p.switch(&mut json, "--json")?,
            _ => return Err(p.unexpected(&token)),
        }
    }
    if files.is_empty() {
        return Err(p.error("the files to read are missing: <FILE>...".into()));
    }
    Ok(Ok(ReplayArgs {
        files,
        all,
        filter,
        count,
        output: OutputArgs { json },
    }))
}

fn service(mut p: Args) -> Result<Parsed, UsageError> {
    let token = match p.next()? {
        None => return Err(p.help_instead()),
        Some(token) => token,
    };
    let name = match &token {
        Token::Short('h') => return Ok(p.help(false)),
        Token::Long(flag) if flag == "help" => return Ok(p.help(true)),
        Token::Value(name) => name.clone(),
        _ => return Err(p.unexpected(&token)),
    };
    let action = match name.to_str() {
        Some("install") => service_action(p.enter("install"), true, Some("procexit"))?,
        Some("run") => service_action(p.enter("run"), true, None)?,
        Some("uninstall") => service_action(p.enter("uninstall"), false, Some("procexit"))?,
        Some("start") => service_action(p.enter("start"), false, Some("procexit"))?,
        Some("stop") => service_action(p.enter("stop"), false, Some("procexit"))?,
        Some("help") => return help_command(p.enter("help"), &["service"]),
        _ => return Err(p.unrecognized_command(&name)),
    };
    Ok(match action {
        Ok(action) => Parsed::Run(Cli {
            command: Command::Service(ServiceArgs { action }),
        }),
        Err(help) => help,
    })
}

/// A service action: `--name NAME` (with a default, or required), and for
/// `install` and `run` the watch options: everything from the first
/// argument that is not `--name` or help on, as given.
fn service_action(
    mut p: Args,
    takes_options: bool,
    default_name: Option<&str>,
) -> Outcome<ServiceAction> {
    let mut name = None;
    let mut options = Vec::new();
    loop {
        if takes_options {
            let Some(next) = p.peek_raw() else { break };
            let known = next == "--help"
                || next == "-h"
                || next == "--name"
                || next.as_encoded_bytes().starts_with(b"--name=");
            if next == "--" {
                let mut rest = p.rest();
                rest.remove(0);
                options = rest;
                break;
            }
            if !known {
                options = p.rest();
                break;
            }
        }
        let Some(token) = p.next()? else { break };
        match &token {
            Token::Short('h') => return Ok(Err(p.help(false))),
            Token::Long(flag) if flag == "help" => return Ok(Err(p.help(true))),
            Token::Long(flag) if flag == "name" => {
                let value = p.string("--name <NAME>")?;
                p.once(&mut name, "--name <NAME>", value)?;
            }
            _ => return Err(p.unexpected(&token)),
        }
    }
    let name = match (name, default_name) {
        (Some(name), _) => name,
        (None, Some(default)) => default.to_string(),
        (None, None) => return Err(p.error("'--name <NAME>' is required".into())),
    };
    let action = match p.path.last().copied() {
        Some("install") => ServiceAction::Install { name, options },
        Some("run") => ServiceAction::Run { name, options },
        Some("uninstall") => ServiceAction::Uninstall { name },
        Some("start") => ServiceAction::Start { name },
        _ => ServiceAction::Stop { name },
    };
    Ok(Ok(action))
}

fn completions(mut p: Args) -> Outcome<Command> {
    let mut shell = None;
    while let Some(token) = p.next()? {
        match &token {
            Token::Short('h') => return Ok(Err(p.help(false))),
            Token::Long(flag) if flag == "help" => return Ok(Err(p.help(true))),
            Token::Value(value) if shell.is_none() => {
                let value = p.converted("<SHELL>", value.clone(), |text| match text {
                    "bash" => Ok(Shell::Bash),
                    "elvish" => Ok(Shell::Elvish),
                    "fish" => Ok(Shell::Fish),
                    "powershell" => Ok(Shell::Powershell),
                    "zsh" => Ok(Shell::Zsh),
                    _ => Err("use bash, elvish, fish, powershell or zsh".into()),
                })?;
                shell = Some(value);
            }
            _ => return Err(p.unexpected(&token)),
        }
    }
    match shell {
        Some(shell) => Ok(Ok(Command::Completions { shell })),
        None => Err(p.error("the shell is missing: <SHELL>".into())),
    }
}

fn man(mut p: Args) -> Outcome<Command> {
    let mut command = None;
    while let Some(token) = p.next()? {
        match &token {
            Token::Short('h') => return Ok(Err(p.help(false))),
            Token::Long(flag) if flag == "help" => return Ok(Err(p.help(true))),
            Token::Value(value) if command.is_none() => {
                command = Some(p.text("[COMMAND]", value.clone())?);
            }
            _ => return Err(p.unexpected(&token)),
        }
    }
    Ok(Ok(Command::Man { command }))
}

/// `procexit help [COMMAND…]`, `procexit service help [ACTION]`: the long
/// help of that command.
fn help_command(mut p: Args, parent: &[&str]) -> Result<Parsed, UsageError> {
    let mut path: Vec<String> = parent.iter().map(|s| s.to_string()).collect();
    while let Some(token) = p.next()? {
        let Token::Value(value) = &token else {
            return Err(p.unexpected(&token));
        };
        path.push(value.to_string_lossy().into_owned());
        if help_text(&path, true).is_none() {
            return Err(p.unrecognized_command(value));
        }
    }
    Ok(Parsed::Help(help_text(&path, true).unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;

    use clap::error::ErrorKind;
    use clap::{CommandFactory, Parser};

    use super::*;

    /// What a command line comes to, through either parser.
    #[derive(Debug, PartialEq)]
    #[allow(clippy::large_enum_variant)]
    enum Outcome {
        Run(Cli),
        /// Printed on stdout, status 0.
        Help(String),
        Version(String),
        /// The command needs a subcommand: its help on stderr, status 2.
        HelpOnError(String),
        /// A usage error, status 2.
        Error,
    }

    fn by_clap(args: &[OsString]) -> (Outcome, String) {
        let argv = std::iter::once(OsString::from("procexit")).chain(args.iter().cloned());
        match Cli::try_parse_from(argv) {
            Ok(cli) => (Outcome::Run(cli), String::new()),
            Err(error) => {
                let text = error.render().to_string();
                let outcome = match error.kind() {
                    ErrorKind::DisplayHelp => Outcome::Help(text.clone()),
                    ErrorKind::DisplayVersion => Outcome::Version(text.clone()),
                    ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                        Outcome::HelpOnError(text.clone())
                    }
                    _ => Outcome::Error,
                };
                (outcome, text)
            }
        }
    }

    fn by_runtime(args: &[OsString]) -> (Outcome, String) {
        match parse(args.iter().cloned()) {
            Ok(Parsed::Run(cli)) => (Outcome::Run(cli), String::new()),
            Ok(Parsed::Help(text)) => (Outcome::Help(text), String::new()),
            Ok(Parsed::Version) => (Outcome::Version(VERSION.into()), String::new()),
            Err(error) => match error.help {
                Some(help) => (Outcome::HelpOnError(help), String::new()),
                None => (Outcome::Error, error.to_string()),
            },
        }
    }

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    /// Both parsers give the same result; a usage error's message names
    /// `culprit` when one is given.
    fn agree(args: &[OsString], culprit: Option<&str>) {
        let (clap, clap_text) = by_clap(args);
        let (runtime, message) = by_runtime(args);
        assert_eq!(
            runtime, clap,
            "{args:?}: the runtime parser (left) and the clap model (right) disagree; \
             clap said: {clap_text}"
        );
        if runtime == Outcome::Error {
            assert_eq!(message.lines().count(), 1, "{args:?}: one line: {message}");
            if let Some(culprit) = culprit {
                assert!(
                    message.contains(culprit),
                    "{args:?}: the message should name {culprit:?}: {message}"
                );
            }
        }
    }

    /// Command lines of every kind: each subcommand, each flag and value
    /// form, repeats, `--`, unknown flags, missing and bad values, flags
    /// that need another. `Some(word)`: an error whose message must name it.
    const CASES: &[(&[&str], Option<&str>)] = &[
        (&[], None),
        (&["--help"], None),
        (&["-h"], None),
        (&["--version"], None),
        (&["-V"], None),
        (&["--bogus"], Some("--bogus")),
        (&["bogus"], Some("bogus")),
        (&["--json", "watch"], Some("--json")),
        (&["watch", "--version"], Some("--version")),
        (&["watch"], None),
        (&["watch", "--json"], None),
        (&["watch", "-h"], None),
        (&["watch", "--help"], None),
        (&["watch", "--json", "--help"], None),
        (&["watch", "--duration", "soon", "--help"], Some("soon")),
        (&["watch", "--help", "--duration", "soon"], None),
        (
            &[
                "watch",
                "--name",
                "sh",
                "--name=py*",
                "--pid",
                "1",
                "--pid=2",
                "--ppid",
                "3",
                "--failed",
                "--duration",
                "250ms",
                "--cgroup",
                "/system.slice/*",
            ],
            None,
        ),
        (&["watch", "--duration=1.5s", "--cgroup=*docker-*"], None),
        (&["watch", "--source", "ebpf"], None),
        (&["watch", "--source=connector"], None),
        (&["watch", "--source", "auto"], None),
        (&["watch", "--source", "bogus"], Some("bogus")),
        (&["watch", "--source", "EBPF"], Some("EBPF")),
        (
            &[
                "watch",
                "--count",
                "10",
                "--strict",
                "--socket-buffer",
                "4096",
                "--session-name",
                "procexit-2",
            ],
            None,
        ),
        (&["watch", "--count=+5"], None),
        (
            &[
                "watch",
                "--output",
                "x.jsonl",
                "--rotate-size",
                "10M",
                "--rotate-keep",
                "3",
            ],
            None,
        ),
        (&["watch", "--output=x.jsonl", "--rotate-size=512k"], None),
        (&["watch", "--rotate-size", "1M"], Some("--rotate-size")),
        (
            &["watch", "--output", "x", "--rotate-keep", "3"],
            Some("--rotate-keep"),
        ),
        (
            &["watch", "--output", "x", "--rotate-size", "0"],
            Some("--rotate-size"),
        ),
        (&["watch", "--output="], Some("--output")),
        (
            &[
                "watch",
                "--journald",
                "--journald-namespace",
                "ns",
                "--syslog",
                "udp:127.0.0.1:514",
                "--syslog",
                "unix:/dev/log",
                "--syslog=tcp:host:601",
            ],
            None,
        ),
        (&["watch", "--syslog", "bogus"], Some("bogus")),
        (&["watch", "--syslog", "udp:host"], Some("udp:host")),
        (&["watch", "--bogus"], Some("--bogus")),
        (&["watch", "--bogus=1"], Some("--bogus")),
        (&["watch", "-x"], Some("-x")),
        (&["watch", "-j"], Some("-j")),
        (&["watch", "--json=yes"], Some("--json")),
        (&["watch", "--json", "--json"], Some("--json")),
        (&["watch", "--failed", "--failed"], Some("--failed")),
        (&["watch", "--count", "1", "--count", "2"], Some("--count")),
        (
            &["watch", "--duration", "1s", "--duration", "2s"],
            Some("--duration"),
        ),
        (
            &["watch", "--source", "ebpf", "--source", "auto"],
            Some("--source"),
        ),
        (
            &["watch", "--output", "a", "--output", "b"],
            Some("--output"),
        ),
        (&["watch", "--count"], Some("--count")),
        (&["watch", "--count", "--json"], Some("--count")),
        (&["watch", "--count", "-1"], Some("--count")),
        (&["watch", "--count", "ten"], Some("ten")),
        (&["watch", "--pid", "4294967296"], Some("4294967296")),
        (&["watch", "--pid", "-3"], Some("--pid")),
        (&["watch", "--pid=-3"], Some("-3")),
        (&["watch", "--name", "-x"], Some("--name")),
        (&["watch", "--name", "-"], None),
        (&["watch", "--name="], None),
        (&["watch", "--name=-x"], None),
        (&["watch", "--name", ""], None),
        (&["watch", "--duration", "soon"], Some("soon")),
        (&["watch", "--duration", "5 parsecs"], Some("5 parsecs")),
        (&["watch", "--socket-buffer", "8M"], Some("8M")),
        (&["watch", "--", "--json"], Some("--json")),
        (&["watch", "--"], None),
        (&["watch", "extra"], Some("extra")),
        (&["wait"], None),
        (&["wait", "1"], None),
        (&["wait", "1", "2", "--timeout", "5s", "--json"], None),
        (&["wait", "--timeout=1.5s", "3"], None),
        (&["wait", "1", "--", "2"], None),
        (&["wait", "1", "--json", "2"], None),
        (&["wait", "--", "-5"], Some("-5")),
        (&["wait", "-5"], Some("-5")),
        (&["wait", "abc"], Some("abc")),
        (&["wait", "--timeout", "5s"], Some("PID")),
        (&["wait", "1", "--timeout"], Some("--timeout")),
        (
            &["wait", "1", "--timeout", "1s", "--timeout", "2s"],
            Some("--timeout"),
        ),
        (&["wait", "1", "--failed"], Some("--failed")),
        (&["wait", "-h"], None),
        (&["wait", "1", "--help"], None),
        (&["replay"], None),
        (
            &[
                "replay",
                "a.etl",
                "b.etl",
                "--all",
                "--failed",
                "--name",
                "cmd*",
                "--count",
                "3",
                "--json",
                "--pid",
                "4",
                "--ppid=5",
                "--duration",
                "1m",
                "--cgroup",
                "x",
            ],
            None,
        ),
        (&["replay", "--", "-a.etl"], None),
        (&["replay", "a.etl", "--all", "--all"], Some("--all")),
        (&["replay", ""], Some("FILE")),
        (&["replay", "--source", "ebpf", "a.etl"], Some("--source")),
        (&["replay", "--output", "x", "a.etl"], Some("--output")),
        (&["replay", "-x", "a.etl"], Some("-x")),
        (&["replay", "--help"], None),
        (&["service"], None),
        (&["service", "--help"], None),
        (&["service", "-h"], None),
        (&["service", "--bogus"], Some("--bogus")),
        (&["service", "bogus"], Some("bogus")),
        (&["service", "install"], None),
        (
            &[
                "service", "install", "--name", "px", "--output", "x.jsonl", "--failed",
            ],
            None,
        ),
        (
            &["service", "install", "--output", "x", "--name", "px"],
            None,
        ),
        (&["service", "install", "--", "--name", "px"], None),
        (&["service", "install", "--name=px", "--", "--json"], None),
        (
            &["service", "install", "--name", "a", "--name", "b"],
            Some("--name"),
        ),
        (&["service", "install", "--name"], Some("--name")),
        (&["service", "install", "-h"], None),
        (&["service", "install", "--output", "x", "--help"], None),
        (&["service", "install", "plain", "--name", "x"], None),
        (&["service", "install", "-x", "--name", "x"], None),
        (&["service", "uninstall"], None),
        (&["service", "uninstall", "--name", "px"], None),
        (&["service", "uninstall", "x"], Some("x")),
        (&["service", "uninstall", "--output", "x"], Some("--output")),
        (
            &["service", "start", "--name", "a", "--name", "b"],
            Some("--name"),
        ),
        (&["service", "start", "--name=a"], None),
        (&["service", "stop", "--bogus"], Some("--bogus")),
        (&["service", "stop", "--help"], None),
        (
            &["service", "run", "--name", "px", "--", "--output", "x"],
            None,
        ),
        (&["service", "run", "--name", "px", "--output", "x"], None),
        (&["service", "run"], Some("--name")),
        (&["service", "run", "--output", "x"], None),
        (&["service", "help"], None),
        (&["service", "help", "install"], None),
        (&["service", "help", "bogus"], Some("bogus")),
        (&["completions", "bash"], None),
        (&["completions", "zsh"], None),
        (&["completions", "tcsh"], Some("tcsh")),
        (&["completions", "Bash"], Some("Bash")),
        (&["completions"], Some("SHELL")),
        (&["completions", "bash", "zsh"], Some("zsh")),
        (&["completions", "--help"], None),
        (&["man"], None),
        (&["man", "watch"], None),
        (&["man", "bogus"], None),
        (&["man", "watch", "wait"], Some("wait")),
        (&["man", "-h"], None),
        (&["help"], None),
        (&["help", "watch"], None),
        (&["help", "service"], None),
        (&["help", "service", "install"], None),
        (&["help", "bogus"], Some("bogus")),
    ];

    #[test]
    fn the_runtime_parser_agrees_with_the_clap_model() {
        for (args, culprit) in CASES {
            agree(&os(args), *culprit);
        }
    }

    #[cfg(unix)]
    #[test]
    fn arguments_that_are_not_unicode() {
        use std::os::unix::ffi::OsStringExt;
        let bad = || OsString::from_vec(b"x\xffy".to_vec());
        agree(&[OsString::from("replay"), bad()], None);
        agree(
            &[OsString::from("watch"), OsString::from("--output"), bad()],
            None,
        );
        let name = [OsString::from("watch"), OsString::from("--name"), bad()];
        agree(&name, Some("--name"));
        agree(&[OsString::from("man"), bad()], None);
        agree(&[OsString::from("wait"), bad()], None);
    }

    /// A value the sample command lines give each option or positional of
    /// the model, by its value name.
    fn sample(value_name: &str) -> &'static str {
        match value_name {
            "GLOB" => "x*",
            "PID" => "7",
            "DURATION" => "2s",
            "N" => "3",
            "BYTES" => "65536",
            "NAME" => "procexit-x",
            "FILE" => "x.jsonl",
            "SIZE" => "1M",
            "NAMESPACE" => "ns",
            "TARGET" => "udp:127.0.0.1:514",
            "COMMAND" => "watch",
            "SHELL" => "fish",
            "WATCH OPTIONS" | "OPTIONS" => "--failed",
            other => panic!("no sample value for <{other}>: add one to sample()"),
        }
    }

    /// What an argument needs beside it (`requires` in the model).
    fn companions(id: &str) -> &'static [&'static str] {
        match id {
            "rotate_size" => &["--output", "x"],
            "rotate_keep" => &["--output", "x", "--rotate-size", "1M"],
            _ => &[],
        }
    }

    /// Every command and every argument of the clap model, used on its own
    /// (with each possible value where it has a list), parses to the same
    /// result through the runtime parser: an argument added to the model
    /// and not here (or the other way round) fails this test.
    #[test]
    fn the_runtime_parser_knows_every_argument_of_the_model() {
        fn walk(command: &clap::Command, path: Vec<String>, seen: &mut usize) {
            // Each command: its help, and the arguments it requires.
            let mut base: Vec<String> = path.clone();
            for arg in command.get_arguments().filter(|a| a.is_required_set()) {
                if let Some(long) = arg.get_long() {
                    base.push(format!("--{long}"));
                }
                let name = arg.get_value_names().map(|v| v[0].to_string());
                base.push(sample(&name.unwrap_or_else(|| arg.get_id().to_string())).into());
            }
            for flag in ["--help", "-h"] {
                let mut args = path.clone();
                args.push(flag.into());
                agree(
                    &os(&args.iter().map(String::as_str).collect::<Vec<_>>()),
                    None,
                );
            }
            for arg in command.get_arguments() {
                *seen += 1;
                let takes_value = arg.get_num_args().is_none_or(|n| n.takes_values())
                    && !matches!(
                        arg.get_action(),
                        clap::ArgAction::SetTrue | clap::ArgAction::Help | clap::ArgAction::Version
                    );
                let mut values: Vec<String> = arg
                    .get_possible_values()
                    .iter()
                    .map(|v| v.get_name().to_string())
                    .collect();
                if values.is_empty() && takes_value {
                    let name = arg.get_value_names().map(|v| v[0].to_string());
                    values.push(sample(&name.unwrap_or_else(|| arg.get_id().to_string())).into());
                }
                if !takes_value {
                    values = vec![String::new()];
                }
                for value in values {
                    let mut args = if arg.is_required_set() {
                        path.clone()
                    } else {
                        base.clone()
                    };
                    args.extend(
                        companions(arg.get_id().as_str())
                            .iter()
                            .map(|s| s.to_string()),
                    );
                    match arg.get_long() {
                        Some(long) if takes_value => {
                            args.push(format!("--{long}"));
                            args.push(value);
                        }
                        Some(long) => args.push(format!("--{long}")),
                        None => args.push(value),
                    }
                    let argv = os(&args.iter().map(String::as_str).collect::<Vec<_>>());
                    let (clap, text) = by_clap(&argv);
                    assert!(
                        matches!(clap, Outcome::Run(_)),
                        "{args:?} is not a valid sample command line ({text}): \
                         give the argument its companions()"
                    );
                    agree(&argv, None);
                }
            }
            for sub in command.get_subcommands() {
                let mut path = path.clone();
                path.push(sub.get_name().to_string());
                walk(sub, path, seen);
            }
        }
        let mut seen = 0;
        walk(&Cli::command(), Vec::new(), &mut seen);
        assert!(seen > 25, "only {seen} arguments in the model");
    }
}
