//! `--syslog unix:PATH|udp:HOST:PORT|tcp:HOST:PORT`: RFC 5424 messages.
//!
//! One message per record:
//!
//! ```text
//! <PRI>1 TIMESTAMP HOSTNAME procexit PROCID MSGID - MSG
//! ```
//!
//! - PRI: facility daemon (3), severity warning (4) for failures and losses,
//!   informational (6) otherwise;
//! - TIMESTAMP: the exit time of an exit record, the send time otherwise;
//! - MSGID: the record's `type` (`exit`, `lost`, `stats`);
//! - no structured data (`-`): MSG is the JSON record itself, the same line
//!   `--json` and `--output` write, so every pipeline parses one format and
//!   keys added later need no new SD-PARAM (structured data would also need
//!   a registered enterprise number in its SD-ID).
//!
//! Framing: one datagram per message on `unix:` and `udp:` (RFC 5426),
//! octet counting (`LEN SP MSG`, RFC 6587 3.4.1) on `tcp:`.
//!
//! UDP promises little: the socket is connected, so when the target's host
//! answers a datagram with ICMP "port unreachable" the kernel reports it
//! (right after the send on loopback, at a later send or at the end
//! otherwise), and that datagram is counted as not written. A datagram
//! dropped on the way, or by a host that sends no ICMP, goes uncounted, and
//! refusals that arrive together are reported once. Use `tcp:` or `unix:`
//! where every record must be accounted for.

use std::fmt;
use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use procexit::schema::Message;

use super::{is_warning, Health, Sink};

/// Facility `daemon`.
const FACILITY: u8 = 3;
/// How long `finish` waits for a refusal of the last UDP datagram.
const UDP_LAST_ANSWER: Duration = Duration::from_millis(100);

/// How long a TCP connect or write may block before it counts as failed.
const TCP_TIMEOUT: Duration = Duration::from_secs(5);

/// Where syslog messages go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A local datagram socket (`/dev/log`, an rsyslog imuxsock socket).
    Unix(PathBuf),
    /// A syslog server over UDP.
    Udp(String),
    /// A syslog server over TCP, octet-counted.
    Tcp(String),
}

impl FromStr for Target {
    type Err = String;

    fn from_str(text: &str) -> Result<Target, String> {
        let usage = || format!("{text:?}: use unix:PATH, udp:HOST:PORT or tcp:HOST:PORT");
        let (scheme, rest) = text.split_once(':').ok_or_else(usage)?;
        if rest.is_empty() {
            return Err(usage());
        }
        let host_port = |rest: &str| -> Result<String, String> {
            let (host, port) = rest.rsplit_once(':').ok_or_else(usage)?;
            if host.is_empty() || port.parse::<u16>().is_err() {
                return Err(usage());
            }
            Ok(rest.to_string())
        };
        match scheme {
            "unix" => Ok(Target::Unix(PathBuf::from(rest))),
            "udp" => Ok(Target::Udp(host_port(rest)?)),
            "tcp" => Ok(Target::Tcp(host_port(rest)?)),
            _ => Err(usage()),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Unix(path) => write!(f, "unix:{}", path.display()),
            Target::Udp(address) => write!(f, "udp:{address}"),
            Target::Tcp(address) => write!(f, "tcp:{address}"),
        }
    }
}

enum Connection {
    #[cfg(unix)]
    Unix(std::os::unix::net::UnixDatagram),
    Udp(UdpSocket),
    Tcp(TcpStream),
}

/// Sends records to a syslog server.
pub struct SyslogSink {
    target: Target,
    describe: String,
    hostname: String,
    connection: Option<Connection>,
    health: Health,
}

impl SyslogSink {
    /// Connects to `target` (fails at once if it cannot be reached).
    pub fn connect(target: Target) -> anyhow::Result<SyslogSink> {
        let connection = connect(&target)
            .map_err(|error| anyhow::anyhow!("cannot reach the syslog server {target}: {error}"))?;
        Ok(SyslogSink {
            describe: format!("syslog {target}"),
            target,
            hostname: hostname(),
            connection: Some(connection),
            health: Health::default(),
        })
    }

    fn deliver(&mut self, message: &[u8]) -> io::Result<()> {
        // A dropped TCP connection or a restarted local server fails once:
        // connect again and retry.
        for attempt in 0..2 {
            let connection = match &mut self.connection {
                Some(connection) => connection,
                None => self.connection.insert(connect(&self.target)?),
            };
            let result = match connection {
                #[cfg(unix)]
                Connection::Unix(socket) => socket.send(message).map(drop),
                // A refusal reported here is an earlier datagram's (the
                // kernel did not send this one): count it, send this again.
                Connection::Udp(socket) => match socket.send(message) {
                    Err(error) if error.kind() == io::ErrorKind::ConnectionRefused => {
                        self.health
                            .refused_after_delivery(&self.describe, 1, &error);
                        socket.send(message).map(drop)
                    }
                    result => result.map(drop),
                },
                Connection::Tcp(stream) => {
                    let mut framed = format!("{} ", message.len()).into_bytes();
                    framed.extend_from_slice(message);
                    stream.write_all(&framed)
                }
            };
            match result {
                Ok(()) => return Ok(()),
                Err(error) if attempt == 0 => {
                    self.connection = None;
                    let _ = error;
                }
                Err(error) => return Err(error),
            }
        }
        unreachable!("the second attempt returns")
    }
}

impl Sink for SyslogSink {
    fn describe(&self) -> &str {
        &self.describe
    }

