//! SMTP command lines: the verb, and for MAIL and RCPT the path and ESMTP parameters
//! (RFC 5321 4.1, SIZE RFC 1870, 8BITMIME RFC 6152, DSN RFC 3461, SMTPUTF8 RFC 6531,
//! CHUNKING RFC 3030). Parsing never panics; every error is the reply the client gets.

use crate::reply::Reply;

/// A parsed command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `HELO name`.
    Helo(String),
    /// `EHLO name`.
    Ehlo(String),
    /// `MAIL FROM:<path> params`.
    Mail(MailFrom),
    /// `RCPT TO:<path> params`.
    Rcpt(RcptTo),
    /// `DATA`.
    Data,
    /// `BDAT size [LAST]`.
    Bdat {
        /// Bytes in the chunk that follows.
        size: u64,
        /// Whether this is the last chunk.
        last: bool,
    },
    /// `RSET`.
    Rset,
    /// `NOOP`.
    Noop,
    /// `QUIT`.
    Quit,
    /// `VRFY address`.
    Vrfy(String),
    /// `HELP`.
    Help,
    /// `STARTTLS`.
    StartTls,
    /// `ETRN`, `EXPN`, `AUTH`, ...: known verbs posthorn does not offer.
    NotOffered(String),
    /// Anything else.
    Unknown(String),
}

/// The body type of MAIL's BODY= parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Body {
    /// Not given.
    #[default]
    Unspecified,
    /// `BODY=7BIT`.
    SevenBit,
    /// `BODY=8BITMIME`.
    EightBitMime,
}

/// `MAIL FROM` with its parameters.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct MailFrom {
    /// The sender address without angle brackets or source route ("" = null sender).
    pub address: String,
    /// `SIZE=`.
    pub size: Option<u64>,
    /// `BODY=`.
    pub body: Body,
    /// `SMTPUTF8`.
    pub smtputf8: bool,
    /// `RET=FULL` / `RET=HDRS`.
    pub ret: Option<String>,
    /// `ENVID=` (xtext-decoded).
    pub envid: Option<String>,
}

/// `RCPT TO` with its parameters.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct RcptTo {
    /// The recipient address without angle brackets or source route.
    pub address: String,
    /// `NOTIFY=` as a comma list in upper case (`SUCCESS,FAILURE`, `NEVER`).
    pub notify: Option<String>,
    /// `ORCPT=` as `type;address` (xtext-decoded).
    pub orcpt: Option<String>,
}

fn err(code: u16, dsn: &str, text: &str) -> Reply {
    Reply::new(code, dsn, text)
}

/// Parses one command line (without its line ending).
pub fn parse(line: &str) -> Result<Command, Reply> {
    let line = line.trim_end_matches([' ', '\t']);
    let (verb, arg) = match line.find([' ', '\t']) {
        Some(i) => (&line[..i], line[i..].trim_start_matches([' ', '\t'])),
        None => (line, ""),
    };
    let upper = verb.to_ascii_uppercase();
    let none = |c: Command, syntax: &str| {
        if arg.is_empty() {
            Ok(c)
        } else {
            Err(err(501, "5.5.4", &format!("Syntax: {syntax}")))
        }
    };
    match upper.as_str() {
        "HELO" | "EHLO" => {
            let name = arg.split_whitespace().next().unwrap_or("");
            if name.is_empty() {
                return Err(err(501, "5.5.4", &format!("Syntax: {upper} hostname")));
            }
            Ok(if upper == "HELO" {
                Command::Helo(name.to_string())
            } else {
                Command::Ehlo(name.to_string())
            })
        }
        "MAIL" => parse_mail(arg).map(Command::Mail),
        "RCPT" => parse_rcpt(arg).map(Command::Rcpt),
        "DATA" => none(Command::Data, "DATA"),
        "BDAT" => parse_bdat(arg),
        "RSET" => none(Command::Rset, "RSET"),
        "NOOP" => Ok(Command::Noop),
        "QUIT" => Ok(Command::Quit),
        "VRFY" => {
            if arg.is_empty() {
                Err(err(501, "5.5.4", "Syntax: VRFY address"))
            } else {
                Ok(Command::Vrfy(arg.to_string()))
            }
        }
        "HELP" => Ok(Command::Help),
        "STARTTLS" => none(Command::StartTls, "STARTTLS"),
        "ETRN" | "EXPN" | "AUTH" | "TURN" | "ATRN" | "XCLIENT" | "XFORWARD" => {
            Ok(Command::NotOffered(upper))
        }
        _ => Ok(Command::Unknown(upper)),
    }
}

