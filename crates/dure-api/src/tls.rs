//! What a client trusts when it speaks HTTPS to a Dure endpoint: the
//! domain's CA certificate (a PEM file, never the system's roots), and
//! optionally a client certificate to show (an agent's node
//! certificate). Also turns a failed handshake into one sentence saying
//! what to check, instead of the transport's chain of errors.

use crate::identity::{Identity, NodeEndpointVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{CertificateError, ClientConfig, RootCertStore};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The file the controller writes its CA certificate to, in its data
/// directory; clients on that host read it from there by default.
pub const CA_FILE: &str = "ca.pem";

/// Why a CA or client certificate cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("cannot read the CA file {}: {reason} ({hint})", file.display())]
    Read {
        file: PathBuf,
        reason: String,
        hint: &'static str,
    },
    #[error("the CA file {} holds no PEM `CERTIFICATE` block ({hint})", file.display())]
    NoCertificate { file: PathBuf, hint: &'static str },
    #[error("the CA file {} holds an invalid certificate: {detail}", file.display())]
    BadCertificate { file: PathBuf, detail: String },
    #[error("the client certificate or key is unusable: {0}")]
    Identity(String),
}

/// What to say after a CA file that cannot be read.
const CA_HINT: &str = "give the domain's CA with --ca FILE or DURE_CA; the controller writes it to ca.pem in its data directory";

/// The trust of an HTTPS client: the CA it accepts server certificates
/// from, where that CA came from (said when a server is refused), and the
/// rustls configuration built from them.
#[derive(Clone)]
pub struct ClientTls {
    config: Arc<ClientConfig>,
    ca: String,
    roots: Arc<RootCertStore>,
    /// The client certificate shown, if any.
    identity: Option<Arc<Identity>>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls").field("ca", &self.ca).finish()
    }
}

impl ClientTls {
    /// Trusts the certificates of the PEM file `path`.
    pub fn from_ca_file(path: &Path) -> Result<ClientTls, TrustError> {
        let pem = std::fs::read(path).map_err(|e| TrustError::Read {
            file: path.to_path_buf(),
            reason: e.to_string().to_lowercase(),
            hint: CA_HINT,
        })?;
        ClientTls::from_ca_pem(&pem, path)
    }

    /// Trusts the certificates of `pem`, read from `path` (named in errors).
    pub fn from_ca_pem(pem: &[u8], path: &Path) -> Result<ClientTls, TrustError> {
        let certs = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TrustError::BadCertificate {
                file: path.to_path_buf(),
                detail: e.to_string(),
            })?;
        if certs.is_empty() {
            return Err(TrustError::NoCertificate {
                file: path.to_path_buf(),
                hint: CA_HINT,
            });
        }
        let mut roots = RootCertStore::empty();
        for cert in certs {
            roots.add(cert).map_err(|e| TrustError::BadCertificate {
                file: path.to_path_buf(),
                detail: e.to_string(),
            })?;
        }
        let roots = Arc::new(roots);
        let config = builder()
            .with_root_certificates(roots.clone())
            .with_no_client_auth();
        Ok(ClientTls {
            config: Arc::new(config),
            ca: path.display().to_string(),
            roots,
            identity: None,
        })
    }

    /// The same trust, showing `chain` (PEM, own certificate first) signed
    /// by `key` (PEM) to servers that ask for a client certificate.
    pub fn with_identity(&self, chain_pem: &[u8], key_pem: &[u8]) -> Result<ClientTls, TrustError> {
        let identity = Identity::from_pem(chain_pem, key_pem).map_err(TrustError::Identity)?;
        Ok(self.with_shared_identity(identity))
    }

    /// The same trust, showing `identity`'s certificate, whichever it holds
    /// when a connection is made (it follows renewals).
    pub fn with_shared_identity(&self, identity: Arc<Identity>) -> ClientTls {
        let config = builder()
            .with_root_certificates(self.roots.clone())
            .with_client_cert_resolver(identity.clone());
        ClientTls {
            config: Arc::new(config),
            ca: self.ca.clone(),
            roots: self.roots.clone(),
            identity: Some(identity),
        }
    }

    /// The trust for the endpoint of node `node`'s agent: a certificate of
    /// the same CA naming `node:NODE`, wherever the agent was reached;
    /// with this trust's client certificate, if any.
    pub fn for_node(&self, node: &str) -> ClientTls {
        let verifier = Arc::new(NodeEndpointVerifier::new(self.roots.clone(), node));
        let builder = builder()
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let config = match &self.identity {
            Some(identity) => builder.with_client_cert_resolver(identity.clone()),
            None => builder.with_no_client_auth(),
        };
        ClientTls {
            config: Arc::new(config),
            ca: self.ca.clone(),
            roots: self.roots.clone(),
            identity: self.identity.clone(),
        }
    }

    /// The CA certificates trusted, for servers verifying clients under
    /// the same CA.
    pub fn roots(&self) -> Arc<RootCertStore> {
        self.roots.clone()
    }

    /// A configuration that trusts no server certificate: what a client
    /// given no CA uses, so HTTPS fails with a clear "no CA" rather than
    /// trusting anyone.
    pub(crate) fn untrusting() -> ClientConfig {
        builder()
            .with_root_certificates(RootCertStore::empty())
            .with_no_client_auth()
    }

    /// Where the trusted CA came from.
    pub fn ca(&self) -> &str {
        &self.ca
    }

    /// The rustls configuration, for clients other than [`crate::Client`].
    pub fn config(&self) -> Arc<ClientConfig> {
        self.config.clone()
    }
}

