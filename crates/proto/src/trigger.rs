//! Triggers: single bytes written to a service's trigger socket (Postfix's letters).
//! A trigger carries no data; a lost trigger only delays work until the next wakeup.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

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

/// Sends trigger bytes to the socket at `path` and closes the connection.
pub fn send(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut s = UnixStream::connect(path)?;
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(bytes)
}
