//! TZif files (RFC 8536, versions 1 to 4): transitions, local time types, and the footer.

use super::posix::PosixTz;
use super::{LocalType, TimeZone, TzError};

/// Parses TZif data; the 64-bit block and the POSIX footer are used when present.
pub(super) fn parse(data: &[u8]) -> Result<TimeZone, TzError> {
    let mut r = Reader { data, pos: 0 };
    let head = Counts::read(&mut r)?;
    if head.version < b'2' {
        return read_block(&mut r, &head, 4);
    }
    r.take(head.block_len(4))?;
    let head2 = Counts::read(&mut r)?;
    let mut tz = read_block(&mut r, &head2, 8)?;
    // Footer: "\n" POSIX-TZ-string "\n". An empty or bad string leaves no rule.
    let rest = &data[r.pos..];
    if let Some(body) = rest.strip_prefix(b"\n")
        && let Some(end) = memchr::memchr(b'\n', body)
        && let Ok(text) = std::str::from_utf8(&body[..end])
        && !text.is_empty()
    {
        tz.rule = PosixTz::parse(text).ok();
    }
    Ok(tz)
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], TzError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        let Some(end) = end else {
            return Err(TzError::Truncated {
                need: n,
                at: self.pos,
                have: self.data.len(),
            });
        };
        let out = &self.data[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn u32(&mut self) -> Result<u32, TzError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// A TZif header's version and counts.
struct Counts {
    version: u8,
    isut: usize,
    isstd: usize,
    leap: usize,
    time: usize,
    types: usize,
    chars: usize,
}

impl Counts {
    fn read(r: &mut Reader<'_>) -> Result<Counts, TzError> {
        let head = r.take(20)?;
        if &head[..4] != b"TZif" {
            return Err(TzError::BadMagic);
        }
        let version = head[4];
        let mut next = || r.u32().map(|v| v as usize);
        Ok(Counts {
            version,
            isut: next()?,
            isstd: next()?,
            leap: next()?,
            time: next()?,
            types: next()?,
            chars: next()?,
        })
    }

    /// Length of the data block after this header, with `tsize`-byte times.
    fn block_len(&self, tsize: usize) -> usize {
        // Saturating: an absurd header then fails in `take` instead of overflowing.
        self.time
            .saturating_mul(tsize + 1)
            .saturating_add(self.types.saturating_mul(6))
            .saturating_add(self.chars)
            .saturating_add(self.leap.saturating_mul(tsize + 4))
            .saturating_add(self.isstd)
            .saturating_add(self.isut)
    }
}

fn read_block(r: &mut Reader<'_>, c: &Counts, tsize: usize) -> Result<TimeZone, TzError> {
    if c.types == 0 {
        return Err(TzError::NoTypes);
    }
    let times = r.take(c.time.saturating_mul(tsize))?;
    let transitions: Vec<i64> = times
        .chunks_exact(tsize)
        .map(|b| {
            if tsize == 8 {
                i64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
            } else {
                i64::from(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            }
        })
        .collect();
    let type_of = r.take(c.time)?.to_vec();
    let infos = r.take(c.types.saturating_mul(6))?;
    let chars = r.take(c.chars)?;
    r.take(c.leap.saturating_mul(tsize + 4))?;
    r.take(c.isstd)?;
    r.take(c.isut)?;
    if let Some((index, &type_index)) = type_of
        .iter()
        .enumerate()
        .find(|&(_, &t)| usize::from(t) >= c.types)
    {
        return Err(TzError::BadTypeIndex {
            index,
            type_index,
            count: c.types,
        });
    }
    let mut types = Vec::with_capacity(c.types);
    for info in infos.chunks_exact(6) {
        let utoff = i32::from_be_bytes([info[0], info[1], info[2], info[3]]);
        if utoff == i32::MIN {
            return Err(TzError::BadOffset);
        }
        let index = usize::from(info[5]);
        if index >= chars.len() && !(index == 0 && chars.is_empty()) {
            return Err(TzError::BadAbbrIndex {
                index,
                len: chars.len(),
            });
        }
        let tail = chars.get(index..).unwrap_or_default();
        let end = memchr::memchr(0, tail).unwrap_or(tail.len());
        types.push(LocalType {
            utoff,
            is_dst: info[4] != 0,
            abbr: String::from_utf8_lossy(&tail[..end]).into_owned(),
        });
    }
    Ok(TimeZone {
        transitions,
        type_of,
        types,
        rule: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;
    use std::path::Path;

    #[test]
    fn tzif_berlin_summer_and_winter() {
        let path = Path::new("/usr/share/zoneinfo/Europe/Berlin");
        let Some(berlin) = TimeZone::from_file(path) else {
            eprintln!("skipped: {} not present", path.display());
            return;
        };
        assert_eq!(berlin.offset_at(1_768_478_400), (3600, "CET".into()));
        assert_eq!(berlin.offset_at(1_782_907_200), (7200, "CEST".into()));
        // Far future: covered by the footer rule, not the table.
        assert_eq!(berlin.offset_at(4_118_054_400).0, 7200); // 2100-07-01
        assert_eq!(berlin.offset_at(4_102_444_800).0, 3600); // 2100-01-01
        // Historic: 1990-07-01 was CEST too, 1970-01-01 CET.
        assert_eq!(berlin.offset_at(646_790_400).0, 7200);
        assert_eq!(berlin.offset_at(0).0, 3600);
        // The same zone through TZ-style lookup.
        let via_tz = TimeZone::from_tz_value(Some(OsStr::new("Europe/Berlin")));
        assert_eq!(via_tz, berlin);
        let via_colon =
            TimeZone::from_tz_value(Some(OsStr::new(":/usr/share/zoneinfo/Europe/Berlin")));
        assert_eq!(via_colon, berlin);
    }

    #[test]
    fn tzif_system_localtime_parses() {
        let path = Path::new("/etc/localtime");
        let Ok(data) = std::fs::read(path) else {
            eprintln!("skipped: {} not present", path.display());
            return;
        };
        let zone = TimeZone::from_tzif(&data).expect("system /etc/localtime parses");
        let (offset, abbr) = zone.offset_at(1_782_907_200);
        assert!(offset.abs() <= 14 * 3600, "{offset}");
        assert!(!abbr.is_empty());
    }

    #[test]
    fn tzif_version1_only() {
        // Hand-built v1 file: one transition at t=1000 from type 0 (AAA, +0) to type 1 (BBB, +1h).
        let mut d = Vec::new();
        d.extend_from_slice(b"TZif\0");
        d.extend_from_slice(&[0; 15]);
        for count in [0u32, 0, 0, 1, 2, 8] {
            d.extend_from_slice(&count.to_be_bytes());
        }
        d.extend_from_slice(&1000i32.to_be_bytes());
        d.push(1);
        d.extend_from_slice(&0i32.to_be_bytes());
        d.extend_from_slice(&[0, 0]);
        d.extend_from_slice(&3600i32.to_be_bytes());
        d.extend_from_slice(&[1, 4]);
        d.extend_from_slice(b"AAA\0BBB\0");
        let zone = TimeZone::from_tzif(&d).unwrap();
        assert_eq!(zone.offset_at(999), (0, "AAA".into()));
        assert_eq!(zone.offset_at(1000), (3600, "BBB".into()));
        assert_eq!(zone.offset_at(1_000_000_000), (3600, "BBB".into()));
        assert!(zone.is_dst_at(5000));
        // Truncations and a bad type index are rejected, never panic.
        for len in 0..d.len() {
            assert!(TimeZone::from_tzif(&d[..len]).is_err(), "len {len}");
        }
        let mut bad = d.clone();
        bad[48] = 7;
        assert!(matches!(
            TimeZone::from_tzif(&bad),
            Err(TzError::BadTypeIndex { type_index: 7, .. })
        ));
        assert_eq!(
            TimeZone::from_tzif(b"nope"),
            Err(TzError::Truncated {
                need: 20,
                at: 0,
                have: 4
            })
        );
    }
}
