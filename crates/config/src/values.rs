//! Parsers for the value kinds of main.cf parameters: booleans, integers, sizes, time
//! durations, lists and lookup-table lists. They work on already-expanded text and return a
//! message (no file or line: the caller knows where the text came from) on bad input.

use std::time::Duration;

use crate::params::Kind;

/// Parses a Postfix time value: a decimal number with an optional one-letter unit,
/// `s` (seconds), `m` (minutes), `h` (hours), `d` (days) or `w` (weeks). A bare number uses
/// `default_unit`, which is `'s'` for most parameters (see [`crate::Param::unit`]).
///
/// Units are lower-case only and a value has one unit (`1h30m` is rejected), as in Postfix.
pub fn parse_duration(s: &str, default_unit: char) -> Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty time value".to_string());
    }
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err(format!(
            "bad time value \"{s}\": expected a number with an optional unit s, m, h, d or w"
        ));
    }
    let number: u64 = s[..digits]
        .parse()
        .map_err(|_| format!("time value \"{s}\" is too large"))?;
    let rest = &s[digits..];
    let mut units = rest.chars();
    let unit = match (units.next(), units.next()) {
        (None, _) => default_unit,
        (Some(unit), None) => unit,
        (Some(_), Some(_)) => {
            return Err(format!(
                "bad time unit \"{rest}\" in \"{s}\": expected one of s, m, h, d or w"
            ));
        }
    };
    let seconds_per_unit: u64 = match unit {
        's' => 1,
        'm' => 60,
        'h' => 60 * 60,
        'd' => 24 * 60 * 60,
        'w' => 7 * 24 * 60 * 60,
        other => {
            return Err(format!(
                "bad time unit \"{other}\" in \"{s}\": expected one of s, m, h, d or w"
            ));
        }
    };
    number
        .checked_mul(seconds_per_unit)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("time value \"{s}\" is too large"))
}

/// Parses a size in bytes: a decimal number, optionally followed by `k`, `m` or `g`
/// (either case) for KiB, MiB or GiB (1024-based).
///
/// Postfix accepts plain numbers only; the suffixes are a posthorn extension, so a main.cf
/// that uses them is not portable back to Postfix.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty size value".to_string());
    }
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err(format!(
            "bad size \"{s}\": expected a number of bytes with an optional k, m or g suffix"
        ));
    }
    let number: u64 = s[..digits]
        .parse()
        .map_err(|_| format!("size \"{s}\" is too large"))?;
    let multiplier: u64 = match s[digits..].to_ascii_lowercase().as_str() {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        other => {
            return Err(format!(
                "bad size suffix \"{other}\" in \"{s}\": expected k, m or g"
            ));
        }
    };
    number
        .checked_mul(multiplier)
        .ok_or_else(|| format!("size \"{s}\" is too large"))
}

/// Parses a boolean: `yes` or `no` as in Postfix, also `true` or `false`; case-insensitive.
pub fn parse_bool(s: &str) -> Result<bool, String> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("yes") || s.eq_ignore_ascii_case("true") {
        Ok(true)
    } else if s.eq_ignore_ascii_case("no") || s.eq_ignore_ascii_case("false") {
        Ok(false)
    } else {
        Err(format!("bad boolean \"{s}\": expected yes or no"))
    }
}

/// Parses a signed decimal integer.
pub fn parse_int(s: &str) -> Result<i64, String> {
    let s = s.trim();
    s.parse()
        .map_err(|_| format!("bad integer \"{s}\": expected a decimal number"))
}

/// Splits a list value on whitespace and commas, as Postfix does. Text inside `{ }` is kept
/// together (commas and spaces in it do not split), so `inline:{ a=1, b=2 }` is one element;
/// the braces stay in the element.
pub fn split_list(s: &str) -> Vec<String> {
    let mut items = Vec::new();
    let mut current = String::new();
    let mut depth = 0usize;
    for c in s.chars() {
        match c {
            '{' => {
                depth += 1;
                current.push(c);
            }
            '}' => {
                depth = depth.saturating_sub(1);
                current.push(c);
            }
            c if depth == 0 && (c == ',' || c.is_whitespace()) => {
                if !current.is_empty() {
                    items.push(std::mem::take(&mut current));
                }
            }
            c => current.push(c),
        }
    }
    if !current.is_empty() {
        items.push(current);
    }
    items
}

/// Checks that `{` and `}` in a list value balance.
fn check_braces(s: &str) -> Result<(), String> {
    let mut depth = 0usize;
    for c in s.chars() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth = depth
                    .checked_sub(1)
                    .ok_or_else(|| format!("unbalanced '}}' in \"{s}\""))?;
            }
            _ => {}
        }
    }
    if depth == 0 {
        Ok(())
    } else {
        Err(format!("unbalanced '{{' in \"{s}\""))
    }
}

