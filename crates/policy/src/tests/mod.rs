//! Tests of the public API: restriction lists end to end, from main.cf text to replies.
//! Helpers here; the tests by theme in the submodules.

mod access;
mod config;
mod recipients;
mod relay;
mod stages;

use std::path::Path;

use super::*;

/// The part of main.cf every test shares: a host `mx.example.com` that listens on
/// loopback, with two aliases.
const BASE: &str = "myhostname = mx.example.com\nmydomain = example.com\n\
    inet_interfaces = loopback-only\n\
    alias_maps = inline:{ postmaster=root, info=root, sales=root }\n";

/// A policy from BASE plus `extra`.
fn policy(extra: &str) -> Policy {
    Policy::from_main_cf(&format!("{BASE}{extra}")).expect("test main.cf builds a policy")
}

/// The error of BASE plus `extra`.
fn policy_err(extra: &str) -> PolicyError {
    Policy::from_main_cf(&format!("{BASE}{extra}")).expect_err("test main.cf must be refused")
}

/// One session's facts, built up as a test goes.
struct Session {
    /// The client.
    client: Client,
    /// HELO argument.
    helo: Option<String>,
    /// MAIL FROM.
    sender: Option<String>,
    /// Whether the client pipelined without permission.
    pipelining: bool,
}

impl Session {
    /// A client with an address and name.
    fn new(addr: &str, name: &str) -> Session {
        Session {
            client: Client {
                addr: addr.parse().unwrap(),
                name: name.to_owned(),
                port: 4711,
            },
            helo: None,
            sender: None,
            pipelining: false,
        }
    }

    /// A client outside mynetworks without a host name.
    fn outsider() -> Session {
        Session::new("192.0.2.10", "unknown")
    }

    /// A client inside the default mynetworks.
    fn insider() -> Session {
        Session::new("127.0.0.1", "localhost")
    }

    /// Sets the HELO name.
    fn helo(mut self, name: &str) -> Session {
        self.helo = Some(name.to_owned());
        self
    }

    /// Sets the sender.
    fn from(mut self, sender: &str) -> Session {
        self.sender = Some(sender.to_owned());
        self
    }

    /// Checks `stage` (with `rcpt` as RCPT TO).
    fn at(&self, p: &Policy, stage: Stage, rcpt: Option<&str>) -> Result<(), Reject> {
        let facts = Facts {
            client: &self.client,
            helo: self.helo.as_deref(),
            sender: self.sender.as_deref(),
            recipient: rcpt,
            protocol: "ESMTP",
            unauth_pipelining: self.pipelining,
        };
        p.check(stage, &facts)
    }

    /// Checks RCPT TO `rcpt`.
    fn rcpt(&self, p: &Policy, rcpt: &str) -> Result<(), Reject> {
        self.at(p, Stage::Rcpt, Some(rcpt))
    }
}

/// The reply line of a refusal (panics when the check passed).
fn line(result: Result<(), Reject>) -> String {
    result.expect_err("expected a refusal").reply_line()
}

/// Builds `dir/name.db` from pairs and returns the `hash:` spec.
fn hash_table(dir: &Path, name: &str, pairs: &[(&str, &str)]) -> String {
    let source = dir.join(name);
    let entries = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()));
    posthorn_tables::build_hash(&dir.join(format!("{name}.db")), entries).unwrap();
    format!("hash:{}", source.display())
}
