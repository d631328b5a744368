//! The HAProxy PROXY protocol, versions 1 and 2 (haproxy `doc/proxy-protocol.txt`): parses the
//! header an upstream proxy sends before the SMTP conversation, so smtpd logs and checks the real
//! client address (`smtpd_upstream_proxy_protocol = haproxy`).
//!
//! The parser is pure: the caller feeds whatever bytes it has read so far and either gets the
//! header and its length, a request for more bytes, or an error as soon as the bytes prove that
//! no valid header can follow. The spec forbids guessing whether a header is present, so
//! anything else (a client that says `EHLO` first) is an error, never "no header".
//!
//! What is accepted:
//! * v1: `PROXY TCP4|TCP6 src dst sport dport\r\n` with single spaces, canonical addresses of
//!   the announced family, decimal ports without leading zeros; `PROXY UNKNOWN` followed by
//!   anything up to the CRLF. At most 107 bytes including the CRLF.
//! * v2: version 2; command LOCAL (the block is skipped whatever it holds) or PROXY. TCP over
//!   IPv4 or IPv6 yields addresses; the other valid families (AF_UNSPEC, UDP, AF_UNIX) fall back
//!   to the connection's own addresses as the spec requires of receivers that do not implement
//!   them. TLVs after the addresses are skipped, but they must be well-formed, and a
//!   `PP2_TYPE_CRC32C` checksum, when present, must match.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The longest v1 header the spec allows, CRLF included.
pub const V1_MAX_LEN: usize = 107;

/// The longest v2 header: 16 fixed bytes and a 16-bit length.
pub const V2_MAX_LEN: usize = V2_FIXED_LEN + u16::MAX as usize;

/// The v1 header starts with these bytes.
const V1_PREFIX: &[u8] = b"PROXY ";

/// The v2 header starts with this signature.
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// Signature, version/command, family/transport and the 2-byte length.
const V2_FIXED_LEN: usize = 16;

/// TLV type of the CRC32C checksum of the whole header.
const PP2_TYPE_CRC32C: u8 = 0x03;

/// How many bytes of a rejected buffer an error quotes.
const QUOTE_LEN: usize = 16;

/// The connection endpoints a proxy announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyHeader {
    /// The original client; `None` (LOCAL, UNKNOWN, unsupported family): use the socket's peer.
    pub source: Option<SocketAddr>,
    /// The address the client connected to; `None`: use the socket's local address.
    pub destination: Option<SocketAddr>,
}

/// Why a buffer is not a valid PROXY header. The texts are written for a log line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    /// The bytes start neither with `PROXY ` nor with the v2 signature.
    #[error("not a PROXY protocol header: \"{start}\"")]
    NotProxy {
        /// The first bytes received, escaped for printing.
        start: String,
    },
    /// No CRLF within the first 107 bytes of a v1 header.
    #[error("PROXY v1 header: no CRLF within {V1_MAX_LEN} bytes")]
    V1TooLong,
    /// A v1 line ends with a CR or LF alone.
    #[error("PROXY v1 header: line ends with a bare CR or LF")]
    V1BareLineEnd,
    /// The protocol word is none of `TCP4`, `TCP6`, `UNKNOWN`.
    #[error("PROXY v1 header: unsupported protocol \"{0}\"")]
    V1Protocol(String),
    /// The line does not have exactly four single-space separated fields after the protocol.
    #[error("PROXY v1 header: expected \"{0} src dst sport dport\"")]
    V1Fields(&'static str),
    /// An address is not in the canonical form of the announced family.
    #[error("PROXY v1 header: invalid {family} address \"{value}\"")]
    V1Address {
        /// `TCP4` or `TCP6`.
        family: &'static str,
        /// The field as received, escaped for printing.
        value: String,
    },
    /// A port is not a decimal number 0..65535 without leading zeros.
    #[error("PROXY v1 header: invalid port \"{0}\"")]
    V1Port(String),
    /// The v2 version nibble is not 2.
    #[error("PROXY v2 header: unsupported version {0}")]
    V2Version(u8),
    /// The v2 command nibble is neither LOCAL (0) nor PROXY (1).
    #[error("PROXY v2 header: unsupported command {0}")]
    V2Command(u8),
    /// The v2 family/transport byte holds an unassigned family or transport.
    #[error("PROXY v2 header: invalid family/transport byte 0x{0:02x}")]
    V2Family(u8),
    /// The v2 length is shorter than the addresses of the announced family.
    #[error("PROXY v2 header: {len} address bytes are too few for {family} (need {need})")]
    V2AddressTooShort {
        /// The announced family, e.g. "TCP over IPv4".
        family: &'static str,
        /// The length field.
        len: usize,
        /// The length the family needs.
        need: usize,
    },
    /// A TLV runs past the end of the header, or bytes too few for a TLV are left over.
    #[error("PROXY v2 header: malformed TLV at offset {0}")]
    V2Tlv(usize),
    /// The CRC32C TLV does not hold 4 bytes.
    #[error("PROXY v2 header: CRC32C TLV of {0} bytes (need 4)")]
    V2ChecksumLength(usize),
    /// The CRC32C TLV does not match the header.
    #[error(
        "PROXY v2 header: CRC32C checksum mismatch (sent 0x{sent:08x}, computed 0x{computed:08x})"
    )]
    V2Checksum {
        /// The checksum in the TLV.
        sent: u32,
        /// The checksum of the received header.
        computed: u32,
    },
}

