//! Queue IDs: Postfix's long, non-repeating form.
//!
//! An ID is `SSSSSS` (seconds since the epoch, base 52, at least 6 digits) + `UUUU`
//! (microseconds, base 52, exactly 4 digits) + `z` + the file's inode number in base 51.
//! The base-52 alphabet is digits, then consonants upper- then lower-case (no vowels, so IDs
//! spell no words); it is in ASCII order, so IDs sort by arrival time. The inode part makes
//! the ID unique among files that exist at the same time on the queue's file system, whatever
//! the clock does; it uses base 51 (no `z`), so the last `z` separates it.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const ALPHABET: &[u8; 52] = b"0123456789BCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxyz";
const SEC_WIDTH: usize = 6;
const USEC_WIDTH: usize = 4;

/// A validated queue ID (also a safe file name).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QueueId(String);

/// Why a string is not a queue ID.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid queue ID: {0:?}")]
pub struct QueueIdError(pub String);

fn encode(mut n: u64, base: u64, min_width: usize, out: &mut Vec<u8>) {
    let mut digits = Vec::new();
    loop {
        digits.push(ALPHABET[(n % base) as usize]);
        n /= base;
        if n == 0 {
            break;
        }
    }
    while digits.len() < min_width {
        digits.push(ALPHABET[0]);
    }
    digits.reverse();
    out.extend_from_slice(&digits);
}

fn decode(s: &[u8], base: u64) -> Option<u64> {
    let mut n: u64 = 0;
    for &c in s {
        let d = ALPHABET.iter().position(|&a| a == c)? as u64;
        if d >= base {
            return None;
        }
        n = n.checked_mul(base)?.checked_add(d)?;
    }
    Some(n)
}

impl QueueId {
    /// Builds the ID for a file with `inode`, created at `time`.
    pub fn new(time: SystemTime, inode: u64) -> QueueId {
        let since = time.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
        let mut out = Vec::with_capacity(20);
        encode(since.as_secs(), 52, SEC_WIDTH, &mut out);
        encode(u64::from(since.subsec_micros()), 52, USEC_WIDTH, &mut out);
        out.push(b'z');
        encode(inode, 51, 1, &mut out);
        // Every byte comes from ALPHABET or is 'z': ASCII by construction.
        QueueId(String::from_utf8(out).expect("queue ID alphabet is ASCII"))
    }

    /// Parses and validates an ID (as found in a file name or typed by an administrator).
    pub fn parse(s: &str) -> Result<QueueId, QueueIdError> {
        let bad = || QueueIdError(s.to_string());
        let b = s.as_bytes();
        let z = b.iter().rposition(|&c| c == b'z').ok_or_else(bad)?;
        if z < SEC_WIDTH + USEC_WIDTH || z + 1 >= b.len() || b.len() > 40 {
            return Err(bad());
        }
        decode(&b[..z - USEC_WIDTH], 52).ok_or_else(bad)?;
        let usec = decode(&b[z - USEC_WIDTH..z], 52).ok_or_else(bad)?;
        if usec >= 1_000_000 {
            return Err(bad());
        }
        decode(&b[z + 1..], 51).ok_or_else(bad)?;
        Ok(QueueId(s.to_string()))
    }

    /// The ID as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The arrival time encoded in the ID (to microseconds).
    pub fn time(&self) -> SystemTime {
        let b = self.0.as_bytes();
        let z = b.iter().rposition(|&c| c == b'z').unwrap_or(0);
        let secs = decode(&b[..z.saturating_sub(USEC_WIDTH)], 52).unwrap_or(0);
        let usec = decode(&b[z.saturating_sub(USEC_WIDTH)..z], 52).unwrap_or(0);
        UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(usec)
    }

    /// The hash directory names for this ID, `depth` levels: the microsecond part in
    /// upper-case hex (`%05X`), one character per level, as Postfix hashes its IDs.
    pub fn hash_chars(&self, depth: usize) -> Vec<char> {
        let b = self.0.as_bytes();
        let z = b.iter().rposition(|&c| c == b'z').unwrap_or(0);
        let usec = decode(&b[z.saturating_sub(USEC_WIDTH)..z], 52).unwrap_or(0);
        format!("{usec:05X}").chars().take(depth).collect()
    }
}

impl fmt::Display for QueueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for QueueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "QueueId({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_order() {
        let t1 = UNIX_EPOCH + Duration::new(1_795_000_000, 123_456_000);
        let t2 = t1 + Duration::from_micros(1);
        let a = QueueId::new(t1, 987_654);
        let b = QueueId::new(t2, 12);
        assert!(a < b, "{a} < {b}");
        assert_eq!(QueueId::parse(a.as_str()).unwrap(), a);
        assert_eq!(a.time(), t1);
        assert!(
            !a.as_str()
                .contains(['a', 'e', 'i', 'o', 'u', 'A', 'E', 'I', 'O', 'U'])
        );
        assert_eq!(a.hash_chars(1), vec!['1']); // 123456 = 0x1E240
        assert_eq!(a.hash_chars(2), vec!['1', 'E']);
    }

    #[test]
    fn rejects_junk() {
        for s in [
            "",
            "z",
            "../etc/passwd",
            "abc",
            "0000000000z",
            "000000000az1",
            "0000000000z1/",
        ] {
            assert!(QueueId::parse(s).is_err(), "{s}");
        }
        assert!(QueueId::parse("0000000000z1").is_ok());
    }
}
