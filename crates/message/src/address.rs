//! Addresses: RFC 5322 address lists from headers, and the quoting of RFC 5321 paths.
//!
//! Posthorn keeps addresses in Postfix's *internal* form: the local part unquoted (`a b@x`
//! rather than `"a b"@x`). [`parse_address_list`] and [`unquote_address`] produce that form;
//! [`quote_local_part`] turns it back into the external form for SMTP and headers.

/// RFC 5322 specials, plus the legacy `%` and `!` routing operators for display names.
const PHRASE_SPECIALS: &str = "()<>@,;:\\\".[]%!";

/// One lexical token of a structured header value.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    /// A run of atom characters (escapes already removed).
    Atom(String),
    /// A quoted string, contents unquoted.
    Quoted(String),
    /// A domain literal, brackets included.
    Literal(String),
    /// One of `< > @ , ; : .`, a stray `)` / `]`, or `"` for an unterminated quote.
    Special(char),
}

/// Extracts the addr-specs of an RFC 5322 address list (To:, Cc:, Bcc:, From: values).
///
/// Handles display names (also quoted ones with commas), comments (nested), angle addresses
/// with or without source routes, groups (`undisclosed-recipients:;`, `team: a@x, b@y;`) and
/// folded white space. Results are in internal form: `user@domain`, or bare `user` when no
/// domain is given. Items that are not addresses (junk, empty `<>`) are skipped; any input is
/// safe.
pub fn parse_address_list(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut item: Vec<Tok> = Vec::new();
    let mut in_angle = false;
    for tok in tokenize(value) {
        match tok {
            Tok::Special('<') => {
                in_angle = true;
                item.push(tok);
            }
            Tok::Special('>') => {
                in_angle = false;
                item.push(tok);
            }
            Tok::Special(',' | ';') if !in_angle => {
                out.extend(parse_item(&item));
                item.clear();
            }
            // "display name:" opens a group; its name is not an address.
            Tok::Special(':') if !in_angle => item.clear(),
            _ => item.push(tok),
        }
    }
    out.extend(parse_item(&item));
    out
}

/// Quotes the local part when it is not a valid dot-atom (RFC 5321/5322 external form).
///
/// `a b@x` becomes `"a b"@x`; `user@x`, `first.last@x` and the null address `""` stay as they
/// are. The input is in internal form: the domain starts after the last `@`.
pub fn quote_local_part(addr: &str) -> String {
    if addr.is_empty() {
        return String::new();
    }
    let (local, domain) = match addr.rfind('@') {
        Some(at) => (&addr[..at], Some(&addr[at + 1..])),
        None => (addr, None),
    };
    let mut out = String::with_capacity(addr.len() + 2);
    if is_dot_atom(local) {
        out.push_str(local);
    } else {
        out.push('"');
        for c in local.chars() {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
        out.push('"');
    }
    if let Some(domain) = domain {
        out.push('@');
        out.push_str(domain);
    }
    out
}

/// Removes quoting from the local part: `"a b"@x` becomes `a b@x` (internal form).
pub fn unquote_address(addr: &str) -> String {
    let (local, domain) = split_address(addr);
    let mut out = String::with_capacity(addr.len());
    let mut chars = local.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {}
            '\\' => out.extend(chars.next()),
            _ => out.push(c),
        }
    }
    if let Some(domain) = domain {
        out.push('@');
        out.push_str(domain);
    }
    out
}

/// Splits at the last `@` that is not inside a quoted string: (local part, domain).
pub fn split_address(addr: &str) -> (&str, Option<&str>) {
    let mut quoted = false;
    let mut escaped = false;
    let mut last_at = None;
    for (i, c) in addr.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            '"' => quoted = !quoted,
            '@' if !quoted => last_at = Some(i),
            _ => {}
        }
    }
    match last_at {
        Some(at) => (&addr[..at], Some(&addr[at + 1..])),
        None => (addr, None),
    }
}

