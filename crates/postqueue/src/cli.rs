//! The command line of postqueue (Postfix's getopt string `c:fi:jps:v`) and the checks of
//! the values it takes from the (untrusted) caller.

use std::ffi::OsString;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use posthorn_queue::QueueId;

/// Postfix's usage text.
pub const USAGE: &str =
    "usage: postqueue -f | postqueue -i queueid | postqueue -j | postqueue -p | postqueue -s site";

/// What postqueue is asked to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `-p`: the traditional listing.
    List,
    /// `-j`: the JSON Lines listing.
    Json,
    /// `-f`: flush the queue.
    Flush,
    /// `-i queue_id`: schedule one message.
    FlushFile(String),
    /// `-s site`: schedule the mail for one destination.
    FlushSite(String),
}

/// The parsed command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Args {
    /// `-c config_dir`.
    pub config_dir: Option<PathBuf>,
    /// The one operation.
    pub mode: Mode,
    /// Number of `-v` options.
    pub verbose: u32,
}

/// Parses argv (argv\[0\] included). Exactly one of `-f -i -j -p -s` is required, and no
/// other argument; the error is the message for `fatal:` (exit 64).
pub fn parse<I>(argv: I) -> Result<Args, String>
where
    I: IntoIterator,
    I::Item: Into<OsString>,
{
    use lexopt::Arg::Short;
    let mut p = lexopt::Parser::from_iter(argv);
    let mut config_dir = None;
    let mut mode = None;
    let mut verbose = 0u32;
    let text = |v: Result<OsString, lexopt::Error>| -> Result<String, String> {
        v.map_err(|e| format!("{e}; {USAGE}"))?
            .into_string()
            .map_err(|_| USAGE.to_string())
    };
    loop {
        let next = match p.next() {
            Ok(None) => break,
            Ok(Some(a)) => a,
            Err(e) => return Err(format!("{e}; {USAGE}")),
        };
        let chosen = match next {
            Short('c') => {
                config_dir = Some(PathBuf::from(
                    p.value().map_err(|e| format!("{e}; {USAGE}"))?,
                ));
                continue;
            }
            Short('v') => {
                verbose += 1;
                continue;
            }
            Short('f') => Mode::Flush,
            Short('i') => Mode::FlushFile(text(p.value())?),
            Short('j') => Mode::Json,
            Short('p') => Mode::List,
            Short('s') => Mode::FlushSite(text(p.value())?),
            _ => return Err(USAGE.to_string()),
        };
        if mode.replace(chosen).is_some() {
            return Err(USAGE.to_string());
        }
    }
    let mode = mode.ok_or_else(|| USAGE.to_string())?;
    Ok(Args {
        config_dir,
        mode,
        verbose,
    })
}

/// Postfix's quoting of a bad value in a message: at most 100 characters, then `...`.
fn shown(value: &str) -> String {
    match value.char_indices().nth(100) {
        Some((at, _)) => format!("\"{}...\"", &value[..at]),
        None => format!("\"{value}\""),
    }
}

/// Checks a `-s` destination: a host name, or an address literal in `[]`
/// (`[192.0.2.1]`, `[IPv6:2001:db8::1]`).
pub fn check_site(site: &str) -> Result<(), String> {
    let ok = match site.strip_prefix('[') {
        Some(rest) => rest.strip_suffix(']').is_some_and(valid_address_literal),
        None => valid_hostname(site),
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "Cannot flush mail queue - invalid destination: {}",
            shown(site)
        ))
    }
}

/// Checks a `-i` queue ID.
pub fn check_queue_id(id: &str) -> Result<(), String> {
    QueueId::parse(id)
        .map(|_| ())
        .map_err(|_| format!("Cannot flush queue ID - invalid name: {}", shown(id)))
}

/// Postfix's valid_hostname(): at most 255 characters, labels of 1 to 63 letters, digits,
/// `-` and `_`, no `-` at either end of a label, and not all-numeric.
fn valid_hostname(name: &str) -> bool {
    if name.is_empty() || name.len() > 255 {
        return false;
    }
    let labels_ok = name.split('.').all(|l| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    labels_ok && !name.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

/// The inside of an address literal: IPv4, or `IPv6:` and an IPv6 address.
fn valid_address_literal(inner: &str) -> bool {
    match inner.get(..5) {
        Some(tag) if tag.eq_ignore_ascii_case("IPv6:") => inner[5..].parse::<Ipv6Addr>().is_ok(),
        _ => inner.parse::<Ipv4Addr>().is_ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Args, String> {
        parse(std::iter::once("postqueue").chain(args.iter().copied()))
    }

    #[test]
    fn one_mode_exactly() {
        assert_eq!(p(&["-p"]).unwrap().mode, Mode::List);
        assert_eq!(p(&["-j"]).unwrap().mode, Mode::Json);
        assert_eq!(p(&["-f"]).unwrap().mode, Mode::Flush);
        assert_eq!(p(&["-i", "ID"]).unwrap().mode, Mode::FlushFile("ID".into()));
        assert_eq!(
            p(&["-sexample.com"]).unwrap().mode,
            Mode::FlushSite("example.com".into())
        );
        let a = p(&["-v", "-c", "/etc/x", "-v", "-p"]).unwrap();
        assert_eq!(a.config_dir, Some(PathBuf::from("/etc/x")));
        assert_eq!(a.verbose, 2);
        for bad in [
            &[][..],
            &["-p", "-j"],
            &["-p", "extra"],
            &["-x"],
            &["-i"],
            &["-c"],
            &["-pf"],
        ] {
            assert_eq!(p(bad).map_err(|e| e.ends_with(USAGE)), Err(true), "{bad:?}");
        }
    }

    #[test]
    fn sites() {
        for ok in [
            "example.com",
            "mail-1.example.com",
            "a_b.example",
            "localhost",
            "[192.0.2.1]",
            "[IPv6:2001:db8::1]",
            "[ipv6:::1]",
        ] {
            assert_eq!(check_site(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "-x.example",
            "x-.example",
            "a..b",
            "a.b.",
            "1.2.3.4",
            "[1.2.3]",
            "[192.0.2.1",
            "[IPv6:zz]",
            "a b",
            "a;rm -rf",
        ] {
            assert!(check_site(bad).is_err(), "{bad}");
        }
        let long = "a".repeat(300);
        assert_eq!(
            check_site(&long).unwrap_err(),
            format!(
                "Cannot flush mail queue - invalid destination: \"{}...\"",
                "a".repeat(100)
            )
        );
    }

    #[test]
    fn queue_ids() {
        let id = QueueId::new(std::time::SystemTime::now(), 12345);
        assert_eq!(check_queue_id(id.as_str()), Ok(()));
        assert_eq!(
            check_queue_id("../etc/passwd").unwrap_err(),
            "Cannot flush queue ID - invalid name: \"../etc/passwd\""
        );
    }
}
