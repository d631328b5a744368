//! Which domains are ours and which addresses exist: the address classes of Postfix's
//! trivial-rewrite (local, virtual alias, virtual mailbox, relay, other) and the recipient
//! tables smtpd checks for `reject_unlisted_recipient` / `reject_unlisted_sender`.

use std::net::IpAddr;

use posthorn_config::Config;
use posthorn_tables::{AddressLookup, TableError, lookup_address_with};

use crate::PolicyError;
use crate::hostname::{strip_ipv6_tag, truncate_dot};
use crate::maps::{MapList, OpenMode};
use crate::matchlist::{ListKind, MatchList, OwnAddrs};

/// The address class of a domain, checked in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AddrClass {
    /// `mydestination`, or an address literal of this host.
    Local,
    /// `virtual_alias_domains`.
    VirtualAlias,
    /// `virtual_mailbox_domains`.
    VirtualMailbox,
    /// `relay_domains`.
    Relay,
    /// Anything else: not ours.
    Other,
}

/// An address split and classified, as smtpd's resolver sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Resolved {
    /// The local part as given.
    pub(crate) local: String,
    /// The domain, lowercase, without a trailing dot (`myorigin` for unqualified
    /// addresses).
    pub(crate) domain: String,
    /// The domain's class.
    pub(crate) class: AddrClass,
    /// Whether the local part holds a routing operator (`%`, `!`, `@`): such mail is not
    /// for a final destination here even when the domain is ours.
    pub(crate) routed: bool,
}

impl Resolved {
    /// `local@domain`.
    pub(crate) fn address(&self) -> String {
        format!("{}@{}", self.local, self.domain)
    }
}

/// Why an address is unknown: which table it is missing from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unknown {
    /// Not in `local_recipient_maps`.
    Local,
    /// In a virtual alias domain but not in `virtual_alias_maps`.
    VirtualAlias,
    /// Not in `virtual_mailbox_maps`.
    VirtualMailbox,
    /// Not in `relay_recipient_maps`.
    Relay,
}

impl Unknown {
    /// The table named in the reply (`User unknown in ...`).
    pub(crate) fn table_name(self) -> &'static str {
        match self {
            Unknown::Local => "local recipient table",
            Unknown::VirtualAlias => "virtual alias table",
            Unknown::VirtualMailbox => "virtual mailbox table",
            Unknown::Relay => "relay recipient table",
        }
    }
}

/// Our domains and recipient tables.
#[derive(Debug)]
pub(crate) struct Recipients {
    /// `mydestination`.
    mydestination: MatchList,
    /// `virtual_alias_domains`.
    virtual_alias_domains: MatchList,
    /// `virtual_mailbox_domains`.
    virtual_mailbox_domains: MatchList,
    /// `relay_domains`.
    relay_domains: MatchList,
    /// `inet_interfaces` and `proxy_interfaces` addresses.
    pub(crate) own: OwnAddrs,
    /// `myorigin`, lowercase: the domain of unqualified addresses.
    myorigin: String,
    /// `local_recipient_maps`.
    local_maps: MapList,
    /// `virtual_alias_maps`.
    virtual_alias_maps: MapList,
    /// `virtual_mailbox_maps`.
    virtual_mailbox_maps: MapList,
    /// `relay_recipient_maps`.
    relay_maps: MapList,
    /// `canonical_maps`.
    canonical_maps: MapList,
    /// `recipient_canonical_maps`.
    recipient_canonical_maps: MapList,
    /// `sender_canonical_maps`.
    sender_canonical_maps: MapList,
    /// `recipient_delimiter`.
    delimiter: String,
    /// `double_bounce_sender`.
    double_bounce: String,
}

impl Recipients {
    /// Reads the domain lists and opens the recipient tables.
    pub(crate) fn from_config(
        c: &Config,
        parent_style: &dyn Fn(&str) -> bool,
    ) -> Result<Recipients, PolicyError> {
        let list = |param: &str, kind: ListKind| {
            MatchList::parse(param, &c.get(param), kind, parent_style(param))
        };
        let maps = |param: &str| {
            MapList::open(&c.get(param), OpenMode::Retry).map_err(|(spec, source)| {
                PolicyError::Table {
                    param: param.to_owned(),
                    spec,
                    source,
                }
            })
        };
        Ok(Recipients {
            mydestination: list("mydestination", ListKind::Exact)?,
            virtual_alias_domains: list("virtual_alias_domains", ListKind::Exact)?,
            virtual_mailbox_domains: list("virtual_mailbox_domains", ListKind::Exact)?,
            relay_domains: list("relay_domains", ListKind::Domain)?,
            own: OwnAddrs::new(
                &c.get_list("inet_interfaces"),
                &c.get_list("proxy_interfaces"),
            ),
            myorigin: normalize_domain(&c.get("myorigin")),
            local_maps: maps("local_recipient_maps")?,
            virtual_alias_maps: maps("virtual_alias_maps")?,
            virtual_mailbox_maps: maps("virtual_mailbox_maps")?,
            relay_maps: maps("relay_recipient_maps")?,
            canonical_maps: maps("canonical_maps")?,
            recipient_canonical_maps: maps("recipient_canonical_maps")?,
            sender_canonical_maps: maps("sender_canonical_maps")?,
            delimiter: c.get("recipient_delimiter"),
            double_bounce: c.get("double_bounce_sender"),
        })
    }

