//! A tiny authoritative name server for tests: answers UDP and TCP queries on 127.0.0.1 from a
//! zone given as text, so end-to-end tests never leave the machine.
//!
//! Zone lines (one per line, `#` comments and blank lines ignored, names case-insensitive,
//! trailing dot optional):
//! ```text
//! example.test MX 10 mx1.example.test
//! mx1.example.test A 127.0.0.2
//! v6.example.test AAAA ::1
//! nullmx.test MX 0 .
//! servfail.test SERVFAIL
//! ```
//! Names not listed get NXDOMAIN; listed names without the asked type get NOERROR with no
//! answers (NoData); a SERVFAIL name gets SERVFAIL for every type. Malformed lines are skipped
//! with a `log::warn!`.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, MX};
use hickory_proto::rr::{Name, RData, Record};

/// How often the server threads check the stop flag.
const POLL: Duration = Duration::from_millis(50);

/// One zone entry.
#[derive(Clone, Debug)]
enum Entry {
    /// A record data for the name (MX, A or AAAA).
    Data(RData),
    /// Answer SERVFAIL for every query of the name.
    ServFail,
}

/// Zone: lowercase name without trailing dot -> entries.
type Zone = HashMap<String, Vec<Entry>>;

/// A running test name server; stops when dropped.
pub struct TestDns {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl TestDns {
    /// Starts a server for `zone` on 127.0.0.1 at a port chosen by the kernel (UDP, and TCP on
    /// the same port when that port is free for TCP too).
    ///
    /// Panics if no UDP socket can be bound on 127.0.0.1 (test-only code).
    pub fn start(zone: &str) -> TestDns {
        let zone = Arc::new(parse_zone(zone));
        let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("testserver: bind UDP");
        udp.set_read_timeout(Some(POLL))
            .expect("testserver: UDP read timeout");
        let addr = udp.local_addr().expect("testserver: UDP local_addr");
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        {
            let (zone, stop) = (zone.clone(), stop.clone());
            threads.push(std::thread::spawn(move || serve_udp(udp, &zone, &stop)));
        }
        match TcpListener::bind(addr) {
            Ok(tcp) if tcp.set_nonblocking(true).is_ok() => {
                let stop = stop.clone();
                threads.push(std::thread::spawn(move || serve_tcp(tcp, &zone, &stop)));
            }
            Ok(_) | Err(_) => log::warn!("testserver: no TCP listener on {addr}"),
        }
        TestDns {
            addr,
            stop,
            threads,
        }
    }

    /// The UDP (and TCP) address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// "127.0.0.1:PORT", for `smtp_dns_servers` or [`crate::Dns::new`].
    pub fn server_spec(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for TestDns {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Parses the zone text; bad lines are logged and skipped.
fn parse_zone(text: &str) -> Zone {
    let mut zone = Zone::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        let entry = match (f.get(1).map(|t| t.to_ascii_uppercase()).as_deref(), f.len()) {
            (Some("SERVFAIL"), 2) => Some(Entry::ServFail),
            (Some("A"), 3) => f[2]
                .parse::<Ipv4Addr>()
                .ok()
                .map(|ip| Entry::Data(RData::A(A(ip)))),
            (Some("AAAA"), 3) => f[2]
                .parse::<Ipv6Addr>()
                .ok()
                .map(|ip| Entry::Data(RData::AAAA(AAAA(ip)))),
            (Some("MX"), 4) => {
                let pref = f[2].parse::<u16>().ok();
                let host = if f[3] == "." {
                    Some(Name::root())
                } else {
                    Name::from_ascii(format!("{}.", f[3].trim_end_matches('.'))).ok()
                };
                pref.zip(host)
                    .map(|(p, h)| Entry::Data(RData::MX(MX::new(p, h))))
            }
            _ => None,
        };
        match entry {
            Some(e) => zone.entry(key(f[0])).or_default().push(e),
            None => log::warn!("testserver: bad zone line: {line}"),
        }
    }
    zone
}

/// Zone key of a name: lowercase, no trailing dot.
fn key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// Builds the wire reply to a wire query, or None for garbage.
fn answer(zone: &Zone, request: &[u8]) -> Option<Vec<u8>> {
    let req = Message::from_vec(request).ok()?;
    if req.metadata.message_type != MessageType::Query {
        return None;
    }
    let mut resp = Message::response(req.metadata.id, req.metadata.op_code);
    resp.metadata.recursion_desired = req.metadata.recursion_desired;
    resp.metadata.recursion_available = true;
    resp.metadata.authoritative = true;
    let Some(query) = req.queries.first() else {
        resp.metadata.response_code = ResponseCode::FormErr;
        return resp.to_vec().ok();
    };
    resp.add_query(query.clone());
    let qtype = query.query_type;
    match zone.get(&key(&query.name.to_ascii())) {
        None => resp.metadata.response_code = ResponseCode::NXDomain,
        Some(entries) if entries.iter().any(|e| matches!(e, Entry::ServFail)) => {
            resp.metadata.response_code = ResponseCode::ServFail;
        }
        Some(entries) => {
            for e in entries {
                if let Entry::Data(rdata) = e
                    && rdata.record_type() == qtype
                {
                    resp.add_answer(Record::from_rdata(query.name.clone(), 60, rdata.clone()));
                }
            }
        }
    }
    resp.to_vec().ok()
}

/// UDP loop: one datagram in, one out, until `stop`.
fn serve_udp(sock: UdpSocket, zone: &Zone, stop: &AtomicBool) {
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        let Ok((n, peer)) = sock.recv_from(&mut buf) else {
            continue; // timeout (or a transient error): check the flag again
        };
        if let Some(reply) = answer(zone, &buf[..n]) {
            let _ = sock.send_to(&reply, peer);
        }
    }
}

/// TCP loop: polls a non-blocking listener, serves each connection in turn until `stop`.
fn serve_tcp(listener: TcpListener, zone: &Zone, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((conn, _)) => {
                let _ = serve_tcp_conn(conn, zone, stop);
            }
            Err(_) => std::thread::sleep(POLL),
        }
    }
}

