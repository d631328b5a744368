//! Restriction lists: the names Postfix uses, parsed once into [`Restriction`]s with their
//! access tables opened, and the check that relaying is under control.

use std::collections::HashMap;
use std::sync::Arc;

use posthorn_config::split_list;

use crate::PolicyError;
use crate::maps::{Map, OpenMode};

/// Which `check_*_access` a table serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AccessKind {
    /// `check_client_access`: client name (and parents), then address (and networks).
    Client,
    /// `check_helo_access`: HELO name and parents.
    Helo,
    /// `check_sender_access`: sender address forms.
    Sender,
    /// `check_recipient_access`: recipient address forms.
    Recipient,
}

impl AccessKind {
    /// The restriction name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            AccessKind::Client => "check_client_access",
            AccessKind::Helo => "check_helo_access",
            AccessKind::Sender => "check_sender_access",
            AccessKind::Recipient => "check_recipient_access",
        }
    }
}

/// An open access table and the spec it came from (for logs).
#[derive(Debug)]
pub(crate) struct AccessTable {
    /// The spec as written, e.g. `hash:/etc/postfix/access`.
    pub(crate) spec: String,
    /// The table.
    pub(crate) map: Map,
}

/// One restriction.
#[derive(Debug, Clone)]
pub(crate) enum Restriction {
    /// `permit`.
    Permit,
    /// `reject`.
    Reject,
    /// `defer`.
    Defer,
    /// `warn_if_reject`: the next restriction only logs what it would reject.
    WarnIfReject,
    /// `reject_unauth_pipelining`.
    RejectUnauthPipelining,
    /// `permit_mynetworks`.
    PermitMynetworks,
    /// `permit_inet_interfaces`.
    PermitInetInterfaces,
    /// `permit_sasl_authenticated` (posthorn has no SASL yet: never matches).
    PermitSaslAuthenticated,
    /// `check_{client,helo,sender,recipient}_access type:table`.
    Access(AccessKind, Arc<AccessTable>),
    /// `reject_invalid_helo_hostname` (also `reject_invalid_hostname`).
    RejectInvalidHelo,
    /// `reject_non_fqdn_helo_hostname` (also `reject_non_fqdn_hostname`).
    RejectNonFqdnHelo,
    /// `reject_non_fqdn_sender`.
    RejectNonFqdnSender,
    /// `reject_non_fqdn_recipient`.
    RejectNonFqdnRecipient,
    /// `reject_unlisted_sender`.
    RejectUnlistedSender,
    /// `reject_unlisted_recipient` (also `check_recipient_maps`).
    RejectUnlistedRecipient,
    /// `permit_auth_destination`.
    PermitAuthDestination,
    /// `reject_unauth_destination`.
    RejectUnauthDestination,
    /// `defer_unauth_destination`.
    DeferUnauthDestination,
    /// A name from `smtpd_restriction_classes`.
    Class(Arc<str>),
}

/// Restrictions Postfix has and posthorn does not implement (yet): refused at start-up so
/// that a configuration never means less than it says.
const UNSUPPORTED: &[&str] = &[
    "check_address_map",
    "check_ccert_access",
    "check_client_a_access",
    "check_client_mx_access",
    "check_client_ns_access",
    "check_etrn_access",
    "check_helo_a_access",
    "check_helo_mx_access",
    "check_helo_ns_access",
    "check_policy_service",
    "check_recipient_a_access",
    "check_recipient_mx_access",
    "check_recipient_ns_access",
    "check_relay_domains",
    "check_reverse_client_a_access",
    "check_reverse_client_access",
    "check_reverse_client_mx_access",
    "check_reverse_client_ns_access",
    "check_sasl_access",
    "check_sender_a_access",
    "check_sender_mx_access",
    "check_sender_ns_access",
    "defer_if_permit",
    "defer_if_reject",
    "permit_dnswl_client",
    "permit_mx_backup",
    "permit_naked_ip_address",
    "permit_rhswl_client",
    "permit_tls_all_clientcerts",
    "permit_tls_clientcerts",
    "reject_authenticated_sender_login_mismatch",
    "reject_known_sender_login_mismatch",
    "reject_maps_rbl",
    "reject_multi_recipient_bounce",
    "reject_plaintext_session",
    "reject_rbl",
    "reject_rbl_client",
    "reject_rhsbl_client",
    "reject_rhsbl_helo",
    "reject_rhsbl_recipient",
    "reject_rhsbl_reverse_client",
    "reject_rhsbl_sender",
    "reject_sender_login_mismatch",
    "reject_unauthenticated_sender_login_mismatch",
    "reject_unknown_address",
    "reject_unknown_client",
    "reject_unknown_client_hostname",
    "reject_unknown_helo_hostname",
    "reject_unknown_hostname",
    "reject_unknown_recipient_domain",
    "reject_unknown_reverse_client_hostname",
    "reject_unknown_sender_domain",
    "reject_unverified_recipient",
    "reject_unverified_sender",
    "sleep",
];

