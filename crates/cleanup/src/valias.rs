//! virtual_alias_maps expansion (Postfix's virtual(5) aliasing, done in cleanup for every
//! message whatever its origin): each recipient is looked up as `user@domain` and
//! `@domain` (and as `user` when the domain is this host's own), and replaced by the
//! comma-separated result, recursively; an address that maps to itself stays.

use posthorn_config::Config;
use posthorn_queue::file::Recipient;
use posthorn_tables::TableList;
use posthorn_tables::{AddressLookup, lookup_address_with};

/// The tables and limits, read once per connection.
pub struct VirtualAlias {
    tables: TableList,
    delimiter: String,
    own_domains: Vec<String>,
    recursion_limit: usize,
    expansion_limit: usize,
}

/// Why an expansion failed (the message is deferred: 4.3.0).
pub struct LookupFailure(pub String);

impl VirtualAlias {
    /// The expansion main.cf asks for, or None when virtual_alias_maps is empty. A table
    /// that cannot be opened is an error for every message (deferred, never mis-delivered).
    pub fn from_config(c: &Config) -> Result<Option<VirtualAlias>, String> {
        let spec = c.get("virtual_alias_maps");
        if spec.trim().is_empty() {
            return Ok(None);
        }
        let tables =
            TableList::from_value(&spec).map_err(|e| format!("virtual_alias_maps: {e}"))?;
        if tables.is_empty() {
            return Ok(None);
        }
        let mut own_domains: Vec<String> = c
            .get_list("mydestination")
            .into_iter()
            .filter(|d| !d.contains(':'))
            .collect();
        own_domains.push(c.get("myorigin"));
        own_domains.push(c.get("myhostname"));
        let limit = |n: &str| usize::try_from(c.get_int(n)).unwrap_or(1000).max(1);
        Ok(Some(VirtualAlias {
            tables,
            delimiter: c.get("recipient_delimiter"),
            own_domains: own_domains
                .into_iter()
                .map(|d| d.to_ascii_lowercase())
                .collect(),
            recursion_limit: limit("virtual_alias_recursion_limit"),
            expansion_limit: limit("virtual_alias_expansion_limit"),
        }))
    }

    fn lookup(&self, addr: &str) -> Result<Option<String>, LookupFailure> {
        let own = addr
            .rsplit_once('@')
            .is_some_and(|(_, d)| self.own_domains.iter().any(|o| o.eq_ignore_ascii_case(d)));
        let opts = AddressLookup {
            full: true,
            local_part: own,
            at_domain: true,
        };
        lookup_address_with(&self.tables, addr, &self.delimiter, opts)
            .map_err(|e| LookupFailure(format!("virtual_alias_maps lookup of {addr}: {e}")))
    }

    fn expand_one(
        &self,
        addr: &str,
        depth: usize,
        out: &mut Vec<String>,
    ) -> Result<(), LookupFailure> {
        if out.len() >= self.expansion_limit {
            log::warn!(
                "virtual alias expansion of {addr}: more than {} addresses",
                self.expansion_limit
            );
            return Ok(());
        }
        let Some(value) = self.lookup(addr)? else {
            out.push(addr.to_string());
            return Ok(());
        };
        if depth >= self.recursion_limit {
            log::warn!(
                "virtual alias expansion of {addr}: nested more than {} levels",
                self.recursion_limit
            );
            out.push(addr.to_string());
            return Ok(());
        }
        for target in value.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            if target.eq_ignore_ascii_case(addr) {
                out.push(target.to_string());
            } else {
                self.expand_one(target, depth + 1, out)?;
            }
        }
        Ok(())
    }

    /// Expands every recipient; new recipients keep the original address (`orig`) and the
    /// DSN fields of the one they came from.
    pub fn expand(&self, rcpts: Vec<Recipient>) -> Result<Vec<Recipient>, LookupFailure> {
        let mut out = Vec::with_capacity(rcpts.len());
        for r in rcpts {
            let mut targets = Vec::new();
            self.expand_one(&r.address, 0, &mut targets)?;
            if targets.len() == 1 && targets[0].eq_ignore_ascii_case(&r.address) {
                out.push(r);
                continue;
            }
            let orig = r.orig.clone().unwrap_or_else(|| r.address.clone());
            for t in targets {
                out.push(Recipient {
                    address: t,
                    orig: Some(orig.clone()),
                    notify: r.notify.clone(),
                    orcpt: r.orcpt.clone(),
                    ..Default::default()
                });
            }
        }
        Ok(out)
    }
}
