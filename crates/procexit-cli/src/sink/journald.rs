//! `--journald`: native structured journal entries.
//!
//! One datagram per record on journald's native socket, in its documented
//! wire format (systemd.io/JOURNAL_NATIVE_PROTOCOL): `KEY=value\n` per
//! field, or `KEY\n`, a little-endian 64-bit length and the raw value for a
//! value that holds a newline. An entry too large for one datagram is
//! written to a sealed memfd whose descriptor is sent instead, as
//! sd_journal_send does.
//!
//! Fields: `MESSAGE` (a line for people), `PRIORITY` (4 warning for failures
//! and losses, 6 info otherwise), `SYSLOG_IDENTIFIER=procexit`, and one
//! `PROCEXIT_<KEY>` per key of the JSON record (`type` → `PROCEXIT_TYPE`,
//! `exit_code` → `PROCEXIT_EXIT_CODE`), in the record's key order, read
//! from the typed fields of the message; null values are left out, text is
//! as it was (times in RFC 3339), numbers as the JSON form writes them.

use std::io::{self, IoSlice, Write};
use std::mem::MaybeUninit;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

use procexit::schema::{Message, Value};
use rustix::fs::{MemfdFlags, SealFlags};
use rustix::io::Errno;
use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};

use super::{is_warning, Health, Sink};

/// journald's native socket.
pub const DEFAULT_SOCKET: &str = "/run/systemd/journal/socket";

/// The native socket of a journal namespace (`LogNamespace=`, `journalctl
/// --namespace`).
pub fn namespace_socket(namespace: &str) -> PathBuf {
    PathBuf::from(format!("/run/systemd/journal.{namespace}/socket"))
}

/// Sends records to journald.
pub struct JournaldSink {
    path: PathBuf,
    describe: String,
    socket: Option<UnixDatagram>,
    health: Health,
}

impl JournaldSink {
    /// Connects to the socket at `path` (fails at once if journald is not
    /// listening there).
    pub fn connect(path: &Path) -> anyhow::Result<JournaldSink> {
        let socket = connect(path).map_err(|error| {
            anyhow::anyhow!(
                "cannot reach journald at {}: {error}; is systemd-journald running?",
                path.display()
            )
        })?;
        Ok(JournaldSink {
            path: path.to_path_buf(),
            describe: format!("journald ({})", path.display()),
            socket: Some(socket),
            health: Health::default(),
        })
    }

    fn deliver(&mut self, entry: &[u8]) -> io::Result<()> {
        // A socket connected to a journald that has since restarted fails
        // once: connect again and retry.
        for attempt in 0..2 {
            let socket = match &self.socket {
                Some(socket) => socket,
                None => self.socket.insert(connect(&self.path)?),
            };
            match send_entry(socket, entry) {
                Ok(()) => return Ok(()),
                Err(error) if attempt == 0 && is_reconnectable(&error) => self.socket = None,
                Err(error) => return Err(error),
            }
        }
        unreachable!("the second attempt returns")
    }
}

impl Sink for JournaldSink {
    fn describe(&self) -> &str {
        &self.describe
    }

    fn send(&mut self, message: &Message<'_>) {
        let entry = entry(message);
        match self.deliver(&entry) {
            Ok(()) => self.health.delivered(&self.describe, 1),
            Err(error) => {
                self.socket = None;
                self.health.failed(&self.describe, 1, &error);
            }
        }
    }

    fn health(&self) -> &Health {
        &self.health
    }
}

fn connect(path: &Path) -> io::Result<UnixDatagram> {
    let socket = UnixDatagram::unbound()?;
    socket.connect(path)?;
    Ok(socket)
}

fn is_reconnectable(error: &io::Error) -> bool {
    matches!(
        Errno::from_io_error(error),
        Some(Errno::CONNREFUSED | Errno::NOTCONN | Errno::NOENT)
    )
}

/// Sends one entry: as a datagram, or through a sealed memfd when it is too
/// large for one.
fn send_entry(socket: &UnixDatagram, entry: &[u8]) -> io::Result<()> {
    match socket.send(entry) {
        Ok(_) => Ok(()),
        Err(error)
            if matches!(
                Errno::from_io_error(&error),
                Some(Errno::MSGSIZE | Errno::NOBUFS)
            ) =>
        {
            send_memfd(socket, entry)
        }
        Err(error) => Err(error),
    }
}

fn send_memfd(socket: &UnixDatagram, entry: &[u8]) -> io::Result<()> {
    let fd = rustix::fs::memfd_create(
        "procexit-journal",
        MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
    )?;
    let mut file = std::fs::File::from(fd);
    file.write_all(entry)?;
    // journald accepts only a sealed memfd: it must not change under it.
    rustix::fs::fcntl_add_seals(
        &file,
        SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE | SealFlags::SEAL,
    )?;
    let fds = [std::os::fd::AsFd::as_fd(&file)];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
        return Err(io::Error::other(
            "control buffer too small for one descriptor",
        ));
    }
    rustix::net::sendmsg(
        socket,
        &[IoSlice::new(&[])],
        &mut control,
        SendFlags::empty(),
    )?;
    Ok(())
}

