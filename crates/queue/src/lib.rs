//! posthorn-queue: the on-disk mail queue.
//!
//! This crate is the only code that knows paths below `queue_directory`. It owns:
//! - [`QueueName`] and [`QueueLayout`]: the state directories (`maildrop/`, `incoming/`,
//!   `active/`, `deferred/`, `hold/`, `corrupt/`, the `defer/` and `bounce/` logs), their
//!   hashing by queue ID (`hash_queue_names`, `hash_queue_depth`) and their owners and modes;
//! - [`QueueId`]: unique, sortable, file-name-safe queue IDs (Postfix's long-ID scheme);
//! - [`record`]: the record format of queue files (type, length, payload, CRC32 per record);
//! - [`file`]: creating, committing, reading and updating queue files under the durability
//!   contract below.
//!
//! # Durability contract (every fsync, in one place)
//! 1. A new queue file is created under its final name with mode 0600 ("incomplete").
//! 2. [`file::NewQueueFile::commit`] writes the last record, sets the owner-execute bit
//!    (mode 0700, or 0744 in `maildrop/`) which marks the file complete, then **fsyncs the
//!    file** and **fsyncs its directory**, so both data and directory entry are on stable
//!    storage before the caller acknowledges the message (SMTP 250, sendmail exit 0).
//!    A crash before that leaves an incomplete file: readers skip it (no execute bit) or
//!    reject it (no END record, bad CRC) and it is quarantined or removed, never delivered.
//! 3. Moves between states are `rename(2)`s. A rename is not fsynced: after a crash the file
//!    is in the old or the new directory, and either is a valid state from which delivery
//!    resumes. Nothing is ever lost, at worst retried.
//! 4. A recipient's completion is recorded by overwriting its record type `R` with `D` in
//!    place ([`file::mark_done`]), without fsync, as Postfix does: a crash may repeat that
//!    delivery (at-least-once), never skip it.
//! 5. Defer logs (`defer/`), which hold the reason for each deferred recipient, are appended
//!    and fsynced ([`file::append_log`]); they only feed reports and can be rebuilt.
//! 6. A queue file is unlinked only when every recipient has a final status; a bounce notice
//!    is itself a queue file committed (step 2) before the bounced recipients are marked done.

pub mod file;
mod id;
mod layout;
pub mod record;

pub use id::{QueueId, QueueIdError};
pub use layout::{DirOwner, QueueLayout, QueueName};

/// Errors reading or writing queue files.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// An operating-system error on a queue path.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory involved.
        path: std::path::PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file's records do not form a valid queue file (torn, damaged or forged).
    #[error("{path}: corrupt queue file: {reason}")]
    Corrupt {
        /// The file involved.
        path: std::path::PathBuf,
        /// What is wrong, with the byte offset where known.
        reason: String,
    },
}

impl QueueError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<std::path::PathBuf>, source: std::io::Error) -> Self {
        QueueError::Io {
            path: path.into(),
            source,
        }
    }

    /// True when the file itself is bad (move it to `corrupt/`), false for I/O trouble.
    pub fn is_corrupt(&self) -> bool {
        matches!(self, QueueError::Corrupt { .. })
    }
}
