//! API tokens with roles and who a request comes from: token records under
//! `/tokens/<id>` (kept in memory too, read at open), creation, revocation,
//! and the resolution of a presented bearer token to an [`Actor`].
//!
//! A token is `<id>.<secret>`: the id (`tok-` and 12 hex digits) finds the
//! record, the record holds only the SHA-256 of the whole token (the
//! secret is 256 random bits, so a plain hash is enough), compared without
//! an early exit. The bootstrap admin token (`admin.token` in the data
//! directory) is not in the store; it resolves to the actor `admin`.
//!
//! A join token (`dure token create --join --node N`) is a record of the
//! same form naming its node: it is refused as a bearer token everywhere
//! and redeemed once, by the agent of that node, for a node certificate.
//! An agent known by its node certificate is an [`Actor::node`].
//!
//! What a role may do is `dure_core::access`; which permission a route
//! needs is `dure_api::routes::TABLE`. Records are read at open and
//! written through: one controller owns its store.

use crate::error::{ApiError, ApiResult};
use crate::events::EventLog;
use dure_api::auth::{bearer_token, token_matches};
use dure_api::{CreateToken, CreatedToken, TokenInfo};
use dure_core::access::{Principal, Role};
use dure_core::timefmt::rfc3339_seconds;
use dure_core::{validate_name, NameKind};
use dure_store::Store;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

/// Where token records are kept: `/tokens/<id>`.
pub const PREFIX: &str = "/tokens/";
/// What every token id starts with.
const ID_PREFIX: &str = "tok-";
/// The longest description a token may carry.
const MAX_DESCRIPTION: usize = 200;
/// The actor name of the bootstrap admin token.
pub const BOOTSTRAP_ID: &str = "admin";
/// How long a join token is good for when its creator does not say.
const JOIN_TTL_MS: u64 = 15 * 60 * 1000;

/// Who makes a request: the token's id, description and role, or the
/// node whose certificate it showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub id: String,
    pub description: String,
    pub principal: Principal,
    /// How events, history records and change sets name the actor.
    name: String,
}

impl Actor {
    /// The bootstrap admin token's actor, `admin`, as before roles.
    pub fn bootstrap() -> Actor {
        Actor {
            id: BOOTSTRAP_ID.into(),
            description: "bootstrap admin token".into(),
            principal: Principal::Token(Role::Admin),
            name: BOOTSTRAP_ID.into(),
        }
    }

    /// The agent of `node`, by its node certificate: `agent:NODE`, as
    /// events name agents' calls.
    pub fn node(node: &str) -> Actor {
        Actor {
            id: format!("node:{node}"),
            description: "node certificate".into(),
            principal: Principal::Node(node.to_string()),
            name: format!("agent:{node}"),
        }
    }

    fn of(info: &TokenInfo) -> Actor {
        let name = if info.description.is_empty() {
            info.id.clone()
        } else {
            format!("{} ({})", info.id, info.description)
        };
        let principal = match &info.node {
            Some(node) => Principal::Join(node.clone()),
            None => Principal::Token(info.role),
        };
        Actor {
            id: info.id.clone(),
            description: info.description.clone(),
            principal,
            name,
        }
    }

    /// The token's role; `None` for a node certificate or a join token.
    pub fn role(&self) -> Option<Role> {
        self.principal.role()
    }

    /// The id and description, as events and history records name the
    /// actor: `tok-0123456789ab (nightly deploy)`, or `admin`.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// A token record as stored: what is listed, and the token's digest.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    #[serde(flatten)]
    info: TokenInfo,
    /// SHA-256 of the whole token, hex.
    sha256: String,
}

fn digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The id of a token in the `<id>.<secret>` form, if it is in that form.
fn id_of(token: &str) -> Option<&str> {
    let (id, secret) = token.split_once('.')?;
    let hex_id = id.strip_prefix(ID_PREFIX)?;
    (hex_id.len() == 12
        && hex_id.bytes().all(|b| b.is_ascii_hexdigit())
        && secret.len() == 64
        && secret.bytes().all(|b| b.is_ascii_hexdigit()))
    .then_some(id)
}

fn random_hex(bytes: usize) -> ApiResult<String> {
    let mut buffer = vec![0u8; bytes];
    getrandom::getrandom(&mut buffer)
        .map_err(|e| ApiError::internal(format!("no randomness for a token: {e}")))?;
    Ok(hex::encode(buffer))
}

