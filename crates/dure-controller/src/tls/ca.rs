//! The domain CA: created at the controller's first start in its data
//! directory (`ca.pem`, and `ca.key` with mode 0600), or the operator's
//! own CA given as files; it issues the controller's server certificate
//! and its client certificate (for agents' endpoints) at every start, and
//! node certificates from agents' certificate requests.

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The CA certificate in the data directory: what every client of this
/// controller trusts.
pub const CA_CERT_FILE: &str = dure_api::CA_FILE;
/// The CA's private key in the data directory (mode 0600).
pub const CA_KEY_FILE: &str = "ca.key";

/// How long the built-in CA is valid.
const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// How long the controller's server certificate is valid; a new one is
/// issued at every start.
const SERVER_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
/// How long a node certificate is valid unless the controller is told
/// otherwise (`--node-cert-lifetime`); agents renew at two thirds.
pub const NODE_VALIDITY: Duration = Duration::from_secs(30 * 24 * 3600);
/// How far back a certificate is valid from, for clocks a little behind.
const BACKDATE: Duration = Duration::from_secs(3600);

/// A CA that can sign: its certificate (PEM) and its key.
pub struct Ca {
    pub cert_pem: String,
    key_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A CA's certificate and key as PEM: what a domain pack with secrets
/// carries, so a restored controller keeps the CA its agents trust.
#[derive(Clone, PartialEq, Eq)]
pub struct CaPem {
    pub cert: String,
    pub key: String,
}

impl std::fmt::Debug for CaPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaPem").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").finish_non_exhaustive()
    }
}

/// A certificate and its key, both PEM.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Ca {
    /// Loads the built-in CA from `data_dir`, creating it on first start.
    pub fn load_or_create(data_dir: &Path) -> anyhow::Result<Ca> {
        let (cert, key) = (data_dir.join(CA_CERT_FILE), data_dir.join(CA_KEY_FILE));
        if key.exists() {
            return Ca::from_files(&cert, &key);
        }
        let created = Ca::generate()?;
        created.write(data_dir)?;
        Ok(created)
    }

    /// Writes the CA into `dir` as the built-in one (`ca.pem`, `ca.key`).
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        let (cert, key) = (dir.join(CA_CERT_FILE), dir.join(CA_KEY_FILE));
        // The key first and only if it is new, then the certificate: a
        // crash between them leaves a key without a certificate, which the
        // next start refuses with a clear error rather than mixing CAs.
        crate::fsutil::write_new(&key, self.key_pem.as_bytes(), 0o600)
            .with_context(|| format!("cannot create {}", key.display()))?;
        crate::fsutil::write_atomically(&cert, self.cert_pem.as_bytes(), 0o644)
            .with_context(|| format!("cannot write {}", cert.display()))
    }

    /// The certificate and key as PEM.
    pub fn pem(&self) -> CaPem {
        CaPem {
            cert: self.cert_pem.clone(),
            key: self.key_pem.clone(),
        }
    }

    /// A new CA with a new key, named after nothing but the domain.
    fn generate() -> anyhow::Result<Ca> {
        let key = KeyPair::generate().context("cannot make the CA key")?;
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, "Dure domain CA");
        name.push(DnType::OrganizationName, "Dure");
        params.distinguished_name = name;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        set_validity(&mut params, CA_VALIDITY);
        let cert = params
            .self_signed(&key)
            .context("cannot sign the CA certificate")?;
        Ok(Ca {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// The operator's CA: its certificate and key as PEM files.
    pub fn from_files(cert: &Path, key: &Path) -> anyhow::Result<Ca> {
        let pem = CaPem {
            cert: read(cert, "CA certificate")?,
            key: read(key, "CA key")?,
        };
        Ca::from_pem(
            &pem,
            &cert.display().to_string(),
            &key.display().to_string(),
        )
    }

    /// A CA from its PEM texts; `cert_from` and `key_from` say where they
    /// came from in errors.
    pub fn from_pem(pem: &CaPem, cert_from: &str, key_from: &str) -> anyhow::Result<Ca> {
        let key = KeyPair::from_pem(&pem.key)
            .map_err(|e| anyhow::anyhow!("the CA key {key_from} holds no usable key: {e}"))?;
        let issuer = Issuer::from_ca_cert_pem(&pem.cert, key).map_err(|e| {
            anyhow::anyhow!("the CA certificate {cert_from} holds no usable certificate: {e}")
        })?;
        Ok(Ca {
            cert_pem: pem.cert.clone(),
            key_pem: pem.key.clone(),
            issuer,
        })
    }

    /// A server certificate for `names` (host names and IP addresses) with
    /// a new key.
    pub fn issue_server(&self, names: &[String]) -> anyhow::Result<Issued> {
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, "dure controller");
        params.distinguished_name = name;
        params.subject_alt_names = names
            .iter()
            .map(|n| match n.parse::<IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => n
                    .as_str()
                    .try_into()
                    .map(SanType::DnsName)
                    .map_err(|e| anyhow::anyhow!("`{n}` cannot be a certificate name: {e}")),
            })
            .collect::<anyhow::Result<_>>()?;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        set_validity(&mut params, SERVER_VALIDITY);
        let key = KeyPair::generate().context("cannot make the server key")?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .context("cannot sign the server certificate")?;
        Ok(Issued {
            cert_pem: format!("{}{}", cert.pem(), self.cert_pem),
            key_pem: key.serialize_pem(),
        })
    }
}

