//! posthorn-policy: smtpd's restriction lists, with Postfix's names, order and replies.
//!
//! Role: decide whether smtpd accepts a client, HELO name, sender, recipient, DATA command
//! and message end, as Postfix's `smtpd_check.c` does. smtpd builds one [`Policy`] from
//! main.cf at start-up and calls [`Policy::check`] at each [`Stage`] with the [`Facts`]
//! it knows; it also asks about `mynetworks`, its exception lists and local domains.
//!
//! Inputs: main.cf parameters ([`Policy::from_config`]): `smtpd_client_restrictions`,
//! `smtpd_helo_restrictions`, `smtpd_sender_restrictions`, `smtpd_relay_restrictions`,
//! `smtpd_recipient_restrictions`, `smtpd_data_restrictions`,
//! `smtpd_end_of_data_restrictions`, `smtpd_restriction_classes`, `smtpd_delay_reject`,
//! `smtpd_reject_unlisted_recipient`, `smtpd_reject_unlisted_sender`, `mynetworks`,
//! `mydestination`, `inet_interfaces`, `proxy_interfaces`, `virtual_alias_domains`,
//! `virtual_mailbox_domains`, `relay_domains`, `local_recipient_maps`, `alias_maps` (through
//! `local_recipient_maps`), `virtual_alias_maps`, `virtual_mailbox_maps`,
//! `relay_recipient_maps`, the canonical maps, `recipient_delimiter`,
//! `parent_domain_matches_subdomains`, `smtpd_null_access_lookup_key`, the
//! `*_reject_code` / `*_defer_code` parameters and `soft_bounce`; the lookup tables they
//! name (`hash:`, `inline:`, `static:`, `unix:passwd.byname`, with or without `proxy:`).
//!
//! Outputs: `Ok(())` or the first [`Reject`] (code, enhanced status, text, e.g.
//! `554 5.7.1 <a@b>: Relay access denied`). smtpd logs rejects (it knows the queue ID);
//! this crate logs only `reject_warning` (from `warn_if_reject`) and access table
//! `INFO`/`WARN` actions, in Postfix's `NOQUEUE: reject_warning: RCPT from ...` form.
//!
//! Semantics (Postfix's): within a list the first permit ends that list and evaluation
//! goes on with the next list; the first reject or defer ends everything; `DUNNO` and
//! restrictions that do not apply go on. With `smtpd_delay_reject = yes` the client, HELO
//! (when a HELO was given) and sender lists run at RCPT time before the relay and
//! recipient lists, and nothing is checked at CONNECT, HELO and MAIL; with `no` they run at
//! their own stage. A recipient passes only when both the relay and the recipient list
//! pass; then `smtpd_reject_unlisted_recipient` checks the recipient tables. A bare
//! `postmaster` recipient is always accepted (RFC 5321).
//!
//! Error policy: a configuration that cannot be parsed (unknown or unsupported restriction,
//! missing or unopenable access table, malformed network, no relay control in the relay
//! and recipient lists) is a [`PolicyError`]; smtpd then answers `451 4.3.5 Server
//! configuration error`. Recipient tables and table-based domain lists whose file is
//! missing or damaged at start-up are logged and opened again at each lookup. A table that
//! fails at run time never permits: the check answers 451 (`4.3.0 Temporary lookup
//! failure`, or `4.3.5 ... Server configuration error` for access tables, as Postfix).
//!
//! Differences from Postfix: DNS-based and SASL/TLS-based restrictions, policy services,
//! `defer_if_permit`/`defer_if_reject` and the other names in the unsupported list are
//! refused at start-up; access table actions that need the cleanup server (`HOLD`,
//! `DISCARD`, `FILTER`, `REDIRECT`, `BCC`, `PREPEND`) answer 451 4.3.5 and log why. Any
//! local part with `%`, `!` or `@` counts as source-routed (Postfix first applies the
//! percent hack). Bare `type:table` words inside restriction classes are refused.

