//! transport(5) tables: which keys are tried for a recipient, and what a result means.

use posthorn_tables::{TableList, split_local_part};

use crate::{ResolveError, Route};

/// The nexthop Postfix gives the error and retry transports when a table names them
/// without text.
const UNDELIVERABLE: &str = "Address is undeliverable";

/// The opened transport_maps and how they match parent domains.
#[derive(Debug)]
pub(crate) struct TransportMaps {
    pub(crate) tables: TableList,
    /// transport_maps is listed in parent_domain_matches_subdomains: parent domains are
    /// looked up as `example.com` instead of `.example.com`.
    pub(crate) parent_style: bool,
    /// recipient_delimiter: `user+ext@domain` is also looked up as `user@domain`.
    pub(crate) delimiter: String,
}

impl TransportMaps {
    /// Applies the first entry that matches `recipient` (lowercased, `local@domain`) to
    /// `route`. Keys, in order: the address, the address without its extension, the
    /// domain, its parents (`.parent` or `parent`), then `*`.
    pub(crate) fn apply(
        &self,
        local: &str,
        domain: &str,
        route: &mut Route,
    ) -> Result<(), ResolveError> {
        if self.tables.is_empty() {
            return Ok(());
        }
        let mut keys = vec![format!("{local}@{domain}")];
        if let (base, Some(_)) = split_local_part(local, &self.delimiter) {
            keys.push(format!("{base}@{domain}"));
        }
        keys.push(domain.to_string());
        for (i, _) in domain.match_indices('.') {
            let parent = if self.parent_style {
                &domain[i + 1..]
            } else {
                &domain[i..]
            };
            if !parent.is_empty() && parent != "." {
                keys.push(parent.to_string());
            }
        }
        keys.push("*".to_string());
        for key in keys {
            let found = self
                .tables
                .lookup(&key)
                .map_err(|source| ResolveError::Lookup {
                    param: "transport_maps".to_string(),
                    key: key.clone(),
                    source,
                })?;
            if let Some(value) = found {
                update(route, value.trim(), domain);
                log::debug!("transport_maps: {key} -> {value}");
                return Ok(());
            }
        }
        Ok(())
    }
}

/// Applies one transport(5) result: `transport:nexthop`, `:nexthop` (keep the transport),
/// `:` (keep both), `transport` or `transport:` (nexthop becomes the recipient domain).
fn update(route: &mut Route, value: &str, domain: &str) {
    let (transport, nexthop) = value.split_once(':').unwrap_or((value, ""));
    let (transport, nexthop) = (transport.trim(), nexthop.trim());
    if !transport.is_empty() {
        route.transport = transport.to_string();
        route.nexthop = if !nexthop.is_empty() {
            nexthop.to_string()
        } else if transport == "error" || transport == "retry" {
            UNDELIVERABLE.to_string()
        } else {
            domain.to_string()
        };
    } else if !nexthop.is_empty() {
        route.nexthop = nexthop.to_string();
    }
}
