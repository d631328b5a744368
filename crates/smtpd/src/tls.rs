//! smtpd's TLS settings: the security level, the server certificates and keys loaded into a
//! rustls `ServerConfig`, reloading them when the files change, and the description of a
//! session that Postfix writes to the log and the Received: header.
//!
//! Certificates come either from `smtpd_tls_chain_files` (each PEM file holds private keys and
//! their certificate chains; several keys of different types are offered side by side and
//! each client gets the one its signature algorithms allow) or from `smtpd_tls_cert_file` (leaf
//! and chain) with `smtpd_tls_key_file` (empty: the key is in the certificate file).
//!
//! Errors here are environment errors: a missing or broken file. `load` reports them once;
//! `Reloader` keeps serving the last good configuration and logs a warning instead.

use std::fmt;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject, SectionKind};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, ServerSessionMemoryCache};
use rustls::sign::{CertifiedKey, SigningKey};
use rustls::{CipherSuite, InconsistentKeys, ServerConfig};

/// TLS sessions each smtpd process remembers for session-ID resumption (TLS 1.2 clients
/// without ticket support); tickets need no server-side memory.
const SESSION_CACHE_SIZE: usize = 1024;

/// How often [`Reloader`] looks at the files.
const RELOAD_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// `smtpd_tls_security_level`: whether smtpd offers or requires STARTTLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Level {
    /// No TLS (`none`, or empty).
    #[default]
    None,
    /// Offer STARTTLS; the client may use it (opportunistic TLS).
    May,
    /// Offer STARTTLS and refuse mail before it (`530 5.7.0 Must issue a STARTTLS command first`).
    Encrypt,
}

impl Level {
    /// The level as written in main.cf.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::None => "none",
            Level::May => "may",
            Level::Encrypt => "encrypt",
        }
    }
}

impl FromStr for Level {
    type Err = TlsError;

    /// Parses a main.cf value, case-insensitively as Postfix does; "" is `none`.
    fn from_str(value: &str) -> Result<Level, TlsError> {
        [Level::None, Level::May, Level::Encrypt]
            .into_iter()
            .find(|level| value.eq_ignore_ascii_case(level.as_str()))
            .or(value.is_empty().then_some(Level::None))
            .ok_or_else(|| TlsError::Level(value.to_owned()))
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the server's certificates and keys are.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsFiles {
    /// `smtpd_tls_cert_file`: leaf certificate followed by its chain (PEM).
    pub cert_file: String,
    /// `smtpd_tls_key_file`: the private key of `cert_file` (empty: it is in `cert_file`).
    pub key_file: String,
    /// `smtpd_tls_chain_files`: when not empty, used instead of the two above.
    pub chain_files: Vec<String>,
}

impl TlsFiles {
    /// The files [`load`] reads, in the order it reads them.
    fn paths(&self) -> Vec<&str> {
        if !self.chain_files.is_empty() {
            self.chain_files.iter().map(String::as_str).collect()
        } else if self.key_file.is_empty() || self.key_file == self.cert_file {
            vec![self.cert_file.as_str()]
        } else {
            vec![self.cert_file.as_str(), self.key_file.as_str()]
        }
    }
}

/// Why TLS settings or files are unusable. Each file error names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// `smtpd_tls_security_level` has a value smtpd does not know.
    #[error("invalid smtpd_tls_security_level \"{0}\": expected none, may or encrypt")]
    Level(String),
    /// Neither `smtpd_tls_chain_files` nor `smtpd_tls_cert_file` is set.
    #[error("no server certificate configured: set smtpd_tls_chain_files or smtpd_tls_cert_file")]
    NoFiles,
    /// A file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// What the system said.
        source: io::Error,
    },
    /// A file is not valid PEM.
    #[error("{path}: malformed PEM: {source}")]
    Pem {
        /// The file.
        path: String,
        /// What is wrong with it.
        source: pem::Error,
    },
    /// A file that should hold certificates holds none.
    #[error("{path}: no certificate found")]
    NoCertificate {
        /// The file.
        path: String,
    },
    /// A file that should hold a private key holds none.
    #[error("{path}: no private key found")]
    NoKey {
        /// The file.
        path: String,
    },
    /// A private key is malformed or of a type rustls cannot sign with.
    #[error("{path}: unusable private key: {source}")]
    BadKey {
        /// The file.
        path: String,
        /// rustls's reason.
        source: rustls::Error,
    },
    /// A certificate cannot be parsed.
    #[error("{path}: malformed certificate: {source}")]
    BadCertificate {
        /// The file.
        path: String,
        /// rustls's reason.
        source: rustls::Error,
    },
    /// `smtpd_tls_key_file` does not belong to the first certificate of `smtpd_tls_cert_file`.
    #[error("private key in {key_path} does not match the certificate in {cert_path}")]
    Mismatch {
        /// The key file.
        key_path: String,
        /// The certificate file.
        cert_path: String,
    },
    /// A private key in a chain file has no certificate with its public key in that file.
    #[error("{path}: private key number {index} matches no certificate in the file")]
    Unmatched {
        /// The chain file.
        path: String,
        /// Which key in the file, counting from 1.
        index: usize,
    },
    /// rustls refused the configuration (not expected with the fixed settings used here).
    #[error("cannot build the TLS configuration: {0}")]
    Config(rustls::Error),
}