mod eval;
mod hostname;
mod maps;
mod matchlist;
mod recipients;
mod restrictions;

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use posthorn_config::{Config, ConfigError, parse_bool};
use posthorn_tables::TableError;

use eval::{CLIENT, Checker, Ctx, DATA, EOD, RECIPIENT, SENDER, Verdict};
use matchlist::{ListKind, MatchList};
use recipients::Recipients;
use restrictions::{AccessKind, ParseCtx, Restriction, has_relay_guard, relay_guard_names};

/// The SMTP client, as smtpd knows it after the connection is accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    /// The client's address (IPv4-mapped IPv6 addresses are treated as IPv4).
    pub addr: IpAddr,
    /// The verified host name, or `unknown`.
    pub name: String,
    /// The client's TCP port (shown with `smtpd_client_port_logging = yes`).
    pub port: u16,
}

/// The SMTP stage at which restrictions are applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// The connection was accepted (`smtpd_client_restrictions` without delay).
    Connect,
    /// HELO or EHLO (`smtpd_helo_restrictions` without delay).
    Helo,
    /// MAIL FROM (`smtpd_sender_restrictions` without delay).
    Mail,
    /// RCPT TO: relay and recipient lists (and the delayed ones).
    Rcpt,
    /// DATA (`smtpd_data_restrictions`).
    Data,
    /// The end of the message data (`smtpd_end_of_data_restrictions`).
    EndOfData,
}

/// What smtpd knows when it asks for a decision.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    /// The client.
    pub client: &'a Client,
    /// The HELO/EHLO argument; `None` before HELO/EHLO.
    pub helo: Option<&'a str>,
    /// The MAIL FROM address without `<>`: `Some("")` for the null sender, `None` before
    /// MAIL FROM.
    pub sender: Option<&'a str>,
    /// The RCPT TO address without `<>` (at [`Stage::Rcpt`] only).
    pub recipient: Option<&'a str>,
    /// `SMTP` or `ESMTP` (for logs).
    pub protocol: &'a str,
    /// Whether the client sent commands ahead of a reply it had to wait for
    /// (`reject_unauth_pipelining`).
    pub unauth_pipelining: bool,
}

/// A refusal: the SMTP reply smtpd sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reject {
    /// The SMTP reply code, 4xx or 5xx.
    pub code: u16,
    /// The enhanced status code, e.g. `5.7.1` (its class always matches `code`).
    pub dsn: String,
    /// The text after code and status, e.g. `<a@b>: Relay access denied`.
    pub text: String,
}

impl Reject {
    /// Whether the client may try again later (a 4xx reply).
    pub fn is_temporary(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// The reply line without CRLF, e.g. `554 5.7.1 <a@b>: Relay access denied`.
    pub fn reply_line(&self) -> String {
        format!("{} {} {}", self.code, self.dsn, self.text)
    }
}

impl fmt::Display for Reject {
    /// Formats as [`Reject::reply_line`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.code, self.dsn, self.text)
    }
}