const NOT_VALID: &str = "the bearer token is not valid for this controller";

pub struct Tokens {
    store: Arc<dyn Store>,
    bootstrap: String,
    records: RwLock<BTreeMap<String, Record>>,
    /// Held while a join token is checked and marked used, so two agents
    /// racing with one token cannot both pass.
    redeeming: tokio::sync::Mutex<()>,
}

impl Tokens {
    /// Reads every token record. One that cannot be read is reported and
    /// left out, so its token is refused: failing closed.
    pub async fn open(
        store: Arc<dyn Store>,
        bootstrap: String,
        events: &EventLog,
    ) -> anyhow::Result<Tokens> {
        let mut records = BTreeMap::new();
        for kv in store.list(PREFIX).await? {
            match serde_json::from_slice::<Record>(&kv.value) {
                Ok(record) => {
                    records.insert(record.info.id.clone(), record);
                }
                Err(error) => {
                    let message = format!(
                        "token record `{}` cannot be read ({error}); its token is refused",
                        kv.key
                    );
                    tracing::error!(key = %kv.key, %error, "cannot read token record");
                    events
                        .record("controller", "record", &kv.key, message)
                        .await;
                }
            }
        }
        Ok(Tokens {
            store,
            bootstrap,
            records: RwLock::new(records),
            redeeming: tokio::sync::Mutex::new(()),
        })
    }

    /// The actor of an `Authorization` header's bearer token at `now_ms`,
    /// or the 401 that says why there is none.
    pub fn resolve_header(&self, authorization: Option<&str>, now_ms: u64) -> ApiResult<Actor> {
        let Some(presented) = bearer_token(authorization) else {
            return Err(ApiError::unauthorized(
                "missing bearer token: send `Authorization: Bearer <token>` (the admin token is in the controller's data directory; `dure token create` makes others)",
            ));
        };
        self.resolve(presented, now_ms)
    }

    /// The actor of a presented token at `now_ms`: the bootstrap admin, or
    /// a stored token that is neither revoked nor expired. The console
    /// calls this with the token a user logs in with. A join token is
    /// refused: it is good for an agent's join only.
    pub fn resolve(&self, presented: &str, now_ms: u64) -> ApiResult<Actor> {
        let Some(info) = self.valid(presented, now_ms)? else {
            return Ok(Actor::bootstrap());
        };
        if let Some(node) = &info.node {
            return Err(ApiError::unauthorized(format!(
                "token `{}` is a join token for node `{node}`: it is good only for that node's agent to join (`dure agent --join-token`), not for API calls",
                info.id
            )));
        }
        Ok(Actor::of(&info))
    }

    /// Whether `presented` names a join token's record (its secret is
    /// checked by [`Tokens::check_join`]).
    pub fn is_join_token(&self, presented: &str) -> bool {
        let records = self.records.read().unwrap_or_else(|p| p.into_inner());
        id_of(presented)
            .and_then(|id| records.get(id))
            .is_some_and(|record| record.info.node.is_some())
    }

    /// The actor of a presented join token that can still be used, without
    /// using it: what the join route's authorization checks before the
    /// request is read.
    pub fn check_join(&self, presented: &str, now_ms: u64) -> ApiResult<Actor> {
        let Some(info) = self.valid(presented, now_ms)? else {
            return Err(not_a_join_token("the bootstrap admin token"));
        };
        if info.node.is_none() {
            return Err(not_a_join_token(&format!("token `{}`", info.id)));
        }
        if let Some(used) = info.used_ms {
            return Err(already_used(&info, used));
        }
        Ok(Actor::of(&info))
    }

    /// Uses a join token for `node`: refused unless it is for that node,
    /// unexpired, unrevoked and unused; marked used on disk before the
    /// answer, so it never works twice, not even across a restart.
    pub async fn redeem_join(
        &self,
        presented: &str,
        node: &str,
        now_ms: u64,
        events: &EventLog,
    ) -> ApiResult<Actor> {
        let _turn = self.redeeming.lock().await;
        let actor = self.check_join(presented, now_ms)?;
        let mut record = {
            let records = self.records.read().unwrap_or_else(|p| p.into_inner());
            records.get(&actor.id).cloned()
        }
        .ok_or_else(|| ApiError::unauthorized(NOT_VALID))?;
        if record.info.node.as_deref() != Some(node) {
            return Err(ApiError::forbidden(format!(
                "join token `{}` is for node `{}`, not `{node}`",
                record.info.id,
                record.info.node.as_deref().unwrap_or_default()
            )));
        }
        record.info.used_ms = Some(now_ms);
        self.write(&record).await?;
        events
            .record(
                &format!("agent:{node}"),
                "token",
                &format!("token/{}", record.info.id),
                format!(
                    "join token `{}` used by the agent of node `{node}`; it is refused from now on",
                    record.info.id
                ),
            )
            .await;
        Ok(actor)
    }

