//! master.cf: the services that master(8) runs, one per logical line, in Postfix's columns
//! `service type private unpriv chroot wakeup maxproc command args...` (master(5)).
//!
//! `-` in a column means its default: private `y` (`n` for inet, which cannot be private),
//! unpriv `y`, chroot `n` (Postfix ≥ 3.0), wakeup none, maxproc `$default_process_limit`.
//! Leading `-o name=value` / `-o { name = value }` arguments become [`Service::overrides`];
//! other `{ ... }` arguments are passed as one argument without the braces.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use crate::diag::ConfigError;
use crate::lines::{excerpt, logical_lines, read_text};
use crate::main_cf::Config;

/// The transport of a master.cf service (the `type` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServiceType {
    /// A TCP listener (`inet`).
    Inet,
    /// A Unix-domain stream socket in private/ or public/ (`unix`).
    Unix,
    /// A Unix-domain datagram socket (`unix-dgram`).
    UnixDgram,
    /// A named pipe (`fifo`, obsolete in Postfix but accepted).
    Fifo,
    /// A Unix-domain socket that receives connections by file descriptor passing (`pass`).
    Pass,
}

impl ServiceType {
    /// The master.cf spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceType::Inet => "inet",
            ServiceType::Unix => "unix",
            ServiceType::UnixDgram => "unix-dgram",
            ServiceType::Fifo => "fifo",
            ServiceType::Pass => "pass",
        }
    }
}

impl fmt::Display for ServiceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ServiceType {
    type Err = String;

    fn from_str(s: &str) -> Result<ServiceType, String> {
        match s {
            "inet" => Ok(ServiceType::Inet),
            "unix" => Ok(ServiceType::Unix),
            "unix-dgram" => Ok(ServiceType::UnixDgram),
            "fifo" => Ok(ServiceType::Fifo),
            "pass" => Ok(ServiceType::Pass),
            other => Err(format!(
                "\"{other}\": expected inet, unix, unix-dgram, fifo or pass"
            )),
        }
    }
}

/// The `wakeup` column: master triggers the service every `seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wakeup {
    /// Interval in seconds (never 0: `0` means no wakeup, i.e. `None`).
    pub seconds: u64,
    /// Trailing `?`: no wakeups until the service has been used once.
    pub on_demand: bool,
}

/// One master.cf entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// The service name: a socket name, or for inet `host:port`, `[ipv6]:port` or `port`.
    pub name: String,
    /// The transport.
    pub kind: ServiceType,
    /// Socket in private/ (true) or public/ (false); always false for inet.
    pub private: bool,
    /// Runs as mail_owner (true) or as root (false).
    pub unpriv: bool,
    /// Runs chrooted in queue_directory.
    pub chroot: bool,
    /// Periodic wakeup, if any.
    pub wakeup: Option<Wakeup>,
    /// Maximal number of processes; 0 = unlimited.
    pub maxproc: u32,
    /// The program name, e.g. `smtpd`, relative to daemon_directory.
    pub command: String,
    /// Arguments after the command, without the `-o` overrides.
    pub args: Vec<String>,
    /// `-o name=value` overrides, in order (apply with [`Config::set_at`]).
    pub overrides: Vec<(String, String)>,
    /// The master.cf file as given.
    pub file: String,
    /// 1-based line of the entry.
    pub line: usize,
}

impl Service {
    /// For inet services: the listen address as (host, port), where host is "" for all
    /// interfaces (`25`, `*:25`) and has no brackets (`[::1]:25` gives `::1`), and port is
    /// a number or a service name. `None` for other types.
    pub fn inet_address(&self) -> Option<(String, String)> {
        if self.kind != ServiceType::Inet {
            return None;
        }
        split_inet_name(&self.name)
            .ok()
            .map(|(host, port)| (host.to_string(), port.to_string()))
    }

    /// Applies this service's `-o` overrides to a copy of `main`, recording master.cf and
    /// the entry's line as their origin.
    pub fn config(&self, main: &Config) -> Config {
        let mut config = main.clone();
        for (name, value) in &self.overrides {
            config.set_at(name, value, &self.file, self.line);
        }
        config
    }
}

