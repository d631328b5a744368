//! Triggers: single bytes written to a service's trigger socket (Postfix's letters).
//! A trigger carries no data; a lost trigger only delays work until the next wakeup.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::Path;

/// Wake up and do the regular work.
pub const WAKEUP: u8 = b'W';
/// Scan the incoming queue.
pub const SCAN_INCOMING: u8 = b'I';
/// Scan the deferred queue.
pub const SCAN_DEFERRED: u8 = b'D';
/// Scan all queues, ignoring retry times (flush).
pub const SCAN_ALL: u8 = b'A';
/// Forget dead-destination state.
pub const FLUSH_DEAD: u8 = b'F';
/// Retry one deferred message now: `i`, the queue ID, `\n` (postqueue -i).
pub const FLUSH_ID: u8 = b'i';
/// Retry the deferred mail of one destination now: `s`, the domain, `\n` (postqueue -s).
pub const FLUSH_SITE: u8 = b's';

/// The longest argument a request trigger (`i`, `s`) may carry.
pub const MAX_ARG: usize = 255;

/// Encodes a request trigger with an argument (a queue ID or a site).
pub fn request(kind: u8, arg: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(arg.len() + 2);
    v.push(kind);
    v.extend(arg.bytes().filter(|&b| b != b'\n'));
    v.push(b'\n');
    v
}

/// What a stream of trigger bytes asks for.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Requests {
    /// Scan incoming.
    pub incoming: bool,
    /// Scan deferred (respecting retry times).
    pub deferred: bool,
    /// Scan everything now.
    pub all: bool,
    /// Deferred messages to retry now.
    pub ids: Vec<String>,
    /// Destinations whose deferred mail to retry now.
    pub sites: Vec<String>,
}

/// Consumes the complete triggers at the front of `buf` into `out`; an incomplete request
/// stays in `buf` for the next read. Returns false when the peer sent something invalid
/// (an over-long argument): the caller drops that connection.
pub fn parse(buf: &mut Vec<u8>, out: &mut Requests) -> bool {
    let mut i = 0;
    while i < buf.len() {
        match buf[i] {
            SCAN_INCOMING => out.incoming = true,
            SCAN_DEFERRED => out.deferred = true,
            SCAN_ALL => out.all = true,
            WAKEUP => {
                out.incoming = true;
                out.deferred = true;
            }
            k @ (FLUSH_ID | FLUSH_SITE) => {
                let Some(end) = buf[i + 1..].iter().position(|&b| b == b'\n') else {
                    if buf.len() - i > MAX_ARG + 2 {
                        return false;
                    }
                    break;
                };
                if end > MAX_ARG {
                    return false;
                }
                let arg = String::from_utf8_lossy(&buf[i + 1..i + 1 + end]).into_owned();
                if k == FLUSH_ID {
                    out.ids.push(arg)
                } else {
                    out.sites.push(arg)
                }
                i += end + 1;
            }
            _ => {}
        }
        i += 1;
    }
    buf.drain(..i.min(buf.len()));
    true
}

/// Whether a byte is a known trigger.
pub fn is_trigger(b: u8) -> bool {
    matches!(
        b,
        WAKEUP | SCAN_INCOMING | SCAN_DEFERRED | SCAN_ALL | FLUSH_DEAD
    )
}

/// Connects to a trigger socket without ever blocking: when the server's listen backlog is
/// full (it is busy and has triggers waiting anyway) this fails with `WouldBlock` instead of
/// stalling the caller (master, cleanup). The stream is non-blocking.
pub fn connect_nonblocking(path: &Path) -> std::io::Result<UnixStream> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, UnixAddr, connect, socket};
    let fd = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    let addr = UnixAddr::new(path)?;
    connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &addr)?;
    Ok(UnixStream::from(fd))
}

/// Sends trigger bytes to the socket at `path` and closes the connection; never blocks
/// (a trigger that cannot be delivered now is dropped: the next one or the next wakeup
/// does the work).
pub fn send(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut s = connect_nonblocking(path)?;
    s.write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bytes_and_requests_across_reads() {
        let mut out = Requests::default();
        let mut buf = b"Ii4jZQ".to_vec();
        assert!(parse(&mut buf, &mut out));
        assert!(out.incoming && out.ids.is_empty());
        assert_eq!(buf, b"i4jZQ");
        buf.extend_from_slice(b"0z1\nsExample.ORG\nD");
        assert!(parse(&mut buf, &mut out));
        assert!(buf.is_empty());
        assert_eq!(out.ids, vec!["4jZQ0z1"]);
        assert_eq!(out.sites, vec!["Example.ORG"]);
        assert!(out.deferred);
        let mut long = vec![FLUSH_SITE];
        long.extend(std::iter::repeat_n(b'x', 300));
        assert!(!parse(&mut long, &mut Requests::default()));
        assert_eq!(request(FLUSH_ID, "a\nb"), b"iab\n");
    }
}
