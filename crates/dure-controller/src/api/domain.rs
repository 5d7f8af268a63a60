//! `/v1/domain/pack`: the whole domain as one archive (see `backup`), sent
//! as the response body so a backup needs nothing but the API; and
//! `/v1/domain/rotate-key`, a new membership key (see `key_rollout`).

use super::{Actor, AppState, Query};
use crate::backup::{self, PackSource};
use crate::error::{ApiError, ApiResult};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use dure_api::{DomainPackQuery, KeyRotation, RotateKeyQuery};

pub async fn pack(
    State(app): AppState,
    actor: Actor,
    Query(query): Query<DomainPackQuery>,
) -> ApiResult<Response> {
    let ca = app.ca.as_ref().map(|ca| ca.pem());
    let pack = backup::pack(
        &PackSource {
            store: app.store.as_ref(),
            token: Some(&app.token),
            membership_key: Some(app.membership_keys.newest()),
            ca: ca.as_ref(),
            controller: app.settings.clone(),
            now_ms: crate::clock::now_ms(),
        },
        query.include_secrets,
    )
    .await
    .map_err(|e| ApiError::internal(format!("cannot pack the domain: {e:#}")))?;
    let secrets = if query.include_secrets {
        " with the admin token and the membership key"
    } else {
        ""
    };
    app.events
        .record(
            actor.name(),
            "backup",
            "controller",
            format!(
                "domain packed at version {}{secrets} ({} bytes)",
                pack.manifest.version,
                pack.bytes.len()
            ),
        )
        .await;
    let disposition = format!("attachment; filename=\"{}\"", pack.file_name);
    Ok((
        [
            (header::CONTENT_TYPE, "application/gzip".to_string()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        pack.bytes,
    )
        .into_response())
}

pub async fn rotate_key(
    State(app): AppState,
    actor: Actor,
    Query(query): Query<RotateKeyQuery>,
) -> ApiResult<Json<KeyRotation>> {
    let grace = match query.grace.as_deref() {
        None => crate::membership_key::DEFAULT_GRACE,
        Some(text) => {
            text.parse::<dure_core::DurationSpec>()
                .map_err(|e| ApiError::invalid(format!("grace `{text}`: {e}")))?
                .0
        }
    };
    Ok(Json(
        crate::key_rollout::rotate(&app, grace, actor.name()).await?,
    ))
}