impl Ca {
    /// A certificate for node `node` from the agent's certificate request
    /// (PEM), valid for `validity`: whatever the request asks, it names
    /// `node:NODE` and nothing else and is good for client and server
    /// authentication, so it can neither pass for another node nor for
    /// the controller. Only the request's key is taken from it, once its
    /// signature shows the agent holds that key.
    pub fn issue_node(
        &self,
        csr_pem: &str,
        node: &str,
        validity: Duration,
    ) -> Result<String, String> {
        let request = CertificateSigningRequestParams::from_pem(csr_pem).map_err(|e| {
            format!("the certificate request is not a valid PEM `CERTIFICATE REQUEST`: {e}")
        })?;
        let mut params = CertificateParams::default();
        params.distinguished_name =
            common_name(&dure_api::identity::CertIdentity::Node(node.to_string()).common_name());
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ClientAuth,
            ExtendedKeyUsagePurpose::ServerAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        set_short_validity(&mut params, validity);
        let signed = CertificateSigningRequestParams {
            params,
            public_key: request.public_key,
        }
        .signed_by(&self.issuer)
        .map_err(|e| format!("cannot sign the node certificate: {e}"))?;
        Ok(format!("{}{}", signed.pem(), self.cert_pem))
    }

    /// The controller's client certificate (`dure:controller`), which
    /// agents' endpoints accept, with a new key.
    pub fn issue_controller_client(&self) -> anyhow::Result<Issued> {
        let mut params = CertificateParams::default();
        params.distinguished_name =
            common_name(&dure_api::identity::CertIdentity::Controller.common_name());
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        set_validity(&mut params, SERVER_VALIDITY);
        let key = KeyPair::generate().context("cannot make the controller's client key")?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .context("cannot sign the controller's client certificate")?;
        Ok(Issued {
            cert_pem: format!("{}{}", cert.pem(), self.cert_pem),
            key_pem: key.serialize_pem(),
        })
    }
}

fn common_name(name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    dn
}

/// Valid from a little before now for `validity`, backdated by at most a
/// tenth of it: a certificate meant to live seconds (a renewal test) must
/// not be mostly in the past.
fn set_short_validity(params: &mut CertificateParams, validity: Duration) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - BACKDATE.min(validity / 10);
    params.not_after = now + validity;
}

/// Valid from a little before now for `validity`.
fn set_validity(params: &mut CertificateParams, validity: Duration) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - BACKDATE;
    params.not_after = now + validity;
}

fn read(path: &Path, what: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the {what} file {}", path.display()))
}

/// Where a CA given by the operator is written for the clients of this
/// host: `<data>/ca.pem`, like the built-in one.
pub fn publish(data_dir: &Path, cert_pem: &str) -> anyhow::Result<PathBuf> {
    let path = data_dir.join(CA_CERT_FILE);
    crate::fsutil::write_atomically(&path, cert_pem.as_bytes(), 0o644)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dure_api::identity::{cert_identity, first_cert_der, not_after_ms, CertIdentity};

    #[test]
    fn a_node_certificate_names_its_node_whatever_the_request_asks() {
        let ca = Ca::generate().expect("CA");
        let key = KeyPair::generate().expect("key");
        // A request asking to be the controller, for a host name.
        let mut params = CertificateParams::new(vec!["ctl-host".to_string()]).expect("params");
        params.distinguished_name = common_name(dure_api::identity::CONTROLLER_NAME);
        let csr = params
            .serialize_request(&key)
            .expect("csr")
            .pem()
            .expect("pem");
        let chain = ca
            .issue_node(&csr, "n1", Duration::from_secs(60))
            .expect("issued");
        let der = first_cert_der(chain.as_bytes()).expect("PEM");
        assert_eq!(
            cert_identity(der.as_ref()),
            Some(CertIdentity::Node("n1".into()))
        );
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).expect("x509");
        assert!(
            cert.subject_alternative_name().ok().flatten().is_none(),
            "no host names: it cannot pass for a server"
        );
        let end = not_after_ms(der.as_ref()).expect("validity");
        let now = u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp()).expect("now");
        assert!(end <= (now + 61) * 1000, "valid for the lifetime asked");
        assert!(chain.ends_with(&ca.cert_pem), "the CA follows");

        let err = ca
            .issue_node("not a request", "n1", Duration::from_secs(60))
            .expect_err("garbage");
        assert!(
            err.contains("not a valid PEM `CERTIFICATE REQUEST`"),
            "{err}"
        );
    }
}
