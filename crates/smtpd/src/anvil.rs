//! Per-client connection counts and rates (Postfix's anvil, kept inside the smtpd process:
//! one smtpd process serves most connections, so its counts are the service's counts when
//! master runs one smtpd; with several processes each counts its own clients).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

#[derive(Default)]
struct Window {
    start: Option<Instant>,
    count: u32,
}

impl Window {
    fn hit(&mut self, now: Instant, unit: Duration) -> u32 {
        if self.start.is_none_or(|s| now.duration_since(s) >= unit) {
            self.start = Some(now);
            self.count = 0;
        }
        self.count += 1;
        self.count
    }

    fn expired(&self, now: Instant, unit: Duration) -> bool {
        self.start.is_none_or(|s| now.duration_since(s) >= unit)
    }
}

#[derive(Default)]
struct Client {
    connections: u32,
    connect_rate: Window,
    message_rate: Window,
}

/// The counters.
pub struct Anvil {
    unit: Duration,
    clients: HashMap<IpAddr, Client>,
}

impl Anvil {
    /// Counters over `anvil_rate_time_unit`.
    pub fn new(unit: Duration) -> Anvil {
        Anvil {
            unit: unit.max(Duration::from_secs(1)),
            clients: HashMap::new(),
        }
    }

    /// A client connected: returns (simultaneous connections, connections this unit).
    pub fn connect(&mut self, ip: IpAddr) -> (u32, u32) {
        let now = Instant::now();
        let c = self.clients.entry(ip).or_default();
        c.connections += 1;
        let rate = c.connect_rate.hit(now, self.unit);
        (c.connections, rate)
    }

    /// A client disconnected.
    pub fn disconnect(&mut self, ip: IpAddr) {
        let now = Instant::now();
        let unit = self.unit;
        if let Some(c) = self.clients.get_mut(&ip) {
            c.connections = c.connections.saturating_sub(1);
            if c.connections == 0
                && c.connect_rate.expired(now, unit)
                && c.message_rate.expired(now, unit)
            {
                self.clients.remove(&ip);
            }
        }
    }

    /// A client started a message: returns messages this unit.
    pub fn message(&mut self, ip: IpAddr) -> u32 {
        let now = Instant::now();
        self.clients
            .entry(ip)
            .or_default()
            .message_rate
            .hit(now, self.unit)
    }

    /// Forgets clients with nothing left to count.
    pub fn prune(&mut self) {
        let now = Instant::now();
        let unit = self.unit;
        self.clients.retain(|_, c| {
            c.connections > 0
                || !c.connect_rate.expired(now, unit)
                || !c.message_rate.expired(now, unit)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_rates() {
        let mut a = Anvil::new(Duration::from_secs(60));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(a.connect(ip), (1, 1));
        assert_eq!(a.connect(ip), (2, 2));
        a.disconnect(ip);
        assert_eq!(a.connect(ip), (2, 3));
        assert_eq!(a.message(ip), 1);
        assert_eq!(a.message(ip), 2);
        a.disconnect(ip);
        a.disconnect(ip);
        a.prune();
        // Rates survive disconnects within the unit.
        assert_eq!(a.connect(ip), (1, 4));
    }
}