/// Why a configuration cannot be used. Messages name the parameter and the bad word.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// A restriction name Postfix does not know either.
    #[error("{param}: unknown restriction \"{restriction}\"")]
    UnknownRestriction {
        /// The parameter (or restriction class) with the name.
        param: String,
        /// The name as written.
        restriction: String,
    },
    /// A Postfix restriction posthorn does not implement.
    #[error("{param}: restriction \"{restriction}\" is not supported by posthorn")]
    Unsupported {
        /// The parameter with the name.
        param: String,
        /// The name as written.
        restriction: String,
    },
    /// A `check_*_access` without a `type:table` argument.
    #[error("{param}: restriction {restriction}: bad argument \"{}\": need type:table", found.as_deref().unwrap_or(""))]
    MissingTable {
        /// The parameter with the restriction.
        param: String,
        /// The restriction, e.g. `check_sender_access`.
        restriction: String,
        /// The word found instead of a table, if any.
        found: Option<String>,
    },
    /// A bare `type:table` where no `check_*_access` is implied (data lists, classes,
    /// access table results).
    #[error(
        "{param}: specify one of check_client_access, check_helo_access, check_sender_access or check_recipient_access before \"{spec}\""
    )]
    BareTable {
        /// The parameter with the table.
        param: String,
        /// The table spec.
        spec: String,
    },
    /// A lookup table that cannot be opened (or an unsupported table type).
    #[error("{param}: {spec}: {source}")]
    Table {
        /// The parameter with the table.
        param: String,
        /// The table spec (with its restriction).
        spec: String,
        /// What went wrong.
        source: TableError,
    },
    /// A malformed pattern in a match list such as `mynetworks`.
    #[error("{param}: bad pattern \"{pattern}\": {reason}")]
    BadPattern {
        /// The parameter.
        param: String,
        /// The pattern as written.
        pattern: String,
        /// What is wrong.
        reason: String,
    },
    /// A `/file/name` pattern that cannot be read.
    #[error("{param}: cannot read {}: {source}", path.display())]
    File {
        /// The parameter.
        param: String,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Neither the relay nor the recipient list refuses unauthorized relaying.
    #[error(
        "in parameter smtpd_relay_restrictions or smtpd_recipient_restrictions, specify at least one working instance of: {guards}"
    )]
    NoRelayControl {
        /// The restrictions that would do.
        guards: String,
    },
    /// A name in `smtpd_restriction_classes` without a definition.
    #[error("smtpd_restriction_classes: restriction class `{name}' needs a definition")]
    UndefinedClass {
        /// The class name.
        name: String,
    },
    /// main.cf text that does not parse ([`Policy::from_main_cf`]).
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// SMTP reply codes from main.cf.
#[derive(Debug, Clone)]
struct Codes {
    /// `reject_code`.
    reject: i64,
    /// `defer_code`.
    defer: i64,
    /// `relay_domains_reject_code` (defer_unauth_destination: minus 100).
    relay: i64,
    /// `access_map_reject_code`.
    access_reject: i64,
    /// `access_map_defer_code`.
    access_defer: i64,
    /// `invalid_hostname_reject_code`.
    invalid_hostname: i64,
    /// `non_fqdn_reject_code`.
    non_fqdn: i64,
    /// `unknown_local_recipient_reject_code`.
    unknown_local: i64,
    /// `unknown_virtual_alias_reject_code`.
    unknown_virtual_alias: i64,
    /// `unknown_virtual_mailbox_reject_code`.
    unknown_virtual_mailbox: i64,
    /// `unknown_relay_recipient_reject_code`.
    unknown_relay: i64,
}

/// The restriction lists.
#[derive(Debug, Default)]
struct Lists {
    /// `smtpd_client_restrictions`.
    client: Vec<Restriction>,
    /// `smtpd_helo_restrictions`.
    helo: Vec<Restriction>,
    /// `smtpd_sender_restrictions`.
    sender: Vec<Restriction>,
    /// `smtpd_relay_restrictions`.
    relay: Vec<Restriction>,
    /// `smtpd_recipient_restrictions`.
    recipient: Vec<Restriction>,
    /// `smtpd_data_restrictions`.
    data: Vec<Restriction>,
    /// `smtpd_end_of_data_restrictions`.
    eod: Vec<Restriction>,
}