    fn send(&mut self, record: &Message<'_>) {
        let message = message(record, &self.hostname, SystemTime::now());
        match self.deliver(&message) {
            // On loopback the refusal of this datagram is already known.
            Ok(()) => match self.udp_refusal() {
                Some(error) => self.health.failed(&self.describe, 1, &error),
                None => self.health.delivered(&self.describe, 1),
            },
            Err(error) => {
                self.connection = None;
                self.health.failed(&self.describe, 1, &error);
            }
        }
    }

    fn finish(&mut self) {
        match &mut self.connection {
            Some(Connection::Tcp(stream)) => {
                let _ = stream.flush();
                let _ = stream.shutdown(std::net::Shutdown::Write);
            }
            Some(Connection::Udp(_)) => {
                // Gives a remote host's answer to the last datagram a moment.
                std::thread::sleep(UDP_LAST_ANSWER);
                if let Some(error) = self.udp_refusal() {
                    self.health
                        .refused_after_delivery(&self.describe, 1, &error);
                }
            }
            _ => {}
        }
    }

    fn health(&self) -> &Health {
        &self.health
    }
}

impl SyslogSink {
    /// UDP: a refusal of a datagram sent (ICMP port unreachable, pending
    /// on the connected socket), taken from the socket.
    fn udp_refusal(&self) -> Option<io::Error> {
        match &self.connection {
            Some(Connection::Udp(socket)) => socket.take_error().ok().flatten(),
            _ => None,
        }
    }
}

fn connect(target: &Target) -> io::Result<Connection> {
    match target {
        #[cfg(unix)]
        Target::Unix(path) => {
            let socket = std::os::unix::net::UnixDatagram::unbound()?;
            socket.connect(path)?;
            Ok(Connection::Unix(socket))
        }
        #[cfg(not(unix))]
        Target::Unix(_) => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "unix: sockets are for Unix; use udp: or tcp:",
        )),
        Target::Udp(address) => {
            let address = resolve(address)?;
            let local: SocketAddr = if address.is_ipv4() {
                ([0, 0, 0, 0], 0).into()
            } else {
                (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
            };
            let socket = UdpSocket::bind(local)?;
            socket.connect(address)?;
            Ok(Connection::Udp(socket))
        }
        Target::Tcp(address) => {
            let stream = TcpStream::connect_timeout(&resolve(address)?, TCP_TIMEOUT)?;
            stream.set_write_timeout(Some(TCP_TIMEOUT))?;
            stream.set_nodelay(true)?;
            Ok(Connection::Tcp(stream))
        }
    }
}

fn resolve(address: &str) -> io::Result<SocketAddr> {
    address
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{address} has no address")))
}

/// The RFC 5424 message of one record.
pub fn message(record: &Message<'_>, hostname: &str, now: SystemTime) -> Vec<u8> {
    let severity = if is_warning(record) { 4 } else { 6 };
    let time = match record {
        Message::Exit(exit) => exit.exit_time.unwrap_or(now),
        _ => now,
    };
    let mut out = format!(
        "<{}>1 {} {hostname} procexit {} {} - ",
        FACILITY * 8 + severity,
        procexit::Rfc3339::new(time).as_str(),
        std::process::id(),
        header_field(record.type_name(), 32),
    )
    .into_bytes();
    crate::json::write_message(&mut out, record);
    out
}

/// RFC 5424 header fields are printable US-ASCII without spaces.
fn header_field(text: &str, max: usize) -> String {
    let field: String = text
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max)
        .collect();
    if field.is_empty() {
        "-".into()
    } else {
        field
    }
}

fn hostname() -> String {
    #[cfg(unix)]
    let name = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    #[cfg(not(unix))]
    let name = std::env::var("COMPUTERNAME").unwrap_or_default();
    header_field(&name, 255)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn targets_parse() {
        assert_eq!("unix:/dev/log".parse(), Ok(Target::Unix("/dev/log".into())));
        assert_eq!(
            "udp:127.0.0.1:514".parse(),
            Ok(Target::Udp("127.0.0.1:514".into()))
        );
        assert_eq!(
            "tcp:[::1]:6514".parse(),
            Ok(Target::Tcp("[::1]:6514".into()))
        );
        assert!("tcp:localhost".parse::<Target>().is_err());
        assert!("udp:host:99999".parse::<Target>().is_err());
        assert!("http://x".parse::<Target>().is_err());
        assert!("unix:".parse::<Target>().is_err());
    }

    #[test]
    fn messages_are_rfc5424_with_the_json_record() {
        let mut exit = procexit::ProcessExit::new(
            7,
            procexit::ExitStatus::Code(3),
            procexit::Source::LinuxConnector,
        );
        exit.exit_time = Some(UNIX_EPOCH + Duration::from_micros(1_795_983_025_158_123));
        let record = Message::Exit(&exit);
        let text = String::from_utf8(message(&record, "host1", UNIX_EPOCH)).unwrap();
        let json = String::from_utf8(crate::json::line(&record)).unwrap();
        assert_eq!(
            text,
            format!(
                "<28>1 2026-11-29T20:10:25.158123Z host1 procexit {} exit - {json}",
                std::process::id()
            )
        );
        let stats = procexit::Stats::default();
        let text = message(
            &Message::Stats(&stats),
            "host1",
            UNIX_EPOCH + Duration::from_micros(1_500_000),
        );
        let text = String::from_utf8(text).unwrap();
        assert!(
            text.starts_with("<30>1 1970-01-01T00:00:01.500000Z host1 procexit "),
            "{text}"
        );
        assert!(text.ends_with(r#" stats - {"type":"stats","seen":0,"filtered":0,"delivered":0,"dropped":0,"lost":0,"overruns":0,"anomalies":0,"session_gaps":0,"evicted":0}"#), "{text}");
    }
}