    /// `myorigin`, lowercase.
    pub(crate) fn myorigin(&self) -> &str {
        &self.myorigin
    }

    /// `recipient_delimiter`.
    pub(crate) fn delimiter(&self) -> &str {
        &self.delimiter
    }

    /// Whether `domain` (lowercase, no trailing dot) is delivered here: `mydestination`, or
    /// an address literal of `inet_interfaces` / `proxy_interfaces`.
    pub(crate) fn is_local(&self, domain: &str) -> Result<bool, TableError> {
        if let Some(inner) = domain.strip_prefix('[').and_then(|d| d.strip_suffix(']')) {
            let bare = strip_ipv6_tag(inner).unwrap_or(inner);
            if let Ok(addr) = bare.parse::<IpAddr>()
                && self.own.contains(addr)
            {
                return Ok(true);
            }
        }
        self.mydestination.matches_name(domain)
    }

    /// The class of `domain` (lowercase, no trailing dot).
    pub(crate) fn classify(&self, domain: &str) -> Result<AddrClass, TableError> {
        Ok(if self.is_local(domain)? {
            AddrClass::Local
        } else if self.virtual_alias_domains.matches_name(domain)? {
            AddrClass::VirtualAlias
        } else if self.virtual_mailbox_domains.matches_name(domain)? {
            AddrClass::VirtualMailbox
        } else if self.relay_domains.matches_name(domain)? {
            AddrClass::Relay
        } else {
            AddrClass::Other
        })
    }

    /// Splits and classifies `addr`; an address without a domain is local and gets
    /// `myorigin`.
    pub(crate) fn resolve(&self, addr: &str) -> Result<Resolved, TableError> {
        let (local, domain) = match addr.rfind('@') {
            Some(at) => (&addr[..at], Some(&addr[at + 1..])),
            None => (addr, None),
        };
        let routed = local.contains(['%', '!', '@']);
        let (domain, class) = match domain {
            Some(d) => {
                let d = normalize_domain(d);
                let class = self.classify(&d)?;
                (d, class)
            }
            None => (self.myorigin.clone(), AddrClass::Local),
        };
        Ok(Resolved {
            local: local.to_owned(),
            domain,
            class,
            routed,
        })
    }

    /// Which recipient table does not list `r`, if any (`sender`: the address is a sender,
    /// which `sender_canonical_maps` may also list). Addresses in `virtual_alias_maps` or a
    /// canonical table are known in every domain.
    pub(crate) fn unknown(
        &self,
        r: &Resolved,
        sender: bool,
    ) -> Result<Option<Unknown>, TableError> {
        let address = r.address();
        let opts = if r.class == AddrClass::Local || r.domain == self.myorigin {
            AddressLookup::ALL
        } else {
            AddressLookup::VIRTUAL
        };
        let found = |maps: &MapList| -> Result<bool, TableError> {
            if maps.is_empty() {
                return Ok(false);
            }
            Ok(lookup_address_with(maps, &address, &self.delimiter, opts)?.is_some())
        };
        if found(&self.recipient_canonical_maps)?
            || (sender && found(&self.sender_canonical_maps)?)
            || found(&self.canonical_maps)?
            || found(&self.virtual_alias_maps)?
        {
            return Ok(None);
        }
        Ok(match r.class {
            AddrClass::Local => {
                let special = [self.double_bounce.as_str(), "postmaster", "mailer-daemon"]
                    .iter()
                    .any(|s| r.local.eq_ignore_ascii_case(s));
                (!self.local_maps.is_empty() && !special && !found(&self.local_maps)?)
                    .then_some(Unknown::Local)
            }
            AddrClass::VirtualAlias => Some(Unknown::VirtualAlias),
            AddrClass::VirtualMailbox => (!self.virtual_mailbox_maps.is_empty()
                && !found(&self.virtual_mailbox_maps)?)
            .then_some(Unknown::VirtualMailbox),
            AddrClass::Relay => {
                (!self.relay_maps.is_empty() && !found(&self.relay_maps)?).then_some(Unknown::Relay)
            }
            AddrClass::Other => None,
        })
    }
}