/// A client configuration on ring, the one crypto backend of the tree.
fn builder() -> rustls::ConfigBuilder<ClientConfig, rustls::WantsVerifier> {
    ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
}

/// Says what a failed TLS handshake somewhere in `error`'s chain means
/// for the operator, or `None` when the failure was not TLS. `ca` is
/// where the trusted CA came from (`None`: no CA was given).
pub fn explain_handshake(
    error: &(dyn std::error::Error + 'static),
    ca: Option<&str>,
) -> Option<String> {
    let tls = rustls_error(error)?;
    let trusted = match ca {
        Some(ca) => format!("the CA in {ca}"),
        None => "no CA (none was given)".to_string(),
    };
    let fix = "give the domain's CA with --ca FILE or DURE_CA (the controller writes it to ca.pem in its data directory)";
    Some(match tls {
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)
        | rustls::Error::InvalidCertificate(CertificateError::BadSignature) => format!(
            "the server's certificate is not signed by {trusted}: it belongs to another CA or domain; {fix}"
        ),
        rustls::Error::InvalidCertificate(CertificateError::NotValidForName)
        | rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext { .. }) => {
            "the server's certificate does not name the address used: use the name or address the controller was started with (--advertise), or add it there".to_string()
        }
        rustls::Error::InvalidCertificate(CertificateError::Expired)
        | rustls::Error::InvalidCertificate(CertificateError::ExpiredContext { .. }) => {
            "the server's certificate has expired: restart the controller to issue a new one, or renew the certificate it was given".to_string()
        }
        rustls::Error::InvalidCertificate(other) => {
            format!("the server's certificate is refused ({other:?}) under {trusted}; {fix}")
        }
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
            "the server did not answer TLS: is it plain HTTP (started with --insecure-http)? then use an http:// address".to_string()
        }
        rustls::Error::AlertReceived(alert) => format!(
            "the server refused the TLS handshake ({alert:?}): it may want a client certificate this caller does not have"
        ),
        other => format!("the TLS handshake failed: {other}"),
    })
}

/// The rustls error in `error`'s chain, also inside an `io::Error`
/// (whose `source` skips the error it wraps), however deep.
fn rustls_error<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(found) = e.downcast_ref::<rustls::Error>() {
            return Some(found);
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if let Some(found) = io.get_ref().and_then(|i| rustls_error(i)) {
                return Some(found);
            }
        }
        next = e.source();
    }
    None
}