/// Splits an inet service name into host and port (see [`Service::inet_address`]).
fn split_inet_name(name: &str) -> Result<(&str, &str), String> {
    let (host, port) = if let Some(rest) = name.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("\"{name}\": missing ']' after the address"))?;
        let port = after
            .strip_prefix(':')
            .ok_or_else(|| format!("\"{name}\": expected [address]:port"))?;
        (host, port)
    } else if let Some((host, port)) = name.rsplit_once(':') {
        (if host == "*" { "" } else { host }, port)
    } else {
        ("", name)
    };
    let port_ok = !port.is_empty()
        && port
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !port_ok {
        return Err(format!(
            "\"{name}\": expected port, host:port or [address]:port with a port number or service name"
        ));
    }
    if host.contains(['[', ']']) || host.contains(char::is_whitespace) {
        return Err(format!("\"{name}\": bad host part \"{host}\""));
    }
    Ok((host, port))
}

/// All services of a master.cf, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterCf {
    /// The entries.
    pub services: Vec<Service>,
}

impl MasterCf {
    /// Reads `config_dir/master.cf`. `main` gives default_process_limit for maxproc `-`.
    pub fn load(config_dir: &Path, main: &Config) -> Result<MasterCf, ConfigError> {
        let path = config_dir.join("master.cf");
        let file = path.display().to_string();
        let text = read_text(&path, &file)?;
        MasterCf::parse_str(&text, &file, main)
    }

    /// Parses master.cf text; `file_name` is used in errors and [`Service::file`].
    pub fn parse_str(text: &str, file_name: &str, main: &Config) -> Result<MasterCf, ConfigError> {
        let default_maxproc =
            u32::try_from(main.get_int("default_process_limit").max(0)).unwrap_or(u32::MAX);
        let (lines, orphans) = logical_lines(text);
        for line in orphans {
            log::warn!(
                "{file_name}:{line}: ignoring text that starts with whitespace but continues no line"
            );
        }
        let mut services: Vec<Service> = Vec::new();
        let mut seen: HashMap<(String, ServiceType), usize> = HashMap::new();
        for logical in lines {
            let service = parse_entry(&logical.text, file_name, logical.line, default_maxproc)?;
            if let Some(first) = seen.insert((service.name.clone(), service.kind), service.line) {
                return Err(ConfigError::Syntax {
                    file: file_name.to_string(),
                    line: service.line,
                    message: format!(
                        "duplicate service {} {} (first defined at line {first})",
                        service.name, service.kind
                    ),
                });
            }
            services.push(service);
        }
        Ok(MasterCf { services })
    }

    /// The service with this name and type.
    pub fn find(&self, name: &str, kind: ServiceType) -> Option<&Service> {
        self.services
            .iter()
            .find(|s| s.name == name && s.kind == kind)
    }
}

/// The column names, in order, for "missing field" errors.
const COLUMNS: [&str; 8] = [
    "service", "type", "private", "unpriv", "chroot", "wakeup", "maxproc", "command",
];