/// A domain as compared: lowercase, one trailing dot removed.
pub(crate) fn normalize_domain(domain: &str) -> String {
    truncate_dot(domain.trim()).to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recipients(main_cf: &str) -> Recipients {
        let c = Config::parse_str(main_cf, "main.cf").unwrap();
        let parents = c.get_list("parent_domain_matches_subdomains");
        Recipients::from_config(&c, &|p| parents.iter().any(|x| x == p)).unwrap()
    }

    const BASE: &str = "myhostname = mx.example.com\nmydomain = example.com\n\
        inet_interfaces = loopback-only\nalias_maps = inline:{ postmaster=root, info=root }\n";

    #[test]
    fn classes() {
        let r = recipients(&format!(
            "{BASE}virtual_alias_domains = alias.example\n\
             virtual_mailbox_domains = mbox.example\nrelay_domains = relay.example, .sub.example\n"
        ));
        let class = |d: &str| r.resolve(d).unwrap().class;
        assert_eq!(class("u@MX.Example.com."), AddrClass::Local);
        assert_eq!(class("u@localhost"), AddrClass::Local);
        assert_eq!(class("u@localhost.example.com"), AddrClass::Local);
        assert_eq!(class("u@[127.0.0.1]"), AddrClass::Local);
        assert_eq!(class("u@[IPv6:::1]"), AddrClass::Local);
        assert_eq!(class("u@[192.0.2.1]"), AddrClass::Other);
        assert_eq!(class("u"), AddrClass::Local);
        assert_eq!(class("u@alias.example"), AddrClass::VirtualAlias);
        assert_eq!(class("u@mbox.example"), AddrClass::VirtualMailbox);
        assert_eq!(class("u@relay.example"), AddrClass::Relay);
        assert_eq!(class("u@x.relay.example"), AddrClass::Other);
        assert_eq!(class("u@a.sub.example"), AddrClass::Relay);
        assert_eq!(class("u@elsewhere.example"), AddrClass::Other);
        assert!(r.resolve("a%b@mx.example.com").unwrap().routed);
        assert_eq!(r.resolve("u").unwrap().domain, "mx.example.com");
    }

    #[test]
    fn local_recipients() {
        let r = recipients(&format!("{BASE}recipient_delimiter = +\n"));
        let unknown = |a: &str| r.unknown(&r.resolve(a).unwrap(), false).unwrap();
        assert_eq!(unknown("root@mx.example.com"), None);
        assert_eq!(unknown("Root+tag@MX.example.com"), None);
        assert_eq!(unknown("info@localhost"), None);
        assert_eq!(unknown("info"), None);
        assert_eq!(
            unknown("nobody-here-xyz@mx.example.com"),
            Some(Unknown::Local)
        );
        assert_eq!(unknown("MAILER-DAEMON@mx.example.com"), None);
        assert_eq!(unknown("double-bounce@mx.example.com"), None);
        assert_eq!(unknown("anyone@elsewhere.example"), None);
        let open = recipients(&format!("{BASE}local_recipient_maps =\n"));
        assert_eq!(
            open.unknown(&open.resolve("zz@localhost").unwrap(), false)
                .unwrap(),
            None
        );
    }

    #[test]
    fn virtual_recipients() {
        let r = recipients(&format!(
            "{BASE}virtual_alias_domains = alias.example\n\
             virtual_alias_maps = inline:{{ a@alias.example=x, any@else.example=y, @catch.example=z }}\n\
             virtual_mailbox_domains = mbox.example, catch.example\n\
             virtual_mailbox_maps = inline:{{ box@mbox.example=box/, @all.example=all/ }}\n\
             relay_domains = relay.example, all.example\nrelay_recipient_maps = inline:{{ r@relay.example=ok }}\n"
        ));
        let unknown = |a: &str| r.unknown(&r.resolve(a).unwrap(), false).unwrap();
        assert_eq!(unknown("a@alias.example"), None);
        assert_eq!(unknown("b@alias.example"), Some(Unknown::VirtualAlias));
        assert_eq!(unknown("any@else.example"), None);
        assert_eq!(unknown("box@mbox.example"), None);
        assert_eq!(unknown("nobox@mbox.example"), Some(Unknown::VirtualMailbox));
        assert_eq!(unknown("who@catch.example"), None);
        assert_eq!(unknown("r@relay.example"), None);
        assert_eq!(unknown("s@relay.example"), Some(Unknown::Relay));
        assert_eq!(unknown("s@all.example"), Some(Unknown::Relay));
    }

    #[test]
    fn broken_tables_fail_lookups_not_start_up() {
        let r = recipients(&format!(
            "{BASE}virtual_mailbox_domains = hash:/nonexistent/posthorn/vdoms\n"
        ));
        assert!(r.resolve("a@mx.example.com").is_ok());
        assert!(r.resolve("a@other.example").is_err());
        let c = Config::parse_str(
            &format!(
                "{BASE}virtual_mailbox_domains = v.example\nvirtual_mailbox_maps = bogus:/x\n"
            ),
            "main.cf",
        )
        .unwrap();
        let err = Recipients::from_config(&c, &|_| false).unwrap_err();
        assert!(
            err.to_string().starts_with("virtual_mailbox_maps: "),
            "{err}"
        );
    }
}