/// Checks that one element of a lookup-table list looks like `type:name`.
fn check_table(table: &str) -> Result<(), String> {
    match table.split_once(':') {
        Some((kind, name))
            if !kind.is_empty()
                && !name.is_empty()
                && kind
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') =>
        {
            Ok(())
        }
        _ => Err(format!(
            "\"{table}\" is not a lookup table: expected type:name, e.g. hash:/etc/aliases"
        )),
    }
}

/// Checks that an expanded value parses as `kind` (`unit` is the default unit of a
/// [`Kind::Duration`]).
pub(crate) fn check_kind(kind: Kind, unit: char, value: &str) -> Result<(), String> {
    match kind {
        Kind::Bool => parse_bool(value).map(drop),
        Kind::Int => parse_int(value).map(drop),
        Kind::Size => parse_size(value).map(drop),
        Kind::Duration => parse_duration(value, unit).map(drop),
        Kind::Str => Ok(()),
        Kind::List => check_braces(value),
        Kind::Path => {
            let value = value.trim();
            if value.is_empty() || value.starts_with('/') {
                Ok(())
            } else {
                Err(format!("\"{value}\" is not an absolute path"))
            }
        }
        Kind::Lookup => {
            check_braces(value)?;
            split_list(value).iter().try_for_each(|t| check_table(t))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_use_units_and_the_default_unit() {
        assert_eq!(parse_duration("300s", 's'), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("300", 's'), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("5m", 's'), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("2h", 's'), Ok(Duration::from_secs(7200)));
        assert_eq!(
            parse_duration("5d", 's'),
            Ok(Duration::from_secs(5 * 86400))
        );
        assert_eq!(parse_duration("1w", 's'), Ok(Duration::from_secs(604_800)));
        assert_eq!(parse_duration("5", 'd'), Ok(Duration::from_secs(5 * 86400)));
        assert_eq!(parse_duration("0", 'h'), Ok(Duration::ZERO));
        assert_eq!(parse_duration(" 10s ", 's'), Ok(Duration::from_secs(10)));
    }

    #[test]
    fn bad_durations_are_rejected() {
        for bad in [
            "",
            "s",
            "10x",
            "1h30m",
            "-5s",
            "10S",
            "1.5h",
            "99999999999999999999",
        ] {
            assert!(parse_duration(bad, 's').is_err(), "{bad:?} accepted");
        }
        assert!(parse_duration(&format!("{}w", u64::MAX / 2), 's').is_err());
        assert!(parse_duration("5", 'x').is_err());
    }

    #[test]
    fn sizes_accept_bytes_and_binary_suffixes() {
        assert_eq!(parse_size("10240000"), Ok(10_240_000));
        assert_eq!(parse_size("10k"), Ok(10 * 1024));
        assert_eq!(parse_size("10K"), Ok(10 * 1024));
        assert_eq!(parse_size("2m"), Ok(2 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        for bad in [
            "",
            "k",
            "10kb",
            "-1",
            "1.5m",
            "10 k x",
            "99999999999999999999g",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn booleans_are_yes_no_true_false() {
        assert_eq!(parse_bool("yes"), Ok(true));
        assert_eq!(parse_bool("YES"), Ok(true));
        assert_eq!(parse_bool("True"), Ok(true));
        assert_eq!(parse_bool("no"), Ok(false));
        assert_eq!(parse_bool("false"), Ok(false));
        assert!(parse_bool("y").is_err());
        assert!(parse_bool("").is_err());
    }

    #[test]
    fn lists_split_on_commas_and_whitespace_but_not_inside_braces() {
        assert_eq!(split_list("a, b,c\td\n e,,"), vec!["a", "b", "c", "d", "e"]);
        assert_eq!(
            split_list("check_client_access inline:{ 1.2.3.4=OK, 5.6.7.8=REJECT }, x"),
            vec![
                "check_client_access",
                "inline:{ 1.2.3.4=OK, 5.6.7.8=REJECT }",
                "x"
            ]
        );
        assert!(split_list("  ,  ").is_empty());
    }

    #[test]
    fn kinds_are_checked() {
        assert!(check_kind(Kind::Path, 's', "/var/spool").is_ok());
        assert!(check_kind(Kind::Path, 's', "").is_ok());
        assert!(check_kind(Kind::Path, 's', "var/spool").is_err());
        assert!(
            check_kind(
                Kind::Lookup,
                's',
                "hash:/etc/aliases, proxy:unix:passwd.byname"
            )
            .is_ok()
        );
        assert!(check_kind(Kind::Lookup, 's', "inline:{ a=b, c=d }").is_ok());
        assert!(check_kind(Kind::Lookup, 's', "").is_ok());
        assert!(check_kind(Kind::Lookup, 's', "/etc/aliases").is_err());
        assert!(check_kind(Kind::List, 's', "inline:{ a").is_err());
        assert!(check_kind(Kind::List, 's', "a }").is_err());
        assert!(check_kind(Kind::Int, 's', "-3").is_ok());
        assert!(check_kind(Kind::Int, 's', "3x").is_err());
        assert!(check_kind(Kind::Duration, 'd', "5").is_ok());
        assert!(check_kind(Kind::Str, 's', "anything $at all").is_ok());
    }
}
