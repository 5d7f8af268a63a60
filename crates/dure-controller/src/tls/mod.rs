//! TLS of the controller's API: which CA and server certificate it serves
//! with (the built-in domain CA in `ca`, or the operator's files), the
//! rule that plain HTTP is only for loopback, and the listener that runs
//! each connection's handshake in its own task before axum serves it,
//! handing the handler the caller's address and client certificate.

pub mod ca;

pub use dure_api::tls_listener::{Peer, TlsListener};

use anyhow::Context;
use ca::Ca;
use dure_lb::TlsFiles;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{RootCertStore, ServerConfig};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How the controller's API is secured.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSettings {
    /// Serve plain HTTP; refused unless the API listens on loopback.
    pub insecure_http: bool,
    /// Host names and addresses clients reach the controller by, written
    /// into its certificate beside `localhost`, `127.0.0.1`, `::1` and the
    /// listen address.
    pub names: Vec<String>,
    /// The operator's CA (certificate and key) instead of the built-in one.
    pub ca_cert: Option<PathBuf>,
    pub ca_key: Option<PathBuf>,
    /// The operator's server certificate (chain) and key instead of one the
    /// CA issues at start; `ca_cert` must then say which CA clients trust.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// How long the node certificates the CA issues agents are valid
    /// (`None`: [`ca::NODE_VALIDITY`]); agents renew at two thirds.
    pub node_cert_lifetime: Option<Duration>,
}

/// What the API is served with: TLS, or plain HTTP on loopback.
pub enum ServerTls {
    Tls {
        config: Arc<ServerConfig>,
        /// The CA that signs, when its key is at hand.
        ca: Option<Arc<Ca>>,
        /// The CA certificate clients trust, in the data directory.
        ca_file: PathBuf,
        /// How the controller calls agents' endpoints: its client
        /// certificate under the CA; `None` without the CA's key.
        agent_client: Option<dure_api::ClientTls>,
    },
    InsecureHttp,
}

impl TlsSettings {
    /// Refuses settings that cannot work, before anything is written.
    pub fn check(&self, listen: SocketAddr) -> anyhow::Result<()> {
        if self.insecure_http {
            anyhow::ensure!(
                listen.ip().is_loopback(),
                "plain HTTP (--insecure-http) is only allowed on a loopback address, and {listen} is not one: anyone on the network could read the tokens; drop --insecure-http to serve HTTPS, or listen on 127.0.0.1"
            );
            anyhow::ensure!(
                self.ca_cert.is_none() && self.cert.is_none(),
                "--insecure-http cannot be given with TLS files (--tls-ca-cert, --tls-cert): choose one"
            );
        }
        anyhow::ensure!(
            self.cert.is_some() == self.key.is_some(),
            "the server certificate and its key go together: give both --tls-cert and --tls-key, or neither"
        );
        anyhow::ensure!(
            self.cert.is_some() || self.ca_cert.is_some() == self.ca_key.is_some(),
            "the CA certificate and its key go together: give both --tls-ca-cert and --tls-ca-key, or neither (the built-in CA is used then)"
        );
        anyhow::ensure!(
            self.cert.is_none() || self.ca_cert.is_some(),
            "with your own server certificate (--tls-cert), say which CA clients trust with --tls-ca-cert FILE"
        );
        Ok(())
    }

    /// The names the server certificate is issued for.
    fn cert_names(&self, listen: SocketAddr) -> Vec<String> {
        let mut names: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
        if !listen.ip().is_unspecified() {
            names.push(listen.ip().to_string());
        }
        if listen.ip().is_unspecified() {
            // Reached through any of the host's names; its own is the likeliest.
            if let Ok(host) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
                names.push(host.trim().to_string());
            }
        }
        names.extend(self.names.iter().cloned());
        names.retain(|n| !n.is_empty());
        names.sort();
        names.dedup();
        names
    }

    /// Loads or creates the CA and the server certificate.
    pub fn prepare(&self, data_dir: &Path, listen: SocketAddr) -> anyhow::Result<ServerTls> {
        self.check(listen)?;
        if self.insecure_http {
            return Ok(ServerTls::InsecureHttp);
        }
        let ca = match (&self.ca_cert, &self.ca_key) {
            (Some(cert), Some(key)) => {
                let ca = Ca::from_files(cert, key)?;
                ca::publish(data_dir, &ca.cert_pem)?;
                Some(ca)
            }
            (Some(cert), None) => {
                let pem = std::fs::read_to_string(cert).with_context(|| {
                    format!("cannot read the CA certificate file {}", cert.display())
                })?;
                ca::publish(data_dir, &pem)?;
                None
            }
            _ => Some(Ca::load_or_create(data_dir)?),
        };
        let ca_file = data_dir.join(ca::CA_CERT_FILE);
        let (chain, key) = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                let (chain, key, _) = dure_lb::read_tls_pair(&TlsFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                })?;
                (chain, key)
            }
            _ => {
                let issued = ca
                    .as_ref()
                    .context("no CA key to issue the server certificate with: give --tls-ca-key, or your own --tls-cert and --tls-key")?
                    .issue_server(&self.cert_names(listen))?;
                (
                    CertificateDer::pem_slice_iter(issued.cert_pem.as_bytes())
                        .collect::<Result<Vec<_>, _>>()
                        .context("the issued certificate is not PEM")?,
                    rustls::pki_types::PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes())
                        .context("the issued key is not PEM")?,
                )
            }
        };
        let roots = Arc::new(read_roots(&ca_file)?);
        let identity = dure_api::identity::Identity::new(chain, &key)
            .map_err(|e| anyhow::anyhow!("the server certificate and key are refused: {e}"))?;
        let config = dure_api::tls_listener::server_config(roots.clone(), identity)
            .context("the server certificate and key are refused")?;
        // The controller's own client certificate, for agents' endpoints
        // (server logs): issued at every start, like the server's.
        let agent_client = match &ca {
            Some(ca) => {
                let issued = ca.issue_controller_client()?;
                let tls = dure_api::ClientTls::from_ca_file(&ca_file)?;
                Some(tls.with_identity(issued.cert_pem.as_bytes(), issued.key_pem.as_bytes())?)
            }
            None => None,
        };
        Ok(ServerTls::Tls {
            config: Arc::new(config),
            ca: ca.map(Arc::new),
            ca_file,
            agent_client,
        })
    }
}

fn read_roots(ca_file: &Path) -> anyhow::Result<RootCertStore> {
    let pem = std::fs::read(ca_file)
        .with_context(|| format!("cannot read the CA certificate {}", ca_file.display()))?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.with_context(|| format!("{} is not PEM", ca_file.display()))?;
        roots
            .add(cert)
            .with_context(|| format!("{} holds an unusable CA certificate", ca_file.display()))?;
    }
    anyhow::ensure!(
        !roots.is_empty(),
        "{} holds no CA certificate",
        ca_file.display()
    );
    Ok(roots)
}