/// A one-line summary for people: `sh[1234] exited with code 42`.
fn summary(message: &Message<'_>) -> String {
    match message {
        Message::Exit(exit) => {
            let who = format!("{}[{}]", exit.name.as_deref().unwrap_or("?"), exit.pid);
            let status = if let Some(signal) = exit.status.signal() {
                format!("killed by signal {signal}")
            } else if let Some(code) = exit.status.code() {
                format!("exited with code {code}")
            } else {
                "exited".to_string()
            };
            match exit.status_name() {
                Some(name) => format!("{who} {status} ({name})"),
                None => format!("{who} {status}"),
            }
        }
        Message::Lost { count, reason } => {
            format!("{count} exits lost ({})", reason.as_str())
        }
        other => format!(
            "procexit {}: {}",
            other.type_name(),
            String::from_utf8_lossy(&crate::json::line(other))
        ),
    }
}

/// The native-protocol entry of one record.
pub fn entry(message: &Message<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(1536);
    push_field(&mut out, "MESSAGE", &summary(message));
    let priority = if is_warning(message) { "4" } else { "6" };
    push_field(&mut out, "PRIORITY", priority);
    push_field(&mut out, "SYSLOG_IDENTIFIER", "procexit");
    let mut number = Vec::new();
    for (key, value) in message.fields() {
        let name = format!("PROCEXIT_{}", field_name(key));
        match value {
            Value::Null => {}
            Value::Text(text) => push_field(&mut out, &name, text),
            Value::User(user) => push_field(&mut out, &name, &user.to_string()),
            Value::Time(time) => push_field(&mut out, &name, procexit::Rfc3339::new(time).as_str()),
            other => {
                number.clear();
                crate::json::write_value(&mut number, other);
                push_field(&mut out, &name, &String::from_utf8_lossy(&number));
            }
        }
    }
    out
}

/// A JSON key as a journal field name: upper-case letters, digits and `_`.
fn field_name(key: &str) -> String {
    key.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

fn push_field(out: &mut Vec<u8>, name: &str, value: &str) {
    // Field names are at most 64 characters.
    let name = &name[..name.len().min(64)];
    out.extend_from_slice(name.as_bytes());
    if value.contains('\n') {
        out.push(b'\n');
        out.extend_from_slice(&(value.len() as u64).to_le_bytes());
    } else {
        out.push(b'=');
    }
    out.extend_from_slice(value.as_bytes());
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use procexit::{ExitStatus, ProcessExit, Source};

    #[test]
    fn every_known_key_becomes_a_field() {
        let mut exit = ProcessExit::new(7, ExitStatus::Code(3), Source::LinuxConnector);
        exit.name = Some("sh".into());
        exit.user = Some(procexit::User::Uid(1000));
        exit.exit_time = Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs(2));
        let text = String::from_utf8(entry(&Message::Exit(&exit))).unwrap();
        assert_eq!(
            text,
            "MESSAGE=sh[7] exited with code 3\nPRIORITY=4\nSYSLOG_IDENTIFIER=procexit\n\
             PROCEXIT_TYPE=exit\nPROCEXIT_PID=7\nPROCEXIT_EXIT_CODE=3\n\
             PROCEXIT_CORE_DUMPED=false\nPROCEXIT_KIND=exited\nPROCEXIT_NAME=sh\n\
             PROCEXIT_USER=1000\nPROCEXIT_EXIT_TIME=1970-01-01T00:00:02.000000Z\n\
             PROCEXIT_SOURCE=linux-connector\n"
        );
    }

    #[test]
    fn values_with_newlines_carry_their_length() {
        let mut out = vec![];
        push_field(&mut out, "PROCEXIT_COMMAND_LINE", "a\nb");
        assert_eq!(out, b"PROCEXIT_COMMAND_LINE\n\x03\0\0\0\0\0\0\0a\nb\n");
    }

    #[test]
    fn messages_name_process_and_status() {
        let mut exit = ProcessExit::new(
            12,
            ExitStatus::Signal {
                signal: 9,
                core_dumped: false,
            },
            Source::LinuxEbpf,
        );
        exit.name = Some("sh".into());
        assert_eq!(
            summary(&Message::Exit(&exit)),
            "sh[12] killed by signal 9 (SIGKILL)"
        );
        exit.status = ExitStatus::Code(42);
        assert_eq!(summary(&Message::Exit(&exit)), "sh[12] exited with code 42");
        let lost = Message::Lost {
            count: 3,
            reason: procexit::LossReason::Overrun,
        };
        assert_eq!(summary(&lost), "3 exits lost (overrun)");
    }
}