/// Parses a header at the start of `buf`. `Ok(None)`: need more bytes.
/// `Ok(Some((header, consumed)))`: the header was the first `consumed` bytes; what follows is
/// the client's own data and must be kept.
pub fn parse(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyError> {
    if buf.is_empty() {
        Ok(None)
    } else if starts_like(buf, &V2_SIGNATURE) {
        parse_v2(buf)
    } else if starts_like(buf, V1_PREFIX) {
        parse_v1(buf)
    } else {
        Err(ProxyError::NotProxy {
            start: quote(&buf[..buf.len().min(QUOTE_LEN)]),
        })
    }
}

/// Whether `buf` and `magic` agree on their common length.
fn starts_like(buf: &[u8], magic: &[u8]) -> bool {
    let n = buf.len().min(magic.len());
    buf[..n] == magic[..n]
}

/// Bytes escaped for a log line.
fn quote(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

// ---------------------------------------------------------------------------------------------
// Version 1

/// The v1 protocol words, each with what must follow it.
const V1_PROTOCOLS: [&[u8]; 3] = [b"TCP4 ", b"TCP6 ", b"UNKNOWN"];

/// Parses a v1 header; `buf` starts like [`V1_PREFIX`].
fn parse_v1(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyError> {
    let window = &buf[..buf.len().min(V1_MAX_LEN)];
    let Some(end) = memchr::memchr2(b'\r', b'\n', window) else {
        if buf.len() >= V1_MAX_LEN {
            return Err(ProxyError::V1TooLong);
        }
        // Reject a wrong protocol word early rather than waiting for the CRLF.
        if let Some(rest) = buf.get(V1_PREFIX.len()..)
            && !V1_PROTOCOLS.iter().any(|p| starts_like(rest, p))
        {
            return Err(ProxyError::V1Protocol(quote(first_word(rest))));
        }
        return Ok(None);
    };
    if window[end] == b'\n' {
        return Err(ProxyError::V1BareLineEnd);
    }
    if end + 2 > V1_MAX_LEN {
        return Err(ProxyError::V1TooLong);
    }
    match buf.get(end + 1) {
        None => return Ok(None),
        Some(b'\n') => {}
        Some(_) => return Err(ProxyError::V1BareLineEnd),
    }
    let Some(line) = buf[..end].strip_prefix(V1_PREFIX) else {
        // "PROXY\r\n": the CRLF arrived before the space.
        return Err(ProxyError::V1Protocol(String::new()));
    };
    parse_v1_line(line).map(|header| Some((header, end + 2)))
}

/// The bytes up to the first space.
fn first_word(bytes: &[u8]) -> &[u8] {
    bytes.split(|&b| b == b' ').next().unwrap_or(bytes)
}

/// Parses what follows `PROXY ` on a complete line, CRLF excluded.
fn parse_v1_line(line: &[u8]) -> Result<ProxyHeader, ProxyError> {
    let (proto, rest) = match line.iter().position(|&b| b == b' ') {
        Some(i) => (&line[..i], Some(&line[i + 1..])),
        None => (line, None),
    };
    let family = match proto {
        // The spec: the receiver must ignore anything after UNKNOWN up to the CRLF.
        b"UNKNOWN" => {
            return Ok(ProxyHeader {
                source: None,
                destination: None,
            });
        }
        b"TCP4" => "TCP4",
        b"TCP6" => "TCP6",
        _ => return Err(ProxyError::V1Protocol(quote(proto))),
    };
    let fields: Vec<&[u8]> = rest.unwrap_or_default().split(|&b| b == b' ').collect();
    let [src, dst, sport, dport] = fields[..] else {
        return Err(ProxyError::V1Fields(family));
    };
    let source = SocketAddr::new(v1_address(family, src)?, v1_port(sport)?);
    let destination = SocketAddr::new(v1_address(family, dst)?, v1_port(dport)?);
    Ok(ProxyHeader {
        source: Some(source),
        destination: Some(destination),
    })
}

/// An address of the announced family. std's parsers already reject IPv4 octets with leading
/// zeros, IPv6 groups of more than 4 digits, and zone suffixes.
fn v1_address(family: &'static str, field: &[u8]) -> Result<IpAddr, ProxyError> {
    let bad = || ProxyError::V1Address {
        family,
        value: quote(field),
    };
    let text = std::str::from_utf8(field).map_err(|_| bad())?;
    if family == "TCP4" {
        text.parse::<Ipv4Addr>().map(IpAddr::V4).map_err(|_| bad())
    } else {
        text.parse::<Ipv6Addr>().map(IpAddr::V6).map_err(|_| bad())
    }
}

/// A decimal port 0..65535 without leading zeros.
fn v1_port(field: &[u8]) -> Result<u16, ProxyError> {
    let bad = || ProxyError::V1Port(quote(field));
    let digits_only = !field.is_empty() && field.len() <= 5 && field.iter().all(u8::is_ascii_digit);
    if !digits_only || (field.len() > 1 && field[0] == b'0') {
        return Err(bad());
    }
    let value = field.iter().fold(0u32, |n, d| n * 10 + u32::from(d - b'0'));
    u16::try_from(value).map_err(|_| bad())
}

// ---------------------------------------------------------------------------------------------
// Version 2

/// Parses a v2 header; `buf` starts like [`V2_SIGNATURE`].
fn parse_v2(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyError> {
    // Check each fixed byte as soon as it arrives.
    let Some(&ver_cmd) = buf.get(12) else {
        return Ok(None);
    };
    let (version, command) = (ver_cmd >> 4, ver_cmd & 0x0f);
    if version != 2 {
        return Err(ProxyError::V2Version(version));
    }
    let local = match command {
        0 => true,
        1 => false,
        _ => return Err(ProxyError::V2Command(command)),
    };
    let Some(&fam) = buf.get(13) else {
        return Ok(None);
    };
    // LOCAL: "discard the protocol block including the family which is ignored".
    let layout = if local { None } else { Some(v2_layout(fam)?) };
    let Some(len_bytes) = buf.get(14..V2_FIXED_LEN) else {
        return Ok(None);
    };
    let len = usize::from(u16::from_be_bytes([len_bytes[0], len_bytes[1]]));
    if let Some(layout) = layout
        && len < layout.addr_len
    {
        return Err(ProxyError::V2AddressTooShort {
            family: layout.name,
            len,
            need: layout.addr_len,
        });
    }
    let total = V2_FIXED_LEN + len;
    let Some(header) = buf.get(..total) else {
        return Ok(None);
    };
    let Some(layout) = layout else {
        return Ok(Some((
            ProxyHeader {
                source: None,
                destination: None,
            },
            total,
        )));
    };
    let body = &header[V2_FIXED_LEN..];
    check_tlvs(header, V2_FIXED_LEN + layout.addr_len)?;
    let (source, destination) = match layout.kind {
        AddrKind::Inet => {
            let ip = |at: usize| {
                IpAddr::V4(Ipv4Addr::new(
                    body[at],
                    body[at + 1],
                    body[at + 2],
                    body[at + 3],
                ))
            };
            (
                SocketAddr::new(ip(0), be16(body, 8)),
                SocketAddr::new(ip(4), be16(body, 10)),
            )
        }
        AddrKind::Inet6 => {
            let ip = |at: usize| {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(&body[at..at + 16]);
                IpAddr::V6(Ipv6Addr::from(octets))
            };
            (
                SocketAddr::new(ip(0), be16(body, 32)),
                SocketAddr::new(ip(16), be16(body, 34)),
            )
        }
        AddrKind::Ignored => {
            return Ok(Some((
                ProxyHeader {
                    source: None,
                    destination: None,
                },
                total,
            )));
        }
    };
    Ok(Some((
        ProxyHeader {
            source: Some(source),
            destination: Some(destination),
        },
        total,
    )))
}

/// A big-endian u16 at `at`; the caller has checked the length.
fn be16(bytes: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([bytes[at], bytes[at + 1]])
}

/// What the addresses of a PROXY command look like.
#[derive(Debug, Clone, Copy)]
struct V2Layout {
    /// For error messages.
    name: &'static str,
    /// Bytes of addresses before the TLVs.
    addr_len: usize,
    /// How to read them.
    kind: AddrKind,
}

/// Which addresses a v2 header yields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AddrKind {
    /// TCP over IPv4.
    Inet,
    /// TCP over IPv6.
    Inet6,
    /// Valid but not a TCP connection: use the socket's own addresses.
    Ignored,
}

/// Decodes the family/transport byte of a PROXY command.
fn v2_layout(fam: u8) -> Result<V2Layout, ProxyError> {
    let (family, transport) = (fam >> 4, fam & 0x0f);
    if family > 3 || transport > 2 {
        return Err(ProxyError::V2Family(fam));
    }
    let layout = |name, addr_len, kind| V2Layout {
        name,
        addr_len,
        kind,
    };
    Ok(match (family, transport) {
        (1, 1) => layout("TCP over IPv4", 12, AddrKind::Inet),
        (2, 1) => layout("TCP over IPv6", 36, AddrKind::Inet6),
        (1, 2) => layout("UDP over IPv4", 12, AddrKind::Ignored),
        (2, 2) => layout("UDP over IPv6", 36, AddrKind::Ignored),
        (3, 1 | 2) => layout("AF_UNIX", 216, AddrKind::Ignored),
        // AF_UNSPEC or transport UNSPEC: the rest of the block is opaque.
        _ => layout("UNSPEC", 0, AddrKind::Ignored),
    })
}

/// Walks the TLVs of `header` (the whole v2 header) from `start`, and verifies the CRC32C TLV
/// if there is one.
fn check_tlvs(header: &[u8], start: usize) -> Result<(), ProxyError> {
    let mut at = start;
    while at < header.len() {
        let Some(tl) = header.get(at..at + 3) else {
            return Err(ProxyError::V2Tlv(at));
        };
        let value_len = usize::from(u16::from_be_bytes([tl[1], tl[2]]));
        let value_at = at + 3;
        if value_at + value_len > header.len() {
            return Err(ProxyError::V2Tlv(at));
        }
        if tl[0] == PP2_TYPE_CRC32C {
            if value_len != 4 {
                return Err(ProxyError::V2ChecksumLength(value_len));
            }
            let v = &header[value_at..value_at + 4];
            let sent = u32::from_be_bytes([v[0], v[1], v[2], v[3]]);
            // The checksum covers the whole header with its own field zeroed.
            let mut crc = Crc32c::new();
            crc.update(&header[..value_at]);
            crc.update(&[0; 4]);
            crc.update(&header[value_at + 4..]);
            let computed = crc.finish();
            if computed != sent {
                return Err(ProxyError::V2Checksum { sent, computed });
            }
        }
        at = value_at + value_len;
    }
    Ok(())
}

/// CRC-32C (Castagnoli, RFC 4960 appendix B), bitwise: headers are small and arrive once per
/// connection, so a table is not worth its size.
struct Crc32c(u32);

impl Crc32c {
    /// The reflected Castagnoli polynomial.
    const POLY: u32 = 0x82f6_3b78;

    /// A checksum over no bytes yet.
    fn new() -> Crc32c {
        Crc32c(!0)
    }

    /// Adds `bytes`.
    fn update(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u32::from(b);
            for _ in 0..8 {
                let mask = (self.0 & 1).wrapping_neg();
                self.0 = (self.0 >> 1) ^ (Self::POLY & mask);
            }
        }
    }

    /// The checksum of everything added.
    fn finish(&self) -> u32 {
        !self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn proxied(src: &str, dst: &str) -> ProxyHeader {
        ProxyHeader {
            source: Some(addr(src)),
            destination: Some(addr(dst)),
        }
    }

    const LOCAL: ProxyHeader = ProxyHeader {
        source: None,
        destination: None,
    };

    /// Feeds `input` one byte at a time: every strict prefix needs more bytes, the whole input
    /// parses to `expected` and consumes it all.
    fn bytewise(input: &[u8], expected: ProxyHeader) {
        for n in 0..input.len() {
            assert_eq!(
                parse(&input[..n]),
                Ok(None),
                "prefix of {n} bytes of {input:?}"
            );
        }
        assert_eq!(parse(input), Ok(Some((expected, input.len()))), "{input:?}");
    }

    /// Asserts that `input` is rejected, and at which length it first is.
    fn rejected_at(input: &[u8], first_bad_len: usize) -> ProxyError {
        for n in 0..first_bad_len {
            assert_eq!(
                parse(&input[..n]),
                Ok(None),
                "prefix of {n} bytes of {input:?}"
            );
        }
        let err = parse(&input[..first_bad_len]).unwrap_err();
        // More bytes never turn an error into success.
        assert!(parse(input).is_err(), "{input:?}");
        err
    }

    // --- v1 ---

    #[test]
    fn v1_tcp4() {
        bytewise(
            b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 25\r\n",
            proxied("192.168.0.1:56324", "192.168.0.11:25"),
        );
    }

    #[test]
    fn v1_tcp6() {
        bytewise(
            b"PROXY TCP6 2001:db8::1 2001:DB8:0:0:0:0:0:2 0 65535\r\n",
            proxied("[2001:db8::1]:0", "[2001:db8::2]:65535"),
        );
    }

    #[test]
    fn v1_unknown_short_and_long() {
        bytewise(b"PROXY UNKNOWN\r\n", LOCAL);
        bytewise(b"PROXY UNKNOWN whatever \xff junk 1 2\r\n", LOCAL);
    }

    #[test]
    fn v1_keeps_following_data() {
        let input = b"PROXY TCP4 10.0.0.1 10.0.0.2 1 2\r\nEHLO x\r\n";
        let (header, consumed) = parse(input).unwrap().unwrap();
        assert_eq!(header, proxied("10.0.0.1:1", "10.0.0.2:2"));
        assert_eq!(&input[consumed..], b"EHLO x\r\n");
    }

    #[test]
    fn v1_longest_lines() {
        let six = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
        let line = format!("PROXY UNKNOWN {six} {six} 65535 65535\r\n");
        assert_eq!(line.len(), V1_MAX_LEN);
        bytewise(line.as_bytes(), LOCAL);
        let line = format!("PROXY TCP6 {six} {six} 65535 65535\r\n");
        let (header, _) = parse(line.as_bytes()).unwrap().unwrap();
        assert_eq!(header.source.unwrap().port(), 65535);
        // One byte more and the CRLF is past the limit, wherever it is noticed.
        let line = format!("PROXY UNKNOWN {six} {six} 65535 655355\r\n");
        assert_eq!(
            rejected_at(line.as_bytes(), V1_MAX_LEN),
            ProxyError::V1TooLong
        );
        let endless = [b"PROXY UNKNOWN ".as_slice(), &[b'x'; 200]].concat();
        assert_eq!(rejected_at(&endless, V1_MAX_LEN), ProxyError::V1TooLong);
    }

    #[test]
    fn v1_bare_line_ends() {
        assert_eq!(parse(b"PROXY UNKNOWN\n"), Err(ProxyError::V1BareLineEnd));
        assert_eq!(parse(b"PROXY UNKNOWN\r"), Ok(None));
        assert_eq!(parse(b"PROXY UNKNOWN\rx"), Err(ProxyError::V1BareLineEnd));
        assert_eq!(
            parse(b"PROXY TCP4 1.2.3.4\n1.2.3.4 1 2\r\n"),
            Err(ProxyError::V1BareLineEnd)
        );
    }

    #[test]
    fn v1_bad_protocol_detected_early() {
        let err = rejected_at(b"PROXY TCP5 1.2.3.4 1.2.3.4 1 2\r\n", 10);
        assert_eq!(err, ProxyError::V1Protocol("TCP5".into()));
        assert!(matches!(
            rejected_at(b"PROXY tcp4 ", 7),
            ProxyError::V1Protocol(_)
        ));
        // "TCP4" must be followed by a space, "UNKNOWN" may end the line.
        assert_eq!(parse(b"PROXY TCP4\r\n"), Err(ProxyError::V1Fields("TCP4")));
        assert!(matches!(
            parse(b"PROXY UNKNOWNX\r\n"),
            Err(ProxyError::V1Protocol(_))
        ));
        assert!(matches!(
            parse(b"PROXY \r\n"),
            Err(ProxyError::V1Protocol(_))
        ));
        assert!(matches!(
            parse(b"PROXY\r\n"),
            Err(ProxyError::NotProxy { .. })
        ));
    }

    #[test]
    fn v1_field_errors() {
        let cases: &[(&[u8], ProxyError)] = &[
            (
                b"PROXY TCP4 1.2.3.4 1.2.3.4 1\r\n",
                ProxyError::V1Fields("TCP4"),
            ),
            (
                b"PROXY TCP4 1.2.3.4 1.2.3.4 1 2 3\r\n",
                ProxyError::V1Fields("TCP4"),
            ),
            (
                b"PROXY TCP4  1.2.3.4 1.2.3.4 1 2\r\n",
                ProxyError::V1Fields("TCP4"),
            ),
            (
                b"PROXY TCP4 1.2.3.4 1.2.3.4 1 2 \r\n",
                ProxyError::V1Fields("TCP4"),
            ),
            (b"PROXY TCP4 \r\n", ProxyError::V1Fields("TCP4")),
            (
                b"PROXY TCP4 1.2.3.04 1.2.3.4 1 2\r\n",
                ProxyError::V1Address {
                    family: "TCP4",
                    value: "1.2.3.04".into(),
                },
            ),
            (
                b"PROXY TCP4 1.2.3.4 ::1 1 2\r\n",
                ProxyError::V1Address {
                    family: "TCP4",
                    value: "::1".into(),
                },
            ),
            (
                b"PROXY TCP6 ::1 1.2.3.4 1 2\r\n",
                ProxyError::V1Address {
                    family: "TCP6",
                    value: "1.2.3.4".into(),
                },
            ),
            (
                b"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n",
                ProxyError::V1Address {
                    family: "TCP6",
                    value: "fe80::1%eth0".into(),
                },
            ),
            (
                b"PROXY TCP4 1.2.3.4 1.2.\xff.4 1 2\r\n",
                ProxyError::V1Address {
                    family: "TCP4",
                    value: "1.2.\\xff.4".into(),
                },
            ),
            (
                b"PROXY TCP4 1.2.3.4 1.2.3.4 01 2\r\n",
                ProxyError::V1Port("01".into()),
            ),
            (
                b"PROXY TCP4 1.2.3.4 1.2.3.4 1 65536\r\n",
                ProxyError::V1Port("65536".into()),
            ),
            (
                b"PROXY TCP4 1.2.3.4 1.2.3.4 +1 2\r\n",
                ProxyError::V1Port("+1".into()),
            ),
            (
                b"PROXY TCP4 1.2.3.4 1.2.3.4 1 100000\r\n",
                ProxyError::V1Port("100000".into()),
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(parse(input).as_ref(), Err(expected), "{input:?}");
        }
    }

    #[test]
    fn not_proxy_is_rejected_at_first_byte() {
        let err = rejected_at(b"EHLO client.example\r\n", 1);
        assert_eq!(err, ProxyError::NotProxy { start: "E".into() });
        let err = parse(b"EHLO client.example\r\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "not a PROXY protocol header: \"EHLO client.exam\""
        );
        assert!(matches!(
            rejected_at(b"PROXZ", 5),
            ProxyError::NotProxy { .. }
        ));
        assert!(matches!(
            rejected_at(b"\r\n\r\n\0\r\nQUIX", 11),
            ProxyError::NotProxy { .. }
        ));
        // A bare CRLF could still become a v2 signature.
        assert_eq!(parse(b"\r\n"), Ok(None));
        assert_eq!(parse(b""), Ok(None));
    }

    // --- v2 ---

    /// A v2 header with the given version/command and family bytes and body.
    fn v2(ver_cmd: u8, fam: u8, body: &[u8]) -> Vec<u8> {
        let mut out = V2_SIGNATURE.to_vec();
        out.push(ver_cmd);
        out.push(fam);
        out.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    fn inet_body() -> Vec<u8> {
        let mut body = vec![192, 0, 2, 1, 198, 51, 100, 7];
        body.extend_from_slice(&40000u16.to_be_bytes());
        body.extend_from_slice(&25u16.to_be_bytes());
        body
    }

    fn inet6_body() -> Vec<u8> {
        let src: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let dst: Ipv6Addr = "2001:db8::2".parse().unwrap();
        let mut body = src.octets().to_vec();
        body.extend_from_slice(&dst.octets());
        body.extend_from_slice(&587u16.to_be_bytes());
        body.extend_from_slice(&465u16.to_be_bytes());
        body
    }

    /// A TLV.
    fn tlv(kind: u8, value: &[u8]) -> Vec<u8> {
        let mut out = vec![kind];
        out.extend_from_slice(&u16::try_from(value.len()).unwrap().to_be_bytes());
        out.extend_from_slice(value);
        out
    }

    #[test]
    fn v2_tcp4() {
        bytewise(
            &v2(0x21, 0x11, &inet_body()),
            proxied("192.0.2.1:40000", "198.51.100.7:25"),
        );
    }

    #[test]
    fn v2_tcp6() {
        bytewise(
            &v2(0x21, 0x21, &inet6_body()),
            proxied("[2001:db8::1]:587", "[2001:db8::2]:465"),
        );
    }

    #[test]
    fn v2_local_ignores_family_and_block() {
        bytewise(&v2(0x20, 0x00, b""), LOCAL);
        bytewise(&v2(0x20, 0x11, &inet_body()), LOCAL);
        // Even an unassigned family and a malformed block: LOCAL discards them.
        bytewise(&v2(0x20, 0xff, b"\x01\x02"), LOCAL);
    }

    #[test]
    fn v2_fallback_families() {
        bytewise(&v2(0x21, 0x00, b""), LOCAL);
        bytewise(&v2(0x21, 0x12, &inet_body()), LOCAL);
        bytewise(&v2(0x21, 0x22, &inet6_body()), LOCAL);
        bytewise(&v2(0x21, 0x31, &[0; 216]), LOCAL);
        bytewise(&v2(0x21, 0x01, &tlv(0x04, b"")), LOCAL);
    }

    #[test]
    fn v2_tlvs_are_skipped() {
        let mut body = inet_body();
        body.extend(tlv(0x02, b"mx.example"));
        body.extend(tlv(0x04, b""));
        body.extend(tlv(0xe0, &[7; 300]));
        bytewise(
            &v2(0x21, 0x11, &body),
            proxied("192.0.2.1:40000", "198.51.100.7:25"),
        );
    }

    #[test]
    fn v2_keeps_following_data() {
        let mut input = v2(0x21, 0x11, &inet_body());
        let header_len = input.len();
        input.extend_from_slice(b"\x16\x03\x01");
        let (_, consumed) = parse(&input).unwrap().unwrap();
        assert_eq!(consumed, header_len);
    }

    #[test]
    fn v2_crc32c() {
        let mut crc = Crc32c::new();
        crc.update(b"123456789");
        assert_eq!(crc.finish(), 0xe306_9283); // the standard check value
        let mut body = inet_body();
        body.extend(tlv(PP2_TYPE_CRC32C, &[0; 4]));
        let mut input = v2(0x21, 0x11, &body);
        let mut crc = Crc32c::new();
        crc.update(&input);
        let at = input.len() - 4;
        input[at..].copy_from_slice(&crc.finish().to_be_bytes());
        bytewise(&input, proxied("192.0.2.1:40000", "198.51.100.7:25"));
        input[20] ^= 1; // a different address
        assert!(matches!(parse(&input), Err(ProxyError::V2Checksum { .. })));
        let mut body = inet_body();
        body.extend(tlv(PP2_TYPE_CRC32C, &[0; 3]));
        assert_eq!(
            parse(&v2(0x21, 0x11, &body)),
            Err(ProxyError::V2ChecksumLength(3))
        );
    }

    #[test]
    fn v2_errors_as_soon_as_proven() {
        let mut body = inet_body();
        assert_eq!(
            rejected_at(&v2(0x11, 0x11, &body), 13),
            ProxyError::V2Version(1)
        );
        assert_eq!(
            rejected_at(&v2(0x31, 0x11, &body), 13),
            ProxyError::V2Version(3)
        );
        assert_eq!(
            rejected_at(&v2(0x22, 0x11, &body), 13),
            ProxyError::V2Command(2)
        );
        assert_eq!(
            rejected_at(&v2(0x21, 0x41, &body), 14),
            ProxyError::V2Family(0x41)
        );
        assert_eq!(
            rejected_at(&v2(0x21, 0x13, &body), 14),
            ProxyError::V2Family(0x13)
        );
        body.truncate(11);
        let err = rejected_at(&v2(0x21, 0x11, &body), 16);
        assert_eq!(
            err,
            ProxyError::V2AddressTooShort {
                family: "TCP over IPv4",
                len: 11,
                need: 12
            }
        );
        let err = rejected_at(&v2(0x21, 0x21, &inet_body()), 16);
        assert_eq!(
            err,
            ProxyError::V2AddressTooShort {
                family: "TCP over IPv6",
                len: 12,
                need: 36
            }
        );
    }

    #[test]
    fn v2_malformed_tlvs() {
        let mut body = inet_body();
        body.extend_from_slice(&[0x04, 0x00, 0x05, 1, 2]); // claims 5 bytes, has 2
        assert_eq!(parse(&v2(0x21, 0x11, &body)), Err(ProxyError::V2Tlv(28)));
        let mut body = inet_body();
        body.extend_from_slice(&[0x04, 0x00]); // too short for a TLV
        assert_eq!(parse(&v2(0x21, 0x11, &body)), Err(ProxyError::V2Tlv(28)));
    }

    #[test]
    fn v2_longest_header() {
        let mut body = inet_body();
        body.extend(tlv(0x04, &vec![0; u16::MAX as usize - 12 - 3]));
        let input = v2(0x21, 0x11, &body);
        assert_eq!(input.len(), V2_MAX_LEN);
        assert_eq!(parse(&input[..V2_MAX_LEN - 1]), Ok(None));
        assert_eq!(parse(&input).unwrap().unwrap().1, V2_MAX_LEN);
    }

    #[test]
    fn error_texts_name_the_problem() {
        let err = parse(b"PROXY TCP4 1.2.3.4 1.2.3.4 1 99999\r\n").unwrap_err();
        assert_eq!(err.to_string(), "PROXY v1 header: invalid port \"99999\"");
        let err = parse(&v2(0x21, 0x51, b"")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "PROXY v2 header: invalid family/transport byte 0x51"
        );
    }

    /// Random and mutated inputs never panic, and a success never consumes more than it got.
    #[test]
    fn no_panics_on_noise() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let seeds: Vec<Vec<u8>> = vec![
            b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 25\r\n".to_vec(),
            b"PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n".to_vec(),
            v2(0x21, 0x11, &inet_body()),
            v2(0x21, 0x21, &[inet6_body(), tlv(3, &[0; 4])].concat()),
        ];
        for round in 0..20_000 {
            let mut input = seeds[round % seeds.len()].clone();
            for _ in 0..(next() % 4) {
                let at = (next() as usize) % input.len();
                input[at] = next() as u8;
            }
            input.truncate((next() as usize) % (input.len() + 1));
            if let Ok(Some((_, consumed))) = parse(&input) {
                assert!(consumed <= input.len());
            }
        }
    }
}