/// smtpd's access policy, built once from main.cf.
#[derive(Debug)]
pub struct Policy {
    /// The restriction lists.
    lists: Lists,
    /// `smtpd_restriction_classes`, by name.
    classes: HashMap<String, Arc<[Restriction]>>,
    /// `smtpd_delay_reject`.
    delay_reject: bool,
    /// `smtpd_relay_before_recipient_restrictions` (Postfix 3.6+ default: yes).
    relay_before_recipient: bool,
    /// `smtpd_reject_unlisted_sender`.
    reject_unlisted_sender: bool,
    /// `smtpd_reject_unlisted_recipient`.
    reject_unlisted_recipient: bool,
    /// Reply codes.
    codes: Codes,
    /// `mynetworks`.
    mynetworks: MatchList,
    /// `smtpd_forbid_bare_newline_exclusions`.
    bare_newline_exclusions: MatchList,
    /// `smtpd_client_event_limit_exceptions`.
    event_limit_exceptions: MatchList,
    /// Domains, address classes and recipient tables.
    recipients: Recipients,
    /// Whether access tables match subdomains with bare parent names.
    access_parent_style: bool,
    /// `smtpd_null_access_lookup_key`.
    null_access_key: String,
    /// `soft_bounce`.
    soft_bounce: bool,
    /// `allow_untrusted_routing`.
    allow_untrusted_routing: bool,
    /// `show_user_unknown_table_name`.
    show_unknown_table: bool,
    /// `smtpd_client_port_logging`.
    port_logging: bool,
}

impl Policy {
    /// Parses the restriction lists, opens their tables and reads the domain and network
    /// lists. Errors name the parameter and the offending word.
    pub fn from_config(c: &Config) -> Result<Policy, PolicyError> {
        let parents = c.get_list("parent_domain_matches_subdomains");
        let parent_style = |param: &str| parents.iter().any(|p| p == param);

        let classes = parse_classes(c)?;
        let list = |param: &str, default_access: Option<AccessKind>| {
            ParseCtx {
                param,
                default_access,
                tables_allowed: true,
                classes: &classes,
                class_names: &[],
            }
            .parse(&c.get(param))
        };
        let lists = Lists {
            client: list("smtpd_client_restrictions", Some(AccessKind::Client))?,
            helo: list("smtpd_helo_restrictions", Some(AccessKind::Helo))?,
            sender: list("smtpd_sender_restrictions", Some(AccessKind::Sender))?,
            relay: list("smtpd_relay_restrictions", Some(AccessKind::Recipient))?,
            recipient: list("smtpd_recipient_restrictions", Some(AccessKind::Recipient))?,
            data: list("smtpd_data_restrictions", None)?,
            eod: list("smtpd_end_of_data_restrictions", None)?,
        };
        if !has_relay_guard(&lists.relay, &classes, 0)
            && !has_relay_guard(&lists.recipient, &classes, 0)
        {
            return Err(PolicyError::NoRelayControl {
                guards: relay_guard_names(),
            });
        }

        let host_list = |param: &str| {
            MatchList::parse(param, &c.get(param), ListKind::Host, parent_style(param))
        };
        let code = |param: &str| c.get_int(param);
        Ok(Policy {
            lists,
            classes,
            delay_reject: c.get_bool("smtpd_delay_reject"),
            relay_before_recipient: extra_bool(
                c,
                "smtpd_relay_before_recipient_restrictions",
                true,
            ),
            reject_unlisted_sender: c.get_bool("smtpd_reject_unlisted_sender"),
            reject_unlisted_recipient: c.get_bool("smtpd_reject_unlisted_recipient"),
            codes: Codes {
                reject: code("reject_code"),
                defer: code("defer_code"),
                relay: code("relay_domains_reject_code"),
                access_reject: code("access_map_reject_code"),
                access_defer: code("access_map_defer_code"),
                invalid_hostname: code("invalid_hostname_reject_code"),
                non_fqdn: code("non_fqdn_reject_code"),
                unknown_local: code("unknown_local_recipient_reject_code"),
                unknown_virtual_alias: code("unknown_virtual_alias_reject_code"),
                unknown_virtual_mailbox: code("unknown_virtual_mailbox_reject_code"),
                unknown_relay: code("unknown_relay_recipient_reject_code"),
            },
            mynetworks: host_list("mynetworks")?,
            bare_newline_exclusions: host_list("smtpd_forbid_bare_newline_exclusions")?,
            event_limit_exceptions: host_list("smtpd_client_event_limit_exceptions")?,
            recipients: Recipients::from_config(c, &parent_style)?,
            access_parent_style: parent_style("smtpd_access_maps"),
            null_access_key: c.get("smtpd_null_access_lookup_key"),
            soft_bounce: c.get_bool("soft_bounce"),
            allow_untrusted_routing: c.get_bool("allow_untrusted_routing"),
            show_unknown_table: extra_bool(c, "show_user_unknown_table_name", true),
            port_logging: c.get_bool("smtpd_client_port_logging"),
        })
    }

