//! Evaluation of restriction lists (Postfix's `generic_checks`) and of access table results
//! (`check_table_result`), and the replies they produce.
//!
//! Two kinds of refusal: policy refusals (`reject`, relay denied, user unknown, ...) that
//! `warn_if_reject` turns into a logged `reject_warning`, and failures (a table lookup
//! error, a broken access table entry) that always answer 451 and never permit.

use std::cell::Cell;
use std::net::IpAddr;

use posthorn_tables::{Lookup, TableError, split_local_part};

use crate::hostname::{truncate_dot, valid_hostaddr, valid_hostname, valid_mailhost_addr};
use crate::recipients::{AddrClass, Unknown, normalize_domain};
use crate::restrictions::{AccessKind, AccessTable, ParseCtx, Restriction};
use crate::{Facts, Policy, Reject, Stage};

/// How deep restriction classes and access table results may nest.
const MAX_DEPTH: usize = 100;

/// The longest reply line, as Postfix truncates it.
const MAX_REPLY: usize = 510;

/// Reply classes, as in Postfix replies (`<x>: Sender address rejected: ...`).
pub(crate) const CLIENT: &str = "Client host";
/// HELO/EHLO argument.
pub(crate) const HELO: &str = "Helo command";
/// MAIL FROM address.
pub(crate) const SENDER: &str = "Sender address";
/// RCPT TO address.
pub(crate) const RECIPIENT: &str = "Recipient address";
/// DATA command.
pub(crate) const DATA: &str = "Data command";
/// End of message data.
pub(crate) const EOD: &str = "End-of-data";

/// What a restriction decided when it did not refuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// No decision: go on with the next restriction.
    Dunno,
    /// Permit: end this list.
    Permit,
}

/// A restriction's result: a verdict, or the refusal that ends all checks.
pub(crate) type Outcome = Result<Verdict, Reject>;

/// The reply context of a list: what is named in replies and what a bare table means.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ctx<'s> {
    /// The object in `<...>`.
    pub(crate) name: &'s str,
    /// The reply class, e.g. `Recipient address`.
    pub(crate) class: &'static str,
    /// What a bare `type:table` stands for (for access table results).
    pub(crate) default_access: Option<AccessKind>,
}

/// One `check()` call: the facts and what has been checked so far.
pub(crate) struct Checker<'a> {
    /// The policy.
    pub(crate) p: &'a Policy,
    /// The facts of this call.
    pub(crate) f: &'a Facts<'a>,
    /// The stage, for logs.
    pub(crate) stage: Stage,
    /// The client address, IPv4-mapped addresses as IPv4.
    pub(crate) addr: IpAddr,
    /// `name[addr]` (`:port` with smtpd_client_port_logging).
    pub(crate) namaddr: String,
    /// Whether the recipient tables were consulted for the recipient.
    pub(crate) rcpt_checked: Cell<bool>,
    /// Whether the recipient tables were consulted for the sender.
    pub(crate) sender_checked: Cell<bool>,
}

