//! TLS for tests: self-signed certificates made on the spot (rcgen, on
//! ring like the balancer) and written as PEM files, and an HTTPS client
//! that trusts exactly the certificates it is given, offers the ALPN
//! protocols it is told to, and says which certificate the server showed.

use anyhow::{bail, Context};
use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode, Version};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// The name test certificates are issued for and clients ask for.
pub const SERVER_NAME: &str = "localhost";

/// How long a test waits for a connection, a handshake or an answer.
const TIMEOUT: Duration = Duration::from_secs(10);

/// A self-signed certificate for [`SERVER_NAME`] and its private key.
pub struct TestCert {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: CertificateDer<'static>,
}

impl TestCert {
    /// Makes a new certificate with a new key.
    pub fn generate() -> TestCert {
        let made = rcgen::generate_simple_self_signed(vec![SERVER_NAME.to_string()])
            .expect("rcgen makes a self-signed certificate");
        TestCert {
            cert_pem: made.cert.pem(),
            key_pem: made.signing_key.serialize_pem(),
            der: made.cert.der().clone(),
        }
    }

    /// Writes the certificate and the key as `NAME.crt` and `NAME.key` in
    /// `dir`, replacing what was there, and returns their paths.
    pub fn write(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let (cert, key) = (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&cert, &self.cert_pem).expect("write the certificate file");
        std::fs::write(&key, &self.key_pem).expect("write the key file");
        (cert, key)
    }
}

