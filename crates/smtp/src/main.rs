//! smtp - Postfix-compatible SMTP delivery client
//!
//! # Synopsis
//! `smtp` (started by master; `smtp unix - - n - - smtp` and `relay unix - - n - - smtp`
//! in master.cf)
//!
//! # Description
//! qmgr hands smtp a queue file and recipients with one next hop over `private/smtp` or
//! `private/relay` (`delivery_protocol`). For each request smtp:
//! 1. reuses an idle session to the same next hop when one is cached (after RSET);
//! 2. otherwise finds the servers: `domain` and `domain:port` by MX lookup (in preference
//!    order; a domain without MX by its own addresses; null MX bounces with 5.1.10,
//!    NXDOMAIN with 5.4.4; a temporary DNS failure defers with 4.4.3, never bounces),
//!    `[host]` and `[host]:port` by address lookup only. At most `smtp_mx_address_limit`
//!    addresses and `smtp_mx_session_limit` sessions are tried; `inet_protocols` and
//!    `smtp_address_preference` choose the families;
//! 3. tries them in order: on connect failure, timeout, a 4xx greeting (or 5xx with
//!    `smtp_skip_5xx_greeting`), the next. Recipients that fail temporarily are tried at
//!    the next server too. When the destination fails temporarily, the
//!    `smtp_fallback_relay` destinations are tried before deferring;
//! 4. talks ESMTP: EHLO (HELO when EHLO is refused), STARTTLS as
//!    `smtp_tls_security_level` asks, MAIL FROM with SIZE, BODY=8BITMIME, SMTPUTF8,
//!    RET and ENVID as the server supports them, RCPT TO with NOTIFY and ORCPT, DATA with
//!    CRLF lines and dot-stuffing; with PIPELINING, MAIL, RCPT and DATA go in one write.
//!    A message larger than the server's SIZE bounces (5.3.4) without being sent; a message
//!    that needs SMTPUTF8 bounces (5.6.7) when the server does not offer it;
//! 5. answers one status per recipient: sent with the server's end-of-data reply,
//!    deferred (4xx) or bounced (5xx) with `host H[A] said: REPLY (in reply to C command)`,
//!    and keeps the session for `smtp_connection_cache_time_limit`.
//!
//! Process model (as Postfix's): one delivery at a time per process; qmgr runs as many
//! smtp processes as its per-destination windows allow (up to `default_process_limit`),
//! and keeps each on a stream of requests, so each process keeps its connection to a busy
//! destination and reuses it (`conn_use=N`). Chosen over one multi-connection process for
//! a simple blocking dialogue per server and a failure boundary per connection; measured
//! at 2.35× Postfix's relay rate at 0.38× its CPU per message (docs/STATUS.md).
//!
//! # Inputs
//! Delivery requests from qmgr; queue files in `active/` (read-only); DNS; the servers.
//!
//! # Outputs
//! SMTP sessions; one status per recipient to qmgr (which logs `status=sent (250 ...)`).
//!
//! # Security
//! Runs as `mail_owner` (master.cf unpriv column `-`), may be chrooted. Everything from a
//! server is input from an untrusted peer: replies are parsed strictly and bounded
//! (1,000 lines of 4 KB), every phase has a time limit, plaintext sent before the TLS
//! handshake is refused. TLS 1.2 and 1.3 only (rustls with ring).
//!
//! # Standards
//! RFC 5321 (SMTP), RFC 2920 (PIPELINING), RFC 1870 (SIZE), RFC 6152 (8BITMIME), RFC 6531
//! (SMTPUTF8), RFC 3461 (DSN), RFC 3207 (STARTTLS), RFC 8314 (implicit TLS), RFC 7505
//! (null MX), RFC 3463 (enhanced status codes).
//!
//! # Diagnostics
//! Statuses go to qmgr. smtp logs `warning:` lines for configuration and queue-file
//! trouble and failed TLS handshakes, and `Anonymous|Untrusted|Trusted|Verified TLS
//! connection established to H[A]:P: TLSv1.3 with cipher C (B/B bits)`.
//!
//! # Configuration parameters
//! `smtp_helo_name`, `smtp_tcp_port`, `smtp_dns_support_level`, `disable_dns_lookups`,
//! `smtp_dns_servers`, `inet_protocols`, `smtp_address_preference`,
//! `smtp_mx_address_limit`, `smtp_mx_session_limit`, `smtp_skip_5xx_greeting`,
//! `smtp_never_send_ehlo`, `smtp_discard_ehlo_keywords`, `smtp_fallback_relay`,
//! `smtp_line_length_limit`, `smtp_connect_timeout`, `smtp_helo_timeout`,
//! `smtp_starttls_timeout`, `smtp_mail_timeout`, `smtp_rcpt_timeout`,
//! `smtp_data_init_timeout`, `smtp_data_xfer_timeout`, `smtp_data_done_timeout`,
//! `smtp_rset_timeout`, `smtp_quit_timeout`, `smtp_tls_security_level`,
//! `smtp_tls_CAfile`, `smtp_tls_servername`, `smtp_tls_wrappermode`,
//! `smtp_connection_cache_time_limit`, `smtp_connection_reuse_time_limit`,
//! `smtp_connection_reuse_count_limit`, and the server skeleton's (`queue_directory`,
//! `max_idle`, `max_use`, `mail_owner`).
//!
//! # See also
//! qmgr(8), smtpd(8), bounce(8), master(8).

fn main() {
    posthorn_smtp::service::run();
}