/// Splits `user+ext` at the first character from `delimiters`: (user, extension without the
/// delimiter). The delimiter used is `local[user.len()..]`'s first character.
///
/// Like Postfix's `split_addr()`: never splits at a leading delimiter, nor `postmaster`,
/// `MAILER-DAEMON` or `double-bounce`, nor (when `-` is a delimiter) `owner-foo` or
/// `foo-request` (case-insensitive).
pub fn split_extension<'a>(local: &'a str, delimiters: &str) -> (&'a str, Option<&'a str>) {
    if delimiters.is_empty() {
        return (local, None);
    }
    if ["postmaster", "mailer-daemon", "double-bounce"]
        .iter()
        .any(|n| local.eq_ignore_ascii_case(n))
    {
        return (local, None);
    }
    if delimiters.contains('-') {
        let owner = local
            .get(..6)
            .is_some_and(|p| p.eq_ignore_ascii_case("owner-"));
        let request = local.len() > 8
            && local
                .get(local.len() - 8..)
                .is_some_and(|s| s.eq_ignore_ascii_case("-request"));
        if owner || request {
            return (local, None);
        }
    }
    match local.char_indices().find(|&(_, c)| delimiters.contains(c)) {
        Some((0, _)) | None => (local, None),
        Some((i, c)) => (&local[..i], Some(&local[i + c.len_utf8()..])),
    }
}

/// Appends `@myorigin` to an address without a domain; the null address and addresses with a
/// domain are returned unchanged.
pub fn qualify(addr: &str, myorigin: &str) -> String {
    if addr.is_empty() || myorigin.is_empty() || split_address(addr).1.is_some() {
        addr.to_string()
    } else {
        format!("{addr}@{myorigin}")
    }
}

/// Formats a display name for `Name <addr>`: plain words with white space normalised, a quoted
/// string when it holds specials, or RFC 2047 encoded words when it is not ASCII. Returns an
/// empty string when nothing printable is left.
pub fn format_phrase(name: &str) -> String {
    // Control characters (CR and LF included) become blanks: a name must not break the header.
    let clean: String = name
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let words: Vec<&str> = clean.split_whitespace().collect();
    let normalized = words.join(" ");
    if normalized.is_empty() {
        return normalized;
    }
    if !normalized.is_ascii() {
        return encode_words(&normalized);
    }
    if normalized.chars().any(|c| PHRASE_SPECIALS.contains(c)) {
        let mut out = String::with_capacity(normalized.len() + 2);
        out.push('"');
        for c in normalized.chars() {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
        out.push('"');
        return out;
    }
    normalized
}

/// Whether `s` is an RFC 5322 dot-atom (UTF-8 allowed, RFC 6532).
fn is_dot_atom(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('.')
        && !s.ends_with('.')
        && !s.contains("..")
        && s.chars().all(|c| c == '.' || is_atext(c))
}

/// RFC 5322 atext, plus any non-ASCII character (RFC 6532).
fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii()
}

/// RFC 2047 "B" encoded words in UTF-8, each at most 75 characters, separated by blanks.
fn encode_words(text: &str) -> String {
    const MAX_RAW: usize = 45; // 60 base64 characters + 12 of framing = 72 <= 75
    let mut words = Vec::new();
    let mut start = 0;
    while start < text.len() {
        let mut end = start;
        for (i, c) in text[start..].char_indices() {
            if i + c.len_utf8() > MAX_RAW {
                break;
            }
            end = start + i + c.len_utf8();
        }
        words.push(format!(
            "=?utf-8?B?{}?=",
            base64(&text.as_bytes()[start..end])
        ));
        start = end;
    }
    words.join(" ")
}

fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> shift) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Splits a structured header value into tokens; comments and white space are dropped.
fn tokenize(s: &str) -> Vec<Tok> {
    let mut toks = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '(' => {
                chars.next();
                let mut depth = 1usize;
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            chars.next();
                        }
                        '(' => depth += 1,
                        ')' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                }
            }
            '"' => {
                chars.next();
                let mut text = String::new();
                let mut closed = false;
                while let Some(c) = chars.next() {
                    match c {
                        '"' => {
                            closed = true;
                            break;
                        }
                        '\\' => text.extend(chars.next()),
                        // Folding inside a quoted string: the line break goes, the blank stays.
                        '\r' | '\n' => {}
                        _ => text.push(c),
                    }
                }
                // An unterminated quote makes the item junk rather than an address.
                toks.push(if closed {
                    Tok::Quoted(text)
                } else {
                    Tok::Special('"')
                });
            }
            '[' => {
                chars.next();
                let mut text = String::from("[");
                while let Some(c) = chars.next() {
                    match c {
                        ']' => break,
                        '\\' => text.extend(chars.next()),
                        c if c.is_whitespace() => {}
                        _ => text.push(c),
                    }
                }
                text.push(']');
                toks.push(Tok::Literal(text));
            }
            '<' | '>' | '@' | ',' | ';' | ':' | '.' | ')' | ']' => {
                chars.next();
                toks.push(Tok::Special(c));
            }
            _ => {
                let mut text = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() || "()<>@,;:.\"[]".contains(c) {
                        break;
                    }
                    chars.next();
                    if c == '\\' {
                        text.extend(chars.next());
                    } else {
                        text.push(c);
                    }
                }
                toks.push(Tok::Atom(text));
            }
        }
    }
    toks
}

/// One list item: a mailbox (`addr-spec` or `[name] <addr-spec>`), or nothing usable.
fn parse_item(item: &[Tok]) -> Option<String> {
    let Some(open) = item.iter().position(|t| *t == Tok::Special('<')) else {
        return addr_spec(item);
    };
    let inner = &item[open + 1..];
    let close = inner
        .iter()
        .position(|t| *t == Tok::Special('>'))
        .unwrap_or(inner.len());
    let mut inner = &inner[..close];
    // Obsolete source route: <@relay1,@relay2:user@domain>.
    if inner.first() == Some(&Tok::Special('@')) {
        let colon = inner.iter().rposition(|t| *t == Tok::Special(':'))?;
        inner = &inner[colon + 1..];
    }
    addr_spec(inner)
}

/// `local-part [@ domain]` from tokens, in internal form.
fn addr_spec(toks: &[Tok]) -> Option<String> {
    let at = toks.iter().rposition(|t| *t == Tok::Special('@'));
    let (local_toks, domain_toks) = match at {
        Some(at) => (&toks[..at], Some(&toks[at + 1..])),
        None => (toks, None),
    };
    let mut out = join_words(local_toks, false)?;
    if let Some(domain_toks) = domain_toks {
        let domain = join_words(domain_toks, true)?;
        out.push('@');
        out.push_str(&domain);
    }
    Some(out)
}

