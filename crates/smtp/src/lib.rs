//! posthorn-smtp: the SMTP delivery client (Postfix's smtp(8)) as a library, so that the
//! `smtp` program and tests drive the same code.
//!
//! Role: qmgr hands the `smtp` and `relay` transports a queue file and some of its
//! recipients over `delivery_protocol`; this crate finds the servers of the next hop,
//! talks SMTP to them, and answers one status per recipient with Postfix's texts.
//!
//! Inputs: delivery requests; queue files (read-only); DNS (MX, A, AAAA); the servers'
//! replies. Outputs: SMTP sessions (plain or TLS), statuses, `warning:`/info log lines.
//!
//! Modules, in the order a delivery uses them:
//! - [`service`]: the protocol loop with qmgr and reading the queue file.
//! - [`deliver`]: one request from start to end ([`Agent::deliver`]).
//! - [`route`]: next-hop syntax and the servers to try (MX, null MX, addresses, limits).
//! - [`session`]: the SMTP dialogue with one server.
//! - [`conn`]: the socket, TLS switch and reply reading with time limits.
//! - [`reply`]: the strict reply parser.
//! - [`content`]: stored content to DATA form.
//! - [`tls`]: the rustls client configuration and TLS log texts.
//! - [`cache`]: idle sessions kept for reuse.
//! - [`settings`]: the parameters, read once per process.
//!
//! Library use (as the tests do):
//! ```no_run
//! use posthorn_smtp::{Agent, MemoryContent, NativeResolver, Recipient, Request, SmtpSettings};
//! let mut agent = Agent::new(SmtpSettings::defaults("me.example"), Box::new(NativeResolver));
//! let content = MemoryContent::new(b"Subject: hi\n\nhello\n".to_vec());
//! let rcpts = [Recipient { offset: 1, address: "u@example.org".into(), notify: None, orcpt: None }];
//! let statuses = agent.deliver(&Request {
//!     queue_id: "ABC", nexthop: "[127.0.0.1]:2525", sender: "s@example.net",
//!     envid: None, ret: None, smtputf8: false, rcpts: &rcpts, content: &content,
//! });
//! ```

pub mod cache;
pub mod conn;
pub mod content;
pub mod deliver;
pub mod reply;
pub mod route;
pub mod service;
pub mod session;
pub mod settings;
pub mod tls;

pub use deliver::Agent;
pub use route::{NativeResolver, NextHop, Resolver};
pub use session::{Content, MemoryContent, Recipient, Request};
pub use settings::{SmtpSettings, TlsLevel};
