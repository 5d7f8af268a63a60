//! Rolling a new membership key out to running agents (`POST
//! /v1/domain/rotate-key`): `membership_key::DomainKeys` decides what
//! agents are handed at each moment; this wakes every node's desired-state
//! poll at the rotation and at each later step, so agents move together
//! within milliseconds, and records each step as a `domain.key` event.
//! Agents that miss a wake still get the keys with their next poll answer
//! (at most the poll's wait later). A controller started in the middle of
//! a rotation goes on with its remaining steps.

use crate::app::App;
use crate::clock::now_ms;
use crate::error::ApiError;
use crate::membership_key::RotateError;
use dure_api::KeyRotation;
use dure_core::timefmt::rfc3339_seconds;
use dure_core::DurationSpec;
use std::sync::Arc;
use std::time::Duration;

/// Rotates the key now and rolls it out with `grace` per step.
pub async fn rotate(app: &Arc<App>, grace: Duration, actor: &str) -> Result<KeyRotation, ApiError> {
    let rotation = app
        .membership_keys
        .rotate(grace, now_ms())
        .map_err(|e| match e {
            RotateError::UnderWay { .. } => ApiError::conflict(e.to_string()),
            RotateError::Grace { .. } => ApiError::invalid(e.to_string()),
            RotateError::Failed(_) => ApiError::internal(e.to_string()),
        })?;
    let answer = KeyRotation {
        rotated_at: rfc3339_seconds(rotation.rotated_ms),
        grace_ms: rotation.grace_ms,
        seal_new_at: rfc3339_seconds(rotation.seal_new_ms()),
        done_at: rfc3339_seconds(rotation.done_ms()),
    };
    step(
        app,
        actor,
        format!(
            "membership key rotated (grace {}): agents learn the new key now, seal with it from {} and stop accepting the old one at {}",
            DurationSpec(grace),
            answer.seal_new_at,
            answer.done_at
        ),
    )
    .await;
    spawn_steps(app.clone());
    Ok(answer)
}

/// Wakes agents at each step still ahead of the rotation under way.
pub fn spawn_steps(app: Arc<App>) {
    let steps = app.membership_keys.steps_after(now_ms());
    if steps.is_empty() {
        return;
    }
    tokio::spawn(async move {
        for at in steps {
            let wait = at.saturating_sub(now_ms());
            tokio::time::sleep(Duration::from_millis(wait)).await;
            let keys = app.membership_keys.keys(now_ms());
            let said = if keys.accept.is_empty() {
                "membership key rotation done: the old key opens nothing any more"
            } else {
                "membership key rotation: agents seal with the new key now, the old one still opens"
            };
            step(&app, "controller", said.to_string()).await;
        }
    });
}

/// Records a step and wakes every node's poll: the event's write moves
/// the store past every node's index, and the answers carry the keys.
async fn step(app: &App, actor: &str, said: String) {
    app.events.record(actor, "domain.key", "domain", said).await;
    match app.store.current_revision().await {
        Ok(revision) => {
            let nodes: Vec<String> = app.config.read(|d| d.nodes.keys().cloned().collect());
            app.desired.bump(nodes.iter(), revision);
        }
        // The polls' own timeouts bring the keys within their wait.
        Err(error) => tracing::warn!(%error, "agents not woken for the membership key"),
    }
}