/// Builds smtpd's rustls `ServerConfig` from `files`: TLS 1.2 and 1.3 with the ring provider, no
/// client certificates, session tickets and a session cache, no ALPN. With several keys the
/// certificate is chosen per client by its signature algorithms (client preference order).
pub fn load(files: &TlsFiles) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let keys = if !files.chain_files.is_empty() {
        let mut keys = Vec::new();
        for path in &files.chain_files {
            keys.extend(load_chain_file(path, &provider)?);
        }
        keys
    } else if !files.cert_file.is_empty() {
        let key_path = if files.key_file.is_empty() {
            &files.cert_file
        } else {
            &files.key_file
        };
        vec![load_cert_and_key(&files.cert_file, key_path, &provider)?]
    } else {
        return Err(TlsError::NoFiles);
    };
    let chooser = KeyChooser {
        keys,
        suites: provider.cipher_suites.clone(),
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(TlsError::Config)?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(chooser));
    config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE_SIZE);
    config.ticketer = rustls::crypto::ring::Ticketer::new().map_err(TlsError::Config)?;
    config.alpn_protocols.clear();
    Ok(Arc::new(config))
}

/// Reads a whole file, naming it on error.
fn read(path: &str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Turns a DER private key into a signing key.
fn signing_key(
    path: &str,
    key: PrivateKeyDer<'static>,
    provider: &CryptoProvider,
) -> Result<Arc<dyn SigningKey>, TlsError> {
    provider
        .key_provider
        .load_private_key(key)
        .map_err(|source| TlsError::BadKey {
            path: path.to_owned(),
            source,
        })
}

/// Whether `cert` carries the public key of `key`. `Err`: the certificate cannot be parsed.
fn key_matches(
    cert: &CertificateDer<'static>,
    key: &Arc<dyn SigningKey>,
) -> Result<bool, rustls::Error> {
    match CertifiedKey::new(vec![cert.clone()], Arc::clone(key)).keys_match() {
        Ok(()) => Ok(true),
        Err(rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch)) => Ok(false),
        // A provider that cannot derive the public key: trust the file's order, as rustls's own
        // CertifiedKey::from_der does. ring always can.
        Err(rustls::Error::InconsistentKeys(InconsistentKeys::Unknown)) => Ok(true),
        Err(other) => Err(other),
    }
}

/// `smtpd_tls_cert_file` and `smtpd_tls_key_file` (which may be the same file).
fn load_cert_and_key(
    cert_path: &str,
    key_path: &str,
    provider: &CryptoProvider,
) -> Result<Arc<CertifiedKey>, TlsError> {
    let cert_pem = read(cert_path)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem {
            path: cert_path.to_owned(),
            source,
        })?;
    let Some(leaf) = chain.first() else {
        return Err(TlsError::NoCertificate {
            path: cert_path.to_owned(),
        });
    };
    let key_pem = if key_path == cert_path {
        None
    } else {
        Some(read(key_path)?)
    };
    let key = match PrivateKeyDer::from_pem_slice(key_pem.as_deref().unwrap_or(&cert_pem)) {
        Ok(key) => key,
        Err(pem::Error::NoItemsFound) => {
            return Err(TlsError::NoKey {
                path: key_path.to_owned(),
            });
        }
        Err(source) => {
            return Err(TlsError::Pem {
                path: key_path.to_owned(),
                source,
            });
        }
    };
    let key = signing_key(key_path, key, provider)?;
    let matches = key_matches(leaf, &key).map_err(|source| TlsError::BadCertificate {
        path: cert_path.to_owned(),
        source,
    })?;
    if !matches {
        return Err(TlsError::Mismatch {
            key_path: key_path.to_owned(),
            cert_path: cert_path.to_owned(),
        });
    }
    Ok(Arc::new(CertifiedKey::new(chain, key)))
}

