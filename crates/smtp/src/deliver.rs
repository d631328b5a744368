//! One delivery request from start to end: the cached session for the next hop, else the
//! destination's servers in order (limits on addresses and sessions, plaintext retry after
//! a failed opportunistic handshake), then `smtp_fallback_relay`; one status per recipient.
//!
//! A recipient that fails temporarily at one server is tried at the next one (as Postfix
//! does); its status becomes final only when a server accepts or rejects it for good, or
//! when no server is left (then the last temporary reason is its deferral reason).

use posthorn_proto::delivery::{Outcome, Status};

use crate::cache::ConnCache;
use crate::route::{self, NextHop, Resolver};
use crate::session::{Request, Session};
use crate::settings::{SmtpSettings, TlsLevel};
use crate::tls::TlsClient;

/// The delivery agent's state: settings, resolver, TLS client and connection cache.
pub struct Agent {
    /// The settings.
    pub settings: SmtpSettings,
    resolver: Box<dyn Resolver>,
    tls: Option<TlsClient>,
    cache: ConnCache,
    started: std::time::Instant,
    /// Connection setup time of the last request (DNS, connect, greeting, EHLO, TLS, or the
    /// RSET of a reused connection), for the `c` of qmgr's `delays=a/b/c/d`.
    pub last_setup: Option<std::time::Duration>,
}

/// Per-recipient progress within one request.
struct Progress {
    done: Vec<Option<Status>>,
    tentative: Vec<Option<Status>>,
}

impl Progress {
    fn pending(&self) -> Vec<usize> {
        (0..self.done.len())
            .filter(|&i| self.done[i].is_none())
            .collect()
    }

    fn record(&mut self, i: usize, st: Status) {
        if st.outcome == Outcome::Deferred {
            self.tentative[i] = Some(st);
        } else {
            self.done[i] = Some(st);
        }
    }

    fn all_pending(
        &mut self,
        req: &Request<'_>,
        outcome: Outcome,
        dsn: &str,
        relay: &str,
        reason: &str,
    ) {
        for i in self.pending() {
            self.record(
                i,
                Status {
                    offset: req.rcpts[i].offset,
                    outcome,
                    dsn: dsn.to_string(),
                    relay: relay.to_string(),
                    reason: reason.to_string(),
                },
            );
        }
    }
}

impl Agent {
    /// An agent with `settings`, looking names up with `resolver`. A TLS setup problem is
    /// logged; sessions that need TLS then defer.
    pub fn new(settings: SmtpSettings, resolver: Box<dyn Resolver>) -> Agent {
        let tls = if settings.tls_level != TlsLevel::None || settings.tls_wrappermode {
            match TlsClient::new(&settings) {
                Ok(t) => Some(t),
                Err(e) => {
                    log::warn!("{e}: TLS is disabled");
                    None
                }
            }
        } else {
            None
        };
        Agent {
            settings,
            resolver,
            tls,
            cache: ConnCache::new(),
            started: std::time::Instant::now(),
            last_setup: None,
        }
    }

    /// Delivers `req`: one status per recipient, in request order.
    pub fn deliver(&mut self, req: &Request<'_>) -> Vec<Status> {
        self.started = std::time::Instant::now();
        self.last_setup = None;
        let n = req.rcpts.len();
        let mut p = Progress {
            done: vec![None; n],
            tentative: vec![None; n],
        };
        let dest = if req.nexthop.trim().is_empty() {
            req.rcpts
                .first()
                .and_then(|r| r.address.rsplit_once('@'))
                .map_or("", |(_, d)| d)
        } else {
            req.nexthop
        };
        let fallbacks = self.settings.fallback_relay.clone();
        self.try_destination(dest, req, &mut p, !fallbacks.is_empty());
        for relay in fallbacks {
            if p.pending().is_empty() {
                break;
            }
            log::debug!("{}: trying fallback relay {relay}", req.queue_id);
            self.try_destination(&relay, req, &mut p, false);
        }
        (0..n)
            .map(|i| {
                p.done[i]
                    .take()
                    .or_else(|| p.tentative[i].take())
                    .unwrap_or_else(|| Status {
                        offset: req.rcpts[i].offset,
                        outcome: Outcome::Deferred,
                        dsn: "4.4.1".into(),
                        relay: "none".into(),
                        reason: "delivery temporarily suspended: no server could be tried".into(),
                    })
            })
            .collect()
    }