fn parse_bdat(arg: &str) -> Result<Command, Reply> {
    let syntax = || err(501, "5.5.4", "Syntax: BDAT count [LAST]");
    let mut it = arg.split_whitespace();
    let size = it
        .next()
        .filter(|s| !s.is_empty() && s.len() <= 19 && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(syntax)?;
    let last = match it.next() {
        None => false,
        Some(w) if w.eq_ignore_ascii_case("LAST") => true,
        Some(_) => return Err(syntax()),
    };
    if it.next().is_some() {
        return Err(syntax());
    }
    Ok(Command::Bdat { size, last })
}

/// Strips `keyword:` (case-insensitive) from the front of `arg`.
fn after_keyword<'a>(arg: &'a str, keyword: &str) -> Option<&'a str> {
    let head = arg.get(..keyword.len())?;
    head.eq_ignore_ascii_case(keyword)
        .then(|| arg[keyword.len()..].trim_start_matches(' '))
}

fn parse_mail(arg: &str) -> Result<MailFrom, Reply> {
    let syntax = || err(501, "5.5.4", "Syntax: MAIL FROM:<address>");
    let rest = after_keyword(arg, "FROM:").ok_or_else(syntax)?;
    let (address, params) =
        split_path(rest).map_err(|()| err(501, "5.1.7", "Bad sender address syntax"))?;
    let mut m = MailFrom {
        address,
        ..MailFrom::default()
    };
    for (k, v) in params_of(params)? {
        match (k.as_str(), v) {
            ("SIZE", Some(v)) => {
                m.size = Some(
                    v.parse::<u64>()
                        .ok()
                        .filter(|_| v.bytes().all(|b| b.is_ascii_digit()))
                        .ok_or_else(|| err(501, "5.5.4", "Bad message size syntax"))?,
                );
            }
            ("BODY", Some(v)) => {
                m.body = match v.to_ascii_uppercase().as_str() {
                    "7BIT" => Body::SevenBit,
                    "8BITMIME" => Body::EightBitMime,
                    _ => return Err(err(501, "5.5.4", "Unsupported BODY parameter")),
                }
            }
            ("SMTPUTF8", None) => m.smtputf8 = true,
            ("RET", Some(v)) => {
                let v = v.to_ascii_uppercase();
                if v != "FULL" && v != "HDRS" {
                    return Err(err(501, "5.5.4", "Bad RET parameter syntax"));
                }
                m.ret = Some(v);
            }
            ("ENVID", Some(v)) => {
                m.envid = Some(
                    xtext_decode(v)
                        .filter(|s| s.len() <= 100)
                        .ok_or_else(|| err(501, "5.5.4", "Bad ENVID parameter syntax"))?,
                );
            }
            (k, _) => return Err(err(555, "5.5.4", &format!("Unsupported option: {k}"))),
        }
    }
    Ok(m)
}