/// A CA of a test's own (an operator's "bring your own CA"): it signs
/// server certificates for the names it is given.
pub struct TestCa {
    pub cert_pem: String,
    pub key_pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl TestCa {
    /// Makes a new CA with a new key.
    pub fn generate() -> TestCa {
        let key = rcgen::KeyPair::generate().expect("rcgen makes a key");
        let mut params = rcgen::CertificateParams::default();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "test CA");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).expect("rcgen signs the CA");
        TestCa {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// The CA of these PEM texts (a controller's `ca.pem` and `ca.key`).
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> anyhow::Result<TestCa> {
        let key = rcgen::KeyPair::from_pem(key_pem).context("the CA key is not PEM")?;
        let issuer = rcgen::Issuer::from_ca_cert_pem(cert_pem, key)
            .context("the CA certificate is not PEM")?;
        let key_pem = key_pem.to_string();
        Ok(TestCa {
            cert_pem: cert_pem.to_string(),
            key_pem,
            issuer,
        })
    }

    /// A client certificate whose common name is `name` (such as
    /// `dure:controller`), signed by this CA, with a new key.
    pub fn issue_client(&self, name: &str) -> TestCert {
        let key = rcgen::KeyPair::generate().expect("rcgen makes a key");
        let mut params = rcgen::CertificateParams::default();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("rcgen signs the certificate");
        TestCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }

    /// A server certificate for `names` signed by this CA, with a new key.
    pub fn issue(&self, names: &[&str]) -> TestCert {
        let key = rcgen::KeyPair::generate().expect("rcgen makes a key");
        let params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("valid names");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("rcgen signs the certificate");
        TestCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }

    /// Writes the CA's certificate and key as `NAME.crt` and `NAME.key`
    /// in `dir` and returns their paths.
    pub fn write(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let (cert, key) = (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&cert, &self.cert_pem).expect("write the CA certificate");
        std::fs::write(&key, &self.key_pem).expect("write the CA key");
        (cert, key)
    }
}

/// A client that trusts the given certificates only.
#[derive(Clone)]
pub struct HttpsClient {
    connector: TlsConnector,
}

/// One HTTPS connection: what the handshake agreed and a way to send
/// requests on it (kept alive between them).
pub struct HttpsConnection {
    /// The ALPN protocol agreed, if any.
    pub alpn: Option<Vec<u8>>,
    /// The certificate the server showed.
    pub peer_cert: CertificateDer<'static>,
    sender: Sender,
}

enum Sender {
    Http1(hyper::client::conn::http1::SendRequest<Empty<Bytes>>),
    Http2(hyper::client::conn::http2::SendRequest<Empty<Bytes>>),
}

/// A response, its body read whole.
#[derive(Debug)]
pub struct HttpsResponse {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: String,
}

impl HttpsClient {
    /// Returns a client trusting `certs`, offering `alpn` (nothing when
    /// empty).
    pub fn new(certs: &[&TestCert], alpn: &[&[u8]]) -> HttpsClient {
        let mut roots = RootCertStore::empty();
        for cert in certs {
            roots
                .add(cert.der.clone())
                .expect("a generated certificate is a valid root");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        HttpsClient {
            connector: TlsConnector::from(Arc::new(config)),
        }
    }

    /// Opens a TLS connection to `addr` (bounded) and returns the stream.
    pub async fn handshake(&self, addr: SocketAddr) -> anyhow::Result<TlsStream<TcpStream>> {
        let tcp = tokio::time::timeout(TIMEOUT, TcpStream::connect(addr))
            .await
            .with_context(|| format!("connecting to {addr} timed out"))?
            .with_context(|| format!("cannot connect to {addr}"))?;
        let name = ServerName::try_from(SERVER_NAME).expect("a valid server name");
        let stream = tokio::time::timeout(TIMEOUT, self.connector.connect(name, tcp))
            .await
            .with_context(|| format!("the TLS handshake with {addr} timed out"))?
            .with_context(|| format!("the TLS handshake with {addr} failed"))?;
        Ok(stream)
    }

    /// Opens a connection to `addr` and speaks the protocol ALPN agreed
    /// on it: HTTP/2 for `h2`, else HTTP/1.1.
    pub async fn connect(&self, addr: SocketAddr) -> anyhow::Result<HttpsConnection> {
        let stream = self.handshake(addr).await?;
        let session = stream.get_ref().1;
        let alpn = session.alpn_protocol().map(<[u8]>::to_vec);
        let peer_cert = session
            .peer_certificates()
            .and_then(|chain| chain.first())
            .context("the server showed no certificate")?
            .clone()
            .into_owned();
        let io = TokioIo::new(stream);
        let sender = if alpn.as_deref() == Some(b"h2") {
            let (sender, connection) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                    .await
                    .context("the HTTP/2 handshake failed")?;
            tokio::spawn(connection);
            Sender::Http2(sender)
        } else {
            let (sender, connection) = hyper::client::conn::http1::handshake(io)
                .await
                .context("the HTTP/1.1 handshake failed")?;
            tokio::spawn(connection);
            Sender::Http1(sender)
        };
        Ok(HttpsConnection {
            alpn,
            peer_cert,
            sender,
        })
    }
}

impl HttpsConnection {
    /// Sends `GET path` naming `host` and reads the answer whole (bounded).
    pub async fn get(&mut self, host: &str, path: &str) -> anyhow::Result<HttpsResponse> {
        let exchange = async {
            let response = match &mut self.sender {
                Sender::Http1(sender) => {
                    let request = Request::get(path)
                        .header(http::header::HOST, host)
                        .body(Empty::new())?;
                    sender.ready().await?;
                    sender.send_request(request).await?
                }
                Sender::Http2(sender) => {
                    // HTTP/2 names the host in the URI's authority.
                    let request = Request::get(format!("https://{host}{path}"))
                        .version(Version::HTTP_2)
                        .body(Empty::new())?;
                    sender.ready().await?;
                    sender.send_request(request).await?
                }
            };
            let (parts, body) = response.into_parts();
            let body = body.collect().await?.to_bytes();
            anyhow::Ok(HttpsResponse {
                status: parts.status,
                version: parts.version,
                headers: parts.headers,
                body: String::from_utf8_lossy(&body).into_owned(),
            })
        };
        match tokio::time::timeout(TIMEOUT, exchange).await {
            Ok(answer) => answer,
            Err(_) => bail!("no answer to GET {path} within {TIMEOUT:?}"),
        }
    }
}
