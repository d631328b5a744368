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