fn parse_rcpt(arg: &str) -> Result<RcptTo, Reply> {
    let syntax = || err(501, "5.5.4", "Syntax: RCPT TO:<address>");
    let rest = after_keyword(arg, "TO:").ok_or_else(syntax)?;
    let (address, params) =
        split_path(rest).map_err(|()| err(501, "5.1.3", "Bad recipient address syntax"))?;
    if address.is_empty() {
        return Err(err(501, "5.1.3", "Bad recipient address syntax"));
    }
    let mut r = RcptTo {
        address,
        ..RcptTo::default()
    };
    for (k, v) in params_of(params)? {
        match (k.as_str(), v) {
            ("NOTIFY", Some(v)) => {
                let words: Vec<String> = v.split(',').map(str::to_ascii_uppercase).collect();
                let valid = !words.is_empty()
                    && if words.iter().any(|w| w == "NEVER") {
                        words.len() == 1
                    } else {
                        words
                            .iter()
                            .all(|w| matches!(w.as_str(), "SUCCESS" | "FAILURE" | "DELAY"))
                    };
                if !valid {
                    return Err(err(501, "5.5.4", "Error: Bad NOTIFY parameter syntax"));
                }
                r.notify = Some(words.join(","));
            }
            ("ORCPT", Some(v)) => {
                let bad = || err(501, "5.5.4", "Error: Bad ORCPT parameter syntax");
                let (kind, addr) = v.split_once(';').ok_or_else(bad)?;
                let addr = xtext_decode(addr)
                    .filter(|a| !a.is_empty())
                    .ok_or_else(bad)?;
                if kind.is_empty() || !kind.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                {
                    return Err(bad());
                }
                r.orcpt = Some(format!("{};{addr}", kind.to_ascii_lowercase()));
            }
            (k, _) => return Err(err(555, "5.5.4", &format!("Unsupported option: {k}"))),
        }
    }
    Ok(r)
}

/// ESMTP parameters `KEY[=VALUE]`, keys upper-cased, duplicates refused.
fn params_of(s: &str) -> Result<Vec<(String, Option<&str>)>, Reply> {
    let mut out: Vec<(String, Option<&str>)> = Vec::new();
    for word in s.split(' ').filter(|w| !w.is_empty()) {
        let (k, v) = match word.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (word, None),
        };
        let valid_key = !k.is_empty()
            && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && v.is_none_or(|v| !v.is_empty() && v.bytes().all(|b| (33..=126).contains(&b)));
        if !valid_key {
            return Err(err(501, "5.5.4", &format!("Bad parameter syntax: {word}")));
        }
        let key = k.to_ascii_uppercase();
        if out.iter().any(|(x, _)| *x == key) {
            return Err(err(501, "5.5.4", &format!("Duplicate parameter: {key}")));
        }
        out.push((key, v));
    }
    Ok(out)
}

/// Splits `<path> rest` (or a bare address without brackets, as Postfix allows unless
/// strict_rfc821_envelopes), returning the address without its source route.
fn split_path(s: &str) -> Result<(String, &str), ()> {
    let (inner, rest) = if let Some(body) = s.strip_prefix('<') {
        let end = closing_bracket(body).ok_or(())?;
        (&body[..end], &body[end + 1..])
    } else {
        let end = s.find(' ').unwrap_or(s.len());
        (&s[..end], &s[end..])
    };
    if !rest.is_empty() && !rest.starts_with(' ') {
        return Err(());
    }
    let addr = strip_source_route(inner)?;
    check_address(addr)?;
    Ok((addr.to_string(), rest.trim_start_matches(' ')))
}

/// The index of the `>` that closes a path, skipping quoted strings.
fn closing_bracket(s: &str) -> Option<usize> {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '>' if !quoted => return Some(i),
            _ => {}
        }
    }
    None
}

/// `@a,@b:user@c` → `user@c` (RFC 5321 4.1.2: source routes are accepted and ignored).
fn strip_source_route(s: &str) -> Result<&str, ()> {
    if !s.starts_with('@') {
        return Ok(s);
    }
    let colon = s.find(':').ok_or(())?;
    let route = &s[..colon];
    let hops_ok = route
        .split(',')
        .all(|h| h.len() > 1 && h.starts_with('@') && valid_domain(&h[1..]));
    if !hops_ok {
        return Err(());
    }
    Ok(&s[colon + 1..])
}

