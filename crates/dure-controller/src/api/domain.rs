//! `/v1/domain/pack`: the whole domain as one archive (see `backup`), sent
//! as the response body so a backup needs nothing but the API.

use super::{Actor, AppState, Query};
use crate::backup::{self, PackSource};
use crate::error::{ApiError, ApiResult};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use dure_api::DomainPackQuery;

pub async fn pack(
    State(app): AppState,
    actor: Actor,
    Query(query): Query<DomainPackQuery>,
) -> ApiResult<Response> {
    let pack = backup::pack(
        &PackSource {
            store: app.store.as_ref(),
            token: Some(&app.token),
            controller: app.settings.clone(),
            now_ms: crate::clock::now_ms(),
        },
        query.include_secrets,
    )
    .await
    .map_err(|e| ApiError::internal(format!("cannot pack the domain: {e:#}")))?;
    let secrets = if query.include_secrets {
        " with the admin token"
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
