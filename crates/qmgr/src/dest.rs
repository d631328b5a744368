//! Per-destination scheduling (Postfix's scheduler, SCHEDULER_README): each destination
//! (transport + next hop) has a concurrency window that starts at
//! `initial_destination_concurrency` and grows by one per successful delivery up to
//! `TRANSPORT_destination_concurrency_limit` (slow start); a failed connection shrinks it
//! by one. Failures count as pseudo-cohorts (1/window each, reset by a success); at
//! `TRANSPORT_destination_concurrency_failed_cohort_limit` the destination is dead: its
//! waiting jobs are deferred at once and new ones are not tried for `transport_retry_time`.
//! Destinations of one transport take turns (round robin), so one destination's backlog
//! never starves the others; a transport runs at most `default_process_limit` jobs at once.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// A transport's limits.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Starting window.
    pub initial: usize,
    /// Largest window.
    pub max: usize,
    /// Failed pseudo-cohorts that make a destination dead.
    pub cohort_limit: f64,
    /// How long a dead destination is left alone.
    pub retry: Duration,
    /// Jobs of the transport at once (all destinations).
    pub cap: usize,
}

/// How a job went, for the destination's window.
pub enum Feedback {
    /// The destination was reached (whatever the recipients' outcome).
    Reached,
    /// The destination could not be reached (connection, greeting, DNS), with the reason.
    Failed(String),
    /// Nothing learned about the destination (the delivery agent itself failed).
    Neutral,
}

struct Dest {
    pending: VecDeque<u64>,
    inflight: usize,
    window: f64,
    fail_cohorts: f64,
    dead_until: Option<Instant>,
    reason: String,
}

struct Transport {
    limits: Limits,
    dests: HashMap<String, Dest>,
    order: VecDeque<String>,
    inflight: usize,
}

/// All transports' destinations.
#[derive(Default)]
pub struct Destinations {
    transports: HashMap<String, Transport>,
}

impl Destinations {
    fn transport(&mut self, t: &str, limits: Limits) -> &mut Transport {
        self.transports
            .entry(t.to_string())
            .or_insert_with(|| Transport {
                limits,
                dests: HashMap::new(),
                order: VecDeque::new(),
                inflight: 0,
            })
    }

    /// Why `dest` is not being tried, if it is dead now.
    pub fn dead(&mut self, t: &str, dest: &str, now: Instant) -> Option<String> {
        let d = self.transports.get_mut(t)?.dests.get_mut(dest)?;
        match d.dead_until {
            Some(until) if now < until => Some(d.reason.clone()),
            Some(_) => {
                // Time to try again, from the start of the slow start; an idle entry goes.
                d.dead_until = None;
                d.fail_cohorts = 0.0;
                if d.pending.is_empty() && d.inflight == 0 {
                    self.transports.get_mut(t)?.dests.remove(dest);
                }
                None
            }
            None => None,
        }
    }

    /// Queues job `seq` for `dest`.
    pub fn enqueue(&mut self, t: &str, dest: &str, seq: u64, limits: Limits) {
        let tr = self.transport(t, limits);
        let initial = limits.initial.clamp(1, limits.max.max(1)) as f64;
        let d = tr.dests.entry(dest.to_string()).or_insert_with(|| Dest {
            pending: VecDeque::new(),
            inflight: 0,
            window: initial,
            fail_cohorts: 0.0,
            dead_until: None,
            reason: String::new(),
        });
        if d.pending.is_empty() {
            tr.order.push_back(dest.to_string());
        }
        d.pending.push_back(seq);
    }

    /// The jobs of transport `t` that may start now (marked in flight).
    pub fn ready(&mut self, t: &str, now: Instant) -> Vec<u64> {
        let Some(tr) = self.transports.get_mut(t) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut idle_turns = 0;
        while tr.inflight < tr.limits.cap && idle_turns < tr.order.len() {
            let Some(name) = tr.order.pop_front() else {
                break;
            };
            let Some(d) = tr.dests.get_mut(&name) else {
                continue;
            };
            let alive = d.dead_until.is_none_or(|u| now >= u);
            let room = (d.inflight as f64) < d.window.floor().max(1.0);
            if alive
                && room
                && let Some(seq) = d.pending.pop_front()
            {
                d.inflight += 1;
                tr.inflight += 1;
                out.push(seq);
                idle_turns = 0;
            } else {
                idle_turns += 1;
            }
            if !d.pending.is_empty() {
                tr.order.push_back(name);
            }
        }
        out
    }

