//! The node's key and certificate: what the agent is known by to the
//! controller (mutual TLS) and what its own endpoint serves with.
//!
//! At start the agent uses the certificate in its data directory
//! (`node.key`, `node.crt`, mode 0600) when it names this node and has
//! not expired; otherwise it joins: a new key, a certificate request, and
//! a one-time join token traded for the certificate at
//! `POST /v1/agent/join`. While it runs, [`Credentials::renew_forever`]
//! asks for a new certificate (with a new key) at two thirds of the
//! current one's lifetime, with the current one; the key and certificate
//! are replaced on disk and in [`Identity`], which new connections use.

use anyhow::Context;
use dure_api::identity::{
    cert_identity, first_cert_der, not_after_ms, not_before_ms, CertIdentity, Identity,
};
use dure_api::{Client, ClientError, ClientTls, JoinRequest, RenewRequest};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::layout::{self, Layout};

/// How long a join waits for an unreachable controller before giving up.
const JOIN_PATIENCE: Duration = Duration::from_secs(60);
/// How long after a failed renewal the next try comes, at most.
const RENEW_RETRY: Duration = Duration::from_secs(30);

/// The node's certificate and key in use.
#[derive(Debug)]
pub struct Credentials {
    node: String,
    layout: Layout,
    identity: Arc<Identity>,
    /// Validity of the certificate in use, Unix milliseconds.
    not_before_ms: AtomicU64,
    not_after_ms: AtomicU64,
}

impl Credentials {
    /// The certificate in the data directory if it is this node's and
    /// valid; else one obtained with `join_token` from `controller`.
    pub async fn obtain(
        layout: &Layout,
        node: &str,
        controller: &str,
        ca: &ClientTls,
        join_token: Option<&str>,
    ) -> anyhow::Result<Arc<Credentials>> {
        match Credentials::load(layout, node, now_ms())? {
            Some(loaded) => {
                if join_token.is_some() {
                    tracing::info!(
                        node,
                        "the agent has a valid node certificate; the join token is not used"
                    );
                }
                Ok(loaded)
            }
            None => {
                let token = join_token.with_context(|| {
                    format!(
                        "the agent of node `{node}` has no valid node certificate in {}: give it a join token \
                         (create one with `dure token create --join --node {node}`, then pass it with \
                         --join-token-file FILE or DURE_JOIN_TOKEN)",
                        layout.data_dir().display()
                    )
                })?;
                Credentials::join(layout, node, controller, ca, token).await
            }
        }
    }

    /// The certificate and key of the data directory, if both are there,
    /// name `node` and are valid at `now`. One naming another node is an
    /// error: the directory belongs to that node's agent.
    fn load(layout: &Layout, node: &str, now: u64) -> anyhow::Result<Option<Arc<Credentials>>> {
        let (Ok(cert), Ok(key)) = (
            std::fs::read(layout.node_cert()),
            std::fs::read(layout.node_key()),
        ) else {
            return Ok(None);
        };
        let Some(der) = first_cert_der(&cert) else {
            tracing::warn!(file = %layout.node_cert().display(), "node certificate unreadable; joining again");
            return Ok(None);
        };
        match cert_identity(der.as_ref()) {
            Some(CertIdentity::Node(named)) if named == node => {}
            other => anyhow::bail!(
                "the node certificate {} is for {}, not node `{node}`: this data directory belongs to another agent; give this one its own --data",
                layout.node_cert().display(),
                match other {
                    Some(CertIdentity::Node(n)) => format!("node `{n}`"),
                    _ => "no node".to_string(),
                }
            ),
        }
        let (Some(from), Some(until)) = (not_before_ms(der.as_ref()), not_after_ms(der.as_ref()))
        else {
            return Ok(None);
        };
        if until <= now {
            tracing::warn!(node, "the node certificate has expired; joining again");
            return Ok(None);
        }
        let identity = Identity::from_pem(&cert, &key).map_err(|e| {
            anyhow::anyhow!(
                "the node key {} or certificate is unusable: {e}",
                layout.node_key().display()
            )
        })?;
        Ok(Some(Arc::new(Credentials {
            node: node.to_string(),
            layout: layout.clone(),
            identity,
            not_before_ms: AtomicU64::new(from),
            not_after_ms: AtomicU64::new(until),
        })))
    }

