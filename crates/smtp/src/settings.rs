//! The smtp client's parameters, read once per process into typed values.

use std::path::PathBuf;
use std::time::Duration;

use posthorn_config::Config;

/// `smtp_tls_security_level`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsLevel {
    /// No TLS.
    None,
    /// Opportunistic TLS: used when offered, never required, never verified.
    May,
    /// TLS required, the certificate not verified.
    Encrypt,
    /// TLS required, chain verified, name = the MX host name.
    Verify,
    /// TLS required, chain verified, name = the next-hop domain.
    Secure,
}

impl TlsLevel {
    /// Parses the parameter value ("" and unknown levels are `none`; `dane` is `may`).
    pub fn parse(s: &str) -> TlsLevel {
        match s.trim().to_ascii_lowercase().as_str() {
            "may" | "dane" => TlsLevel::May,
            "encrypt" => TlsLevel::Encrypt,
            "verify" => TlsLevel::Verify,
            "secure" => TlsLevel::Secure,
            _ => TlsLevel::None,
        }
    }

    /// Whether a session without TLS is refused.
    pub fn required(self) -> bool {
        matches!(
            self,
            TlsLevel::Encrypt | TlsLevel::Verify | TlsLevel::Secure
        )
    }

    /// Whether the server certificate must be verified.
    pub fn verifies(self) -> bool {
        matches!(self, TlsLevel::Verify | TlsLevel::Secure)
    }
}

/// `smtp_tls_servername`: the SNI name sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerNameMode {
    /// No SNI (Postfix's default).
    None,
    /// The server's host name (the MX host name or the relay host).
    Hostname,
    /// The next-hop domain.
    Nexthop,
    /// A fixed name.
    Fixed(String),
}

/// Which address families to use and prefer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Families {
    /// IPv4 and IPv6.
    Both,
    /// IPv4 only.
    V4,
    /// IPv6 only.
    V6,
}

/// `smtp_address_preference`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preference {
    /// DNS order.
    Any,
    /// IPv4 addresses first.
    V4,
    /// IPv6 addresses first.
    V6,
}

/// Per-phase time limits.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// `smtp_connect_timeout` (zero: the kernel's limit).
    pub connect: Duration,
    /// `smtp_helo_timeout`: greeting and EHLO/HELO replies.
    pub helo: Duration,
    /// `smtp_starttls_timeout`: the STARTTLS reply and the handshake.
    pub starttls: Duration,
    /// `smtp_mail_timeout`.
    pub mail: Duration,
    /// `smtp_rcpt_timeout`.
    pub rcpt: Duration,
    /// `smtp_data_init_timeout`.
    pub data_init: Duration,
    /// `smtp_data_xfer_timeout`: each write of content.
    pub data_xfer: Duration,
    /// `smtp_data_done_timeout`.
    pub data_done: Duration,
    /// `smtp_rset_timeout`.
    pub rset: Duration,
    /// `smtp_quit_timeout`.
    pub quit: Duration,
}

impl Timeouts {
    /// The same limit for every phase (tests).
    pub fn uniform(d: Duration) -> Timeouts {
        Timeouts {
            connect: d,
            helo: d,
            starttls: d,
            mail: d,
            rcpt: d,
            data_init: d,
            data_xfer: d,
            data_done: d,
            rset: d,
            quit: d,
        }
    }
}

/// Everything the smtp client reads from the configuration.
#[derive(Clone, Debug)]
pub struct SmtpSettings {
    /// `smtp_helo_name`.
    pub helo_name: String,
    /// `smtp_tcp_port` as a number.
    pub port: u16,
    /// `smtp_dns_support_level = disabled` (or `disable_dns_lookups`): no MX lookups; host
    /// addresses from the system resolver.
    pub dns_disabled: bool,
    /// `smtp_dns_servers`: name servers to ask instead of /etc/resolv.conf.
    pub dns_servers: Vec<String>,
    /// `smtp_mx_address_limit` (0: no limit).
    pub mx_address_limit: usize,
    /// `smtp_mx_session_limit` (0: no limit).
    pub mx_session_limit: usize,
    /// `inet_protocols`.
    pub families: Families,
    /// `smtp_address_preference`.
    pub preference: Preference,
    /// `smtp_skip_5xx_greeting`.
    pub skip_5xx_greeting: bool,
    /// `smtp_never_send_ehlo`.
    pub never_send_ehlo: bool,
    /// `smtp_discard_ehlo_keywords`, lowercased.
    pub discard_ehlo_keywords: Vec<String>,
    /// `smtp_fallback_relay`: next-hop forms tried when the destination fails temporarily.
    pub fallback_relay: Vec<String>,
    /// `smtp_line_length_limit` (0: none).
    pub line_length_limit: usize,
    /// The per-phase time limits.
    pub timeouts: Timeouts,
    /// `smtp_tls_security_level`.
    pub tls_level: TlsLevel,
    /// `smtp_tls_CAfile` (None: the bundled Mozilla roots).
    pub tls_ca_file: Option<PathBuf>,
    /// `smtp_tls_servername`.
    pub tls_servername: ServerNameMode,
    /// `smtp_tls_wrappermode`.
    pub tls_wrappermode: bool,
    /// `smtp_connection_cache_time_limit`: how long an idle connection is kept.
    pub cache_time_limit: Duration,
    /// `smtp_connection_reuse_time_limit`: age after which a connection is not reused.
    pub reuse_time_limit: Duration,
    /// `smtp_connection_reuse_count_limit` (0: no limit).
    pub reuse_count_limit: u32,
}