    /// The record of a presented token that is neither revoked nor expired
    /// (`None`: the bootstrap admin token), or the 401 that says why not.
    fn valid(&self, presented: &str, now_ms: u64) -> ApiResult<Option<TokenInfo>> {
        let Some(id) = id_of(presented) else {
            return if token_matches(&self.bootstrap, presented) {
                Ok(None)
            } else {
                Err(ApiError::unauthorized(NOT_VALID))
            };
        };
        let records = self.records.read().unwrap_or_else(|p| p.into_inner());
        let Some(record) = records.get(id) else {
            return Err(ApiError::unauthorized(NOT_VALID));
        };
        // The digest first: a wrong secret learns nothing about the token.
        if !token_matches(&record.sha256, &digest(presented)) {
            return Err(ApiError::unauthorized(NOT_VALID));
        }
        let info = &record.info;
        let renew = match &info.node {
            Some(node) => format!("`dure token create --join --node {node}`"),
            None => "`dure token create`".to_string(),
        };
        if let Some(revoked) = info.revoked_ms {
            return Err(ApiError::unauthorized(format!(
                "token `{id}` was revoked at {}; ask an admin for a new one ({renew})",
                rfc3339_seconds(revoked)
            )));
        }
        if let Some(expires) = info.expires_ms.filter(|e| *e <= now_ms) {
            return Err(ApiError::unauthorized(format!(
                "token `{id}` expired at {}; ask an admin for a new one ({renew})",
                rfc3339_seconds(expires)
            )));
        }
        Ok(Some(info.clone()))
    }

    /// Every token, oldest first.
    pub fn list(&self) -> Vec<TokenInfo> {
        let records = self.records.read().unwrap_or_else(|p| p.into_inner());
        let mut tokens: Vec<TokenInfo> = records.values().map(|r| r.info.clone()).collect();
        tokens.sort_by(|a, b| (a.created_ms, &a.id).cmp(&(b.created_ms, &b.id)));
        tokens
    }

    /// Creates a token; the answer is the only place its secret appears.
    pub async fn create(
        &self,
        request: CreateToken,
        by: &Actor,
        now_ms: u64,
        events: &EventLog,
    ) -> ApiResult<CreatedToken> {
        let description = request.description.trim().to_string();
        if description.chars().count() > MAX_DESCRIPTION
            || description.chars().any(char::is_control)
        {
            return Err(ApiError::invalid(format!(
                "the token description must be at most {MAX_DESCRIPTION} characters without control characters"
            )));
        }
        if request.ttl.is_some_and(|ttl| ttl.as_millis() == 0) {
            return Err(ApiError::invalid(
                "the token's ttl must be greater than 0, such as 15m or 720h; leave it out for a token that does not expire",
            ));
        }
        if let Some(node) = &request.node {
            validate_name(NameKind::Node, node).map_err(|e| ApiError::invalid(e.to_string()))?;
        }
        let ttl_ms = match (&request.node, request.ttl) {
            (_, Some(ttl)) => Some(ttl.as_millis()),
            (Some(_), None) => Some(JOIN_TTL_MS),
            (None, None) => None,
        };
        let description = match (&request.node, description.is_empty()) {
            (Some(node), true) => format!("join token for node {node}"),
            _ => description,
        };
        let id = format!("{ID_PREFIX}{}", random_hex(6)?);
        let token = format!("{id}.{}", random_hex(32)?);
        debug_assert_eq!(id_of(&token), Some(id.as_str()));
        let info = TokenInfo {
            id: id.clone(),
            role: request.role,
            description,
            created_ms: now_ms,
            created_by: by.name().to_string(),
            expires_ms: ttl_ms.map(|ttl| now_ms.saturating_add(ttl)),
            revoked_ms: None,
            revoked_by: None,
            node: request.node.clone(),
            used_ms: None,
        };
        let record = Record {
            info: info.clone(),
            sha256: digest(&token),
        };
        self.write(&record).await?;
        let expires = info.expires_ms.map_or("does not expire".to_string(), |e| {
            format!("expires {}", rfc3339_seconds(e))
        });
        record_event(events, by, "created", &info, &format!(" ({expires})")).await;
        Ok(CreatedToken { info, token })
    }

