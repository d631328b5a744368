//! posthorn-proto: the typed IPC between posthorn daemons.
//!
//! Every conversation runs over a Unix stream socket below `queue_directory`
//! (`private/NAME`, or `public/NAME` for services unprivileged users may reach). A
//! connection is long-lived and carries many requests, one after another.
//!
//! | client        | server (socket)      | protocol                  | messages |
//! |---------------|----------------------|---------------------------|----------|
//! | pickup, bounce (later smtpd) | cleanup (`private/cleanup`) | [`cleanup`] | queue-file records in, `Queued`/`Failed` out |
//! | qmgr          | local, virtual (`private/local`, `private/virtual`) | [`delivery`] | `Deliver` in, per-recipient `Status` out |
//! | qmgr          | bounce (`private/bounce`) | [`bounce`] | `Notify` in, `Sent`/`Failed` out |
//! | cleanup, postdrop, master, posthorn flush | qmgr (`public/qmgr`), pickup (`public/pickup`) | [`trigger`] | single bytes |
//! | postqueue    | showq (`public/showq`) | `showq_protocol` (defined in posthorn-postqueue) | listing frames out |
//!
//! Framing: `length (u32, big-endian) | kind (u8) | fields`, each field `length (u32) | bytes`.
//! A decoder consumes the whole frame and rejects unknown kinds, missing or extra fields,
//! and frames over [`MAX_FRAME`]. Every server first sends a [`Hello`] naming its protocol
//! and version, so a client never talks to the wrong kind of server.

pub mod bounce;
pub mod cleanup;
pub mod delivery;
mod frame;
pub mod trigger;

pub use frame::{Conn, Frame, FrameReader, Hello, MAX_FRAME, ProtoError, split_frame};

/// Service names: the socket names under `private/` and `public/`.
pub mod service {
    /// The cleanup service (private).
    pub const CLEANUP: &str = "cleanup";
    /// The queue manager's trigger socket (public).
    pub const QMGR: &str = "qmgr";
    /// The pickup trigger socket (public).
    pub const PICKUP: &str = "pickup";
    /// Local delivery (private).
    pub const LOCAL: &str = "local";
    /// Virtual mailbox delivery (private).
    pub const VIRTUAL: &str = "virtual";
    /// Notices (private).
    pub const BOUNCE: &str = "bounce";
}
