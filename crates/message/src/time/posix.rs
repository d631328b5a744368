//! POSIX TZ strings (`CET-1CEST,M3.5.0,M10.5.0/3`), as in `TZ` and TZif footers.

use super::{LocalType, TzError, civil_from_days, days_from_civil, is_leap, month_len, weekday};

/// The day of a POSIX TZ rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RuleDay {
    /// `Jn`: day 1..=365, February 29 never counted.
    Julian1(u16),
    /// `n`: zero-based day 0..=365, February 29 counted.
    Julian0(u16),
    /// `Mm.w.d`: weekday `d` (0 = Sunday) of week `w` (1..=5, 5 = last) of month `m`.
    MonthWeekDay { month: u8, week: u8, weekday: u8 },
}

/// A transition rule: day plus local time of day in seconds (may be negative or > 24h).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rule {
    day: RuleDay,
    time: i32,
}

/// A parsed POSIX TZ string such as `CET-1CEST,M3.5.0,M10.5.0/3`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PosixTz {
    pub(super) std: LocalType,
    dst: Option<(LocalType, Rule, Rule)>,
}

struct PosixParser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

impl PosixParser<'_> {
    fn fail(&self, reason: &'static str) -> TzError {
        TzError::BadPosix {
            text: self.text.to_string(),
            reason,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn name(&mut self) -> Result<String, TzError> {
        let start = self.pos;
        if self.eat(b'<') {
            let inner = self.pos;
            while let Some(b) = self.peek() {
                if b == b'>' {
                    break;
                }
                if !(b.is_ascii_alphanumeric() || b == b'+' || b == b'-') {
                    return Err(self.fail("bad character in <quoted> zone name"));
                }
                self.pos += 1;
            }
            let name = self.text[inner..self.pos].to_string();
            if !self.eat(b'>') {
                return Err(self.fail("unterminated <quoted> zone name"));
            }
            if name.len() < 3 {
                return Err(self.fail("zone name shorter than 3 characters"));
            }
            return Ok(name);
        }
        while self.peek().is_some_and(|b| b.is_ascii_alphabetic()) {
            self.pos += 1;
        }
        if self.pos - start < 3 {
            return Err(self.fail("zone name shorter than 3 characters"));
        }
        Ok(self.text[start..self.pos].to_string())
    }

    fn number(&mut self, max: u32) -> Result<u32, TzError> {
        let start = self.pos;
        let mut value: u32 = 0;
        while let Some(b) = self.peek().filter(u8::is_ascii_digit) {
            value = value.saturating_mul(10).saturating_add(u32::from(b - b'0'));
            self.pos += 1;
        }
        if self.pos == start {
            return Err(self.fail("number expected"));
        }
        if value > max {
            return Err(self.fail("number out of range"));
        }
        Ok(value)
    }

    /// `[+-]hh[:mm[:ss]]` in seconds, hours up to `max_hours`.
    fn hms(&mut self, max_hours: u32) -> Result<i32, TzError> {
        let negative = if self.eat(b'-') {
            true
        } else {
            self.eat(b'+');
            false
        };
        let mut secs = self.number(max_hours)? * 3600;
        if self.eat(b':') {
            secs += self.number(59)? * 60;
            if self.eat(b':') {
                secs += self.number(59)?;
            }
        }
        // At most 167 * 3600 + 3599, well inside i32.
        let secs = secs as i32;
        Ok(if negative { -secs } else { secs })
    }

    fn rule(&mut self) -> Result<Rule, TzError> {
        let day = if self.eat(b'J') {
            let n = self.number(365)?;
            if n == 0 {
                return Err(self.fail("Julian day must be 1..365"));
            }
            RuleDay::Julian1(n as u16)
        } else if self.eat(b'M') {
            let month = self.number(12)?;
            if month == 0 || !self.eat(b'.') {
                return Err(self.fail("bad Mm.w.d rule"));
            }
            let week = self.number(5)?;
            if week == 0 || !self.eat(b'.') {
                return Err(self.fail("bad Mm.w.d rule"));
            }
            let weekday = self.number(6)?;
            RuleDay::MonthWeekDay {
                month: month as u8,
                week: week as u8,
                weekday: weekday as u8,
            }
        } else {
            RuleDay::Julian0(self.number(365)? as u16)
        };
        let time = if self.eat(b'/') { self.hms(167)? } else { 7200 };
        Ok(Rule { day, time })
    }
}

impl PosixTz {
    pub(super) fn parse(text: &str) -> Result<PosixTz, TzError> {
        let mut p = PosixParser {
            text,
            bytes: text.as_bytes(),
            pos: 0,
        };
        let std_name = p.name()?;
        // POSIX offsets count hours west of Greenwich; ours count seconds east.
        let std_off = -p.hms(24)?;
        let std = LocalType {
            utoff: std_off,
            is_dst: false,
            abbr: std_name,
        };
        if p.peek().is_none() {
            return Ok(PosixTz { std, dst: None });
        }
        let dst_name = p.name()?;
        let dst_off = match p.peek() {
            None | Some(b',') => std_off + 3600,
            Some(_) => -p.hms(24)?,
        };
        let (start, end) = if p.eat(b',') {
            let start = p.rule()?;
            if !p.eat(b',') {
                return Err(p.fail("end rule expected"));
            }
            (start, p.rule()?)
        } else {
            // glibc's default when a DST name has no rule: the US rules.
            let us = |month, week| Rule {
                day: RuleDay::MonthWeekDay {
                    month,
                    week,
                    weekday: 0,
                },
                time: 7200,
            };
            (us(3, 2), us(11, 1))
        };
        if p.peek().is_some() {
            return Err(p.fail("trailing characters"));
        }
        let dst = LocalType {
            utoff: dst_off,
            is_dst: true,
            abbr: dst_name,
        };
        Ok(PosixTz {
            std,
            dst: Some((dst, start, end)),
        })
    }

    pub(super) fn type_at(&self, unix: i64) -> &LocalType {
        let Some((dst, start, end)) = &self.dst else {
            return &self.std;
        };
        let (year, _, _) = civil_from_days(
            unix.saturating_add(i64::from(self.std.utoff))
                .div_euclid(86_400),
        );
        let begin = transition(year, start, self.std.utoff);
        let finish = transition(year, end, dst.utoff);
        let in_dst = if begin < finish {
            begin <= unix && unix < finish
        } else {
            // Southern hemisphere: DST spans the new year.
            !(finish <= unix && unix < begin)
        };
        if in_dst { dst } else { &self.std }
    }
}

/// The UTC instant of `rule` in `year`, given the offset in effect before it.
fn transition(year: i64, rule: &Rule, utoff_before: i32) -> i64 {
    let jan1 = days_from_civil(year, 1, 1);
    let day = match rule.day {
        RuleDay::Julian1(n) => {
            let n = i64::from(n);
            jan1 + n - 1 + i64::from(is_leap(year) && n >= 60)
        }
        RuleDay::Julian0(n) => jan1 + i64::from(n),
        RuleDay::MonthWeekDay {
            month,
            week,
            weekday: wd,
        } => {
            let month = u32::from(month);
            let first = days_from_civil(year, month, 1);
            let shift = (i64::from(wd) - i64::from(weekday(first))).rem_euclid(7);
            let mut day = first + shift + (i64::from(week) - 1) * 7;
            while day >= first + month_len(year, month) {
                day -= 7;
            }
            day
        }
    };
    day * 86_400 + i64::from(rule.time) - i64::from(utoff_before)
}

#[cfg(test)]
mod tests {
    use super::super::TimeZone;

    #[test]
    fn posix_rules() {
        let cet = TimeZone::from_posix("CET-1CEST,M3.5.0,M10.5.0/3").unwrap();
        // 2026-01-15 12:00 UTC: winter.
        assert_eq!(cet.offset_at(1_768_478_400), (3600, "CET".into()));
        // 2026-07-01 12:00 UTC: summer.
        assert_eq!(cet.offset_at(1_782_907_200), (7200, "CEST".into()));
        // 2026-03-29 01:00 UTC is the switch to CEST (last Sunday of March, 02:00 CET).
        assert_eq!(cet.offset_at(1_774_745_999).0, 3600);
        assert_eq!(cet.offset_at(1_774_746_000).0, 7200);
        // 2026-10-25 01:00 UTC is the switch back (03:00 CEST).
        assert_eq!(cet.offset_at(1_792_889_999).0, 7200);
        assert_eq!(cet.offset_at(1_792_890_000).0, 3600);

        let us = TimeZone::from_posix("EST5EDT").unwrap();
        assert_eq!(us.offset_at(1_768_478_400), (-5 * 3600, "EST".into()));
        assert_eq!(us.offset_at(1_782_907_200), (-4 * 3600, "EDT".into()));

        let sydney = TimeZone::from_posix("AEST-10AEDT,M10.1.0,M4.1.0/3").unwrap();
        assert_eq!(sydney.offset_at(1_768_478_400), (11 * 3600, "AEDT".into()));
        assert_eq!(sydney.offset_at(1_782_907_200), (10 * 3600, "AEST".into()));

        let quoted = TimeZone::from_posix("<+0330>-3:30").unwrap();
        assert_eq!(quoted.offset_at(0), (12_600, "+0330".into()));

        let julian = TimeZone::from_posix("XXX0YYY,J60/0,J300/0").unwrap();
        // 2024 is a leap year: J60 is March 1st, so Feb 29 is still standard time.
        assert!(!julian.is_dst_at(1_709_164_800)); // 2024-02-29 00:00 UTC
        assert!(julian.is_dst_at(1_709_251_200)); // 2024-03-01 00:00 UTC

        for bad in [
            "",
            "C",
            "CET",
            "CET-1CEST,M3.5.0",
            "CET-1CEST,M13.1.0,M1.1.0",
            "UTC0x",
        ] {
            assert!(TimeZone::from_posix(bad).is_err(), "{bad:?}");
        }
    }
}