/// Parses one logical line into a service.
fn parse_entry(
    text: &str,
    file: &str,
    line: usize,
    default_maxproc: u32,
) -> Result<Service, ConfigError> {
    let syntax = |message: String| ConfigError::Syntax {
        file: file.to_string(),
        line,
        message,
    };
    let value = |name: &str, message: String| ConfigError::Value {
        file: file.to_string(),
        line,
        name: name.to_string(),
        message,
    };
    let tokens = tokenize(text).map_err(syntax)?;
    if tokens.len() < COLUMNS.len() {
        return Err(syntax(format!(
            "missing \"{}\" field in \"{}\"",
            COLUMNS[tokens.len()],
            excerpt(text)
        )));
    }
    let name = tokens[0].text.clone();
    let kind: ServiceType = tokens[1].text.parse().map_err(|e| value("type", e))?;
    if kind == ServiceType::Inet {
        split_inet_name(&name).map_err(|e| value("service", e))?;
    } else if name.contains('/') || name == "." || name == ".." {
        return Err(value(
            "service",
            format!("\"{name}\": a {kind} service name must be a plain file name"),
        ));
    }
    let flag = |index: usize, default: bool| -> Result<bool, ConfigError> {
        match tokens[index].text.as_str() {
            "-" => Ok(default),
            "y" => Ok(true),
            "n" => Ok(false),
            other => Err(value(
                COLUMNS[index],
                format!("\"{other}\": expected y, n or -"),
            )),
        }
    };
    let private = flag(2, kind != ServiceType::Inet)?;
    if private && kind == ServiceType::Inet {
        return Err(value(
            "private",
            "an inet service cannot be private".to_string(),
        ));
    }
    let unpriv = flag(3, true)?;
    let chroot = flag(4, false)?;
    let wakeup = parse_wakeup(&tokens[5].text).map_err(|e| value("wakeup", e))?;
    let maxproc = match tokens[6].text.as_str() {
        "-" => default_maxproc,
        text => text.parse().map_err(|_| {
            value(
                "maxproc",
                format!("\"{text}\": expected a number of processes (0: no limit) or -"),
            )
        })?,
    };
    if tokens[7].braced {
        return Err(value(
            "command",
            "the command cannot be a { } group".to_string(),
        ));
    }
    let command = tokens[7].text.clone();
    let (args, overrides) = split_overrides(&tokens[8..]).map_err(syntax)?;
    Ok(Service {
        name,
        kind,
        private,
        unpriv,
        chroot,
        wakeup,
        maxproc,
        command,
        args,
        overrides,
        file: file.to_string(),
        line,
    })
}

/// Parses the wakeup column: `-`, `0`, `N` or `N?`.
fn parse_wakeup(text: &str) -> Result<Option<Wakeup>, String> {
    if text == "-" {
        return Ok(None);
    }
    let (number, on_demand) = match text.strip_suffix('?') {
        Some(number) => (number, true),
        None => (text, false),
    };
    let seconds: u64 = number
        .parse()
        .ok()
        .filter(|_| number.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| format!("\"{text}\": expected seconds, seconds? or -"))?;
    Ok((seconds > 0).then_some(Wakeup { seconds, on_demand }))
}

/// A word of a master.cf line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Token {
    /// The word; for a `{ ... }` group, its inside without braces and surrounding spaces.
    text: String,
    /// Whether it was a `{ ... }` group.
    braced: bool,
}

/// Splits a logical line into words at whitespace outside `{ }`, as Postfix's mystrtokq();
/// a word that is a `{ ... }` group loses its braces.
fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some(&(start, c)) = chars.peek() {
        if c.is_ascii_whitespace() {
            chars.next();
            continue;
        }
        let mut depth = 0usize;
        let mut end = text.len();
        while let Some(&(i, c)) = chars.peek() {
            if depth == 0 && c.is_ascii_whitespace() {
                end = i;
                break;
            }
            match c {
                '{' => depth += 1,
                '}' if depth > 0 => depth -= 1,
                '}' => return Err(format!("unbalanced '}}' in \"{}\"", excerpt(text))),
                _ => {}
            }
            chars.next();
        }
        if depth > 0 {
            return Err(format!("missing '}}' in \"{}\"", excerpt(text)));
        }
        let word = &text[start..end];
        if word.starts_with('{') {
            if !word.ends_with('}') || group_end(word) != Some(word.len() - 1) {
                return Err(format!("text after '}}' in \"{word}\""));
            }
            tokens.push(Token {
                text: word[1..word.len() - 1].trim_ascii().to_string(),
                braced: true,
            });
        } else {
            tokens.push(Token {
                text: word.to_string(),
                braced: false,
            });
        }
    }
    Ok(tokens)
}

