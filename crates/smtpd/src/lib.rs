//! posthorn-smtpd's library half: TLS settings and the PROXY protocol, kept apart from the
//! event loop so they can be tested alone.

pub mod proxy;
pub mod tls;
