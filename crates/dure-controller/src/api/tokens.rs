//! `/v1/tokens`: API tokens with roles — list, create (the answer holds
//! the secret, once) and revoke. Admin only, as the route table says.

use super::{Actor, AppState, Body, Path};
use crate::clock::now_ms;
use crate::error::ApiResult;
use axum::extract::State;
use axum::Json;
use dure_api::{CreateToken, CreatedToken, TokenInfo};

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