impl<'a> Checker<'a> {
    /// Prepares a check of `f` at `stage`.
    pub(crate) fn new(p: &'a Policy, f: &'a Facts<'a>, stage: Stage) -> Checker<'a> {
        let addr = f.client.addr.to_canonical();
        let mut namaddr = format!("{}[{}]", f.client.name, addr);
        if p.port_logging {
            namaddr.push_str(&format!(":{}", f.client.port));
        }
        Checker {
            p,
            f,
            stage,
            addr,
            namaddr,
            rcpt_checked: Cell::new(false),
            sender_checked: Cell::new(false),
        }
    }

    /// Applies a list; `warn` comes from a `warn_if_reject` in an enclosing list.
    pub(crate) fn run_list(
        &self,
        list: &[Restriction],
        ctx: Ctx<'_>,
        warn: bool,
        depth: usize,
    ) -> Outcome {
        if depth > MAX_DEPTH {
            log::warn!(
                "restrictions nest more than {MAX_DEPTH} levels deep (restriction class loop?)"
            );
            return Err(self.config_error());
        }
        let mut warn_next = false;
        for r in list {
            if matches!(r, Restriction::WarnIfReject) {
                warn_next = true;
                continue;
            }
            let verdict = self.apply(r, ctx, warn || std::mem::take(&mut warn_next), depth)?;
            if verdict == Verdict::Permit {
                return Ok(Verdict::Permit);
            }
        }
        Ok(Verdict::Dunno)
    }

    /// Applies one restriction.
    fn apply(&self, r: &Restriction, ctx: Ctx<'_>, warn: bool, depth: usize) -> Outcome {
        let f = self.f;
        let codes = &self.p.codes;
        match r {
            Restriction::Permit => Ok(Verdict::Permit),
            Restriction::WarnIfReject => Ok(Verdict::Dunno),
            Restriction::Reject => self.deny(
                warn,
                codes.reject,
                "5.7.1",
                format!("<{}>: {} rejected: Access denied", ctx.name, ctx.class),
            ),
            Restriction::Defer => self.deny(
                warn,
                codes.defer,
                "4.3.2",
                format!("<{}>: {} rejected: Try again later", ctx.name, ctx.class),
            ),
            Restriction::RejectUnauthPipelining => {
                if !f.unauth_pipelining {
                    return Ok(Verdict::Dunno);
                }
                self.deny(
                    warn,
                    503,
                    "5.5.0",
                    format!(
                        "<{}>: {} rejected: Improper use of SMTP command pipelining",
                        ctx.name, ctx.class
                    ),
                )
            }
            Restriction::PermitMynetworks => {
                match self
                    .p
                    .mynetworks
                    .matches_host(Some(&f.client.name), self.addr)
                {
                    Ok(true) => Ok(Verdict::Permit),
                    Ok(false) => Ok(Verdict::Dunno),
                    Err(err) => Err(self.lookup_failure("mynetworks", ctx.name, &err)),
                }
            }
            Restriction::PermitInetInterfaces => {
                Ok(permit_if(self.p.recipients.own.is_inet(self.addr)))
            }
            Restriction::PermitSaslAuthenticated => Ok(Verdict::Dunno),
            Restriction::Access(kind, table) => self.access(*kind, table, ctx, warn, depth),
            Restriction::RejectInvalidHelo => {
                let Some(helo) = f.helo else {
                    return Ok(Verdict::Dunno);
                };
                if helo.starts_with('[') {
                    return self.invalid_hostaddr(helo, warn);
                }
                let name = truncate_dot(helo);
                if valid_hostname(name) || valid_hostaddr(name) {
                    return Ok(Verdict::Dunno);
                }
                self.deny(
                    warn,
                    codes.invalid_hostname,
                    "5.5.2",
                    format!("<{helo}>: {HELO} rejected: Invalid name"),
                )
            }
            Restriction::RejectNonFqdnHelo => {
                let Some(helo) = f.helo else {
                    return Ok(Verdict::Dunno);
                };
                if helo.starts_with('[') {
                    return self.invalid_hostaddr(helo, warn);
                }
                let name = truncate_dot(helo);
                if valid_hostname(name) && name.contains('.') {
                    return Ok(Verdict::Dunno);
                }
                self.deny(
                    warn,
                    codes.non_fqdn,
                    "5.5.2",
                    format!("<{helo}>: {HELO} rejected: need fully-qualified hostname"),
                )
            }
            Restriction::RejectNonFqdnSender => match f.sender {
                Some(sender) if !sender.is_empty() => self.non_fqdn_address(sender, SENDER, warn),
                _ => Ok(Verdict::Dunno),
            },
            Restriction::RejectNonFqdnRecipient => match f.recipient {
                Some(rcpt) => self.non_fqdn_address(rcpt, RECIPIENT, warn),
                None => Ok(Verdict::Dunno),
            },
            Restriction::RejectUnlistedSender => match f.sender {
                Some(sender) if !sender.is_empty() => self.unlisted(sender, SENDER, warn),
                _ => Ok(Verdict::Dunno),
            },
            Restriction::RejectUnlistedRecipient => match f.recipient {
                Some(rcpt) if !rcpt.is_empty() => self.unlisted(rcpt, RECIPIENT, warn),
                _ => Ok(Verdict::Dunno),
            },
            Restriction::PermitAuthDestination => match f.recipient {
                Some(rcpt) => Ok(permit_if(self.authorized_destination(rcpt)?)),
                None => Ok(Verdict::Dunno),
            },
            Restriction::RejectUnauthDestination => {
                self.unauth_destination(codes.relay, "5.7.1", warn)
            }
            Restriction::DeferUnauthDestination => {
                self.unauth_destination(codes.relay - 100, "4.7.1", warn)
            }
            Restriction::Class(name) => match self.p.classes.get(name.as_ref()) {
                Some(list) => self.run_list(list, ctx, warn, depth + 1),
                None => {
                    log::warn!("restriction class `{name}' needs a definition");
                    Err(self.config_error())
                }
            },
        }
    }

    /// `reject_unauth_destination` / `defer_unauth_destination`.
    fn unauth_destination(&self, code: i64, dsn: &str, warn: bool) -> Outcome {
        let Some(rcpt) = self.f.recipient else {
            return Ok(Verdict::Dunno);
        };
        if self.authorized_destination(rcpt)? {
            return Ok(Verdict::Dunno);
        }
        self.deny(warn, code, dsn, format!("<{rcpt}>: Relay access denied"))
    }

    /// Whether mail to `rcpt` is for a domain this host delivers or relays to
    /// (`permit_auth_destination`). Source-routed addresses are not, unless
    /// `allow_untrusted_routing`.
    fn authorized_destination(&self, rcpt: &str) -> Result<bool, Reject> {
        if !rcpt.contains('@') {
            return Ok(true);
        }
        let r = self
            .p
            .recipients
            .resolve(rcpt)
            .map_err(|err| self.lookup_failure("domain lists", rcpt, &err))?;
        if r.routed && !self.p.allow_untrusted_routing {
            return Ok(false);
        }
        Ok(r.class != AddrClass::Other)
    }

    /// `reject_unlisted_recipient` / `reject_unlisted_sender` (each at most once per
    /// check, unless it only warned).
    pub(crate) fn unlisted(&self, addr: &str, class: &'static str, warn: bool) -> Outcome {
        let done = if class == SENDER {
            &self.sender_checked
        } else {
            &self.rcpt_checked
        };
        if done.get() {
            return Ok(Verdict::Dunno);
        }
        if !warn {
            done.set(true);
        }
        let recipients = &self.p.recipients;
        let unknown = recipients
            .resolve(addr)
            .and_then(|r| recipients.unknown(&r, class == SENDER))
            .map_err(|err| self.lookup_failure("recipient tables", addr, &err))?;
        let Some(unknown) = unknown else {
            return Ok(Verdict::Dunno);
        };
        let codes = &self.p.codes;
        let code = match unknown {
            Unknown::Local => codes.unknown_local,
            Unknown::VirtualAlias => codes.unknown_virtual_alias,
            Unknown::VirtualMailbox => codes.unknown_virtual_mailbox,
            Unknown::Relay => codes.unknown_relay,
        };
        let table = if self.p.show_unknown_table {
            format!(" in {}", unknown.table_name())
        } else {
            String::new()
        };
        let dsn = if class == SENDER { "5.1.0" } else { "5.1.1" };
        self.deny(
            warn,
            code,
            dsn,
            format!("<{addr}>: {class} rejected: User unknown{table}"),
        )
    }

    /// `reject_invalid_helo_hostname` and friends for `[address]` HELO arguments.
    fn invalid_hostaddr(&self, helo: &str, warn: bool) -> Outcome {
        let inner = helo
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .filter(|h| !h.is_empty())
            .unwrap_or(helo);
        if valid_mailhost_addr(inner) {
            return Ok(Verdict::Dunno);
        }
        self.deny(
            warn,
            self.p.codes.invalid_hostname,
            "5.5.2",
            format!("<{helo}>: {HELO} rejected: invalid ip address"),
        )
    }

    /// `reject_non_fqdn_sender` / `reject_non_fqdn_recipient`.
    fn non_fqdn_address(&self, addr: &str, class: &'static str, warn: bool) -> Outcome {
        let domain = addr.rfind('@').map_or("", |at| &addr[at + 1..]);
        if domain.starts_with('[') && domain.ends_with(']') {
            return Ok(Verdict::Dunno);
        }
        let domain = truncate_dot(domain);
        if valid_hostname(domain) && domain.contains('.') {
            return Ok(Verdict::Dunno);
        }
        self.deny(
            warn,
            self.p.codes.non_fqdn,
            "4.5.2",
            format!("<{addr}>: {class} rejected: need fully-qualified address"),
        )
    }

    /// A `check_*_access` restriction. The reply names the object looked up (client,
    /// HELO name, sender, recipient), whatever list the restriction is in.
    fn access(
        &self,
        kind: AccessKind,
        table: &AccessTable,
        ctx: Ctx<'_>,
        warn: bool,
        depth: usize,
    ) -> Outcome {
        let f = self.f;
        let (keys, name, class): (Vec<String>, &str, &'static str) = match kind {
            AccessKind::Client => {
                let mut keys =
                    domain_keys(&f.client.name.to_lowercase(), self.p.access_parent_style);
                keys.extend(addr_keys(self.addr));
                (keys, &self.namaddr, CLIENT)
            }
            AccessKind::Helo => {
                let Some(helo) = f.helo else {
                    return Ok(Verdict::Dunno);
                };
                (
                    domain_keys(&helo.to_lowercase(), self.p.access_parent_style),
                    helo,
                    HELO,
                )
            }
            AccessKind::Sender => match f.sender {
                None => return Ok(Verdict::Dunno),
                Some("") => (vec![self.p.null_access_key.clone()], "", SENDER),
                Some(sender) => (self.mail_keys(sender), sender, SENDER),
            },
            AccessKind::Recipient => {
                let Some(rcpt) = f.recipient else {
                    return Ok(Verdict::Dunno);
                };
                (self.mail_keys(rcpt), rcpt, RECIPIENT)
            }
        };
        let sub = Ctx {
            name,
            class,
            default_access: ctx.default_access,
        };
        for key in keys.iter().filter(|k| !k.is_empty()) {
            match table.map.lookup(key) {
                Ok(None) => {}
                Ok(Some(value)) => {
                    let verdict = self.table_result(table, &value, sub, warn, depth)?;
                    // A source-routed recipient is too suspicious to be permitted by a
                    // table, as in Postfix.
                    if verdict == Verdict::Permit
                        && kind == AccessKind::Recipient
                        && !self.p.allow_untrusted_routing
                        && name
                            .rfind('@')
                            .is_some_and(|at| name[..at].contains(['%', '!', '@']))
                    {
                        return Ok(Verdict::Dunno);
                    }
                    return Ok(verdict);
                }
                Err(err) => {
                    log::warn!("{}: lookup of \"{key}\" failed: {err}", table.spec);
                    return Err(self.make_reject(
                        451,
                        "4.3.5",
                        format!("<{name}>: {class} rejected: Server configuration error"),
                    ));
                }
            }
        }
        Ok(Verdict::Dunno)
    }

    /// The lookup keys of a mail address in an access table, in Postfix's order:
    /// `user+ext@domain`, `user@domain`, the domain and its parents, `user+ext@`, `user@`.
    fn mail_keys(&self, addr: &str) -> Vec<String> {
        let addr = addr.to_lowercase();
        let (local, domain) = match addr.rfind('@') {
            Some(at) => (&addr[..at], normalize_domain(&addr[at + 1..])),
            None => (addr.as_str(), self.p.recipients.myorigin().to_owned()),
        };
        let (base, ext) = split_local_part(local, self.p.recipients.delimiter());
        let mut keys = vec![format!("{local}@{domain}")];
        if ext.is_some() {
            keys.push(format!("{base}@{domain}"));
        }
        keys.extend(domain_keys(&domain, self.p.access_parent_style));
        keys.push(format!("{local}@"));
        if ext.is_some() {
            keys.push(format!("{base}@"));
        }
        keys
    }

    /// Translates an access table value into a verdict (Postfix's `check_table_result`).
    fn table_result(
        &self,
        table: &AccessTable,
        value: &str,
        ctx: Ctx<'_>,
        warn: bool,
        depth: usize,
    ) -> Outcome {
        let value = value.trim();
        let (cmd, text) = match value.find([' ', '\t']) {
            Some(i) => (&value[..i], value[i..].trim_start()),
            None => (value, ""),
        };
        let word = cmd.to_ascii_uppercase();
        let codes = &self.p.codes;
        let with_text = |dsn_default: &str| -> (String, String) {
            let (dsn, text) = dsn_split(dsn_default, text);
            let text = if text.is_empty() {
                "Access denied"
            } else {
                text
            };
            (
                dsn_fix(&dsn, ctx.class),
                format!("<{}>: {} rejected: {text}", ctx.name, ctx.class),
            )
        };
        match word.as_str() {
            "DUNNO" => return Ok(Verdict::Dunno),
            "REJECT" => {
                let (dsn, line) = with_text("5.7.1");
                return self.deny(warn, codes.access_reject, &dsn, line);
            }
            "DEFER" => {
                let (dsn, line) = with_text("4.7.1");
                return self.deny(warn, codes.access_defer, &dsn, line);
            }
            "INFO" | "WARN" => {
                self.log_event(&word.to_ascii_lowercase(), text);
                return Ok(Verdict::Dunno);
            }
            "OK" | "RELAY" => return Ok(Verdict::Permit),
            "HANGUP" | "FILTER" | "HOLD" | "DELAY" | "DISCARD" | "REDIRECT" | "BCC" | "PREPEND"
            | "DEFER_IF_PERMIT" | "DEFER_IF_REJECT" => {
                log::warn!(
                    "access table {} entry \"{value}\": action {word} is not supported by posthorn",
                    table.spec
                );
                return Err(self.config_error());
            }
            _ => {}
        }
        if value.bytes().all(|b| b.is_ascii_digit()) {
            // All-numeric: OK (some out-of-band authentication stores time stamps).
            return Ok(Verdict::Permit);
        }
        if let [class @ (b'4' | b'5'), b'0'..=b'9', b'0'..=b'9'] = cmd.as_bytes()
            && !text.is_empty()
            && let Ok(code) = cmd.parse::<i64>()
        {
            let (dsn, line) = with_text(if *class == b'4' { "4.7.1" } else { "5.7.1" });
            return self.deny(warn, code, &dsn, line);
        }
        if value.contains(':') {
            log::warn!(
                "access table {} has entry with lookup table: {value}",
                table.spec
            );
            log::warn!("do not specify lookup tables inside SMTPD access maps");
            return Err(self.config_error());
        }
        let parse = ParseCtx {
            param: &table.spec,
            default_access: None,
            tables_allowed: false,
            classes: &self.p.classes,
            class_names: &[],
        };
        match parse.parse(value) {
            Ok(list) => self.run_list(&list, ctx, warn, depth + 1),
            Err(err) => {
                log::warn!("access table {} entry \"{value}\": {err}", table.spec);
                Err(self.config_error())
            }
        }
    }

    /// A policy refusal; with `warn` it is only logged (`reject_warning`).
    pub(crate) fn deny(&self, warn: bool, code: i64, dsn: &str, text: String) -> Outcome {
        let reject = self.make_reject(code, dsn, text);
        if warn {
            self.log_event("reject_warning", &reject.reply_line());
            return Ok(Verdict::Dunno);
        }
        Err(reject)
    }

    /// A reply as Postfix's `smtpd_check_reject` makes it: a bad code or DSN becomes
    /// `450 4.7.1 Service unavailable`, soft_bounce turns 5xx into 4xx, the DSN class
    /// follows the code, unprintable characters become spaces, and the line is cut at 510
    /// characters.
    pub(crate) fn make_reject(&self, code: i64, dsn: &str, text: String) -> Reject {
        let fallback = || Reject {
            code: 450,
            dsn: "4.7.1".to_owned(),
            text: "Service unavailable".to_owned(),
        };
        let Some(mut code) = u16::try_from(code).ok().filter(|c| (400..=599).contains(c)) else {
            log::warn!("SMTP reply code configuration error: {code} {dsn} {text}");
            return fallback();
        };
        if dsn_len(dsn) != Some(dsn.len()) {
            log::warn!("DSN detail code configuration error: {code} {dsn} {text}");
            return fallback();
        }
        if self.p.soft_bounce && code >= 500 {
            code -= 100;
        }
        let class = if code >= 500 { '5' } else { '4' };
        let dsn = format!("{class}{}", &dsn[1..]);
        let budget = MAX_REPLY.saturating_sub(3 + 1 + dsn.len() + 1);
        let mut text: String = text
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        if text.len() > budget {
            let mut cut = budget;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
        }
        Reject { code, dsn, text }
    }

    /// `451 4.3.0 <name>: Temporary lookup failure`, after a table could not be read.
    pub(crate) fn lookup_failure(&self, what: &str, name: &str, err: &TableError) -> Reject {
        log::warn!("{what}: lookup for <{name}> failed: {err}");
        self.make_reject(451, "4.3.0", format!("<{name}>: Temporary lookup failure"))
    }

    /// `451 4.3.5 Server configuration error`.
    fn config_error(&self) -> Reject {
        self.make_reject(451, "4.3.5", "Server configuration error".to_owned())
    }

    /// Logs an event in Postfix's `NOQUEUE: reject: RCPT from ...` form.
    fn log_event(&self, what: &str, text: &str) {
        let f = self.f;
        let mut line = format!(
            "NOQUEUE: {what}: {} from {}: {text};",
            self.stage_name(),
            self.namaddr
        );
        if let Some(sender) = f.sender {
            line.push_str(&format!(" from=<{sender}>"));
        }
        if let Some(rcpt) = f.recipient {
            line.push_str(&format!(" to=<{rcpt}>"));
        }
        line.push_str(&format!(" proto={}", f.protocol));
        if let Some(helo) = f.helo {
            line.push_str(&format!(" helo=<{helo}>"));
        }
        log::info!("{line}");
    }

    /// The command name Postfix logs for the stage.
    fn stage_name(&self) -> &'static str {
        match self.stage {
            Stage::Connect => "CONNECT",
            Stage::Helo if self.f.protocol.eq_ignore_ascii_case("ESMTP") => "EHLO",
            Stage::Helo => "HELO",
            Stage::Mail => "MAIL",
            Stage::Rcpt => "RCPT",
            Stage::Data => "DATA",
            Stage::EndOfData => "END-OF-MESSAGE",
        }
    }
}

