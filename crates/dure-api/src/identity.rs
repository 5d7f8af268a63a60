//! Who a certificate of the domain CA names, and the certificate a role
//! shows: node certificates name `node:NAME` and the controller's client
//! certificate `dure:controller` in their common name (no host names, so
//! neither can pass for the controller's server certificate); an
//! [`Identity`] is a certificate and key that can be replaced while
//! connections use it (renewal), as a client or a server certificate; and
//! [`NodeEndpointVerifier`] accepts an agent's endpoint by the node its
//! certificate names rather than by the address it was reached at.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::{ClientHello, ParsedCertificate, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::sync::{Arc, RwLock};

/// What a node certificate's common name starts with: `node:web-host-1`.
pub const NODE_PREFIX: &str = "node:";
/// The common name of the controller's client certificate, which agents'
/// endpoints accept.
pub const CONTROLLER_NAME: &str = "dure:controller";

/// Who a certificate of the domain CA is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertIdentity {
    Node(String),
    Controller,
}

impl CertIdentity {
    /// The common name a certificate for this identity carries.
    pub fn common_name(&self) -> String {
        match self {
            CertIdentity::Node(node) => format!("{NODE_PREFIX}{node}"),
            CertIdentity::Controller => CONTROLLER_NAME.to_string(),
        }
    }
}

/// The identity a DER certificate names in its common name, if it names
/// one. Says nothing about who signed it: callers verify the chain first.
pub fn cert_identity(der: &[u8]) -> Option<CertIdentity> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let name = cert.subject().iter_common_name().next()?.as_str().ok()?;
    if name == CONTROLLER_NAME {
        return Some(CertIdentity::Controller);
    }
    let node = name.strip_prefix(NODE_PREFIX)?;
    (!node.is_empty()).then(|| CertIdentity::Node(node.to_string()))
}

/// When a DER certificate stops being valid, in Unix milliseconds.
pub fn not_after_ms(der: &[u8]) -> Option<u64> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    u64::try_from(cert.validity().not_after.timestamp())
        .ok()
        .map(|s| s.saturating_mul(1000))
}

/// When a DER certificate starts being valid, in Unix milliseconds.
pub fn not_before_ms(der: &[u8]) -> Option<u64> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    u64::try_from(cert.validity().not_before.timestamp())
        .ok()
        .map(|s| s.saturating_mul(1000))
}

/// The first certificate of a PEM chain, as DER.
pub fn first_cert_der(chain_pem: &[u8]) -> Option<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(chain_pem).next()?.ok()
}

/// A certificate chain and its key that can be replaced while in use: new
/// handshakes show the newest, connections made before keep theirs.
#[derive(Debug)]
pub struct Identity {
    current: RwLock<Arc<CertifiedKey>>,
}

impl Identity {
    /// An identity from a PEM chain (own certificate first) and PEM key.
    pub fn from_pem(chain_pem: &[u8], key_pem: &[u8]) -> Result<Arc<Identity>, String> {
        Ok(Arc::new(Identity {
            current: RwLock::new(certified(chain_pem, key_pem)?),
        }))
    }

    /// An identity from a parsed chain and key.
    pub fn new(
        chain: Vec<CertificateDer<'static>>,
        key: &PrivateKeyDer<'_>,
    ) -> Result<Arc<Identity>, String> {
        let key = rustls::crypto::ring::sign::any_supported_type(key)
            .map_err(|e| format!("the key cannot sign: {e}"))?;
        Ok(Arc::new(Identity {
            current: RwLock::new(Arc::new(CertifiedKey::new(chain, key))),
        }))
    }

    /// Shows `chain_pem` with `key_pem` from the next handshake on.
    pub fn replace(&self, chain_pem: &[u8], key_pem: &[u8]) -> Result<(), String> {
        let next = certified(chain_pem, key_pem)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = next;
        Ok(())
    }

    fn get(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

fn certified(chain_pem: &[u8], key_pem: &[u8]) -> Result<Arc<CertifiedKey>, String> {
    let chain = CertificateDer::pem_slice_iter(chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("the certificate is not PEM: {e}"))?;
    if chain.is_empty() {
        return Err("no certificate in the PEM text".into());
    }
    let key =
        PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| format!("the key is not PEM: {e}"))?;
    let key = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| format!("the key cannot sign: {e}"))?;
    Ok(Arc::new(CertifiedKey::new(chain, key)))
}

impl ResolvesClientCert for Identity {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

impl ResolvesServerCert for Identity {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }
}

/// Verifies an agent's endpoint: a chain to the domain CA whose end
/// certificate names `node:NODE`. The address it was reached at is not
/// checked: the agent's address is whatever it advertised, and what
/// matters is that the node's key answers.
#[derive(Debug)]
pub struct NodeEndpointVerifier {
    roots: Arc<RootCertStore>,
    node: String,
    provider: Arc<CryptoProvider>,
}

impl NodeEndpointVerifier {
    pub fn new(roots: Arc<RootCertStore>, node: &str) -> NodeEndpointVerifier {
        NodeEndpointVerifier {
            roots,
            node: node.to_string(),
            provider: Arc::new(rustls::crypto::ring::default_provider()),
        }
    }
}

impl ServerCertVerifier for NodeEndpointVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        match cert_identity(end_entity.as_ref()) {
            Some(CertIdentity::Node(node)) if node == self.node => {
                Ok(ServerCertVerified::assertion())
            }
            _ => Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName,
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
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
        rustls::crypto::verify_tls13_signature(
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