impl SmtpSettings {
    /// Reads the parameters from `c`.
    pub fn from_config(c: &Config) -> SmtpSettings {
        let port_text = c.get("smtp_tcp_port");
        let port = port_number(&port_text).unwrap_or_else(|| {
            log::warn!("smtp_tcp_port: unknown port \"{port_text}\", using 25");
            25
        });
        let level_text = c.get("smtp_tls_security_level");
        let level = TlsLevel::parse(&level_text);
        if !level_text.trim().is_empty()
            && level == TlsLevel::None
            && !level_text.trim().eq_ignore_ascii_case("none")
        {
            log::warn!("smtp_tls_security_level: unknown level \"{level_text}\", using none");
        }
        let ca = c.get("smtp_tls_CAfile");
        let servername = match c.get("smtp_tls_servername").trim() {
            "" => ServerNameMode::None,
            "hostname" => ServerNameMode::Hostname,
            "nexthop" => ServerNameMode::Nexthop,
            other => ServerNameMode::Fixed(other.to_string()),
        };
        let protocols = c.get_list("inet_protocols");
        let has = |p: &str| protocols.iter().any(|x| x.eq_ignore_ascii_case(p));
        let families = if has("all") || (has("ipv4") && has("ipv6")) {
            Families::Both
        } else if has("ipv6") {
            Families::V6
        } else {
            Families::V4
        };
        let preference = match c.get("smtp_address_preference").trim() {
            "ipv4" => Preference::V4,
            "ipv6" => Preference::V6,
            _ => Preference::Any,
        };
        let limit = |name: &str| usize::try_from(c.get_int(name).max(0)).unwrap_or(0);
        SmtpSettings {
            helo_name: c.get("smtp_helo_name"),
            port,
            dns_disabled: c.get("smtp_dns_support_level").trim() == "disabled"
                || c.get_bool("disable_dns_lookups"),
            dns_servers: c.get_list("smtp_dns_servers"),
            mx_address_limit: limit("smtp_mx_address_limit"),
            mx_session_limit: limit("smtp_mx_session_limit"),
            families,
            preference,
            skip_5xx_greeting: c.get_bool("smtp_skip_5xx_greeting"),
            never_send_ehlo: c.get_bool("smtp_never_send_ehlo"),
            discard_ehlo_keywords: c
                .get_list("smtp_discard_ehlo_keywords")
                .into_iter()
                .map(|k| k.to_ascii_lowercase())
                .collect(),
            fallback_relay: c.get_list("smtp_fallback_relay"),
            line_length_limit: limit("smtp_line_length_limit"),
            timeouts: Timeouts {
                connect: c.get_duration("smtp_connect_timeout"),
                helo: c.get_duration("smtp_helo_timeout"),
                starttls: c.get_duration("smtp_starttls_timeout"),
                mail: c.get_duration("smtp_mail_timeout"),
                rcpt: c.get_duration("smtp_rcpt_timeout"),
                data_init: c.get_duration("smtp_data_init_timeout"),
                data_xfer: c.get_duration("smtp_data_xfer_timeout"),
                data_done: c.get_duration("smtp_data_done_timeout"),
                rset: c.get_duration("smtp_rset_timeout"),
                quit: c.get_duration("smtp_quit_timeout"),
            },
            tls_level: level,
            tls_ca_file: (!ca.trim().is_empty()).then(|| PathBuf::from(ca.trim())),
            tls_servername: servername,
            tls_wrappermode: c.get_bool("smtp_tls_wrappermode"),
            cache_time_limit: c.get_duration("smtp_connection_cache_time_limit"),
            reuse_time_limit: c.get_duration("smtp_connection_reuse_time_limit"),
            reuse_count_limit: u32::try_from(c.get_int("smtp_connection_reuse_count_limit"))
                .unwrap_or(0),
        }
    }

    /// The built-in defaults (as with an empty main.cf), with `helo_name`.
    pub fn defaults(helo_name: &str) -> SmtpSettings {
        let mut c = Config::defaults();
        c.set("smtp_helo_name", helo_name);
        SmtpSettings::from_config(&c)
    }
}

/// A port given as a number or one of the mail service names.
pub fn port_number(s: &str) -> Option<u16> {
    let s = s.trim();
    match s {
        "smtp" => Some(25),
        "submission" => Some(587),
        "smtps" | "submissions" => Some(465),
        "lmtp" => Some(24),
        _ => s.parse().ok().filter(|p| *p != 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_postfix() {
        let s = SmtpSettings::defaults("me.test");
        assert_eq!(s.helo_name, "me.test");
        assert_eq!(s.port, 25);
        assert_eq!((s.mx_address_limit, s.mx_session_limit), (5, 2));
        assert_eq!(s.tls_level, TlsLevel::None);
        assert_eq!(s.tls_servername, ServerNameMode::None);
        assert_eq!(s.cache_time_limit, Duration::from_secs(2));
        assert_eq!(s.timeouts.rset, Duration::from_secs(20));
        assert!(s.skip_5xx_greeting);
        assert_eq!(s.line_length_limit, 999);
    }

    #[test]
    fn ports_and_levels() {
        assert_eq!(port_number("smtp"), Some(25));
        assert_eq!(port_number("2525"), Some(2525));
        assert_eq!(port_number("0"), None);
        assert_eq!(port_number("gopher"), None);
        assert_eq!(TlsLevel::parse("Secure"), TlsLevel::Secure);
        assert!(TlsLevel::parse("encrypt").required());
        assert!(!TlsLevel::parse("may").required());
    }
}