/// One object of a chain file.
enum ChainItem {
    /// A private key.
    Key(Arc<dyn SigningKey>),
    /// A certificate.
    Cert(CertificateDer<'static>),
}

/// One `smtpd_tls_chain_files` file: its private keys, each with its certificate chain.
///
/// The leaf of a key is the certificate carrying its public key, wherever it is. With one key,
/// all other certificates of the file follow the leaf, in file order. With several keys (Postfix
/// puts each key directly before or after its leaf), a chain is the leaf and the certificates
/// after it, up to the next key or the next leaf. Other PEM objects are ignored.
fn load_chain_file(
    path: &str,
    provider: &CryptoProvider,
) -> Result<Vec<Arc<CertifiedKey>>, TlsError> {
    let data = read(path)?;
    let mut items = Vec::new();
    for section in <(SectionKind, Vec<u8>)>::pem_slice_iter(&data) {
        let (kind, der) = section.map_err(|source| TlsError::Pem {
            path: path.to_owned(),
            source,
        })?;
        if kind == SectionKind::Certificate {
            items.push(ChainItem::Cert(CertificateDer::from(der)));
        } else if let Some(key) = PrivateKeyDer::from_pem(kind, der) {
            items.push(ChainItem::Key(signing_key(path, key, provider)?));
        }
    }
    let key_at: Vec<usize> = positions(&items, |item| matches!(item, ChainItem::Key(_)));
    let cert_at: Vec<usize> = positions(&items, |item| matches!(item, ChainItem::Cert(_)));
    if key_at.is_empty() {
        return Err(TlsError::NoKey {
            path: path.to_owned(),
        });
    }
    if cert_at.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    let cert = |i: usize| match &items[i] {
        ChainItem::Cert(cert) => cert,
        ChainItem::Key(_) => unreachable!("load_chain_file: item {i} is in cert_at"),
    };
    let key = |i: usize| match &items[i] {
        ChainItem::Key(key) => key,
        ChainItem::Cert(_) => unreachable!("load_chain_file: item {i} is in key_at"),
    };

    // The leaf of each key.
    let mut leaf_at = Vec::with_capacity(key_at.len());
    for (n, &k) in key_at.iter().enumerate() {
        let mut leaf = None;
        for &c in &cert_at {
            let matches =
                key_matches(cert(c), key(k)).map_err(|source| TlsError::BadCertificate {
                    path: path.to_owned(),
                    source,
                })?;
            if matches {
                leaf = Some(c);
                break;
            }
        }
        let leaf = leaf.ok_or_else(|| TlsError::Unmatched {
            path: path.to_owned(),
            index: n + 1,
        })?;
        leaf_at.push(leaf);
    }

    let mut certified = Vec::with_capacity(key_at.len());
    for (&k, &leaf) in key_at.iter().zip(&leaf_at) {
        let mut chain = vec![cert(leaf).clone()];
        if key_at.len() == 1 {
            chain.extend(
                cert_at
                    .iter()
                    .filter(|&&c| c != leaf)
                    .map(|&c| cert(c).clone()),
            );
        } else {
            for (i, item) in items.iter().enumerate().skip(leaf + 1) {
                match item {
                    ChainItem::Key(_) if i == k => {}
                    ChainItem::Cert(c) if !leaf_at.contains(&i) => chain.push(c.clone()),
                    _ => break,
                }
            }
        }
        certified.push(Arc::new(CertifiedKey::new(chain, Arc::clone(key(k)))));
    }
    Ok(certified)
}

/// The indices of the items that satisfy `pick`.
fn positions(items: &[ChainItem], pick: impl Fn(&ChainItem) -> bool) -> Vec<usize> {
    items
        .iter()
        .enumerate()
        .filter(|(_, item)| pick(item))
        .map(|(i, _)| i)
        .collect()
}

/// Chooses among the configured keys the first one, in the client's order of signature
/// schemes, that can sign with a scheme the client offers and that a cipher suite offered by
/// the client can use (a TLS 1.2-only client offering only ECDHE-RSA suites gets the RSA key
/// even if it also lists ECDSA schemes).
#[derive(Debug)]
struct KeyChooser {
    /// The keys in configuration order.
    keys: Vec<Arc<CertifiedKey>>,
    /// The cipher suites the server supports.
    suites: Vec<rustls::SupportedCipherSuite>,
}

impl KeyChooser {
    /// Whether some suite offered by the client and supported here works with `key`.
    fn suite_allows(&self, offered: &[CipherSuite], key: &CertifiedKey) -> bool {
        let algorithm = key.key.algorithm();
        self.suites
            .iter()
            .any(|s| offered.contains(&s.suite()) && s.usable_for_signature_algorithm(algorithm))
    }
}

impl ResolvesServerCert for KeyChooser {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let usable: Vec<&Arc<CertifiedKey>> = self
            .keys
            .iter()
            .filter(|key| self.suite_allows(hello.cipher_suites(), key))
            .collect();
        hello.signature_schemes().iter().find_map(|&scheme| {
            usable
                .iter()
                .find(|key| key.key.choose_scheme(&[scheme]).is_some())
                .map(|&key| Arc::clone(key))
        })
    }
}

/// Keeps a configuration and reloads it when a file changes, so that renewed certificates are
/// used for new sessions without a restart.
///
/// The files are looked at (stat: device, inode, size, mtime) at most once per second. After a
/// change that does not load (a half-written file, a key not yet matching a new certificate),
/// the previous configuration stays in use and one warning is logged per change.
#[derive(Debug)]
pub struct Reloader {
    /// What to load.
    files: TlsFiles,
    /// The configuration in use.
    config: Arc<ServerConfig>,
    /// The file state `config` was loaded from.
    loaded: Vec<Option<FileStamp>>,
    /// A file state that failed to load and has been warned about.
    failed: Option<Vec<Option<FileStamp>>>,
    /// When the files were last looked at.
    last_check: Instant,
    /// How often to look.
    interval: Duration,
}

/// What identifies a version of a file; `None` in a list: the file cannot be examined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    /// Device number.
    dev: u64,
    /// Inode number (a renamed-over file gets a new one).
    ino: u64,
    /// Size in bytes.
    size: u64,
    /// Modification time, seconds.
    mtime: i64,
    /// Modification time, nanoseconds.
    mtime_nsec: i64,
}

