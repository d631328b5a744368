//! posthorn-message: the RFC 5322 / RFC 5321 pieces shared by cleanup, local and bounce.
//!
//! Inputs are message texts with LF line endings and addresses as strings; outputs are header
//! blocks, addresses in Postfix's internal (unquoted) form, fixed-up headers and complete
//! delivery status notifications. Nothing here does I/O except reading the time zone file
//! (`/etc/localtime` or `$TZ`) once per process in [`time`].
//!
//! - [`header`]: split a message into its header block and body offset ([`split_headers`]).
//! - [`address`]: address lists from headers, quoting, extensions ([`parse_address_list`]).
//! - [`fixup`]: cleanup's missing Message-Id/Date/From and pickup's Received: header.
//! - [`dsn`]: RFC 3464 notices in Postfix's layout ([`compose_dsn`]).
//! - [`time`]: local time from TZif files and POSIX TZ strings, Postfix's date formats.
//!
//! Error policy: parsing never fails and never panics on input; junk is skipped or carried
//! through (see each function). Only [`time::TimeZone`] parsing reports errors ([`time::TzError`]),
//! and its callers fall back to UTC.

pub mod address;
pub mod dsn;
pub mod fixup;
pub mod header;
pub mod time;

pub use address::{
    format_phrase, parse_address_list, qualify, quote_local_part, split_address, split_extension,
    unquote_address,
};
pub use dsn::{
    DsnAction, DsnOptions, DsnRecipient, DsnRequest, NoticeKind, compose_dsn, compose_dsn_with,
    is_8bit,
};
pub use fixup::{
    Fixups, MAIL_NAME, MAILER_DAEMON, add_missing_headers, add_missing_headers_in, message_id,
    received_local, received_local_in, rfc2822_date,
};
pub use header::{Header, HeaderBlock, split_header_ranges, split_headers, strip_mbox_from_line};