/// Joins words separated by dots (leniently: stray dots are kept, as real mail has them).
/// Two words without a dot between them, or any other special, make the item unusable.
fn join_words(toks: &[Tok], domain: bool) -> Option<String> {
    let mut out = String::new();
    let mut last_was_word = false;
    for tok in toks {
        match tok {
            Tok::Atom(text) | Tok::Quoted(text) if !last_was_word => {
                if domain && matches!(tok, Tok::Quoted(_)) {
                    return None;
                }
                out.push_str(text);
                last_was_word = true;
            }
            Tok::Literal(text) if domain && toks.len() == 1 => out.push_str(text),
            Tok::Special('.') => {
                out.push('.');
                last_was_word = false;
            }
            _ => return None,
        }
    }
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(v: &str) -> Vec<String> {
        parse_address_list(v)
    }

    #[test]
    fn simple_lists() {
        assert_eq!(list("a@b"), ["a@b"]);
        assert_eq!(list(" a@b , c@d "), ["a@b", "c@d"]);
        assert_eq!(list("user"), ["user"]);
        assert_eq!(list(""), Vec::<String>::new());
        assert_eq!(list(" ,, , "), Vec::<String>::new());
    }

    #[test]
    fn display_names_and_angles() {
        assert_eq!(list("Joe User <joe@example.com>"), ["joe@example.com"]);
        assert_eq!(
            list("\"Smith, John\" <john@x.org>, \"Doe, Jane\" <jane@x.org>"),
            ["john@x.org", "jane@x.org"]
        );
        assert_eq!(list("<a@b>"), ["a@b"]);
        assert_eq!(list("a.b@c <real@d>"), ["real@d"]);
        assert_eq!(list("\"quoted \\\" name\" <x@y>"), ["x@y"]);
        assert_eq!(list("Name <@relay1,@relay2:user@dom>"), ["user@dom"]);
        assert_eq!(list("=?utf-8?Q?J=C3=B6rg?= <j@x>"), ["j@x"]);
        assert_eq!(list("Jörg <jörg@bücher.example>"), ["jörg@bücher.example"]);
    }

    #[test]
    fn comments() {
        assert_eq!(list("a@b (Joe)"), ["a@b"]);
        assert_eq!(list("(outer (nested) comment) a@b"), ["a@b"]);
        assert_eq!(list("a(x)@(y)b"), ["a@b"]);
        assert_eq!(list("a@b (comma, inside), c@d"), ["a@b", "c@d"]);
        assert_eq!(list("a@b (escaped \\) paren), c@d"), ["a@b", "c@d"]);
    }

    #[test]
    fn groups() {
        assert_eq!(list("undisclosed-recipients:;"), Vec::<String>::new());
        assert_eq!(list("Team: a@x, Bob <b@y>;, c@z"), ["a@x", "b@y", "c@z"]);
        assert_eq!(list("Empty: ; d@e"), ["d@e"]);
    }

    #[test]
    fn folded_white_space() {
        assert_eq!(
            list(" Joe\n <joe@x>,\n\t\"Long\n Name\" <n@y>"),
            ["joe@x", "n@y"]
        );
        assert_eq!(
            list("first . last @ example . com"),
            ["first.last@example.com"]
        );
    }

    #[test]
    fn quoted_local_parts_come_out_unquoted() {
        assert_eq!(list("\"a b\"@x"), ["a b@x"]);
        assert_eq!(list("<\"odd@local\"@x>"), ["odd@local@x"]);
        assert_eq!(list("user@[192.0.2.1]"), ["user@[192.0.2.1]"]);
    }

    #[test]
    fn junk_is_skipped() {
        assert_eq!(list("John Smith, ok@x"), ["ok@x"]);
        assert_eq!(list("<>, ok@x"), ["ok@x"]);
        assert_eq!(list("@nolocal, ok@x"), ["ok@x"]);
        assert_eq!(list("a@, ok@x"), ["ok@x"]);
        assert_eq!(list("a@b@c, ok@x"), ["ok@x"]);
        assert_eq!(list("a@\"q\", ok@x"), ["ok@x"]);
        assert_eq!(list("<unterminated@x"), ["unterminated@x"]);
        assert_eq!(list("\"unterminated quote <x@y>"), Vec::<String>::new());
        assert_eq!(list("(unterminated comment a@b"), Vec::<String>::new());
        for junk in [
            "<<<>>>",
            ")))",
            "]]][[",
            "\\",
            "\"",
            "(",
            "<",
            "@",
            ":",
            ";",
            ":::;;;,,,",
            "a\\",
            "<@>",
            "<@a:>",
            "\u{0}\u{7f}",
            "[",
            "x@[",
            "x@[1.2",
            "<a@b> <c@d>",
        ] {
            let _ = parse_address_list(junk);
        }
        // A pathological deep comment is linear, not recursive.
        let deep = "(".repeat(100_000) + "a@b";
        assert!(parse_address_list(&deep).is_empty());
    }

    #[test]
    fn quoting_round_trip() {
        assert_eq!(quote_local_part("user@x"), "user@x");
        assert_eq!(quote_local_part("first.last@x"), "first.last@x");
        assert_eq!(quote_local_part("a b@x"), "\"a b\"@x");
        assert_eq!(quote_local_part("odd@local@x"), "\"odd@local\"@x");
        assert_eq!(quote_local_part(".lead@x"), "\".lead\"@x");
        assert_eq!(quote_local_part("a..b@x"), "\"a..b\"@x");
        assert_eq!(quote_local_part("q\"uote@x"), "\"q\\\"uote\"@x");
        assert_eq!(quote_local_part("back\\slash"), "\"back\\\\slash\"");
        assert_eq!(quote_local_part("postmaster"), "postmaster");
        assert_eq!(quote_local_part(""), "");
        assert_eq!(quote_local_part("@x"), "\"\"@x");
        assert_eq!(quote_local_part("jörg@x"), "jörg@x");
        for internal in ["a b@x", "odd@local@x", "q\"uote@x", "plain@x", "x y"] {
            assert_eq!(unquote_address(&quote_local_part(internal)), internal);
        }
        assert_eq!(unquote_address("\"a\".\"b\"@x"), "a.b@x");
        assert_eq!(unquote_address("plain"), "plain");
    }

    #[test]
    fn split_address_respects_quotes() {
        assert_eq!(
            split_address("user@example.com"),
            ("user", Some("example.com"))
        );
        assert_eq!(split_address("\"a@b\"@c"), ("\"a@b\"", Some("c")));
        assert_eq!(split_address("a@b@c"), ("a@b", Some("c")));
        assert_eq!(split_address("\"a\\\"@b\"@c"), ("\"a\\\"@b\"", Some("c")));
        assert_eq!(split_address("local"), ("local", None));
        assert_eq!(split_address("\"x@y\""), ("\"x@y\"", None));
        assert_eq!(split_address("user@"), ("user", Some("")));
    }

    #[test]
    fn extensions() {
        assert_eq!(split_extension("user+ext", "+"), ("user", Some("ext")));
        assert_eq!(split_extension("user+a+b", "+"), ("user", Some("a+b")));
        assert_eq!(split_extension("user-ext", "+-"), ("user", Some("ext")));
        assert_eq!(split_extension("user+", "+"), ("user", Some("")));
        assert_eq!(split_extension("user", "+"), ("user", None));
        assert_eq!(split_extension("+user", "+"), ("+user", None));
        assert_eq!(split_extension("user+ext", ""), ("user+ext", None));
        // Postfix's special cases with '-' as a delimiter.
        assert_eq!(split_extension("owner-list", "-"), ("owner-list", None));
        assert_eq!(split_extension("Owner-List", "+-"), ("Owner-List", None));
        assert_eq!(split_extension("list-request", "-"), ("list-request", None));
        assert_eq!(split_extension("list-REQUEST", "-"), ("list-REQUEST", None));
        assert_eq!(split_extension("owner-list", "+"), ("owner-list", None));
        assert_eq!(split_extension("owner+x", "+"), ("owner", Some("x")));
        assert_eq!(
            split_extension("list-request+x", "+"),
            ("list-request", Some("x"))
        );
        assert_eq!(split_extension("-request", "-"), ("-request", None));
        // Never split these.
        assert_eq!(
            split_extension("MAILER-DAEMON", "-"),
            ("MAILER-DAEMON", None)
        );
        assert_eq!(
            split_extension("double-bounce", "-"),
            ("double-bounce", None)
        );
        // Multi-byte delimiters and locals are safe.
        assert_eq!(split_extension("jörg§x", "§"), ("jörg", Some("x")));
        assert_eq!(split_extension("ö", "-"), ("ö", None));
    }

    #[test]
    fn qualify_addresses() {
        assert_eq!(qualify("user", "example.com"), "user@example.com");
        assert_eq!(qualify("user@other", "example.com"), "user@other");
        assert_eq!(qualify("", "example.com"), "");
        assert_eq!(qualify("user", ""), "user");
        assert_eq!(qualify("\"a@b\"", "example.com"), "\"a@b\"@example.com");
    }

    #[test]
    fn phrases() {
        assert_eq!(format_phrase("Joe  User"), "Joe User");
        assert_eq!(format_phrase("Smith, John"), "\"Smith, John\"");
        assert_eq!(format_phrase("J. \"Q\" Public"), "\"J. \\\"Q\\\" Public\"");
        assert_eq!(format_phrase("evil\r\nBcc: x@y"), "\"evil Bcc: x@y\"");
        assert_eq!(format_phrase("  \t "), "");
        assert_eq!(format_phrase("100% sure!"), "\"100% sure!\"");
        assert_eq!(format_phrase("Jörg"), "=?utf-8?B?SsO2cmc=?=");
        let long = format_phrase(&"ä".repeat(40));
        assert!(
            long.split(' ')
                .all(|w| w.len() <= 75 && w.starts_with("=?utf-8?B?"))
        );
        assert_eq!(long.split(' ').count(), 2);
    }

    #[test]
    fn base64_vectors() {
        for (raw, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(raw.as_bytes()), enc);
        }
    }
}