/// `Permit` when `yes`.
fn permit_if(yes: bool) -> Verdict {
    if yes { Verdict::Permit } else { Verdict::Dunno }
}

/// A host or domain name and its parent domains as access table keys: `.parent` forms, or
/// bare parents when `parent_style` (`smtpd_access_maps` in
/// `parent_domain_matches_subdomains`). Addresses and literals get no parents.
pub(crate) fn domain_keys(name: &str, parent_style: bool) -> Vec<String> {
    let mut keys = vec![name.to_owned()];
    if name.starts_with('[') || valid_hostaddr(name) {
        return keys;
    }
    let mut from = 0;
    while let Some(dot) = name[from + 1..].find('.').map(|i| i + from + 1) {
        let key = if parent_style {
            &name[dot + 1..]
        } else {
            &name[dot..]
        };
        if key.is_empty() {
            break;
        }
        keys.push(key.to_owned());
        from = dot;
    }
    keys
}

/// A client address and its networks as access table keys: `1.2.3.4`, `1.2.3`, `1.2`,
/// `1`; for IPv6 the compressed form cut at each `:` from the right.
pub(crate) fn addr_keys(addr: IpAddr) -> Vec<String> {
    let text = addr.to_string();
    let delim = if addr.is_ipv4() { '.' } else { ':' };
    let mut keys = vec![text.clone()];
    let mut rest = text.as_str();
    while let Some(i) = rest.rfind(delim) {
        rest = &rest[..i];
        if !rest.is_empty() {
            keys.push(rest.to_owned());
        }
    }
    keys
}