/// The current state of `files`.
fn stamp(files: &TlsFiles) -> Vec<Option<FileStamp>> {
    files
        .paths()
        .into_iter()
        .map(|path| {
            let meta = std::fs::metadata(path).ok()?;
            Some(FileStamp {
                dev: meta.dev(),
                ino: meta.ino(),
                size: meta.size(),
                mtime: meta.mtime(),
                mtime_nsec: meta.mtime_nsec(),
            })
        })
        .collect()
}

impl Reloader {
    /// Loads `files` the first time; an error here is as fatal as from [`load`].
    pub fn new(files: TlsFiles) -> Result<Reloader, TlsError> {
        // Stamp before loading: a change during the load shows up at the next check.
        let loaded = stamp(&files);
        let config = load(&files)?;
        Ok(Reloader {
            files,
            config,
            loaded,
            failed: None,
            last_check: Instant::now(),
            interval: RELOAD_CHECK_INTERVAL,
        })
    }

    /// The configuration for a new session, reloaded first if a file changed.
    pub fn current(&mut self) -> Arc<ServerConfig> {
        let now = Instant::now();
        if now.duration_since(self.last_check) >= self.interval {
            self.last_check = now;
            self.check();
        }
        Arc::clone(&self.config)
    }

    /// Reloads if the files changed since the last load or failed attempt.
    fn check(&mut self) {
        let now = stamp(&self.files);
        if now == self.loaded || self.failed.as_ref() == Some(&now) {
            return;
        }
        match load(&self.files) {
            Ok(config) => {
                log::info!(
                    "reloaded TLS certificates from {}",
                    self.files.paths().join(", ")
                );
                self.config = config;
                self.loaded = now;
                self.failed = None;
            }
            Err(err) => {
                log::warn!("cannot reload TLS certificates: {err}; still using the previous ones");
                self.failed = Some(now);
            }
        }
    }
}

pub use posthorn_tls::{SessionInfo, session_info};

#[cfg(test)]
mod tests {
    use super::*;
    use posthorn_testkit::tls::OnlySchemes;
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair,
        PKCS_ECDSA_P256_SHA256, PKCS_ED25519,
    };
    use rustls::ServerConnection;
    use rustls::client::WebPkiServerVerifier;
    use rustls::client::danger::ServerCertVerifier;
    use rustls::pki_types::ServerName;
    use rustls::{
        ClientConfig, ClientConnection, Connection, HandshakeKind, RootCertStore, SignatureScheme,
        SupportedProtocolVersion,
    };
    use std::path::Path;
    use tempfile::TempDir;

    /// A 2048-bit RSA test key (made with `openssl genpkey`): ring cannot generate RSA keys,
    /// and rcgen signs with this one.
    const RSA_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIIEugIBADANBgkqhkiG9w0BAQEFAASCBKQwggSgAgEAAoIBAQClShPg5qNea4OB
