//! Node certificates: `POST /v1/agent/join`, where an agent trades a
//! one-time join token and a certificate request for its node's
//! certificate, and `POST /v1/agent/nodes/{node}/certificate`, where it
//! renews that certificate with the current one before it expires. The
//! domain CA signs (`tls::ca`); the certificate names `node:NODE`, which
//! is what node restriction reads.

use super::{Actor, AppState, Body, Path};
use crate::app::App;
use crate::clock::now_ms;
use crate::error::{ApiError, ApiResult};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use dure_api::{JoinRequest, NodeCertificate, RenewRequest};
use dure_core::{validate_name, NameKind};

pub async fn join(
    State(app): AppState,
    headers: HeaderMap,
    Body(request): Body<JoinRequest>,
) -> ApiResult<Json<NodeCertificate>> {
    validate_name(NameKind::Node, &request.node).map_err(|e| ApiError::invalid(e.to_string()))?;
    // Signed first: a request that cannot be signed uses up no token.
    let certificate = issue(&app, &request.node, &request.csr_pem)?;
    let token = dure_api::auth::bearer_token(super::authorization(&headers)).unwrap_or_default();
    let actor = app
        .tokens
        .redeem_join(token, &request.node, now_ms(), &app.events)
        .await?;
    record(&app, &actor, &certificate, "joined: issued").await;
    Ok(Json(certificate))
}

pub async fn renew(
    State(app): AppState,
    actor: Actor,
    Path(node): Path<String>,
    Body(request): Body<RenewRequest>,
) -> ApiResult<Json<NodeCertificate>> {
    validate_name(NameKind::Node, &node).map_err(|e| ApiError::invalid(e.to_string()))?;
    let certificate = issue(&app, &node, &request.csr_pem)?;
    record(&app, &actor, &certificate, "renewed").await;
    Ok(Json(certificate))
}

/// A certificate for `node` from `csr_pem`, valid for the controller's
/// node certificate lifetime.
fn issue(app: &App, node: &str, csr_pem: &str) -> ApiResult<NodeCertificate> {
    let ca = app.ca.as_ref().ok_or_else(|| {
        ApiError::unavailable(
            "this controller holds no CA key, so it issues no node certificates: start it with the built-in CA or with --tls-ca-key",
        )
    })?;
    let cert_pem = ca
        .issue_node(csr_pem, node, app.node_cert_lifetime)
        .map_err(ApiError::invalid)?;
    let not_after_ms = dure_api::identity::first_cert_der(cert_pem.as_bytes())
        .and_then(|der| dure_api::identity::not_after_ms(der.as_ref()))
        .ok_or_else(|| ApiError::internal("the issued certificate cannot be read back"))?;
    Ok(NodeCertificate {
        node: node.to_string(),
        cert_pem,
        not_after_ms,
    })
}

async fn record(app: &App, actor: &Actor, certificate: &NodeCertificate, done: &str) {
    let node = &certificate.node;
    app.events
        .record(
            actor.name(),
            "node.certificate",
            &format!("node/{node}"),
            format!(
                "node `{node}` {done} a node certificate valid until {}",
                dure_core::timefmt::rfc3339_seconds(certificate.not_after_ms)
            ),
        )
        .await;
}