/// The index of the `}` that closes the `{` at the start of `word`.
fn group_end(word: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (i, c) in word.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// `-o name=value` settings, in order.
type Overrides = Vec<(String, String)>;

/// Takes the `-o` overrides out of the arguments. Like the getopt() of Postfix daemons,
/// options are recognized only before the first argument that is not an option (so a
/// `pipe` command's `argv=... -o x` stays intact) and `--` ends them.
fn split_overrides(tokens: &[Token]) -> Result<(Vec<String>, Overrides), String> {
    let mut args = Vec::new();
    let mut overrides = Vec::new();
    let mut options = true;
    let mut iter = tokens.iter();
    while let Some(token) = iter.next() {
        if !options || token.braced || !token.text.starts_with('-') {
            options = false;
            args.push(token.text.clone());
            continue;
        }
        if token.text == "--" {
            options = false;
            args.push(token.text.clone());
            continue;
        }
        let setting = if token.text == "-o" {
            let next = iter
                .next()
                .ok_or_else(|| "missing name=value after -o".to_string())?;
            next.text.clone()
        } else if let Some(attached) = token.text.strip_prefix("-o") {
            attached.to_string()
        } else {
            args.push(token.text.clone());
            continue;
        };
        let (name, value) = setting
            .split_once('=')
            .ok_or_else(|| format!("-o {setting}: expected name=value"))?;
        let name = name.trim_ascii();
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(format!("-o {setting}: bad parameter name"));
        }
        overrides.push((name.to_string(), value.trim_ascii().to_string()));
    }
    Ok((args, overrides))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses master.cf text with default main.cf settings.
    fn parse(text: &str) -> Result<MasterCf, ConfigError> {
        MasterCf::parse_str(text, "master.cf", &Config::defaults())
    }

    /// The single service of a one-entry master.cf.
    fn one(text: &str) -> Service {
        let mut master = parse(text).expect("parses");
        assert_eq!(master.services.len(), 1);
        master.services.remove(0)
    }

    #[test]
    fn columns_and_defaults() {
        let s = one("smtp      inet  n       -       n       -       -       smtpd\n");
        assert_eq!(s.name, "smtp");
        assert_eq!(s.kind, ServiceType::Inet);
        assert!(!s.private);
        assert!(s.unpriv);
        assert!(!s.chroot);
        assert_eq!(s.wakeup, None);
        assert_eq!(s.maxproc, 100);
        assert_eq!(s.command, "smtpd");
        assert!(s.args.is_empty());
        assert_eq!((s.file.as_str(), s.line), ("master.cf", 1));

        let s = one("pickup    unix  n       -       y       60      1       pickup");
        assert!(!s.private);
        assert!(s.chroot);
        assert_eq!(
            s.wakeup,
            Some(Wakeup {
                seconds: 60,
                on_demand: false
            })
        );
        assert_eq!(s.maxproc, 1);

        let s = one("tlsmgr    unix  -       -       n       1000?   1       tlsmgr");
        assert!(s.private);
        assert_eq!(
            s.wakeup,
            Some(Wakeup {
                seconds: 1000,
                on_demand: true
            })
        );

        let s = one("cleanup   unix  n       -       n       -       0       cleanup");
        assert_eq!(s.maxproc, 0);

        let s = one("local     unix  -       n       n       0       -       local");
        assert!(!s.unpriv);
        assert_eq!(s.wakeup, None);

        let s = one("postlog   unix-dgram n  -       n       -       1       postlogd");
        assert_eq!(s.kind, ServiceType::UnixDgram);
        let s = one("smtpd     pass  -       -       n       -       -       smtpd");
        assert_eq!(s.kind, ServiceType::Pass);
        let s = one("old       fifo  -       -       n       -       -       x");
        assert_eq!(s.kind, ServiceType::Fifo);
    }

    #[test]
    fn maxproc_dash_uses_default_process_limit() {
        let main = Config::parse_str("default_process_limit = 7\n", "main.cf").expect("main.cf");
        let master =
            MasterCf::parse_str("relay unix - - n - - smtp\n", "master.cf", &main).expect("parses");
        assert_eq!(master.services[0].maxproc, 7);
    }

    #[test]
    fn overrides_in_both_forms_are_removed_from_args() {
        let s = one(
            "submission inet n - n - - smtpd\n  -o syslog_name=postfix/submission\n  -o { smtpd_tls_security_level = encrypt }\n  -o smtpd_client_restrictions=\n  -osmtpd_sasl_auth_enable=yes\n  -v\n",
        );
        assert_eq!(
            s.overrides,
            vec![
                ("syslog_name".to_string(), "postfix/submission".to_string()),
                (
                    "smtpd_tls_security_level".to_string(),
                    "encrypt".to_string()
                ),
                ("smtpd_client_restrictions".to_string(), String::new()),
                ("smtpd_sasl_auth_enable".to_string(), "yes".to_string()),
            ]
        );
        assert_eq!(s.args, vec!["-v"]);
        let s = one("x unix - - n - - smtpd -o { smtpd_banner = $myhostname ESMTP  ready }");
        assert_eq!(
            s.overrides,
            vec![(
                "smtpd_banner".to_string(),
                "$myhostname ESMTP  ready".to_string()
            )]
        );
        let config = s.config(&Config::defaults());
        assert!(config.get("smtpd_banner").ends_with("ESMTP  ready"));
        assert_eq!(config.origin("smtpd_banner"), Some(("master.cf".into(), 1)));
    }

    #[test]
    fn options_end_at_the_first_argument() {
        let s = one(
            "maildrop unix - n n - - pipe\n  flags=DRXhu user=vmail argv=/usr/bin/maildrop -o x=y { a b }",
        );
        assert!(s.overrides.is_empty());
        assert_eq!(
            s.args,
            vec![
                "flags=DRXhu",
                "user=vmail",
                "argv=/usr/bin/maildrop",
                "-o",
                "x=y",
                "a b"
            ]
        );
        let s = one("x unix - - n - - cmd -o a=1 -- -o b=2");
        assert_eq!(s.overrides, vec![("a".to_string(), "1".to_string())]);
        assert_eq!(s.args, vec!["--", "-o", "b=2"]);
    }

    #[test]
    fn continuations_and_comments() {
        let master = parse(
            "# master.cf\n\nsmtp inet n - n - - smtpd\n#  -o commented=out\n  -o smtpd_helo_required=yes\n\npickup unix n - n 60 1 pickup\n",
        )
        .expect("parses");
        assert_eq!(master.services.len(), 2);
        assert_eq!(
            master.services[0].overrides,
            vec![("smtpd_helo_required".to_string(), "yes".to_string())]
        );
        assert_eq!(master.services[1].line, 7);
        assert!(master.find("pickup", ServiceType::Unix).is_some());
        assert!(master.find("pickup", ServiceType::Inet).is_none());
    }

    #[test]
    fn inet_addresses() {
        let addr = |name: &str| one(&format!("{name} inet n - n - - smtpd")).inet_address();
        let pair = |h: &str, p: &str| Some((h.to_string(), p.to_string()));
        assert_eq!(addr("smtp"), pair("", "smtp"));
        assert_eq!(addr("2525"), pair("", "2525"));
        assert_eq!(addr("127.0.0.1:2525"), pair("127.0.0.1", "2525"));
        assert_eq!(addr("[::1]:25"), pair("::1", "25"));
        assert_eq!(addr("*:25"), pair("", "25"));
        assert_eq!(
            addr("mail.example.com:submission"),
            pair("mail.example.com", "submission")
        );
        assert_eq!(one("x unix - - n - - y").inet_address(), None);
    }

    /// Asserts that `text` fails on `line` with an error mentioning `needle`.
    fn fails(text: &str, line: usize, needle: &str) {
        let err = parse(text).expect_err(text);
        let shown = err.to_string();
        assert!(
            shown.starts_with(&format!("master.cf:{line}: ")) && shown.contains(needle),
            "{text:?}: {shown}"
        );
    }

    #[test]
    fn errors_name_file_and_line() {
        fails("\nsmtp tcp n - n - - smtpd", 2, "bad type value");
        fails("smtp inet x - n - - smtpd", 1, "bad private value");
        fails("smtp inet n yes n - - smtpd", 1, "bad unpriv value");
        fails("smtp inet n - N - - smtpd", 1, "bad chroot value");
        fails("smtp inet n - n soon - smtpd", 1, "bad wakeup value");
        fails("smtp inet n - n 10?? - smtpd", 1, "bad wakeup value");
        fails("smtp inet n - n - many smtpd", 1, "bad maxproc value");
        fails("smtp inet n - n - -1 smtpd", 1, "bad maxproc value");
        fails("smtp inet n - n -", 1, "missing \"maxproc\" field");
        fails("smtp inet n - n - -", 1, "missing \"command\" field");
        fails("smtp inet y - n - - smtpd", 1, "cannot be private");
        fails("[::1 inet n - n - - smtpd", 1, "bad service value");
        fails("host: inet n - n - - smtpd", 1, "bad service value");
        fails("../x unix - - n - - smtpd", 1, "bad service value");
        fails(
            "x unix - - n - - smtpd -o",
            1,
            "missing name=value after -o",
        );
        fails(
            "x unix - - n - - smtpd -o novalue",
            1,
            "expected name=value",
        );
        fails("x unix - - n - - smtpd -o =v", 1, "bad parameter name");
        fails("x unix - - n - - smtpd -o { a = b", 1, "missing '}'");
        fails("x unix - - n - - smtpd a }", 1, "unbalanced '}'");
        fails("x unix - - n - - smtpd {a}b", 1, "text after '}'");
        fails(
            "a unix - - n - - x\n\nb unix - - n - - x\na unix - - n - - y\n",
            4,
            "duplicate service a unix (first defined at line 1)",
        );
        // The same name with another type is fine (smtp inet and smtp unix).
        assert!(parse("smtp inet n - n - - smtpd\nsmtp unix - - n - - smtp\n").is_ok());
    }

    #[test]
    fn load_reads_master_cf() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = MasterCf::load(dir.path(), &Config::defaults()).expect_err("missing");
        assert!(matches!(err, ConfigError::Io { .. }));
        std::fs::write(
            dir.path().join("master.cf"),
            "qmgr unix n - n 300 1 qmgr\nbad\n",
        )
        .expect("write");
        let err = MasterCf::load(dir.path(), &Config::defaults()).expect_err("bad line");
        let want = format!("{}:2: ", dir.path().join("master.cf").display());
        assert!(err.to_string().starts_with(&want), "{err}");
        std::fs::write(dir.path().join("master.cf"), "qmgr unix n - n 300 1 qmgr\n")
            .expect("write");
        let master = MasterCf::load(dir.path(), &Config::defaults()).expect("loads");
        assert_eq!(
            master.services[0].file,
            dir.path().join("master.cf").display().to_string()
        );
    }

    /// The stock Postfix master.cf services parse.
    #[test]
    fn stock_postfix_master_cf() {
        let text = "\
smtp      inet  n       -       n       -       -       smtpd
#submission inet n       -       n       -       -       smtpd
#  -o syslog_name=postfix/submission
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
        -o syslog_name=${multi_instance_name?{$multi_instance_name}:{postfix}}/$service_name
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
";
        let master = parse(text).expect("stock master.cf");
        assert_eq!(master.services.len(), 25);
        let relay = master.find("relay", ServiceType::Unix).expect("relay");
        assert_eq!(relay.overrides.len(), 1);
        assert_eq!(
            relay.overrides[0].1,
            "${multi_instance_name?{$multi_instance_name}:{postfix}}/$service_name"
        );
    }

    /// The project's own etc/master.cf, if it exists yet, must parse.
    #[test]
    fn project_master_cf_parses() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../etc");
        if !dir.join("master.cf").exists() {
            return;
        }
        let main = if dir.join("main.cf").exists() {
            Config::load(&dir).expect("etc/main.cf loads")
        } else {
            Config::defaults()
        };
        let master = MasterCf::load(&dir, &main).expect("etc/master.cf parses");
        assert!(!master.services.is_empty());
    }
}
