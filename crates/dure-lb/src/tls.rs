//! TLS for listeners: a listener's certificate chain and private key, read
//! from PEM files into a rustls `ServerConfig` (ring as the one crypto
//! backend) that offers HTTP/2 and HTTP/1.1 by ALPN. Files are read every
//! time a table is applied, so rotated files take effect with the next
//! table; each refusal names the file and what is wrong with it. The
//! handshake itself is the accept loop's (`server`).

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

/// The ALPN name of HTTP/2; a connection that agreed on it is served
/// HTTP/2, any other HTTP/1.1.
pub const ALPN_H2: &[u8] = b"h2";
const ALPN_HTTP1: &[u8] = b"http/1.1";

/// The certificate chain and private key of a TLS listener, PEM files on
/// this host.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TlsFiles {
    /// The certificate chain, the listener's own certificate first.
    pub cert: PathBuf,
    /// The private key of the first certificate (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Why a listener's certificate or key cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the TLS {what} file `{}`: {source}", file.display())]
    Read {
        what: &'static str,
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("the TLS {what} file `{}` is not valid PEM: {detail}", file.display())]
    NotPem {
        what: &'static str,
        file: PathBuf,
        detail: String,
    },
    #[error("the TLS certificate file `{}` holds no PEM `CERTIFICATE` block", file.display())]
    NoCertificate { file: PathBuf },
    #[error("the TLS key file `{}` holds no PEM private key block", file.display())]
    NoKey { file: PathBuf },
    #[error("the TLS certificate file `{}` holds an invalid certificate: {detail}", file.display())]
    BadCertificate { file: PathBuf, detail: String },
    #[error("the TLS key file `{}` holds an unusable private key: {detail}", file.display())]
    BadKey { file: PathBuf, detail: String },
    #[error("the TLS key file `{}` does not match the certificate in `{}`", key.display(), cert.display())]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("the TLS files `{}` and `{}` are refused: {detail}", cert.display(), key.display())]
    Refused {
        cert: PathBuf,
        key: PathBuf,
        detail: String,
    },
}

/// A listener's TLS configuration as read from its files, with what the
/// files looked like when they were read.
#[derive(Debug, Clone)]
pub struct LoadedTls {
    pub config: Arc<ServerConfig>,
    pub stamps: Vec<FileStamp>,
}

/// What a file looked like (modification time, size, inode), to notice
/// when it was rewritten or replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileStamp {
    path: PathBuf,
    seen: Option<(SystemTime, u64, u64)>,
}

impl FileStamp {
    /// Returns how `path` looks now; a file that cannot be examined is
    /// stamped as such, so it counts as changed once it can.
    pub fn of(path: &Path) -> FileStamp {
        use std::os::unix::fs::MetadataExt;
        let seen = std::fs::metadata(path)
            .and_then(|m| Ok((m.modified()?, m.len(), m.ino())))
            .ok();
        FileStamp {
            path: path.to_path_buf(),
            seen,
        }
    }

    /// Returns whether the file looks different now.
    pub fn changed(&self) -> bool {
        FileStamp::of(&self.path) != *self
    }
}

/// Returns how the certificate and key files look now.
pub fn stamps(files: &TlsFiles) -> Vec<FileStamp> {
    vec![FileStamp::of(&files.cert), FileStamp::of(&files.key)]
}

/// Reads `files` into a server configuration offering `h2` and
/// `http/1.1`, or says which file is wrong and how.
pub fn load(files: &TlsFiles) -> Result<LoadedTls, TlsError> {
    // Stamped before reading: a file rewritten meanwhile looks changed at
    // the next look and is read again.
    let stamps = stamps(files);
    let (chain, key, provider) = read_pair(files)?;
    let refused = |e: rustls::Error| TlsError::Refused {
        cert: files.cert.clone(),
        key: files.key.clone(),
        detail: e.to_string(),
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(refused)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(refused)?;
    config.alpn_protocols = vec![ALPN_H2.to_vec(), ALPN_HTTP1.to_vec()];
    Ok(LoadedTls {
        config: Arc::new(config),
        stamps,
    })
}

/// A certificate chain and its private key read from `files`, checked
/// to belong together, with the crypto provider (ring) they were checked
/// with; each refusal names the file at fault. Any server of the tree
/// that is given PEM files reads them here.
#[allow(clippy::type_complexity)]
pub fn read_pair(
    files: &TlsFiles,
) -> Result<
    (
        Vec<CertificateDer<'static>>,
        PrivateKeyDer<'static>,
        Arc<CryptoProvider>,
    ),
    TlsError,
> {
    let cert_pem = read("certificate", &files.cert)?;
    let key_pem = read("key", &files.key)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| not_pem("certificate", &files.cert, e))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            file: files.cert.clone(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| match e {
        pem::Error::NoItemsFound => TlsError::NoKey {
            file: files.key.clone(),
        },
        e => not_pem("key", &files.key, e),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    check_pair(files, &provider, chain.clone(), key.clone_key())?;
    Ok((chain, key, provider))
}

/// Checks the key alone, then the certificate and whether the key is the
/// certificate's, so that each refusal names the file at fault (rustls
/// checks the same at once and says less).
fn check_pair(
    files: &TlsFiles,
    provider: &CryptoProvider,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<(), TlsError> {
    let signing_key =
        provider
            .key_provider
            .load_private_key(key)
            .map_err(|e| TlsError::BadKey {
                file: files.key.clone(),
                detail: e.to_string(),
            })?;
    match CertifiedKey::new(chain, signing_key).keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(()),
        Err(rustls::Error::InconsistentKeys(_)) => Err(TlsError::KeyMismatch {
            cert: files.cert.clone(),
            key: files.key.clone(),
        }),
        Err(e) => Err(TlsError::BadCertificate {
            file: files.cert.clone(),
            detail: e.to_string(),
        }),
    }
}

fn read(what: &'static str, file: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(file).map_err(|source| TlsError::Read {
        what,
        file: file.to_path_buf(),
        source,
    })
}

fn not_pem(what: &'static str, file: &Path, e: pem::Error) -> TlsError {
    TlsError::NotPem {
        what,
        file: file.to_path_buf(),
        detail: e.to_string(),
    }
}