    /// Revokes a token: it is refused from now on; its record stays, so
    /// lists and audits still name it.
    pub async fn revoke(
        &self,
        id: &str,
        by: &Actor,
        now_ms: u64,
        events: &EventLog,
    ) -> ApiResult<TokenInfo> {
        let mut record = {
            let records = self.records.read().unwrap_or_else(|p| p.into_inner());
            records.get(id).cloned()
        }
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "token `{id}` does not exist: `dure token list` shows the tokens"
            ))
        })?;
        if let Some(revoked) = record.info.revoked_ms {
            return Err(ApiError::conflict(format!(
                "token `{id}` is already revoked (at {})",
                rfc3339_seconds(revoked)
            )));
        }
        record.info.revoked_ms = Some(now_ms);
        record.info.revoked_by = Some(by.name().to_string());
        self.write(&record).await?;
        record_event(events, by, "revoked", &record.info, "").await;
        Ok(record.info)
    }

    /// Writes a record to the store, then to memory: a token is accepted
    /// only once it is on disk, and refused at once after a revocation
    /// reached the disk.
    async fn write(&self, record: &Record) -> ApiResult<()> {
        let bytes = serde_json::to_vec(record)
            .map_err(|e| ApiError::internal(format!("cannot encode a token record: {e}")))?;
        self.store
            .put(&format!("{PREFIX}{}", record.info.id), &bytes)
            .await?;
        self.records
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(record.info.id.clone(), record.clone());
        Ok(())
    }
}

fn not_a_join_token(what: &str) -> ApiError {
    ApiError::forbidden(format!(
        "{what} is not a join token: an agent joins with a one-time token from `dure token create --join --node NAME`"
    ))
}

fn already_used(info: &TokenInfo, used: u64) -> ApiError {
    let node = info.node.as_deref().unwrap_or_default();
    ApiError::unauthorized(format!(
        "join token `{}` was already used at {}: a join token works once; create another with `dure token create --join --node {node}`",
        info.id,
        rfc3339_seconds(used)
    ))
}

/// The event of a token's creation or revocation (`done`): its id, role,
/// `detail` and description, in one wording for both.
async fn record_event(events: &EventLog, by: &Actor, done: &str, info: &TokenInfo, detail: &str) {
    let id = &info.id;
    events
        .record(
            by.name(),
            "token",
            &format!("token/{id}"),
            format!(
                "{done} token `{id}` {}{detail}{}",
                kind(info),
                describe(&info.description)
            ),
        )
        .await;
}

/// What a token is for: its role, or the node it lets join.
fn kind(info: &TokenInfo) -> String {
    match &info.node {
        Some(node) => format!("to join node `{node}`"),
        None => format!("with role {}", info.role),
    }
}