    /// Builds a policy from main.cf text (tests, tools).
    pub fn from_main_cf(text: &str) -> Result<Policy, PolicyError> {
        Policy::from_config(&Config::parse_str(text, "main.cf")?)
    }

    /// Applies the restriction lists due at `stage` (honouring `smtpd_delay_reject`) and
    /// returns the first refusal. smtpd logs the refusal.
    pub fn check(&self, stage: Stage, f: &Facts<'_>) -> Result<(), Reject> {
        let c = Checker::new(self, f, stage);
        match stage {
            Stage::Connect if !self.delay_reject => self.client_checks(&c),
            Stage::Helo if !self.delay_reject => self.helo_checks(&c),
            Stage::Mail if !self.delay_reject => self.sender_checks(&c),
            Stage::Connect | Stage::Helo | Stage::Mail => Ok(()),
            Stage::Rcpt => self.rcpt_checks(&c),
            Stage::Data => {
                let ctx = Ctx {
                    name: "DATA",
                    class: DATA,
                    default_access: None,
                };
                c.run_list(&self.lists.data, ctx, false, 0).map(drop)
            }
            Stage::EndOfData => {
                let ctx = Ctx {
                    name: "END-OF-MESSAGE",
                    class: EOD,
                    default_access: None,
                };
                c.run_list(&self.lists.eod, ctx, false, 0).map(drop)
            }
        }
    }

    /// `smtpd_client_restrictions`.
    fn client_checks(&self, c: &Checker<'_>) -> Result<(), Reject> {
        let ctx = Ctx {
            name: &c.namaddr,
            class: CLIENT,
            default_access: Some(AccessKind::Client),
        };
        c.run_list(&self.lists.client, ctx, false, 0).map(drop)
    }

    /// `smtpd_helo_restrictions`, when a HELO name was given.
    fn helo_checks(&self, c: &Checker<'_>) -> Result<(), Reject> {
        let Some(helo) = c.f.helo else { return Ok(()) };
        let ctx = Ctx {
            name: helo,
            class: eval::HELO,
            default_access: Some(AccessKind::Helo),
        };
        c.run_list(&self.lists.helo, ctx, false, 0).map(drop)
    }

    /// `smtpd_sender_restrictions` and the implicit `reject_unlisted_sender`, when a
    /// sender was given.
    fn sender_checks(&self, c: &Checker<'_>) -> Result<(), Reject> {
        let Some(sender) = c.f.sender else {
            return Ok(());
        };
        let ctx = Ctx {
            name: sender,
            class: SENDER,
            default_access: Some(AccessKind::Sender),
        };
        c.run_list(&self.lists.sender, ctx, false, 0)?;
        if self.reject_unlisted_sender && !sender.is_empty() {
            c.unlisted(sender, SENDER, false)?;
        }
        Ok(())
    }