/// Serves length-prefixed queries on one TCP connection until EOF, error or `stop`.
fn serve_tcp_conn(mut conn: TcpStream, zone: &Zone, stop: &AtomicBool) -> std::io::Result<()> {
    conn.set_nonblocking(false)?;
    conn.set_read_timeout(Some(Duration::from_millis(500)))?;
    while !stop.load(Ordering::Relaxed) {
        let mut len = [0u8; 2];
        conn.read_exact(&mut len)?;
        let mut req = vec![0u8; usize::from(u16::from_be_bytes(len))];
        conn.read_exact(&mut req)?;
        if let Some(reply) = answer(zone, &req) {
            let Ok(n) = u16::try_from(reply.len()) else {
                continue;
            };
            conn.write_all(&n.to_be_bytes())?;
            conn.write_all(&reply)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;
    use hickory_proto::rr::RecordType;

    fn ask(addr: SocketAddr, name: &str, rtype: RecordType) -> Message {
        let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut q = Message::query();
        q.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
        sock.send_to(&q.to_vec().unwrap(), addr).unwrap();
        let mut buf = [0u8; 4096];
        let (n, _) = sock.recv_from(&mut buf).unwrap();
        let resp = Message::from_vec(&buf[..n]).unwrap();
        assert_eq!(resp.metadata.id, q.metadata.id);
        resp
    }

    #[test]
    fn answers_nxdomain_nodata_servfail_and_records() {
        let s = TestDns::start("a.test A 127.0.0.2\n# comment\nbad line\nsf.test SERVFAIL\n");
        assert_eq!(s.server_spec(), s.addr().to_string());
        let r = ask(s.addr(), "A.test.", RecordType::A);
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert_eq!(r.answers.len(), 1);
        let r = ask(s.addr(), "a.test.", RecordType::MX);
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert!(r.answers.is_empty());
        let r = ask(s.addr(), "b.test.", RecordType::A);
        assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
        let r = ask(s.addr(), "sf.test.", RecordType::AAAA);
        assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
    }

    #[test]
    fn answers_over_tcp() {
        let s = TestDns::start("a.test AAAA ::1\n");
        let mut conn = TcpStream::connect(s.addr()).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut q = Message::query();
        q.add_query(Query::query(
            Name::from_ascii("a.test.").unwrap(),
            RecordType::AAAA,
        ));
        let wire = q.to_vec().unwrap();
        conn.write_all(&(wire.len() as u16).to_be_bytes()).unwrap();
        conn.write_all(&wire).unwrap();
        let mut len = [0u8; 2];
        conn.read_exact(&mut len).unwrap();
        let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
        conn.read_exact(&mut buf).unwrap();
        let r = Message::from_vec(&buf).unwrap();
        assert_eq!(r.answers.len(), 1);
    }
}