/// The length of an RFC 3463 status code at the start of `text` when a space or the end
/// follows it: class 2, 4 or 5, subject and detail of 1 to 3 digits.
pub(crate) fn dsn_len(text: &str) -> Option<usize> {
    let b = text.as_bytes();
    if !matches!(b.first(), Some(b'2' | b'4' | b'5')) || b.get(1) != Some(&b'.') {
        return None;
    }
    let digits = |from: usize| {
        b[from.min(b.len())..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count()
    };
    let subject = digits(2);
    if !(1..=3).contains(&subject) || b.get(2 + subject) != Some(&b'.') {
        return None;
    }
    let detail = digits(3 + subject);
    let end = 3 + subject + detail;
    if !(1..=3).contains(&detail) || b.get(end).is_some_and(|c| !c.is_ascii_whitespace()) {
        return None;
    }
    Some(end)
}

/// Splits an optional leading status code off an access table text (`dsn_split`).
pub(crate) fn dsn_split<'t>(default: &str, text: &'t str) -> (String, &'t str) {
    match dsn_len(text) {
        Some(n) => (text[..n].to_owned(), text[n..].trim_start()),
        None => (default.to_owned(), text),
    }
}

/// Adjusts an address status code to what is rejected (Postfix's `smtpd_dsn_fix`): a
/// recipient code for a sender becomes the sender code and vice versa; for other objects
/// an address code becomes `4.0.0`. Other codes are kept.
pub(crate) fn dsn_fix(dsn: &str, class: &str) -> String {
    let Some(micro) = dsn.get(1..4).filter(|m| *m == ".1.").map(|_| &dsn[4..]) else {
        return dsn.to_owned();
    };
    let (sender, recipient) = match micro {
        "1" => ("4.1.0", "4.1.1"),
        "2" => ("4.1.8", "4.1.2"),
        "3" => ("4.1.7", "4.1.3"),
        "4" => ("4.1.0", "4.1.4"),
        "5" => ("4.1.0", "4.1.5"),
        "6" => ("4.1.0", "4.1.6"),
        "7" => ("4.1.7", "4.1.3"),
        "8" => ("4.1.8", "4.1.2"),
        _ => ("4.1.0", "4.1.0"),
    };
    match class {
        SENDER => sender.to_owned(),
        RECIPIENT => recipient.to_owned(),
        _ => "4.0.0".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_key_forms() {
        assert_eq!(
            domain_keys("a.b.example", false),
            ["a.b.example", ".b.example", ".example"]
        );
        assert_eq!(
            domain_keys("a.b.example", true),
            ["a.b.example", "b.example", "example"]
        );
        assert_eq!(domain_keys("foo.", false), ["foo.", "."]);
        assert_eq!(domain_keys("foo.", true), ["foo."]);
        assert_eq!(domain_keys("1.2.3.4", false), ["1.2.3.4"]);
        assert_eq!(domain_keys("[1.2.3.4]", false), ["[1.2.3.4]"]);
        assert_eq!(domain_keys("unknown", false), ["unknown"]);
    }

    #[test]
    fn address_key_forms() {
        let v4: IpAddr = "192.0.2.17".parse().unwrap();
        assert_eq!(addr_keys(v4), ["192.0.2.17", "192.0.2", "192.0", "192"]);
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(
            addr_keys(v6),
            ["2001:db8::1", "2001:db8:", "2001:db8", "2001"]
        );
        let lo: IpAddr = "::1".parse().unwrap();
        assert_eq!(addr_keys(lo), ["::1", ":"]);
    }

    #[test]
    fn status_codes() {
        assert_eq!(dsn_len("5.7.1"), Some(5));
        assert_eq!(dsn_len("4.123.456 text"), Some(9));
        assert_eq!(dsn_len("5.7.1x"), None);
        assert_eq!(dsn_len("3.7.1"), None);
        assert_eq!(dsn_len("5.1234.1"), None);
        assert_eq!(dsn_len("5..1"), None);
        assert_eq!(dsn_len("5.7."), None);
        assert_eq!(
            dsn_split("5.7.1", "4.2.0 go away"),
            ("4.2.0".to_owned(), "go away")
        );
        assert_eq!(
            dsn_split("5.7.1", "go away"),
            ("5.7.1".to_owned(), "go away")
        );
        assert_eq!(dsn_fix("5.1.1", SENDER), "4.1.0");
        assert_eq!(dsn_fix("5.1.8", RECIPIENT), "4.1.2");
        assert_eq!(dsn_fix("5.1.1", HELO), "4.0.0");
        assert_eq!(dsn_fix("5.7.1", SENDER), "5.7.1");
    }
}
