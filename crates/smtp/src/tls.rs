//! The client side of TLS: one rustls `ClientConfig` per process (so sessions resume),
//! server names for SNI and verification, and how a finished handshake is described in the
//! log (`Anonymous`, `Untrusted`, `Trusted` or `Verified TLS connection established`).
//!
//! At `may` and `encrypt` the certificate is not checked during the handshake (handshake
//! signatures still are); afterwards the chain is checked anyway, only to say in the log
//! how far it can be trusted. At `verify` and `secure` rustls's WebPKI verifier refuses a
//! chain that does not lead to `smtp_tls_CAfile` (or the bundled Mozilla roots) or does not
//! match the expected name.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore,
    SignatureScheme,
};

use crate::settings::{ServerNameMode, SmtpSettings, TlsLevel};

/// Why the TLS client could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// `smtp_tls_CAfile` cannot be read or holds no certificate.
    #[error("smtp_tls_CAfile {path}: {reason}")]
    CaFile {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// rustls refused the configuration.
    #[error("TLS client configuration: {0}")]
    Config(String),
}

/// How far a server's certificate is trusted (Postfix's words).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trust {
    /// No certificate.
    Anonymous,
    /// The chain does not lead to a trusted root.
    Untrusted,
    /// Trusted chain, name not matched.
    Trusted,
    /// Trusted chain and matching name.
    Verified,
}

impl Trust {
    /// The word that starts the log line.
    pub fn word(self) -> &'static str {
        match self {
            Trust::Anonymous => "Anonymous",
            Trust::Untrusted => "Untrusted",
            Trust::Trusted => "Trusted",
            Trust::Verified => "Verified",
        }
    }
}

/// The process's TLS client.
#[derive(Debug)]
pub struct TlsClient {
    config: Arc<ClientConfig>,
    verifier: Arc<WebPkiServerVerifier>,
}

impl TlsClient {
    /// Builds the client for the settings' level and trust anchors.
    pub fn new(s: &SmtpSettings) -> Result<TlsClient, TlsSetupError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = match &s.tls_ca_file {
            Some(path) => {
                let bad = |reason: String| TlsSetupError::CaFile {
                    path: path.display().to_string(),
                    reason,
                };
                let mut store = RootCertStore::empty();
                let certs = CertificateDer::pem_file_iter(path)
                    .map_err(|e| bad(e.to_string()))?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| bad(e.to_string()))?;
                let (added, _) = store.add_parsable_certificates(certs);
                if added == 0 {
                    return Err(bad("no usable certificate".into()));
                }
                store
            }
            None => RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        };
        let verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
                .build()
                .map_err(|e| TlsSetupError::Config(e.to_string()))?;
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| TlsSetupError::Config(e.to_string()))?;
        let mut config = if s.tls_level.verifies() {
            builder
                .with_webpki_verifier(Arc::clone(&verifier))
                .with_no_client_auth()
        } else {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate { provider }))
                .with_no_client_auth()
        };
        config.enable_sni = s.tls_servername != ServerNameMode::None;
        Ok(TlsClient {
            config: Arc::new(config),
            verifier,
        })
    }

    /// The shared configuration (with its session cache).
    pub fn config(&self) -> Arc<ClientConfig> {
        Arc::clone(&self.config)
    }

    /// The name given to rustls for a server `host` reached for `nexthop`: the name that
    /// is verified (`verify`: the host; `secure`: the next-hop domain, or the host when it
    /// is a subdomain of the next hop — Postfix's default `smtp_tls_secure_cert_match =
    /// nexthop, dot-nexthop`, checked through the MX host's own name), otherwise the SNI
    /// name of `smtp_tls_servername` (which is sent only when that parameter is not empty).
    pub fn server_name(
        s: &SmtpSettings,
        host: &str,
        nexthop: &str,
    ) -> Result<ServerName<'static>, String> {
        let under_nexthop = {
            let (h, n) = (host.to_ascii_lowercase(), nexthop.to_ascii_lowercase());
            let n = n.trim_end_matches('.');
            h.trim_end_matches('.').ends_with(&format!(".{n}"))
        };
        let name = match (s.tls_level, &s.tls_servername) {
            (TlsLevel::Secure, _) if under_nexthop => host,
            (TlsLevel::Secure, _) => nexthop,
            (TlsLevel::Verify, _) => host,
            (_, ServerNameMode::Nexthop) => nexthop,
            (_, ServerNameMode::Fixed(n)) => n.as_str(),
            _ => host,
        };
        ServerName::try_from(name.to_string())
            .map_err(|e| format!("bad TLS server name {name}: {e}"))
    }

    /// How far the certificate of a finished handshake is trusted for `name`.
    pub fn trust(&self, conn: &ClientConnection, name: &ServerName<'_>) -> Trust {
        let Some((leaf, chain)) = conn.peer_certificates().and_then(|c| c.split_first()) else {
            return Trust::Anonymous;
        };
        match self
            .verifier
            .verify_server_cert(leaf, chain, name, &[], UnixTime::now())
        {
            Ok(_) => Trust::Verified,
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Trust::Trusted,
            Err(_) => Trust::Untrusted,
        }
    }
}

/// `TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)`, as Postfix describes a
/// session (OpenSSL's cipher names; posthorn-tls, shared with smtpd).
pub fn describe(conn: &ClientConnection) -> String {
    posthorn_tls::session_info(conn)
        .map(|i| i.describe())
        .unwrap_or_else(|| "TLS".to_string())
}

/// Accepts any certificate (levels `may` and `encrypt`), still checking the handshake
/// signatures with the provider's algorithms.
#[derive(Debug)]
struct AnyCertificate {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_level() {
        let mut s = SmtpSettings::defaults("me.test");
        let name = |s: &SmtpSettings| {
            format!(
                "{:?}",
                TlsClient::server_name(s, "mx.d.test", "d.test").unwrap()
            )
        };
        s.tls_level = TlsLevel::Verify;
        assert!(name(&s).contains("mx.d.test"));
        s.tls_level = TlsLevel::Secure;
        // dot-nexthop: an MX host under the next hop is checked by its own name ...
        assert!(name(&s).contains("\"mx.d.test\""));
        // ... any other by the next hop's.
        assert!(
            format!(
                "{:?}",
                TlsClient::server_name(&s, "mx.elsewhere.test", "d.test").unwrap()
            )
            .contains("\"d.test\"")
        );
        s.tls_level = TlsLevel::May;
        s.tls_servername = ServerNameMode::Fixed("sni.test".into());
        assert!(name(&s).contains("sni.test"));
        assert!(TlsClient::new(&s).is_ok());
    }
}