/// Refuses what can never be a mailbox: control characters, unbalanced quotes, brackets,
/// spaces outside quotes, an empty or malformed domain.
fn check_address(a: &str) -> Result<(), ()> {
    if a.is_empty() {
        return Ok(());
    }
    let mut quoted = false;
    let mut escaped = false;
    let mut at = None;
    for (i, c) in a.char_indices() {
        if c.is_control() {
            return Err(());
        }
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '<' | '>' | ' ' | '\t' | ',' | ';' if !quoted => return Err(()),
            '@' if !quoted && at.is_some() => return Err(()),
            '@' if !quoted => at = Some(i),
            _ => {}
        }
    }
    if quoted || escaped {
        return Err(());
    }
    match at {
        None => Ok(()), // unqualified: cleanup appends $myorigin (Postfix accepts it too)
        Some(0) => Err(()),
        Some(i) if valid_domain(&a[i + 1..]) => Ok(()),
        Some(_) => Err(()),
    }
}

/// A host name (labels of letters, digits, hyphens, underscores, or UTF-8 for SMTPUTF8) or an
/// address literal `[...]`.
pub fn valid_domain(d: &str) -> bool {
    if let Some(lit) = d.strip_prefix('[') {
        return lit.strip_suffix(']').is_some_and(|l| {
            !l.is_empty()
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b":.-".contains(&b))
        });
    }
    let d = d.strip_suffix('.').unwrap_or(d);
    !d.is_empty()
        && d.len() <= 255
        && d.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .chars()
                    .all(|c| c.is_alphanumeric() || c == '-' || c == '_')
        })
}

/// Decodes RFC 3461 xtext (`+XX` hex escapes); None when malformed.
pub fn xtext_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => {
                let hex = s.get(i + 1..i + 3)?;
                if !hex
                    .bytes()
                    .all(|c| c.is_ascii_digit() || (b'A'..=b'F').contains(&c))
                {
                    return None;
                }
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            c @ 33..=126 if c != b'=' => {
                out.push(c);
                i += 1;
            }
            _ => return None,
        }
    }
    String::from_utf8(out).ok()
}

