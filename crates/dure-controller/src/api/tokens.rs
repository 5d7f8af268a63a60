//! `/v1/tokens`: API tokens with roles — list, create (the answer holds
//! the secret, once) and revoke, admin only as the route table says; and
//! `/v1/whoami`, any token's own id, description and role.

use super::{Actor, AppState, Body, Path};
use crate::clock::now_ms;
use crate::error::ApiResult;
use axum::extract::State;
use axum::Json;
use dure_api::{CreateToken, CreatedToken, TokenInfo, Whoami};

pub async fn list(State(app): AppState) -> Json<Vec<TokenInfo>> {
    Json(app.tokens.list())
}

pub async fn create(
    State(app): AppState,
    actor: Actor,
    Body(request): Body<CreateToken>,
) -> ApiResult<Json<CreatedToken>> {
    let created = app
        .tokens
        .create(request, &actor, now_ms(), &app.events)
        .await?;
    Ok(Json(created))
}

pub async fn revoke(
    State(app): AppState,
    actor: Actor,
    Path(id): Path<String>,
) -> ApiResult<Json<TokenInfo>> {
    let revoked = app
        .tokens
        .revoke(&id, &actor, now_ms(), &app.events)
        .await?;
    Ok(Json(revoked))
}

/// The caller's own token, so a client can show only what its role allows.
pub async fn whoami(actor: Actor) -> ApiResult<Json<Whoami>> {
    // Only tokens read: node certificates and join tokens never get here.
    let role = actor.role().ok_or_else(|| {
        crate::error::ApiError::forbidden(format!("`{}` has no role", actor.name()))
    })?;
    Ok(Json(Whoami {
        id: actor.id,
        description: actor.description,
        role,
    }))
}
