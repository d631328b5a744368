//! posthorn-smtp-proto: the SMTP protocol without I/O.
//!
//! - [`command`]: parsing command lines (MAIL/RCPT paths, ESMTP parameters, xtext).
//! - [`reply`]: replies with enhanced status codes, in wire format.
//! - [`data`]: DATA and BDAT content to the stored form (LF lines), with the SMTP smuggling
//!   defence.
//! - [`server`]: the server session state machine that smtpd and `sendmail -bs` drive.
//!
//! Inputs are bytes from a peer that is presumed hostile: nothing here panics on input, and
//! every error is the reply the peer gets.

pub mod command;
pub mod data;
pub mod reply;
pub mod server;

pub use reply::Reply;