/// Restrictions that make a list refuse unauthorized relaying (Postfix's `rcpt_required`,
/// less the ones posthorn does not implement).
const RELAY_GUARDS: &[&str] = &[
    "reject_unauth_destination",
    "defer_unauth_destination",
    "reject",
    "defer",
];

/// Where a list is parsed: its parameter, the restriction a bare `type:table` stands for,
/// whether tables may be opened, and the restriction classes.
pub(crate) struct ParseCtx<'a> {
    /// The parameter (or access table) the words come from, for errors.
    pub(crate) param: &'a str,
    /// What a bare `type:table` means in this list (`None`: not allowed).
    pub(crate) default_access: Option<AccessKind>,
    /// Whether `type:table` arguments may appear (not in access table results).
    pub(crate) tables_allowed: bool,
    /// Names defined by `smtpd_restriction_classes`.
    pub(crate) classes: &'a HashMap<String, Arc<[Restriction]>>,
    /// Class names: known while the classes themselves are parsed.
    pub(crate) class_names: &'a [String],
}

impl ParseCtx<'_> {
    /// Parses a list value (words separated by commas and whitespace).
    pub(crate) fn parse(&self, value: &str) -> Result<Vec<Restriction>, PolicyError> {
        let words = split_list(value);
        let mut out = Vec::with_capacity(words.len());
        let mut i = 0;
        while i < words.len() {
            let word = &words[i];
            i += 1;
            if word.contains(':') {
                let Some(kind) = self.default_access else {
                    return Err(PolicyError::BareTable {
                        param: self.param.to_owned(),
                        spec: word.clone(),
                    });
                };
                out.push(Restriction::Access(kind, self.open(kind, word)?));
                continue;
            }
            let name = word.to_ascii_lowercase();
            let access = match name.as_str() {
                "check_client_access" => Some(AccessKind::Client),
                "check_helo_access" => Some(AccessKind::Helo),
                "check_sender_access" => Some(AccessKind::Sender),
                "check_recipient_access" => Some(AccessKind::Recipient),
                _ => None,
            };
            if let Some(kind) = access {
                let Some(arg) = words.get(i).filter(|a| a.contains(':')) else {
                    return Err(PolicyError::MissingTable {
                        param: self.param.to_owned(),
                        restriction: name,
                        found: words.get(i).cloned(),
                    });
                };
                i += 1;
                out.push(Restriction::Access(kind, self.open(kind, arg)?));
                continue;
            }
            let restriction = match name.as_str() {
                "permit" => Restriction::Permit,
                "reject" => Restriction::Reject,
                "defer" => Restriction::Defer,
                "warn_if_reject" => Restriction::WarnIfReject,
                "reject_unauth_pipelining" => Restriction::RejectUnauthPipelining,
                "permit_mynetworks" => Restriction::PermitMynetworks,
                "permit_inet_interfaces" => Restriction::PermitInetInterfaces,
                "permit_sasl_authenticated" => Restriction::PermitSaslAuthenticated,
                "reject_invalid_helo_hostname" | "reject_invalid_hostname" => {
                    Restriction::RejectInvalidHelo
                }
                "reject_non_fqdn_helo_hostname" | "reject_non_fqdn_hostname" => {
                    Restriction::RejectNonFqdnHelo
                }
                "reject_non_fqdn_sender" => Restriction::RejectNonFqdnSender,
                "reject_non_fqdn_recipient" => Restriction::RejectNonFqdnRecipient,
                "reject_unlisted_sender" => Restriction::RejectUnlistedSender,
                "reject_unlisted_recipient" | "check_recipient_maps" => {
                    Restriction::RejectUnlistedRecipient
                }
                "permit_auth_destination" => Restriction::PermitAuthDestination,
                "reject_unauth_destination" => Restriction::RejectUnauthDestination,
                "defer_unauth_destination" => Restriction::DeferUnauthDestination,
                _ if self.classes.contains_key(word) || self.class_names.contains(word) => {
                    Restriction::Class(Arc::from(word.as_str()))
                }
                _ if UNSUPPORTED.contains(&name.as_str()) => {
                    return Err(PolicyError::Unsupported {
                        param: self.param.to_owned(),
                        restriction: word.clone(),
                    });
                }
                _ => {
                    return Err(PolicyError::UnknownRestriction {
                        param: self.param.to_owned(),
                        restriction: word.clone(),
                    });
                }
            };
            if matches!(
                restriction,
                Restriction::Permit | Restriction::Reject | Restriction::Defer
            ) && let Some(next) = words.get(i)
                && !matches!(out.last(), Some(Restriction::WarnIfReject))
            {
                log::warn!(
                    "{}: restriction `{next}' after `{word}' is ignored",
                    self.param
                );
            }
            out.push(restriction);
        }
        Ok(out)
    }

    /// Opens the table of a `check_*_access` restriction.
    fn open(&self, kind: AccessKind, spec: &str) -> Result<Arc<AccessTable>, PolicyError> {
        if !self.tables_allowed {
            return Err(PolicyError::BareTable {
                param: self.param.to_owned(),
                spec: spec.to_owned(),
            });
        }
        let map = Map::open(spec, OpenMode::Strict).map_err(|source| PolicyError::Table {
            param: self.param.to_owned(),
            spec: format!("{} {spec}", kind.name()),
            source,
        })?;
        Ok(Arc::new(AccessTable {
            spec: spec.to_owned(),
            map,
        }))
    }
}

