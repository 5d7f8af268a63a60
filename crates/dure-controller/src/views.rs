//! Builds the API's read models (server, cluster and node views) from the
//! configuration, the intents and the observed state.

use crate::app::App;
use crate::changes::{self, View};
use crate::error::ApiResult;
use dure_api::{ClusterView, MemberView, NodeView, PendingIntent, ServerView};
use dure_core::status::cluster_status;
use dure_core::{ClusterSpec, Domain, NodeSpec, ServerSpec};

pub fn server_view(app: &App, domain: &Domain, spec: &ServerSpec) -> ServerView {
    let intent = app.intents.get(&spec.name);
    let observed = app.runtime.observed(&spec.node, &spec.name);
    let pending = intent
        .intent
        .is_pending(intent.generation, &observed)
        .then(|| PendingIntent {
            intent: intent.intent,
            generation: intent.generation,
            operation: intent.operation.clone(),
        });
    ServerView {
        spec: spec.clone(),
        intent: intent.intent,
        generation: intent.generation,
        observed,
        cluster: domain.cluster_of(&spec.name).map(|c| c.name.clone()),
        pending,
    }
}

/// One server's view, read from the configuration the caller asked for.
pub async fn server_view_by_name(
    app: &App,
    actor: &str,
    view: View,
    name: &str,
) -> ApiResult<ServerView> {
    Ok(changes::read(app, actor, view, |d| {
        d.server(name).map(|s| server_view(app, d, s))
    })
    .await??)
}

pub fn cluster_view(app: &App, domain: &Domain, spec: &ClusterSpec) -> ClusterView {
    let members: Vec<MemberView> = spec
        .members
        .iter()
        .map(|name| {
            let node = domain
                .servers()
                .get(name)
                .map(|s| s.node.clone())
                .unwrap_or_default();
            MemberView {
                observed: app.runtime.observed(&node, name),
                server: name.clone(),
                node,
            }
        })
        .collect();
    let states: Vec<_> = members.iter().map(|m| m.observed.state).collect();
    ClusterView {
        spec: spec.clone(),
        status: cluster_status(&states),
        members,
    }
}

/// One cluster's view, read from the configuration the caller asked for.
pub async fn cluster_view_by_name(
    app: &App,
    actor: &str,
    view: View,
    name: &str,
) -> ApiResult<ClusterView> {
    Ok(changes::read(app, actor, view, |d| {
        d.cluster(name).map(|c| cluster_view(app, d, c))
    })
    .await??)
}

pub fn node_view(app: &App, domain: &Domain, spec: &NodeSpec) -> NodeView {
    let (status, agent_version, last_seen_ms) = app.runtime.node_status(&spec.name);
    let (mode, independent_since_ms) = app.runtime.node_mode(&spec.name);
    let membership = app.runtime.membership_of(&spec.name);
    NodeView {
        spec: spec.clone(),
        status,
        agent_address: app
            .runtime
            .agent_endpoint(&spec.name)
            .map(|e| e.authority()),
        agent_version,
        last_seen_ms,
        servers: domain.servers_on(&spec.name).count(),
        mode,
        independent_since_ms,
        membership: membership.map(|(state, _)| state),
        membership_since_ms: membership.map(|(_, since)| since),
    }
}