cSiWpSf4yTSVjA7H7uNmogJjS5XsvsURPaAkTsc/FjQD/octwNYx8Y3u4s2FFGPB
irsC+28aAB0MGJSrZ/dZX5PykBOBHktObRemhnBCzgl7olOohFdQjvhOCfZjdcjQ
2KoDqkU6ZW3SO2bUYwEanAxU0UgL6yYVyigQO8wolTVuZWoT17MR/Cn2iyk2CG1C
UN4d50bPNrrDHeEOu6iPdOrS00oB01k3O7BAr+6DDXh6VNgNI/Fk8m6B1lUIyL48
g9OmxcwZw2Dtx0nUG62o2xNKLl7zaF72nUk6gtB2DleOMSSFPSnLXf/CGiwzMEEh
KP2jPH+hAgMBAAECgf9fjnPvkWbhL0bXjpPog5KYQbokutPQwkq1CvRWc1w5ghBr
5zStyN1nm2524K9FxDYQqZVkhbpLNX52Zb23+6Q/Y9FnLM7GSVS2VosxsBmWi+z9
ahRCMXa1KGhTEYVL5zaTXBQxCZFn7rAqDRg9BjL/j6Pt5mmMX7BDsfNvFY6RVHGB
SMHl2M2DAs9YmiQDLiKGcTODiK/+YXt6Dl9pzA3pUbiwwa1f1Jn2Wfzoo35bjH5r
Bhp6FFZ2kX51+52zMkOIgjGVIMbM08tqACYliB9toTxlRk4HH3VT57XupoI82atY
XsD3kBDh7pKem9fXvXySfojW89ekAC3StaInH5ECgYEA5LX7TbAIzXXn8YwtsDXQ
844htJoCyD7r6Sr45ydit36LYEX1HbScZYxUGeixc3ZkGPVdvJkF5jZIs8mTWdkt
fwTLKyx8eCUMksVVi6gdmg3k7ju+Uc46fEYzC9iFkn9JNc3wgqfwhcRlb6Z7yujS
9IGA/Is3/Je0AABex/TnugsCgYEAuQLfskbwDaUpP856V/B/kw07y+yO8xRmEizm
EBjRlrz/A/xVGZy0D3qPmtfARvvLLwRuWNfHwiwQ81e2+0rGE7VNyhhBBocDyi7i
7ctRPjlFFT79YQNpACxn9m2TR3U6/06pJR/cnPNkqK5QObHkcwS1C0kRcE+mFHW9
T910ZIMCgYBmV4CCfPkTZ2VI0x9GsG417i3q8Ne5314VUmNanGcyEPAxPly21DD/
x9GCXnu5XQrhmDo/wIHBSB00RkkndWVEZ1K6mQeBg6Kisqba/XlxjDIa4KUDWjMV
lRwWeucabNbHusWa0adxVDbHxUmzvIdZXfHoECwXXZLwRTokY9SljQKBgGmozoBO
KwJf9LLQBOb8Hp+oyyGnM+x3FeQDaFCBHBFuVmW8Ug2ShPLiF+lilhjz7BIqAasT
cK3f5L5UtdfF2GGhBZAJUfmcWfm51TfhCcDzjBSaKLKi8/B5a9Y8tgP1W4A7ODZP
f/rStgXvpzmL8uANLCgJzr/JfRvqMffOjY5pAoGAZhTwtXYlHtY1ySBUwgu/SWjZ
ZfGr27cr3CFWLGnVjJSIosky5v3+/y8B1pFarKoPIlAEzjF0tUx5b1fvTgeFr22w
Gw+R2aC5Rk6CwvrEmfS67N2/wxp6QQP/UNw4SjHt1eH1oxJMiZ7a6kRrt83wjoAv
71XNIJIui2f3k1aYYdw=
-----END PRIVATE KEY-----
";

    const HOST: &str = "mx.test.example";

    /// A test CA and a temp dir for the files.
    struct Pki {
        dir: TempDir,
        ca: CertifiedIssuer<'static, KeyPair>,
    }

    /// A key and its leaf certificate, PEM.
    struct Leaf {
        key: String,
        cert: String,
        der: CertificateDer<'static>,
    }

    enum KeyType {
        Ecdsa,
        Ed25519,
        Rsa,
    }

    impl Pki {
        fn new() -> Pki {
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params
                .distinguished_name
                .push(DnType::CommonName, "posthorn test CA");
            let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
            Pki {
                dir: TempDir::new().unwrap(),
                ca: CertifiedIssuer::self_signed(params, key).unwrap(),
            }
        }

        fn leaf(&self, kind: KeyType, serial: u64) -> Leaf {
            let key = match kind {
                KeyType::Ecdsa => KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap(),
                KeyType::Ed25519 => KeyPair::generate_for(&PKCS_ED25519).unwrap(),
                KeyType::Rsa => KeyPair::from_pem(RSA_KEY).unwrap(),
            };
            let mut params = CertificateParams::new(vec![HOST.to_owned()]).unwrap();
            params.serial_number = Some(serial.into());
            params
                .distinguished_name
                .push(DnType::CommonName, format!("{HOST} {serial}"));
            let cert = params.signed_by(&key, &self.ca).unwrap();
            Leaf {
                key: key.serialize_pem(),
                cert: cert.pem(),
                der: cert.der().clone(),
            }
        }

        fn ca_pem(&self) -> String {
            self.ca.pem()
        }

        /// Writes `parts` to `name` atomically (a new inode, as certificate renewal tools do).
        fn write(&self, name: &str, parts: &[&str]) -> String {
            let path = self.dir.path().join(name);
            let tmp = self.dir.path().join(format!(".{name}.tmp"));
            std::fs::write(&tmp, parts.concat()).unwrap();
            std::fs::rename(&tmp, &path).unwrap();
            path_str(&path)
        }

        fn roots(&self) -> Arc<RootCertStore> {
            let mut roots = RootCertStore::empty();
            roots.add(self.ca.der().clone()).unwrap();
            Arc::new(roots)
        }

        /// A client trusting the CA, limited to `versions`, and offering only `schemes` if set.
        fn client(
            &self,
            versions: &[&'static SupportedProtocolVersion],
            schemes: Option<&[SignatureScheme]>,
        ) -> Arc<ClientConfig> {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let inner =
                WebPkiServerVerifier::builder_with_provider(self.roots(), Arc::clone(&provider))
                    .build()
                    .unwrap();
            let verifier: Arc<dyn ServerCertVerifier> = match schemes {
                Some(schemes) => Arc::new(OnlySchemes {
                    inner,
                    schemes: schemes.to_vec(),
                }),
                None => inner,
            };
            let config = ClientConfig::builder_with_provider(provider)
                .with_protocol_versions(versions)
                .unwrap()
                .dangerous()
                .with_custom_certificate_verifier(verifier)
                .with_no_client_auth();
            Arc::new(config)
        }
    }

    fn path_str(path: &Path) -> String {
        path.to_str().unwrap().to_owned()
    }

    /// Moves pending TLS records from `from` to `to`; returns how many bytes moved.
    fn transfer(from: &mut Connection, to: &mut Connection) -> Result<usize, rustls::Error> {
        let mut wire = Vec::new();
        while from.wants_write() {
            from.write_tls(&mut wire).unwrap();
        }
        let mut rest = &wire[..];
        while !rest.is_empty() {
            to.read_tls(&mut rest).unwrap();
            to.process_new_packets()?;
        }
        Ok(wire.len())
    }

    /// Runs a handshake in memory; returns both ends.
    fn handshake(
        client: &Arc<ClientConfig>,
        server: &Arc<ServerConfig>,
    ) -> Result<(ClientConnection, ServerConnection), rustls::Error> {
        let name = ServerName::try_from(HOST).unwrap();
        let mut client = Connection::from(ClientConnection::new(Arc::clone(client), name)?);
        let mut server = Connection::from(ServerConnection::new(Arc::clone(server))?);
        // Until nothing moves: this also delivers the TLS 1.3 tickets sent after the handshake.
        while transfer(&mut client, &mut server)? + transfer(&mut server, &mut client)? > 0 {}
        assert!(!client.is_handshaking() && !server.is_handshaking());
        match (client, server) {
            (Connection::Client(c), Connection::Server(s)) => Ok((c, s)),
            _ => unreachable!(),
        }
    }

    fn info(protocol: &str, cipher: &str, bits: u32) -> Option<SessionInfo> {
        Some(SessionInfo {
            protocol: protocol.into(),
            cipher: cipher.into(),
            bits,
        })
    }

    const TLS12: &[&SupportedProtocolVersion] = &[&rustls::version::TLS12];
    const TLS13: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];

    #[test]
    fn levels() {
        assert_eq!("".parse::<Level>().unwrap(), Level::None);
        assert_eq!("none".parse::<Level>().unwrap(), Level::None);
        assert_eq!("May".parse::<Level>().unwrap(), Level::May);
        assert_eq!("encrypt".parse::<Level>().unwrap(), Level::Encrypt);
        let err = "verify".parse::<Level>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid smtpd_tls_security_level \"verify\": expected none, may or encrypt"
        );
        assert!(" may".parse::<Level>().is_err());
        assert_eq!(Level::Encrypt.to_string(), "encrypt");
        assert_eq!(Level::default(), Level::None);
    }

    #[test]
    fn cert_and_key_files_tls13_and_tls12() {
        let pki = Pki::new();
        let leaf = pki.leaf(KeyType::Ecdsa, 1);
        let files = TlsFiles {
            cert_file: pki.write("cert.pem", &[&leaf.cert, &pki.ca_pem()]),
            key_file: pki.write("key.pem", &[&leaf.key]),
            chain_files: Vec::new(),
        };
        let server = load(&files).unwrap();
        assert!(server.alpn_protocols.is_empty());

        let (client, conn) = handshake(&pki.client(TLS13, None), &server).unwrap();
        assert_eq!(
            client.peer_certificates().unwrap().len(),
            2,
            "leaf and CA are sent"
        );
        let got = session_info(&conn);
        assert_eq!(got, info("TLSv1.3", "TLS_AES_256_GCM_SHA384", 256));
        assert_eq!(
            got.unwrap().describe(),
            "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)"
        );

        let (_, conn) = handshake(&pki.client(TLS12, None), &server).unwrap();
        assert_eq!(
            session_info(&conn),
            info("TLSv1.2", "ECDHE-ECDSA-AES256-GCM-SHA384", 256)
        );
    }

    #[test]
    fn session_info_before_handshake_is_none() {
        let pki = Pki::new();
        let leaf = pki.leaf(KeyType::Ecdsa, 1);
        let path = pki.write("both.pem", &[&leaf.cert, &leaf.key]);
        let server = load(&TlsFiles {
            cert_file: path,
            ..TlsFiles::default()
        })
        .unwrap();
        assert_eq!(session_info(&ServerConnection::new(server).unwrap()), None);
    }

    #[test]
    fn key_file_defaults_to_cert_file() {
        let pki = Pki::new();
        let leaf = pki.leaf(KeyType::Ed25519, 1);
        // Key first, as some tools write it.
        let path = pki.write("both.pem", &[&leaf.key, &leaf.cert]);
        let server = load(&TlsFiles {
            cert_file: path,
            ..TlsFiles::default()
        })
        .unwrap();
        let (client, _) = handshake(&pki.client(TLS13, None), &server).unwrap();
        assert_eq!(client.peer_certificates().unwrap()[0], leaf.der);
    }

    #[test]
    fn rsa_over_tls12_and_tls13() {
        let pki = Pki::new();
        let leaf = pki.leaf(KeyType::Rsa, 1);
        let path = pki.write("rsa.pem", &[&leaf.key, &leaf.cert, &pki.ca_pem()]);
        let server = load(&TlsFiles {
            chain_files: vec![path],
            ..TlsFiles::default()
        })
        .unwrap();
        let (_, conn) = handshake(&pki.client(TLS12, None), &server).unwrap();
        assert_eq!(
            session_info(&conn),
            info("TLSv1.2", "ECDHE-RSA-AES256-GCM-SHA384", 256)
        );
        let (_, conn) = handshake(&pki.client(TLS13, None), &server).unwrap();
        assert_eq!(
            session_info(&conn),
            info("TLSv1.3", "TLS_AES_256_GCM_SHA384", 256)
        );
    }

    #[test]
    fn chain_files_choose_the_key_by_signature_scheme() {
        let pki = Pki::new();
        let (rsa, ecdsa, ed) = (
            pki.leaf(KeyType::Rsa, 1),
            pki.leaf(KeyType::Ecdsa, 2),
            pki.leaf(KeyType::Ed25519, 3),
        );
        let ca = pki.ca_pem();
        // Key before the leaf, key after the leaf, and the CA before both.
        let files = TlsFiles {
            chain_files: vec![
                pki.write("rsa.pem", &[&rsa.key, &rsa.cert, &ca]),
                pki.write("ecdsa.pem", &[&ecdsa.cert, &ecdsa.key, &ca]),
                pki.write("ed25519.pem", &[&ca, &ed.key, &ed.cert]),
            ],
            ..TlsFiles::default()
        };
        let server = load(&files).unwrap();
        let rsa_schemes = [
            SignatureScheme::RSA_PSS_SHA256,
            SignatureScheme::RSA_PKCS1_SHA256,
        ];
        let cases: [(&[SignatureScheme], &Leaf); 4] = [
            (&[SignatureScheme::ED25519], &ed),
            (&[SignatureScheme::ECDSA_NISTP256_SHA256], &ecdsa),
            (&rsa_schemes, &rsa),
            // The client's order decides.
            (
                &[SignatureScheme::ED25519, SignatureScheme::RSA_PSS_SHA256],
                &ed,
            ),
        ];
        for versions in [TLS12, TLS13] {
            for (schemes, expected) in &cases {
                let client = pki.client(versions, Some(schemes));
                let (client, conn) = handshake(&client, &server).unwrap();
                let chain = client.peer_certificates().unwrap();
                assert_eq!(chain[0], expected.der, "{schemes:?} {versions:?}");
                assert_eq!(chain.len(), 2, "{schemes:?} {versions:?}");
                if versions == TLS12 {
                    let want = if schemes == &rsa_schemes {
                        "ECDHE-RSA-"
                    } else {
                        "ECDHE-ECDSA-"
                    };
                    assert!(session_info(&conn).unwrap().cipher.starts_with(want));
                }
            }
        }
        // A scheme no key supports: no certificate, no handshake.
        let client = pki.client(TLS13, Some(&[SignatureScheme::ECDSA_NISTP384_SHA384]));
        assert!(handshake(&client, &server).is_err());
    }

    #[test]
    fn one_chain_file_with_several_keys() {
        let pki = Pki::new();
        let (ecdsa, ed) = (pki.leaf(KeyType::Ecdsa, 2), pki.leaf(KeyType::Ed25519, 3));
        let ca = pki.ca_pem();
        let path = pki.write(
            "all.pem",
            &[&ed.key, &ed.cert, &ca, &ecdsa.cert, &ecdsa.key, &ca],
        );
        let server = load(&TlsFiles {
            chain_files: vec![path],
            ..TlsFiles::default()
        })
        .unwrap();
        for (scheme, expected) in [
            (SignatureScheme::ED25519, &ed),
            (SignatureScheme::ECDSA_NISTP256_SHA256, &ecdsa),
        ] {
            let (client, _) = handshake(&pki.client(TLS13, Some(&[scheme])), &server).unwrap();
            let chain = client.peer_certificates().unwrap();
            assert_eq!(chain[0], expected.der);
            assert_eq!(chain[1], *pki.ca.der());
            assert_eq!(chain.len(), 2);
        }
    }

    #[test]
    fn mismatched_keys_are_errors() {
        let pki = Pki::new();
        let (a, b) = (pki.leaf(KeyType::Ecdsa, 1), pki.leaf(KeyType::Ecdsa, 2));
        let files = TlsFiles {
            cert_file: pki.write("a.pem", &[&a.cert]),
            key_file: pki.write("b.key", &[&b.key]),
            chain_files: Vec::new(),
        };
        let err = load(&files).unwrap_err();
        assert!(matches!(err, TlsError::Mismatch { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!(
                "private key in {} does not match the certificate in {}",
                files.key_file, files.cert_file
            )
        );
        let chain = pki.write("chain.pem", &[&b.key, &a.cert]);
        let err = load(&TlsFiles {
            chain_files: vec![chain.clone()],
            ..TlsFiles::default()
        })
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("{chain}: private key number 1 matches no certificate in the file")
        );
        let chain = pki.write("chain2.pem", &[&a.key, &a.cert, &b.key]);
        let err = load(&TlsFiles {
            chain_files: vec![chain],
            ..TlsFiles::default()
        })
        .unwrap_err();
        assert!(
            matches!(err, TlsError::Unmatched { index: 2, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn file_errors_name_the_file() {
        let pki = Pki::new();
        let leaf = pki.leaf(KeyType::Ecdsa, 1);
        let missing = path_str(&pki.dir.path().join("missing.pem"));
        let err = load(&TlsFiles {
            cert_file: missing.clone(),
            ..TlsFiles::default()
        })
        .unwrap_err();
        assert!(matches!(err, TlsError::Read { .. }));
        assert!(
            err.to_string()
                .starts_with(&format!("cannot read {missing}: ")),
            "{err}"
        );
        let err = load(&TlsFiles {
            chain_files: vec![missing.clone()],
            ..TlsFiles::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains(&missing), "{err}");
        let cert = pki.write("cert.pem", &[&leaf.cert]);
        let err = load(&TlsFiles {
            cert_file: cert.clone(),
            key_file: missing.clone(),
            ..TlsFiles::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains(&missing), "{err}");

        assert!(matches!(load(&TlsFiles::default()), Err(TlsError::NoFiles)));
        let err = load(&TlsFiles {
            cert_file: cert.clone(),
            ..TlsFiles::default()
        })
        .unwrap_err();
        assert_eq!(err.to_string(), format!("{cert}: no private key found"));
        let key = pki.write("key.pem", &[&leaf.key]);
        let err = load(&TlsFiles {
            cert_file: key.clone(),
            ..TlsFiles::default()
        })
        .unwrap_err();
        assert_eq!(err.to_string(), format!("{key}: no certificate found"));
        let err = load(&TlsFiles {
            chain_files: vec![key.clone()],
            ..TlsFiles::default()
        })
        .unwrap_err();
        assert_eq!(err.to_string(), format!("{key}: no certificate found"));
        let err = load(&TlsFiles {
            chain_files: vec![cert.clone()],
            ..TlsFiles::default()
        })
        .unwrap_err();
        assert_eq!(err.to_string(), format!("{cert}: no private key found"));
        let broken = pki.write("broken.pem", &[&leaf.cert[..leaf.cert.len() - 30]]);
        let err = load(&TlsFiles {
            cert_file: broken.clone(),
            key_file: key,
            ..TlsFiles::default()
        })
        .unwrap_err();
        assert!(matches!(err, TlsError::Pem { .. }), "{err:?}");
        assert!(
            err.to_string()
                .starts_with(&format!("{broken}: malformed PEM: ")),
            "{err}"
        );
        let junk_key = pki.write(
            "junk.key",
            &["-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"],
        );
        let err = load(&TlsFiles {
            cert_file: cert,
            key_file: junk_key.clone(),
            ..TlsFiles::default()
        })
        .unwrap_err();
        assert!(matches!(err, TlsError::BadKey { .. }), "{err:?}");
        assert!(err.to_string().starts_with(&junk_key), "{err}");
    }

    #[test]
    fn sessions_resume() {
        let pki = Pki::new();
        let leaf = pki.leaf(KeyType::Ecdsa, 1);
        let path = pki.write("both.pem", &[&leaf.key, &leaf.cert]);
        let server = load(&TlsFiles {
            chain_files: vec![path],
            ..TlsFiles::default()
        })
        .unwrap();
        for versions in [TLS12, TLS13] {
            let client = pki.client(versions, None);
            let (_, first) = handshake(&client, &server).unwrap();
            assert_eq!(first.handshake_kind(), Some(HandshakeKind::Full));
            let (_, second) = handshake(&client, &server).unwrap();
            assert_eq!(
                second.handshake_kind(),
                Some(HandshakeKind::Resumed),
                "{versions:?}"
            );
        }
    }

    #[test]
    fn reloader_follows_the_files() {
        let pki = Pki::new();
        let first = pki.leaf(KeyType::Ecdsa, 1);
        let files = TlsFiles {
            cert_file: pki.write("cert.pem", &[&first.cert]),
            key_file: pki.write("key.pem", &[&first.key]),
            chain_files: Vec::new(),
        };
        let client = pki.client(TLS13, None);
        let served = |config: &Arc<ServerConfig>| {
            handshake(&client, config)
                .unwrap()
                .0
                .peer_certificates()
                .unwrap()[0]
                .clone()
        };
        let mut reloader = Reloader::new(files).unwrap();
        let old = reloader.current();
        assert_eq!(served(&old), first.der);

        // A renewed certificate (new key, serial and subject); the key is replaced first.
        let second = pki.leaf(KeyType::Ed25519, 2);
        pki.write("key.pem", &[&second.key]);
        pki.write("cert.pem", &[&second.cert]);
        assert!(
            Arc::ptr_eq(&reloader.current(), &old),
            "looked again within a second"
        );
        std::thread::sleep(Duration::from_millis(1100));
        let new = reloader.current();
        assert!(!Arc::ptr_eq(&new, &old));
        assert_eq!(served(&new), second.der);
        assert!(
            Arc::ptr_eq(&reloader.current(), &new),
            "unchanged files are not reloaded"
        );

        // The rest without waiting.
        reloader.interval = Duration::ZERO;
        pki.write("cert.pem", &["garbage"]);
        assert!(
            Arc::ptr_eq(&reloader.current(), &new),
            "a broken file keeps the old config"
        );
        let failed = reloader.failed.clone();
        assert!(failed.is_some());
        assert!(Arc::ptr_eq(&reloader.current(), &new));
        assert_eq!(reloader.failed, failed, "one warning per change");

        // Another change that still does not load is a new attempt; then the files heal.
        let third = pki.leaf(KeyType::Ecdsa, 3);
        pki.write("key.pem", &[&third.key]);
        assert!(Arc::ptr_eq(&reloader.current(), &new));
        assert_ne!(reloader.failed, failed, "a new change is a new attempt");
        pki.write("cert.pem", &[&third.cert]);
        let newest = reloader.current();
        assert_eq!(served(&newest), third.der);
        assert_eq!(reloader.failed, None);

        // A missing file is a change that fails.
        std::fs::remove_file(pki.dir.path().join("cert.pem")).unwrap();
        assert!(Arc::ptr_eq(&reloader.current(), &newest));
        assert!(reloader.failed.is_some());
    }
}