    /// Closes idle sessions that expired.
    pub fn expire_cache(&mut self) {
        self.cache.expire(&self.settings);
    }

    /// Time until the next cached session expires.
    pub fn next_expiry(&self) -> Option<std::time::Duration> {
        self.cache.next_expiry(&self.settings)
    }

    /// Number of cached sessions.
    pub fn cached(&self) -> usize {
        self.cache.len()
    }

    /// Closes every cached session (QUIT).
    pub fn close_all(&mut self) {
        self.cache.close_all(&self.settings);
    }

    /// Tries one destination (the next hop or a fallback relay) for the pending recipients.
    /// With fallback relays still to try, a destination that cannot be found (NXDOMAIN,
    /// null MX) only defers here: smtp_fallback_relay covers destinations "that can't be
    /// found or that are unreachable".
    fn try_destination(
        &mut self,
        dest: &str,
        req: &Request<'_>,
        p: &mut Progress,
        fallback_follows: bool,
    ) {
        let key = dest.trim().to_ascii_lowercase();
        if let Some(mut session) = self.cache.take(&self.settings, &key) {
            if session.reset(self.settings.timeouts.rset) {
                log::debug!(
                    "{}: reusing connection to {}",
                    req.queue_id,
                    session.server.relay()
                );
                self.use_session(session, &key, req, p);
            } else {
                // A cached connection that does not answer RSET is as good as dead.
                session.abort();
            }
        }
        if p.pending().is_empty() {
            return;
        }
        let hop = match NextHop::parse(dest, self.settings.port) {
            Ok(h) => h,
            Err(e) => {
                log::warn!("{}: {e}", req.queue_id);
                p.all_pending(
                    req,
                    Outcome::Deferred,
                    "4.3.5",
                    "none",
                    &format!("mail system configuration error: {e}"),
                );
                return;
            }
        };
        let candidates = match route::candidates(&self.settings, self.resolver.as_ref(), &hop) {
            Ok(c) => c,
            Err(f) => {
                let outcome = if f.permanent && !fallback_follows {
                    Outcome::Bounced
                } else {
                    Outcome::Deferred
                };
                p.all_pending(req, outcome, &f.dsn, "none", &f.reason);
                return;
            }
        };
        let mut sessions = 0usize;
        for c in &candidates {
            if p.pending().is_empty() {
                break;
            }
            if self.settings.mx_session_limit > 0 && sessions >= self.settings.mx_session_limit {
                break;
            }
            let mut use_tls = true;
            loop {
                match Session::open(c, &self.settings, self.tls.as_ref(), &hop.host, use_tls) {
                    Ok(s) => {
                        sessions += 1;
                        self.use_session(s, &key, req, p);
                    }
                    Err(e) => {
                        if e.reached_smtp {
                            sessions += 1;
                        }
                        if e.retry_plaintext && use_tls {
                            log::info!(
                                "{}: {}; retrying {} without TLS",
                                req.queue_id,
                                e.reason,
                                c.relay()
                            );
                            use_tls = false;
                            continue;
                        }
                        let outcome = if e.permanent {
                            Outcome::Bounced
                        } else {
                            Outcome::Deferred
                        };
                        p.all_pending(req, outcome, &e.dsn, &c.relay(), &e.reason);
                    }
                }
                break;
            }
        }
    }

    /// Runs a transaction for the pending recipients and keeps the session if it is usable.
    fn use_session(&mut self, mut s: Session, key: &str, req: &Request<'_>, p: &mut Progress) {
        if self.last_setup.is_none() {
            self.last_setup = Some(self.started.elapsed());
        }
        let which = p.pending();
        let (statuses, usable) = s.transaction(&self.settings, req, &which);
        for (i, st) in statuses {
            p.record(i, st);
        }
        if usable {
            self.cache.put(&self.settings, key, s);
        } else {
            s.abort();
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.close_all();
    }
}