/// Whether `list` contains a restriction that refuses unauthorized relaying before any
/// `permit` (Postfix's `has_required`): `warn_if_reject X` does not count, classes do.
pub(crate) fn has_relay_guard(
    list: &[Restriction],
    classes: &HashMap<String, Arc<[Restriction]>>,
    depth: usize,
) -> bool {
    if depth > 20 {
        return false;
    }
    let mut skip_next = false;
    for r in list {
        if std::mem::take(&mut skip_next) {
            continue;
        }
        match r {
            Restriction::WarnIfReject => skip_next = true,
            Restriction::Permit => return false,
            Restriction::Reject
            | Restriction::Defer
            | Restriction::RejectUnauthDestination
            | Restriction::DeferUnauthDestination => return true,
            Restriction::Class(name)
                if classes
                    .get(name.as_ref())
                    .is_some_and(|inner| has_relay_guard(inner, classes, depth + 1)) =>
            {
                return true;
            }
            _ => {}
        }
    }
    false
}

/// The restriction names that count as relay control, for the error message.
pub(crate) fn relay_guard_names() -> String {
    let (last, rest) = RELAY_GUARDS.split_last().unwrap_or((&"", &[]));
    format!("{} or {last}", rest.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(value: &str) -> Result<Vec<Restriction>, PolicyError> {
        let classes = HashMap::new();
        ParseCtx {
            param: "smtpd_client_restrictions",
            default_access: Some(AccessKind::Client),
            tables_allowed: true,
            classes: &classes,
            class_names: &[],
        }
        .parse(value)
    }

    #[test]
    fn names_and_aliases() {
        let list = parse(
            "Permit_MyNetworks, reject_invalid_hostname reject_non_fqdn_hostname \
             check_recipient_maps warn_if_reject reject",
        )
        .unwrap();
        assert!(matches!(
            list.as_slice(),
            [
                Restriction::PermitMynetworks,
                Restriction::RejectInvalidHelo,
                Restriction::RejectNonFqdnHelo,
                Restriction::RejectUnlistedRecipient,
                Restriction::WarnIfReject,
                Restriction::Reject
            ]
        ));
    }

    #[test]
    fn tables_need_a_type() {
        let list = parse("check_client_access inline:{ 1.2.3.4=REJECT }, inline:{a=OK}").unwrap();
        assert!(matches!(
            list.as_slice(),
            [
                Restriction::Access(AccessKind::Client, _),
                Restriction::Access(AccessKind::Client, _)
            ]
        ));
        let err = parse("check_sender_access").unwrap_err();
        assert!(matches!(err, PolicyError::MissingTable { .. }), "{err}");
        let err = parse("check_sender_access permit").unwrap_err();
        assert!(err.to_string().contains("need type:table"), "{err}");
        let err = parse("check_helo_access hash:/nonexistent/posthorn").unwrap_err();
        assert!(matches!(err, PolicyError::Table { .. }), "{err}");
        assert!(
            err.to_string().contains("smtpd_client_restrictions"),
            "{err}"
        );
    }

    #[test]
    fn unknown_and_unsupported_names() {
        let err = parse("permit_mynetworks reject_everything").unwrap_err();
        assert_eq!(
            err.to_string(),
            "smtpd_client_restrictions: unknown restriction \"reject_everything\""
        );
        let err = parse("reject_unknown_client_hostname").unwrap_err();
        assert!(matches!(err, PolicyError::Unsupported { .. }), "{err}");
        assert!(err.to_string().contains("reject_unknown_client_hostname"));
    }

    #[test]
    fn relay_guard() {
        let classes = HashMap::new();
        let guard = |v: &str| has_relay_guard(&parse(v).unwrap(), &classes, 0);
        assert!(guard(
            "permit_mynetworks, permit_sasl_authenticated, defer_unauth_destination"
        ));
        assert!(guard("permit_mynetworks reject"));
        assert!(!guard("permit_mynetworks"));
        assert!(!guard("permit reject_unauth_destination"));
        assert!(!guard("warn_if_reject reject_unauth_destination"));
        assert_eq!(
            relay_guard_names(),
            "reject_unauth_destination, defer_unauth_destination, reject or defer"
        );
    }
}