    /// Joins: a new key, its certificate request and `token` for the node
    /// certificate; waits a while for an unreachable controller, never for
    /// one that refuses.
    async fn join(
        layout: &Layout,
        node: &str,
        controller: &str,
        ca: &ClientTls,
        token: &str,
    ) -> anyhow::Result<Arc<Credentials>> {
        let (key_pem, csr_pem) = new_key_and_request()?;
        let client = Client::with_tls(controller, token, Some(ca));
        let request = JoinRequest {
            node: node.to_string(),
            csr_pem,
        };
        let deadline = tokio::time::Instant::now() + JOIN_PATIENCE;
        let issued = loop {
            match client.join(&request).await {
                Ok(issued) => break issued,
                Err(e @ ClientError::Unreachable { .. })
                    if tokio::time::Instant::now() < deadline =>
                {
                    tracing::warn!(error = %e, "cannot reach the controller to join; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => {
                    return Err(anyhow::anyhow!(
                        "controller {controller} refused the join of node `{node}`: {e}"
                    ))
                }
            }
        };
        let credentials = Credentials::store(layout, node, &key_pem, &issued.cert_pem)?;
        tracing::info!(node, "joined: node certificate stored");
        Ok(credentials)
    }

    /// Writes a key and certificate to the data directory (the key first:
    /// a crash between them leaves a pair that does not match, which the
    /// next start cannot use and joins again for) and loads them.
    fn store(
        layout: &Layout,
        node: &str,
        key_pem: &str,
        cert_pem: &str,
    ) -> anyhow::Result<Arc<Credentials>> {
        write(layout, key_pem, cert_pem)?;
        Credentials::load(layout, node, now_ms())?
            .context("the controller's node certificate is not valid for this node")
    }

    /// What the agent shows the controller and its endpoint's callers.
    pub fn identity(&self) -> Arc<Identity> {
        self.identity.clone()
    }

    /// When the certificate in use stops being valid, Unix milliseconds.
    pub fn not_after_ms(&self) -> u64 {
        self.not_after_ms.load(Ordering::Relaxed)
    }

    /// How long from `now` until the certificate is renewed: two thirds
    /// into its lifetime.
    fn renew_in(&self, now: u64) -> Duration {
        let from = self.not_before_ms.load(Ordering::Relaxed);
        let until = self.not_after_ms();
        let at = from + until.saturating_sub(from) * 2 / 3;
        Duration::from_millis(at.saturating_sub(now))
    }

    /// Renews the certificate before it expires, for as long as the agent
    /// runs. `client` reaches the controller with this identity.
    pub async fn renew_forever(self: Arc<Self>, client: Client) {
        let mut wait = self.renew_in(now_ms());
        loop {
            tokio::time::sleep(wait).await;
            match self.renew_once(&client).await {
                Ok(()) => wait = self.renew_in(now_ms()),
                Err(error) => {
                    // Retry well before expiry: a tenth of what is left,
                    // between a second and RENEW_RETRY.
                    let left = self.not_after_ms().saturating_sub(now_ms());
                    wait =
                        Duration::from_millis(left / 10).clamp(Duration::from_secs(1), RENEW_RETRY);
                    tracing::warn!(node = %self.node, error = %format!("{error:#}"), retry_in = ?wait, "cannot renew the node certificate");
                }
            }
        }
    }

    async fn renew_once(&self, client: &Client) -> anyhow::Result<()> {
        let (key_pem, csr_pem) = new_key_and_request()?;
        let issued = client
            .renew_certificate(&self.node, &RenewRequest { csr_pem })
            .await
            .context("the controller refused the renewal")?;
        let der = first_cert_der(issued.cert_pem.as_bytes())
            .context("the renewed certificate is not PEM")?;
        let (Some(from), Some(until)) = (not_before_ms(der.as_ref()), not_after_ms(der.as_ref()))
        else {
            anyhow::bail!("the renewed certificate has no validity");
        };
        write(&self.layout, &key_pem, &issued.cert_pem)?;
        self.identity
            .replace(issued.cert_pem.as_bytes(), key_pem.as_bytes())
            .map_err(|e| anyhow::anyhow!("the renewed certificate is unusable: {e}"))?;
        self.not_before_ms.store(from, Ordering::Relaxed);
        self.not_after_ms.store(until, Ordering::Relaxed);
        // Kept-alive connections show the old certificate until it expires.
        client.reconnect();
        tracing::info!(node = %self.node, not_after_ms = until, "node certificate renewed");
        Ok(())
    }
}

/// Whether the agent of `node` on `data_dir` needs a join token to start:
/// it has no valid certificate of that node there.
pub fn needs_join(data_dir: &std::path::Path, node: &str) -> bool {
    !matches!(
        Credentials::load(&Layout::new(data_dir), node, now_ms()),
        Ok(Some(_))
    )
}

fn write(layout: &Layout, key_pem: &str, cert_pem: &str) -> anyhow::Result<()> {
    layout::write_atomic_private(&layout.node_key(), key_pem.as_bytes())
        .with_context(|| format!("cannot write {}", layout.node_key().display()))?;
    layout::write_atomic_private(&layout.node_cert(), cert_pem.as_bytes())
        .with_context(|| format!("cannot write {}", layout.node_cert().display()))
}

/// A new key (PEM) and a certificate request for it (PEM); the controller
/// decides what the certificate names.
fn new_key_and_request() -> anyhow::Result<(String, String)> {
    let key = rcgen::KeyPair::generate().context("cannot make a node key")?;
    let csr = rcgen::CertificateParams::new(Vec::<String>::new())
        .and_then(|params| params.serialize_request(&key))
        .and_then(|csr| csr.pem())
        .context("cannot make the certificate request")?;
    Ok((key.serialize_pem(), csr))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