fn describe(description: &str) -> String {
    if description.is_empty() {
        String::new()
    } else {
        format!(": {description}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{app_in, TOKEN};
    use axum::http::StatusCode;
    use dure_core::DurationSpec;

    fn request(role: Role, ttl: Option<&str>, description: &str) -> CreateToken {
        CreateToken {
            role,
            ttl: ttl.map(|t| t.parse::<DurationSpec>().expect("ttl")),
            description: description.into(),
            node: None,
        }
    }

    #[tokio::test]
    async fn created_tokens_resolve_to_their_actor_until_revoked_or_expired() {
        let dir = tempfile::tempdir().expect("tempdir");
        let app = app_in(dir.path()).await;
        let admin = app.tokens.resolve(TOKEN, 0).expect("bootstrap");
        assert_eq!((admin.name(), admin.role()), ("admin", Some(Role::Admin)));
        let created = app
            .tokens
            .create(
                request(Role::Operator, Some("1h"), "deploys"),
                &admin,
                1_000,
                &app.events,
            )
            .await
            .expect("created");
        let actor = app.tokens.resolve(&created.token, 2_000).expect("valid");
        assert_eq!(actor.role(), Some(Role::Operator));
        assert_eq!(actor.name(), format!("{} (deploys)", created.info.id));
        assert_eq!(created.info.expires_ms, Some(1_000 + 3_600_000));

        let expired = app
            .tokens
            .resolve(&created.token, 1_000 + 3_600_000)
            .expect_err("expired");
        assert_eq!(expired.status, StatusCode::UNAUTHORIZED);
        assert!(
            expired.message.contains("expired at"),
            "{}",
            expired.message
        );

        // A wrong secret for a real id reads like any bad token.
        let forged = format!("{}.{}", created.info.id, "0".repeat(64));
        let err = app.tokens.resolve(&forged, 2_000).expect_err("forged");
        assert_eq!(err.message, NOT_VALID);

        app.tokens
            .revoke(&created.info.id, &admin, 3_000, &app.events)
            .await
            .expect("revoked");
        let err = app
            .tokens
            .resolve(&created.token, 3_000)
            .expect_err("revoked");
        assert!(err.message.contains("was revoked at"), "{}", err.message);
        let again = app
            .tokens
            .revoke(&created.info.id, &admin, 4_000, &app.events)
            .await
            .expect_err("twice");
        assert_eq!(again.status, StatusCode::CONFLICT);

        // Records survive a restart; the secret is nowhere in the store.
        let reopened = Tokens::open(app.store.clone(), TOKEN.into(), &app.events)
            .await
            .expect("open");
        assert_eq!(reopened.list(), app.tokens.list());
        let secret = created.token.split_once('.').expect("form").1;
        for kv in app.store.list("/").await.expect("list") {
            let text = String::from_utf8_lossy(&kv.value);
            assert!(!text.contains(secret), "secret in {}", kv.key);
        }
    }

    #[tokio::test]
    async fn a_join_token_joins_its_node_once_and_is_no_api_token() {
        let dir = tempfile::tempdir().expect("tempdir");
        let app = app_in(dir.path()).await;
        let admin = Actor::bootstrap();
        let mut request = request(Role::Viewer, None, "");
        request.node = Some("n1".into());
        let created = app
            .tokens
            .create(request, &admin, 1_000, &app.events)
            .await
            .expect("created");
        assert_eq!(created.info.expires_ms, Some(1_000 + JOIN_TTL_MS));
        let err = app
            .tokens
            .resolve(&created.token, 2_000)
            .expect_err("no API token");
        assert!(
            err.message.contains("is a join token for node `n1`"),
            "{}",
            err.message
        );
        let err = app
            .tokens
            .redeem_join(&created.token, "n2", 2_000, &app.events)
            .await
            .expect_err("other node");
        assert_eq!(err.status, StatusCode::FORBIDDEN);
        let actor = app
            .tokens
            .redeem_join(&created.token, "n1", 2_000, &app.events)
            .await
            .expect("joins");
        assert_eq!(actor.principal, Principal::Join("n1".into()));
        let again = app
            .tokens
            .redeem_join(&created.token, "n1", 3_000, &app.events)
            .await
            .expect_err("once");
        assert!(
            again.message.contains("was already used at"),
            "{}",
            again.message
        );
        // Used stays used across a restart.
        let reopened = Tokens::open(app.store.clone(), TOKEN.into(), &app.events)
            .await
            .expect("open");
        assert!(reopened.check_join(&created.token, 3_000).is_err());
        let late = app
            .tokens
            .check_join(&created.token, 1_000 + JOIN_TTL_MS)
            .expect_err("expired");
        assert!(late.message.contains("expired at"), "{}", late.message);
        assert!(
            app.tokens.check_join(TOKEN, 0).is_err(),
            "the admin token joins nothing"
        );
    }

    #[tokio::test]
    async fn bad_descriptions_and_ttls_are_refused_creating_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let app = app_in(dir.path()).await;
        let admin = Actor::bootstrap();
        for bad in [
            request(Role::Viewer, Some("0s"), ""),
            request(Role::Viewer, None, "line\nbreak"),
            request(Role::Viewer, None, &"x".repeat(MAX_DESCRIPTION + 1)),
        ] {
            let err = app
                .tokens
                .create(bad, &admin, 0, &app.events)
                .await
                .expect_err("refused");
            assert_eq!(err.status, StatusCode::BAD_REQUEST, "{}", err.message);
        }
        assert!(app.tokens.list().is_empty());
        assert!(app.tokens.resolve("tok-0123456789ab.x", 0).is_err());
        assert!(app.tokens.resolve("", 0).is_err());
    }
}