    /// A job of `dest` finished. Returns the jobs to defer now when this made the
    /// destination dead, with the reason.
    pub fn done(
        &mut self,
        t: &str,
        dest: &str,
        fb: Feedback,
        now: Instant,
    ) -> Option<(Vec<u64>, String)> {
        let tr = self.transports.get_mut(t)?;
        tr.inflight = tr.inflight.saturating_sub(1);
        let limits = tr.limits;
        let d = tr.dests.get_mut(dest)?;
        d.inflight = d.inflight.saturating_sub(1);
        let result = match fb {
            Feedback::Reached => {
                d.fail_cohorts = 0.0;
                d.window = (d.window + 1.0).min(limits.max.max(1) as f64);
                None
            }
            Feedback::Neutral => None,
            Feedback::Failed(reason) => {
                d.fail_cohorts += 1.0 / d.window.max(1.0);
                d.window = (d.window - 1.0).max(1.0);
                d.reason = reason;
                if d.fail_cohorts >= limits.cohort_limit && d.dead_until.is_none() {
                    log::warn!("{t} destination {dest}: delivery suspended: {}", d.reason);
                    d.dead_until = Some(now + limits.retry);
                    let jobs: Vec<u64> = d.pending.drain(..).collect();
                    Some((jobs, d.reason.clone()))
                } else {
                    None
                }
            }
        };
        if d.pending.is_empty() && d.inflight == 0 && d.dead_until.is_none() {
            tr.dests.remove(dest);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            initial: 2,
            max: 4,
            cohort_limit: 1.0,
            retry: Duration::from_secs(60),
            cap: 100,
        }
    }

    #[test]
    fn slow_start_grows_the_window() {
        let mut d = Destinations::default();
        let now = Instant::now();
        for s in 0..10 {
            d.enqueue("smtp", "a.test", s, limits());
        }
        assert_eq!(d.ready("smtp", now), vec![0, 1]);
        assert!(d.ready("smtp", now).is_empty());
        d.done("smtp", "a.test", Feedback::Reached, now);
        // Window 3, one in flight: two more.
        assert_eq!(d.ready("smtp", now), vec![2, 3]);
        d.done("smtp", "a.test", Feedback::Reached, now);
        d.done("smtp", "a.test", Feedback::Reached, now);
        // Window 4 (the limit), one in flight: three more.
        assert_eq!(d.ready("smtp", now), vec![4, 5, 6]);
    }

    #[test]
    fn destinations_take_turns() {
        let mut d = Destinations::default();
        let now = Instant::now();
        for s in 0..100 {
            d.enqueue("smtp", "big.test", s, limits());
        }
        d.enqueue("smtp", "small.test", 1000, limits());
        let first = d.ready("smtp", now);
        assert!(first.contains(&1000), "{first:?}");
    }

    #[test]
    fn failures_kill_a_destination_and_defer_its_queue() {
        let mut d = Destinations::default();
        let now = Instant::now();
        for s in 0..5 {
            d.enqueue("smtp", "dead.test", s, limits());
        }
        assert_eq!(d.ready("smtp", now), vec![0, 1]);
        assert!(
            d.done("smtp", "dead.test", Feedback::Failed("refused".into()), now)
                .is_none()
        );
        // Window 1 now; 0.5 + 1.0 cohorts >= 1: dead.
        let (jobs, why) = d
            .done("smtp", "dead.test", Feedback::Failed("refused".into()), now)
            .expect("dead");
        assert_eq!(jobs, vec![2, 3, 4]);
        assert_eq!(why, "refused");
        assert_eq!(d.dead("smtp", "dead.test", now).as_deref(), Some("refused"));
        assert!(
            d.dead("smtp", "dead.test", now + Duration::from_secs(61))
                .is_none()
        );
    }

    #[test]
    fn the_transport_cap_holds() {
        let mut d = Destinations::default();
        let now = Instant::now();
        let l = Limits { cap: 3, ..limits() };
        for s in 0..10 {
            d.enqueue("smtp", &format!("d{s}.test"), s, l);
        }
        assert_eq!(d.ready("smtp", now).len(), 3);
    }
}
