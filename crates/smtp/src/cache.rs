//! The per-process connection cache: after a delivery the session is kept, keyed by next
//! hop, for `smtp_connection_cache_time_limit`; the next request for that next hop reuses
//! it (after RSET) while it is younger than `smtp_connection_reuse_time_limit` and has
//! served fewer than `smtp_connection_reuse_count_limit` transactions. Expired sessions
//! are closed with QUIT.

use std::time::{Duration, Instant};

use crate::session::Session;
use crate::settings::SmtpSettings;

#[derive(Debug)]
struct Entry {
    key: String,
    session: Session,
    idle_since: Instant,
}

/// Idle sessions by next hop.
#[derive(Debug, Default)]
pub struct ConnCache {
    entries: Vec<Entry>,
}

fn reusable(s: &SmtpSettings, session: &Session, now: Instant) -> bool {
    now.duration_since(session.created) < s.reuse_time_limit
        && (s.reuse_count_limit == 0 || session.transactions <= s.reuse_count_limit)
}

impl ConnCache {
    /// An empty cache.
    pub fn new() -> ConnCache {
        ConnCache::default()
    }

    /// Number of idle sessions.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no session is kept.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Takes the session kept for `key`, if it may still be used.
    pub fn take(&mut self, s: &SmtpSettings, key: &str) -> Option<Session> {
        self.expire(s);
        let pos = self.entries.iter().position(|e| e.key == key)?;
        Some(self.entries.swap_remove(pos).session)
    }

    /// Keeps `session` for `key` (closing the one kept before), unless its reuse limits
    /// are reached.
    pub fn put(&mut self, s: &SmtpSettings, key: &str, session: Session) {
        let now = Instant::now();
        if s.cache_time_limit.is_zero() || !reusable(s, &session, now) {
            session.quit(s.timeouts.quit);
            return;
        }
        if let Some(pos) = self.entries.iter().position(|e| e.key == key) {
            self.entries.swap_remove(pos).session.quit(closing_quit(s));
        }
        self.entries.push(Entry {
            key: key.to_string(),
            session,
            idle_since: now,
        });
    }

    /// Closes the sessions idle for `smtp_connection_cache_time_limit` or too old to reuse.
    pub fn expire(&mut self, s: &SmtpSettings) {
        let now = Instant::now();
        let (keep, old): (Vec<Entry>, Vec<Entry>) = std::mem::take(&mut self.entries)
            .into_iter()
            .partition(|e| {
                now.duration_since(e.idle_since) < s.cache_time_limit
                    && reusable(s, &e.session, now)
            });
        self.entries = keep;
        for e in old {
            log::debug!("closing cached connection to {}", e.session.server.relay());
            e.session.quit(closing_quit(s));
        }
    }

    /// Time until the next session expires (None: nothing is kept).
    pub fn next_expiry(&self, s: &SmtpSettings) -> Option<Duration> {
        let now = Instant::now();
        self.entries
            .iter()
            .map(|e| {
                let idle = s
                    .cache_time_limit
                    .saturating_sub(now.duration_since(e.idle_since));
                let age = s
                    .reuse_time_limit
                    .saturating_sub(now.duration_since(e.session.created));
                idle.min(age)
            })
            .min()
    }

    /// Closes every session (at exit).
    pub fn close_all(&mut self, s: &SmtpSettings) {
        for e in std::mem::take(&mut self.entries) {
            e.session.quit(closing_quit(s));
        }
    }
}

/// How long closing an idle cached connection may wait for the QUIT reply: a polite
/// goodbye, not worth stalling the next delivery for a dead peer (`smtp_quit_timeout`
/// still applies, when it is shorter).
fn closing_quit(s: &SmtpSettings) -> std::time::Duration {
    s.timeouts.quit.min(std::time::Duration::from_secs(2))
}