    /// RCPT TO: the delayed lists, the relay and recipient lists, and the implicit
    /// `reject_unlisted_recipient`.
    fn rcpt_checks(&self, c: &Checker<'_>) -> Result<(), Reject> {
        let Some(rcpt) = c.f.recipient else {
            return Ok(());
        };
        if rcpt.eq_ignore_ascii_case("postmaster") {
            return Ok(());
        }
        if self.delay_reject {
            self.client_checks(c)?;
            self.helo_checks(c)?;
            self.sender_checks(c)?;
        }
        let ctx = Ctx {
            name: rcpt,
            class: RECIPIENT,
            default_access: Some(AccessKind::Recipient),
        };
        let (first, second) = if self.relay_before_recipient {
            (&self.lists.relay, &self.lists.recipient)
        } else {
            (&self.lists.recipient, &self.lists.relay)
        };
        let _: Verdict = c.run_list(first, ctx, false, 0)?;
        let _: Verdict = c.run_list(second, ctx, false, 0)?;
        if self.reject_unlisted_recipient && !rcpt.is_empty() {
            c.unlisted(rcpt, RECIPIENT, false)?;
        }
        Ok(())
    }

    /// Whether `ip` is in `mynetworks` (address patterns and tables; host name patterns
    /// need a name and do not match here). A failing table counts as "no".
    pub fn in_mynetworks(&self, ip: IpAddr) -> bool {
        host_match(&self.mynetworks, "mynetworks", ip)
    }

    /// Whether `ip` is in `smtpd_forbid_bare_newline_exclusions` (default `$mynetworks`).
    pub fn bare_newline_excluded(&self, ip: IpAddr) -> bool {
        host_match(
            &self.bare_newline_exclusions,
            "smtpd_forbid_bare_newline_exclusions",
            ip,
        )
    }

    /// Whether `ip` is in `smtpd_client_event_limit_exceptions` (default `$mynetworks`).
    pub fn event_limit_exempt(&self, ip: IpAddr) -> bool {
        host_match(
            &self.event_limit_exceptions,
            "smtpd_client_event_limit_exceptions",
            ip,
        )
    }

    /// Whether mail for `domain` is delivered locally: it matches `mydestination` (case
    /// and a trailing dot ignored), or it is an address literal (`[192.0.2.1]`,
    /// `[IPv6:2001:db8::1]`) of `inet_interfaces` or `proxy_interfaces`. A failing table
    /// counts as "no".
    pub fn is_local_domain(&self, domain: &str) -> bool {
        let domain = recipients::normalize_domain(domain);
        self.recipients.is_local(&domain).unwrap_or_else(|err| {
            log::warn!("mydestination: lookup of \"{domain}\" failed: {err}");
            false
        })
    }
}

/// A host list answer for an address alone; a lookup failure is logged and means "no".
fn host_match(list: &MatchList, param: &str, ip: IpAddr) -> bool {
    list.matches_host(None, ip).unwrap_or_else(|err| {
        log::warn!("{param}: lookup of {ip} failed: {err}");
        false
    })
}

/// A boolean parameter that posthorn's parameter table does not declare: main.cf may
/// still set it.
fn extra_bool(c: &Config, name: &str, default: bool) -> bool {
    match c.lookup(name) {
        Some(value) => parse_bool(&value).unwrap_or_else(|_| {
            log::warn!("{name}: bad boolean value \"{value}\", using the default");
            default
        }),
        None => default,
    }
}

/// Reads `smtpd_restriction_classes` and each class's definition (a main.cf parameter
/// named after the class).
fn parse_classes(c: &Config) -> Result<HashMap<String, Arc<[Restriction]>>, PolicyError> {
    let names = c
        .lookup("smtpd_restriction_classes")
        .map(|v| posthorn_config::split_list(&v))
        .unwrap_or_default();
    let mut classes = HashMap::new();
    let empty = HashMap::new();
    for name in &names {
        let value = c
            .lookup(name)
            .filter(|v| !v.trim().is_empty())
            .ok_or_else(|| PolicyError::UndefinedClass { name: name.clone() })?;
        let list = ParseCtx {
            param: name,
            default_access: None,
            tables_allowed: true,
            classes: &empty,
            class_names: &names,
        }
        .parse(&value)?;
        classes.insert(name.clone(), Arc::from(list));
    }
    Ok(classes)
}

#[cfg(test)]
mod tests;
