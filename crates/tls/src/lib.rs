//! posthorn-tls: how a TLS session is described in logs and Received: headers, as Postfix
//! does (`TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)`, with OpenSSL's cipher
//! names), for both ends: smtpd's server sessions and the smtp client's.

use rustls::{CipherSuite, CommonState, ProtocolVersion};

/// A TLS session as Postfix describes it in logs and the Received: header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// "TLSv1.2" or "TLSv1.3".
    pub protocol: String,
    /// The OpenSSL name of the cipher suite, e.g. "ECDHE-RSA-AES256-GCM-SHA384".
    pub cipher: String,
    /// Bits of the symmetric key.
    pub bits: u32,
}

impl SessionInfo {
    /// "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)", as in Postfix's Received:
    /// header and its "TLS connection established" log line.
    pub fn describe(&self) -> String {
        format!(
            "{} with cipher {} ({}/{} bits)",
            self.protocol, self.cipher, self.bits, self.bits
        )
    }
}

/// The protocol and cipher of `conn`; `None` until the handshake has chosen them.
pub fn session_info(conn: &CommonState) -> Option<SessionInfo> {
    let protocol = match conn.protocol_version()? {
        ProtocolVersion::TLSv1_2 => "TLSv1.2".to_owned(),
        ProtocolVersion::TLSv1_3 => "TLSv1.3".to_owned(),
        other => format!("{other:?}"),
    };
    let (cipher, bits) = cipher_name(conn.negotiated_cipher_suite()?.suite());
    Some(SessionInfo {
        protocol,
        cipher,
        bits,
    })
}

/// The OpenSSL name and key bits of a cipher suite. TLS 1.3 names are the IANA ones; TLS 1.2
/// names follow OpenSSL's own scheme. Every suite of the ring provider is listed; any other
/// keeps its IANA name.
fn cipher_name(suite: CipherSuite) -> (String, u32) {
    let (name, bits) = match suite {
        CipherSuite::TLS13_AES_128_GCM_SHA256 => ("TLS_AES_128_GCM_SHA256", 128),
        CipherSuite::TLS13_AES_256_GCM_SHA384 => ("TLS_AES_256_GCM_SHA384", 256),
        CipherSuite::TLS13_CHACHA20_POLY1305_SHA256 => ("TLS_CHACHA20_POLY1305_SHA256", 256),
        CipherSuite::TLS13_AES_128_CCM_SHA256 => ("TLS_AES_128_CCM_SHA256", 128),
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 => {
            ("ECDHE-ECDSA-AES128-GCM-SHA256", 128)
        }
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 => {
            ("ECDHE-ECDSA-AES256-GCM-SHA384", 256)
        }
        CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 => {
            ("ECDHE-ECDSA-CHACHA20-POLY1305", 256)
        }
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => ("ECDHE-RSA-AES128-GCM-SHA256", 128),
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => ("ECDHE-RSA-AES256-GCM-SHA384", 256),
        CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 => {
            ("ECDHE-RSA-CHACHA20-POLY1305", 256)
        }
        other => {
            let name = other
                .as_str()
                .map_or_else(|| format!("{other:?}"), str::to_owned);
            let bits = if name.contains("AES_128") {
                128
            } else if name.contains("AES_256") || name.contains("CHACHA20") {
                256
            } else {
                0
            };
            return (name, bits);
        }
    };
    (name.to_owned(), bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openssl_names() {
        assert_eq!(
            cipher_name(CipherSuite::TLS13_AES_256_GCM_SHA384),
            ("TLS_AES_256_GCM_SHA384".to_string(), 256)
        );
        assert_eq!(
            cipher_name(CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256),
            ("ECDHE-RSA-AES128-GCM-SHA256".to_string(), 128)
        );
        let s = SessionInfo {
            protocol: "TLSv1.3".into(),
            cipher: "TLS_AES_256_GCM_SHA384".into(),
            bits: 256,
        };
        assert_eq!(
            s.describe(),
            "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)"
        );
    }

    #[test]
    fn every_ring_suite_has_an_openssl_name() {
        for suite in rustls::crypto::ring::ALL_CIPHER_SUITES {
            let (name, bits) = cipher_name(suite.suite());
            assert!(bits == 128 || bits == 256, "{name}");
            if suite.tls13().is_some() {
                assert!(
                    name.starts_with("TLS_") && !name.starts_with("TLS13"),
                    "{name}"
                );
            } else {
                assert!(name.starts_with("ECDHE-") && !name.contains('_'), "{name}");
            }
        }
        assert_eq!(
            cipher_name(CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA),
            ("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA".into(), 128)
        );
    }
}