/// Encodes text as RFC 3461 xtext.
pub fn xtext_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (33..=126).contains(&b) && b != b'+' && b != b'=' {
            out.push(b as char);
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(r: Result<Command, Reply>) -> u16 {
        r.err().map_or(0, |r| r.code)
    }

    #[test]
    fn verbs() {
        assert_eq!(
            parse("ehlo client.test"),
            Ok(Command::Ehlo("client.test".into()))
        );
        assert_eq!(parse("HELO x"), Ok(Command::Helo("x".into())));
        assert_eq!(code(parse("EHLO")), 501);
        assert_eq!(parse("data"), Ok(Command::Data));
        assert_eq!(code(parse("DATA now")), 501);
        assert_eq!(parse("QUIT"), Ok(Command::Quit));
        assert_eq!(parse("FROB x"), Ok(Command::Unknown("FROB".into())));
        assert_eq!(parse("ETRN x"), Ok(Command::NotOffered("ETRN".into())));
        assert_eq!(parse(""), Ok(Command::Unknown(String::new())));
    }

    #[test]
    fn mail_from() {
        let Ok(Command::Mail(m)) =
            parse("MAIL FROM:<a@b.test> SIZE=100 BODY=8BITMIME RET=hdrs ENVID=x+2By")
        else {
            panic!()
        };
        assert_eq!(m.address, "a@b.test");
        assert_eq!(m.size, Some(100));
        assert_eq!(m.body, Body::EightBitMime);
        assert_eq!(m.ret.as_deref(), Some("HDRS"));
        assert_eq!(m.envid.as_deref(), Some("x+y"));
        let Ok(Command::Mail(m)) = parse("mail from:<>") else {
            panic!()
        };
        assert_eq!(m.address, "");
        let Ok(Command::Mail(m)) = parse("MAIL FROM: <@r1.test,@r2.test:u@c.test>") else {
            panic!()
        };
        assert_eq!(m.address, "u@c.test");
        let Ok(Command::Mail(m)) = parse("MAIL FROM:<\"a b\"@c.test> SMTPUTF8") else {
            panic!()
        };
        assert_eq!(m.address, "\"a b\"@c.test");
        assert!(m.smtputf8);
        assert_eq!(code(parse("MAIL FROM:a@b.test")), 0);
        assert_eq!(code(parse("MAIL TO:<a@b>")), 501);
        assert_eq!(code(parse("MAIL FROM:<a@b>x")), 501);
        assert_eq!(code(parse("MAIL FROM:<a@b")), 501);
        assert_eq!(code(parse("MAIL FROM:<a@b> FOO=1")), 555);
        assert_eq!(code(parse("MAIL FROM:<a@b> SIZE=x")), 501);
        assert_eq!(code(parse("MAIL FROM:<a@b> SIZE=1 SIZE=2")), 501);
        assert_eq!(code(parse("MAIL FROM:<a@b> BODY=BINARYMIME")), 501);
        assert_eq!(code(parse("MAIL FROM:<a@b> RET=ALL")), 501);
        assert_eq!(code(parse("MAIL FROM:<a@b\r>")), 501);
        assert_eq!(code(parse("MAIL FROM:<a@b\0>")), 501);
        assert_eq!(code(parse("MAIL FROM:<a@b@c>")), 501);
        assert_eq!(code(parse("MAIL FROM:<a@>")), 501);
        assert_eq!(code(parse("MAIL FROM:<@x:>")), 0);
    }

    #[test]
    fn rcpt_to() {
        let Ok(Command::Rcpt(r)) =
            parse("RCPT TO:<u@d.test> NOTIFY=success,failure ORCPT=rfc822;u+40x.test")
        else {
            panic!()
        };
        assert_eq!(r.address, "u@d.test");
        assert_eq!(r.notify.as_deref(), Some("SUCCESS,FAILURE"));
        assert_eq!(r.orcpt.as_deref(), Some("rfc822;u@x.test"));
        assert_eq!(code(parse("RCPT TO:<>")), 501);
        assert_eq!(code(parse("RCPT TO:<u@d> NOTIFY=NEVER,SUCCESS")), 501);
        assert_eq!(code(parse("RCPT TO:<u@d> ORCPT=nosemicolon")), 501);
        assert_eq!(code(parse("RCPT FROM:<u@d>")), 501);
        let Ok(Command::Rcpt(r)) = parse("RCPT TO:<postmaster>") else {
            panic!()
        };
        assert_eq!(r.address, "postmaster");
    }

    #[test]
    fn bdat() {
        assert_eq!(
            parse("BDAT 100 LAST"),
            Ok(Command::Bdat {
                size: 100,
                last: true
            })
        );
        assert_eq!(
            parse("bdat 0"),
            Ok(Command::Bdat {
                size: 0,
                last: false
            })
        );
        assert_eq!(code(parse("BDAT")), 501);
        assert_eq!(code(parse("BDAT -1")), 501);
        assert_eq!(code(parse("BDAT 99999999999999999999999")), 501);
        assert_eq!(code(parse("BDAT 1 FIRST")), 501);
    }

    #[test]
    fn xtext() {
        assert_eq!(xtext_decode("a+2Bb").as_deref(), Some("a+b"));
        assert_eq!(xtext_decode("a+2b"), None);
        assert_eq!(xtext_decode("a=b"), None);
        assert_eq!(xtext_encode("a+b=c d"), "a+2Bb+3Dc+20d");
    }
}
